#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| x0_fuzz::bfd_packet(data));
