#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| faceid_fuzz::multipart(data));
