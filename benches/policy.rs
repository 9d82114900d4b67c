//! Micro-benchmarks of the policy engine: compiling 1M- and 10M-name lists from their text,
//! deciding hit / miss / deep-subdomain names against the 10M snapshot, and client-group lookup.
//!
//! Run: `cargo bench --bench policy`. The lists are synthetic and shaped like
//! `../shared/bench/gen-data.py`'s (syllable labels under a dozen TLDs, 20% with a service label
//! in front, 2% `*.name` wildcard entries), generated here so the bench needs nothing outside the
//! repository. Lookups rotate through 4,096 different names so the figure includes cache misses
//! in the table, not one hot entry. Set `RAMPART_BENCH_SMALL=1` to skip the 10M cases, or
//! `RAMPART_BENCH_SIZES=10000,…` for other sizes (the lookup group is named after 10M regardless).

use std::{hint::black_box, net::IpAddr};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use hickory_proto::rr::Name;
use rampart::{
    config::ListConfig,
    policy::{CompiledList, QueryName, Snapshot, formats::Format, groups::GroupMap},
};

const SYLLABLES: &[&str] = &[
    "ba", "ko", "mi", "zu", "te", "ra", "no", "vi", "sa", "lo", "fe", "du", "qi", "xo", "pe", "ha",
];
const TLDS: &[&str] = &[
    "com", "net", "org", "info", "io", "xyz", "top", "club", "biz", "site", "online", "shop", "vn",
];
const SUBS: &[&str] = &["ads", "track", "cdn", "metrics", "pixel", "stats", "www"];

/// A small deterministic generator (xorshift), so runs compare.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[(self.next() % items.len() as u64) as usize]
    }
}

fn label(rng: &mut Rng) -> String {
    let n = 2 + rng.next() % 3;
    let mut s: String = (0..n).map(|_| rng.pick(SYLLABLES)).collect();
    if rng.next().is_multiple_of(5) {
        s.push_str(&format!("{}", rng.next() % 100));
    }
    s
}

/// `n` distinct-ish entries in the wildcard-list syntax gen-data uses for blocklist.txt.
fn synthetic_list(n: usize, rng: &mut Rng) -> (String, Vec<String>) {
    let mut text = String::with_capacity(n * 16);
    let mut sample = Vec::new();
    for i in 0..n {
        let base = format!("{}{}.{}", label(rng), i, rng.pick(TLDS));
        let name = if rng.next().is_multiple_of(5) {
            format!("{}.{base}", rng.pick(SUBS))
        } else {
            base
        };
        let wildcard = rng.next().is_multiple_of(50);
        if wildcard {
            text.push_str("*.");
        }
        text.push_str(&name);
        text.push('\n');
        if !wildcard && sample.len() < 4096 && rng.next().is_multiple_of(64) {
            sample.push(name);
        }
    }
    (text, sample)
}

fn list_config(path: std::path::PathBuf) -> ListConfig {
    ListConfig::block("synthetic", path, Some(Format::Wildcard))
}

fn benches(c: &mut Criterion) {
    // RAMPART_BENCH_SIZES=10000 (comma-separated) measures other sizes: a list that fits in
    // the cache shows the compute cost alone, without memory latency.
    let sizes: Vec<usize> = match std::env::var("RAMPART_BENCH_SIZES") {
        Ok(v) => v.split(',').filter_map(|n| n.trim().parse().ok()).collect(),
        Err(_) if std::env::var_os("RAMPART_BENCH_SMALL").is_some() => vec![1_000_000],
        Err(_) => vec![1_000_000, 10_000_000],
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);

    let mut compile = c.benchmark_group("compile");
    compile.sample_size(10);
    let mut last = None;
    for &n in &sizes {
        let (text, sample) = synthetic_list(n, &mut rng);
        let path = dir.path().join(format!("list-{n}.txt"));
        std::fs::write(&path, &text).expect("write list");
        let config = list_config(path);
        compile.throughput(Throughput::Elements(n as u64));
        compile.bench_with_input(
            BenchmarkId::new("wildcard_list", n),
            &config,
            |b, config| b.iter(|| CompiledList::load(config).info.names),
        );
        last = Some((config, sample));
    }
    compile.finish();

    let Some((config, sample)) = last else { return };
    let snapshot = Snapshot::load(std::slice::from_ref(&config), &[]);
    let names = snapshot.lists[0].info.names;
    eprintln!(
        "snapshot: {names} names, {:.1} B/name of compiled policy",
        snapshot.heap_bytes() as f64 / names as f64
    );
    let to_names = |v: Vec<String>| -> Vec<Name> {
        v.iter()
            .map(|s| Name::from_ascii(format!("{s}.")).expect("valid"))
            .collect()
    };
    let hits = to_names(sample.clone());
    let deep = to_names(sample.iter().map(|s| format!("a1.b2.c3.d4.{s}")).collect());
    let misses = to_names(
        (0..4096)
            .map(|i| format!("www.{}{}.example.{}", label(&mut rng), i, rng.pick(TLDS)))
            .collect(),
    );

    // The lookup proper: from the canonical name (lower-case bytes, as the handler holds it
    // after one pass over the question) to the decision, every suffix probe included.
    let canonical = |pool: &[Name]| -> Vec<Vec<u8>> {
        pool.iter()
            .map(|n| QueryName::new(n).as_bytes().to_vec())
            .collect()
    };
    let mut lookup = c.benchmark_group("decide_10m");
    lookup.throughput(Throughput::Elements(1));
    for (kind, pool) in [("hit", &hits), ("deep_subdomain", &deep), ("miss", &misses)] {
        let pool = canonical(pool);
        let mut i = 0usize;
        lookup.bench_function(kind, |b| {
            b.iter(|| {
                i = (i + 1) % pool.len();
                black_box(snapshot.decide(&pool[i], 0))
            })
        });
    }
    // The same starting from hickory's parsed `Name` (adds the copy into canonical form).
    let mut i = 0usize;
    lookup.bench_function("deep_subdomain_from_hickory_name", |b| {
        b.iter(|| {
            i = (i + 1) % deep.len();
            let q = QueryName::new(&deep[i]);
            black_box(snapshot.decide(q.as_bytes(), 0))
        })
    });
    lookup.finish();

    // Client groups: 10,000 networks of mixed prefix lengths, v4 and v6.
    let mut map = GroupMap::default();
    for i in 0..10_000u32 {
        let len = [8, 16, 20, 24, 28, 32][(i % 6) as usize];
        let ip = std::net::Ipv4Addr::from(rng.next() as u32);
        map.insert(
            ipnet::IpNet::new(IpAddr::V4(ip), len).expect("net").trunc(),
            (i % 50) as usize,
        );
        let ip6 = std::net::Ipv6Addr::from(u128::from(rng.next()) << 64);
        map.insert(
            ipnet::IpNet::new(IpAddr::V6(ip6), [32, 48, 56, 64][(i % 4) as usize])
                .expect("net")
                .trunc(),
            1,
        );
    }
    let clients: Vec<IpAddr> = (0..4096)
        .map(|i| {
            if i % 2 == 0 {
                IpAddr::V4(std::net::Ipv4Addr::from(rng.next() as u32))
            } else {
                IpAddr::V6(std::net::Ipv6Addr::from(u128::from(rng.next()) << 64))
            }
        })
        .collect();
    let mut g = c.benchmark_group("client_group");
    g.throughput(Throughput::Elements(1));
    let mut i = 0usize;
    g.bench_function("lookup_10k_networks", |b| {
        b.iter(|| {
            i = (i + 1) % clients.len();
            black_box(map.group_of(clients[i]))
        })
    });
    g.finish();
}

criterion_group!(policy, benches);
criterion_main!(policy);
