//! Rampart's integration tests, compiled into one binary: a real Rampart on loopback, a real
//! authoritative hierarchy (in-process hickory authorities), real UDP and TCP.

mod support;

mod blockpage;
mod cli;
mod dashboard;
mod ede;
mod fast_path;
mod feeds;
mod fuzz_regressions;
mod limits;
mod lists_stats;
mod metrics;
mod process;
mod querylog;
mod resolve;
mod rpz;
mod stale;
mod tls;
mod xfr;
mod zone_transfer;
