//! Rampart: a DNS filtering resolver.
//!
//! The crate map, in the order a query meets it:
//! - [`app`]: binds the sockets, loads the lists, starts the DNS server and the admin endpoint.
//! - [`dns::handler`]: the pipeline for one query (sanity → policy → cache → upstream).
//! - [`policy`]: lists parsed ([`policy::formats`]) and compiled into an immutable snapshot.
//! - [`dns::cache`] and [`dns::upstream`]: answers for names the policy lets through.
//! - [`dns::answer`]: synthesized answers for blocked names.
//! - [`feeds`]: keeping lists current (files, HTTP feeds, RPZ zone transfers), one list swapped
//!   at a time, last good copies saved.
//! - [`metrics`] and [`admin`]: Prometheus collectors and the HTTP endpoint (metrics, health,
//!   the `/v1` list API).
//! - [`blockpage`]: the optional HTTP block page (what was blocked, why, how to appeal).
//! - [`check`]: `rampart lists check`, the operator's explanation of a decision.
//! - [`querylog`]: the query log (JSON lines, rotation, dnstap) and `rampart log search`.
//! - [`config`]: the TOML file, validated into [`config::Config`].
//! - [`process`]: permission checks before start and dropping root after binding.

pub mod admin;
pub mod app;
pub mod blockpage;
pub mod check;
pub mod config;
pub mod dns;
pub mod feeds;
pub mod metrics;
pub mod policy;
pub mod process;
pub mod querylog;
