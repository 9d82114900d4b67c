//! DNS serving: access control and rate limits, the UDP workers and their fast path (packet
//! cache, synthesized block answers in wire form), the TCP listener, the request handler (the general pipeline), the answer cache, upstream
//! resolution and synthesized block answers.

pub mod access;
pub mod answer;
pub mod cache;
pub mod ede;
pub mod fast;
pub mod handler;
pub mod iterate;
pub mod limits;
pub mod packet_cache;
pub mod ratelimit;
pub mod tcp;
pub mod tls;
pub mod udp;
pub mod upstream;
pub mod wire;
