#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| wgfabric_fuzz::etcd_response::run(data));
