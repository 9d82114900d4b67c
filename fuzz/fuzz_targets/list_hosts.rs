//! The hosts list parser on arbitrary bytes: never a panic, canonical names, the streaming parser
//! agrees, and the rules compile into a name set that finds them (see `rampart_fuzz::check_list`).
#![no_main]

use libfuzzer_sys::fuzz_target;
use rampart::policy::formats::Format;

fuzz_target!(|data: &[u8]| rampart_fuzz::check_list(Format::Hosts, data));
