//! The UDP fast path in-process, from request bytes to response bytes (no sockets):
//!
//! - `packet_cache_hit`: a question answered before, served from the packet cache (copy, new
//!   ID, question spelling, aged TTLs);
//! - `gate_N_clients_then_packet_cache_hit`: the same behind the UDP workers' gate (access
//!   table, then the client and prefix rate-limit buckets) under limits that never bite, from
//!   256 client addresses (buckets in the CPU cache) and from 262,144 (1,024 /24s: a bucket
//!   table as big as a busy server's, so most lookups miss the CPU cache);
//! - `blocked_synthesized`: a new subdomain of a listed name each time (packet cache off): wire
//!   parse, policy lookup in a 100k-name list, block answer written in wire form;
//! - `blocked_synthesized_logged`: the same with `[query_log] mode = "all"`: each answer also
//!   becomes a query log entry pushed into the writer's bounded queue (the writer thread formats
//!   and writes the JSON lines on another core meanwhile; entries it cannot keep up with are
//!   dropped and counted, as on a server);
//! - `general_path_blocked`: the same blocked questions through the general path (hickory
//!   message decode, pipeline, encode), for comparison.
//!
//! Run: `cargo bench --bench fast_path`.

use std::{
    hint::black_box,
    net::{IpAddr, Ipv4Addr, SocketAddr},
    sync::Arc,
    time::Instant,
};

use arc_swap::ArcSwap;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use rampart::{
    app,
    config::Config,
    dns::{
        fast::{Fast, FastPath},
        limits::{Admit, Tally},
    },
    metrics::Metrics,
    policy::Snapshot,
    querylog::QueryLog,
};

const LISTED: usize = 100_000;
const ROTATE: usize = 4096;

fn query(id: u16, qname: &str, edns: bool) -> Vec<u8> {
    let mut p = id.to_be_bytes().to_vec();
    p.extend_from_slice(&[1, 0, 0, 1, 0, 0, 0, 0, 0, u8::from(edns)]);
    for label in qname.split('.') {
        p.push(label.len() as u8);
        p.extend_from_slice(label.as_bytes());
    }
    p.extend_from_slice(&[0, 0, 1, 0, 1]);
    if edns {
        p.extend_from_slice(&[0, 0, 41, 4, 0xd0, 0, 0, 0, 0, 0, 0]);
    }
    p
}

/// A fast path over a `LISTED`-name block list; `packet_size` 0 turns the packet cache off;
/// `log`: the query log records every query (to a file in `dir`).
fn setup(
    dir: &std::path::Path,
    packet_size: usize,
    log: bool,
) -> (Arc<FastPath>, tokio::runtime::Runtime) {
    let list: String = (0..LISTED)
        .map(|i| format!("listed{i}.example\n"))
        .collect();
    std::fs::write(dir.join("block.txt"), list).unwrap();
    let toml = format!(
        "[resolver]\nmode = \"forward\"\n[resolver.forward]\nupstreams = [\"127.0.0.1:9\"]\n\
         [cache]\npacket_size = {packet_size}\n[state]\ndir = \"state\"\n\
         [rate_limit]\nclient_qps = 1000000000\nclient_burst = 1000000000\n\
         prefix_qps = 1000000000\nprefix_burst = 1000000000\n\
         [[lists]]\nname = \"block\"\npath = \"block.txt\"\nformat = \"plain\"\n\
         [query_log]\nmode = \"{mode}\"\npath = \"queries-{packet_size}.log\"\n",
        mode = if log { "all" } else { "off" },
    );
    let path = dir.join(format!("rampart-{packet_size}-{log}.toml"));
    std::fs::write(&path, toml).unwrap();
    let config = Config::load(&path).unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let _guard = runtime.enter();
    let policy = Arc::new(ArcSwap::from_pointee(Snapshot::load(
        &config.lists,
        &config.groups,
    )));
    let metrics = Metrics::new(prometheus::Registry::new()).unwrap();
    let query_log = QueryLog::start(&config.query_log, policy.clone(), &metrics.registry).unwrap();
    let handler = app::build_handler_with_log(&config, policy, metrics, None, query_log).unwrap();
    (Arc::new(FastPath::new(handler)), runtime)
}

fn bench(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let client = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let mut out = vec![0u8; 1232];
    let mut g = c.benchmark_group("fast_path");
    g.throughput(Throughput::Elements(1));

    let (cached, rt1) = setup(dir.path(), 100_000, false);
    let mut tallies = cached.tallies();
    let hot: Vec<Vec<u8>> = (0..ROTATE)
        .map(|i| query(i as u16, &format!("www.listed{}.example", i * 7), true))
        .collect();
    // Fill the packet cache the way the server does: the general path stores what it answers
    // (the fast path's own block answers are not stored, see `FastPath::blocked`).
    let src = SocketAddr::new(client, 40000);
    for q in &hot {
        assert!(
            rt1.block_on(cached.handler().answer_udp(q.clone(), src))
                .is_some()
        );
    }
    assert!(cached.handler().packets.len() >= ROTATE);
    // One clock read and one flush of the counters per 32 queries, as a worker does per batch.
    let mut i = 0;
    let mut now = Instant::now();
    g.bench_function("packet_cache_hit", |b| {
        b.iter(|| {
            i = (i + 1) % ROTATE;
            if i % 32 == 0 {
                tallies.finish_batch(now.elapsed());
                now = Instant::now();
            }
            black_box(cached.answer(&hot[i], client, now, &mut out, &mut tallies))
        })
    });

    let limits = cached.handler().limits.clone();
    let mut gate_tally = Tally::default();
    let mut c = 0u32;
    for clients in [256, 1 << 18] {
        let mut gate = limits.udp_gate(now);
        g.bench_function(
            format!("gate_{clients}_clients_then_packet_cache_hit"),
            |b| {
                b.iter(|| {
                    i = (i + 1) % ROTATE;
                    c = (c + 7919) % clients;
                    if i % 32 == 0 {
                        tallies.finish_batch(now.elapsed());
                        gate_tally.flush(&limits);
                        now = Instant::now();
                        gate = limits.udp_gate(now);
                    }
                    let client = IpAddr::V4(Ipv4Addr::from(0x6440_0000 + c));
                    let admit = gate.admit(&hot[i], client, &mut out, &mut gate_tally);
                    debug_assert_eq!(admit, Admit::Pass);
                    black_box(cached.answer(&hot[i], client, now, &mut out, &mut tallies))
                })
            },
        );
    }

    let (uncached, rt) = setup(dir.path(), 0, false);
    let mut tallies = uncached.tallies();
    let fresh: Vec<Vec<u8>> = (0..ROTATE)
        .map(|i| query(i as u16, &format!("x{i}.listed{}.example", i * 13), false))
        .collect();
    g.bench_function("blocked_synthesized", |b| {
        b.iter(|| {
            i = (i + 1) % ROTATE;
            if i % 32 == 0 {
                tallies.finish_batch(now.elapsed());
                now = Instant::now();
            }
            let r = uncached.answer(&fresh[i], client, now, &mut out, &mut tallies);
            debug_assert!(matches!(r, Fast::Reply(_)));
            black_box(r)
        })
    });

    let (logged, _rt_logged) = setup(dir.path(), 0, true);
    let mut tallies = logged.tallies();
    g.bench_function("blocked_synthesized_logged", |b| {
        b.iter(|| {
            i = (i + 1) % ROTATE;
            if i % 32 == 0 {
                tallies.finish_batch(now.elapsed());
                now = Instant::now();
            }
            let r = logged.answer(&fresh[i], client, now, &mut out, &mut tallies);
            if let Fast::Reply(len) = r {
                tallies.log_reply(&fresh[i], src, &out[..len]);
            }
            black_box(r)
        })
    });

    let handler = uncached.handler().clone();
    g.bench_function("general_path_blocked", |b| {
        b.iter(|| {
            i = (i + 1) % ROTATE;
            black_box(rt.block_on(handler.answer_udp(fresh[i].clone(), src)))
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
