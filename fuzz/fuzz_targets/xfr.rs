//! What an RPZ feed's zone-transfer code reads from the network outside a transfer: a NOTIFY
//! as bytes. Its TSIG check (`verify_notify`: decode, find the TSIG record, check the MAC over
//! the bytes) and, for a message that decodes, NOTIFY recognition and the signed response. Any
//! input gives a result or an error, never a panic. (The transfer stream itself is read inside
//! the TCP exchange and has no byte-level entry point.)
#![no_main]

use std::sync::LazyLock;

use hickory_proto::op::Message;
use libfuzzer_sys::fuzz_target;
use rampart::feeds::xfr::{self, TsigKey};

static KEY: LazyLock<TsigKey> =
    LazyLock::new(|| TsigKey::new("xfr-key", "c2VjcmV0").expect("a valid key"));

fuzz_target!(|data: &[u8]| {
    let _ = xfr::verify_notify(data, &KEY);
    if let Ok(message) = Message::from_vec(data) {
        let _ = xfr::parse_notify(&message);
        if let Ok(response) = xfr::notify_response(&message, Some(&KEY)) {
            let decoded = Message::from_vec(&response).expect("our NOTIFY response decodes");
            assert_eq!(decoded.metadata.id, message.metadata.id);
        }
    }
});
