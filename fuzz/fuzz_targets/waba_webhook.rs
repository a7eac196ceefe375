#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| messaging_tests::fuzz::waba_webhook(data));
