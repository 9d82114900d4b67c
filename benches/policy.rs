//! Micro-benchmarks of the policy engine: list parsing, compiling a snapshot, and the per-query
//! decision (a miss walks every parent suffix, a hit stops at the listed name).
//!
//! Run: `cargo bench --bench policy`. The lists are synthetic (the real ones are not shipped).

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use hickory_proto::rr::Name;
use rampart::{
    config::{Action, ListConfig, ListKind},
    policy::{QueryName, Snapshot, formats},
};

const NAMES: usize = 1_000_000;

fn synthetic_hosts(n: usize) -> String {
    let mut s = String::with_capacity(n * 32);
    for i in 0..n {
        s.push_str(&format!("0.0.0.0 host{i}.tracker{}.example\n", i % 997));
    }
    s
}

fn benches(c: &mut Criterion) {
    let text = synthetic_hosts(NAMES);
    let mut g = c.benchmark_group("lists");
    g.sample_size(10);
    g.throughput(Throughput::Bytes(text.len() as u64));
    g.bench_function("parse_hosts_1m", |b| {
        b.iter(|| formats::parse(formats::Format::Hosts, &text).rules.len())
    });
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("big.hosts");
    std::fs::write(&path, &text).expect("write list");
    let lists = vec![ListConfig {
        name: "big".into(),
        path,
        format: formats::Format::Hosts,
        kind: ListKind::Block,
        exact: false,
        action: Action::BlockAddress,
    }];
    g.bench_function("load_snapshot_1m", |b| {
        b.iter(|| Snapshot::load(&lists, &[]).sizes())
    });
    g.finish();

    let snapshot = Snapshot::load(&lists, &[]);
    eprintln!(
        "1M-name snapshot: {:.1} MiB of compiled policy",
        snapshot.heap_bytes() as f64 / (1024.0 * 1024.0)
    );
    let hit = Name::from_ascii("www.Host123456.tracker123.example.").expect("name");
    let miss = Name::from_ascii("a.b.c.d.not-listed.example.org.").expect("name");
    let mut g = c.benchmark_group("decide");
    g.throughput(Throughput::Elements(1));
    g.bench_function("hit_subdomain", |b| {
        b.iter(|| snapshot.decide(QueryName::new(&hit).as_bytes(), 0))
    });
    g.bench_function("miss_6_labels", |b| {
        b.iter(|| snapshot.decide(QueryName::new(&miss).as_bytes(), 0))
    });
    g.finish();
}

criterion_group!(policy, benches);
criterion_main!(policy);
