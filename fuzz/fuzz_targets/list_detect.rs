//! A list file of no declared format: format detection on arbitrary bytes, then the checks of
//! `rampart_fuzz::check_list` in the detected format, and the load path the server takes (file
//! read in blocks, detection, compile into a snapshot, every listed name decided).
#![no_main]

use libfuzzer_sys::fuzz_target;
use rampart::policy::formats;

fuzz_target!(|data: &[u8]| {
    let format = formats::detect(&String::from_utf8_lossy(data));
    rampart_fuzz::check_list(format, data);
    rampart_fuzz::check_load(data);
});
