//! DNS serving: the UDP workers and their fast path (packet cache, synthesized block answers
//! in wire form), the request handler (the general pipeline), the answer cache, upstream
//! resolution and synthesized block answers.

pub mod answer;
pub mod cache;
pub mod fast;
pub mod handler;
pub mod iterate;
pub mod packet_cache;
pub mod tls;
pub mod udp;
pub mod upstream;
pub mod wire;
