//! Inputs the fuzz targets (`fuzz/`) found to crash or misbehave, replayed against a real
//! server: each is a byte literal as the fuzzer produced it, with what the fix guarantees.

use hickory_proto::op::{Message, ResponseCode};

use crate::support::*;

/// A question whose name is a compression pointer into the header (`c0 02`: the name spelt by
/// the flags and counts). hickory echoes the question as received, so the response's pointer
/// pointed into the response's own header and the response did not decode (found by the
/// `request` target). Now: FORMERR, no question echoed, over UDP and TCP.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compression_pointer_in_the_question_gets_a_readable_formerr() {
    let h = Hierarchy::start().await;
    let server = TestServer::start(&h, Setup::default()).await;
    let crash: &[u8] = &[18, 52, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 192, 2, 0, 1, 0, 1];
    // The same with a real label first and the pointer after it (`\x03www` then `c0 02`).
    let mut labelled = crash[..12].to_vec();
    labelled.extend_from_slice(b"\x03www\xc0\x02\x00\x01\x00\x01");
    for request in [crash, &labelled[..]] {
        for t in [Transport::Udp, Transport::Tcp] {
            let reply = exchange_bytes(server.dns, t, request).await;
            let m = Message::from_vec(&reply).expect("the response decodes");
            assert_eq!(m.metadata.id, 0x1234);
            assert_eq!(m.metadata.response_code, ResponseCode::FormErr, "{t:?}");
            assert!(m.queries.is_empty(), "{t:?}");
        }
    }
}
