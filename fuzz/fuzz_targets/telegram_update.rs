#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| messaging_tests::fuzz::telegram_update(data));
