#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| wgfabric_fuzz::inventory::run(data));
