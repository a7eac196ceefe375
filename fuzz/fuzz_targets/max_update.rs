#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| messaging_tests::fuzz::max_update(data));
