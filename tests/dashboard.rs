//! The Grafana dashboard shipped in `config/grafana-dashboard.json`: Grafana's dashboard model
//! (what its import and file provisioning read), every query on metric names Rampart exports,
//! and every query valid PromQL (`promtool check rules` on the queries as recording rules).

use std::{collections::BTreeSet, process::Command};

use hickory_proto::rr::RecordType;
use serde_json::Value;

use crate::support::*;

const DASHBOARD: &str = include_str!("../config/grafana-dashboard.json");
/// Every metric family Rampart defines is named in this file.
const METRICS_SOURCE: &str = include_str!("../src/metrics.rs");

fn queries(dashboard: &Value) -> Vec<String> {
    let mut out = Vec::new();
    for panel in dashboard["panels"].as_array().expect("panels") {
        for target in panel["targets"].as_array().expect("targets") {
            out.push(target["expr"].as_str().expect("expr").to_string());
        }
    }
    out
}

/// The `rampart_…` metric names a query uses, histogram suffixes removed.
fn metric_names(expr: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = expr;
    while let Some(at) = rest.find("rampart_") {
        let tail = &rest[at..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        let name = &tail[..end];
        let base = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| name.strip_suffix(s))
            .unwrap_or(name);
        names.insert(base.to_string());
        rest = &tail[end..];
    }
    names
}

#[test]
fn dashboard_is_grafana_model_with_valid_queries_on_our_metrics() {
    let d: Value = serde_json::from_str(DASHBOARD).expect("the dashboard is JSON");
    // Grafana's dashboard model: what import and file provisioning need.
    assert_eq!(d["uid"], "rampart-overview");
    assert!(d["title"].as_str().is_some_and(|t| !t.is_empty()));
    assert!(d["schemaVersion"].as_u64().is_some_and(|v| v >= 36));
    let panels = d["panels"].as_array().expect("panels array");
    let mut ids = BTreeSet::new();
    for p in panels {
        assert!(
            ids.insert(p["id"].as_u64().expect("panel id")),
            "ids unique"
        );
        assert!(matches!(p["type"].as_str(), Some("timeseries" | "stat")));
        for k in ["x", "y", "w", "h"] {
            assert!(p["gridPos"][k].is_u64(), "gridPos.{k} of {}", p["title"]);
        }
        assert!(p["gridPos"]["x"].as_u64().unwrap() + p["gridPos"]["w"].as_u64().unwrap() <= 24);
        assert!(!p["targets"].as_array().expect("targets").is_empty());
    }
    let vars: Vec<&str> = d["templating"]["list"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["name"].as_str().unwrap())
        .collect();
    assert_eq!(vars, ["datasource", "instance"]);

    // What the issue asks to see.
    let all = queries(&d).join("\n");
    for needle in [
        "sum by (outcome) (rate(rampart_queries_total",
        "sum by (list) (rate(rampart_blocked_queries_total",
        "outcome=\"cache_hit\"",
        "histogram_quantile(0.99, sum by (le) (rate(rampart_query_duration_seconds_bucket",
        "rampart_list_age_seconds",
        "rampart_list_refresh_failures_total",
        "rampart_rate_limited_total",
    ] {
        assert!(all.contains(needle), "dashboard lacks {needle}");
    }

    // Every metric it queries is one Rampart defines.
    let used: BTreeSet<String> = queries(&d).iter().flat_map(|q| metric_names(q)).collect();
    assert!(used.len() >= 15, "{used:?}");
    for name in &used {
        assert!(
            METRICS_SOURCE.contains(&format!("\"{name}\"")),
            "the dashboard queries {name}, which Rampart does not export"
        );
    }

    // Every query is valid PromQL: Grafana's variables replaced by what they expand to.
    let mut rules = String::from("groups:\n  - name: dashboard\n    rules:\n");
    for (i, q) in queries(&d).iter().enumerate() {
        let q = q
            .replace("$__rate_interval", "5m")
            .replace("$instance", ".*");
        rules.push_str(&format!(
            "      - record: dashboard:query{i}\n        expr: {}\n",
            serde_json::to_string(&q).unwrap()
        ));
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("dashboard-rules.yml");
    std::fs::write(&path, rules).unwrap();
    match Command::new("promtool")
        .arg("check")
        .arg("rules")
        .arg(&path)
        .output()
    {
        Ok(out) => assert!(
            out.status.success(),
            "promtool rejected a dashboard query:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
        Err(e) => {
            assert!(
                std::env::var_os("RAMPART_REQUIRE_PROMTOOL").is_none(),
                "promtool is required but cannot run: {e}"
            );
            eprintln!("promtool not installed; PromQL check not run");
        }
    }
}

/// The enforcement proof: `/v1/enforcement` and its metrics for a file list, before and after
/// the file changes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enforcement_reports_hash_activation_hits_and_delay() {
    let h = Hierarchy::start().await;
    let (files, extra) = standard_lists();
    let extra = extra.replace(
        "name = \"hosts\"\npath = \"block.hosts\"\nformat = \"hosts\"",
        "name = \"hosts\"\npath = \"block.hosts\"\nformat = \"hosts\"\nrefresh = \"50ms\"",
    );
    let s = TestServer::start(
        &h,
        Setup {
            files,
            extra,
            ..Setup::default()
        },
    )
    .await;
    let get = || async {
        let (status, body) = http_get(s.admin, "/v1/enforcement").await;
        assert_eq!(status, 200, "{body}");
        let v: Value = serde_json::from_str(&body).unwrap();
        v.as_array()
            .unwrap()
            .iter()
            .find(|l| l["name"] == "hosts")
            .cloned()
            .unwrap()
    };
    // The hash is computed on a low-priority thread after the list goes into service.
    assert!(
        eventually(|| async { get().await["content_hash"].is_string() }).await,
        "content hash computed"
    );
    let first = get().await;
    let hash = first["content_hash"].as_str().expect("hash").to_string();
    assert!(
        hash.starts_with("sha256:") && hash.len() == 7 + 64,
        "{hash}"
    );
    let expected = {
        let d = sha256sum(&std::fs::read(s.dir.path().join("block.hosts")).unwrap());
        format!("sha256:{d}")
    };
    assert_eq!(hash, expected, "the hash is of the file in service");
    assert_eq!(first["entries"], 3);
    assert!(first["active_since"].as_u64().is_some());
    assert!(
        first["publication_to_enforcement_seconds"]
            .as_f64()
            .is_some()
    );
    assert_eq!(first["hits_since_activation"], 0);

    for _ in 0..3 {
        ask(s.dns, Transport::Udp, "ads.corp.test.", RecordType::A).await;
    }
    ask(s.dns, Transport::Tcp, "tracker.test.", RecordType::A).await;
    assert!(
        eventually(|| async { get().await["hits_since_activation"] == 4 }).await,
        "hits: {}",
        get().await
    );

    // A new version: new hash, hits counted from zero again, published = the file's mtime.
    std::fs::write(
        s.dir.path().join("block.hosts"),
        "0.0.0.0 ads.corp.test\n0.0.0.0 new.corp.test\n",
    )
    .unwrap();
    assert!(
        eventually(|| async {
            get().await["content_hash"]
                .as_str()
                .is_some_and(|h| h != hash)
        })
        .await,
        "new version in service"
    );
    let second = get().await;
    assert_eq!(second["entries"], 2);
    assert_eq!(second["hits_since_activation"], 0);
    let delay = second["publication_to_enforcement_seconds"]
        .as_f64()
        .unwrap();
    assert!((0.0..5.0).contains(&delay), "delay {delay}");
    ask(s.dns, Transport::Udp, "new.corp.test.", RecordType::A).await;
    assert!(eventually(|| async { get().await["hits_since_activation"] == 1 }).await);

    let m = s.metrics().await;
    assert_eq!(
        metric_sum(
            &m,
            "rampart_list_hits_since_activation",
            &["list=\"hosts\""]
        ),
        1.0
    );
    assert!(
        metric_sum(
            &m,
            "rampart_list_active_since_timestamp_seconds",
            &["list=\"hosts\""]
        ) > 1.7e9
    );
    let d = metric_sum(
        &m,
        "rampart_list_publication_to_enforcement_seconds",
        &["list=\"hosts\""],
    );
    assert!((0.0..5.0).contains(&d), "{d}");
    crate::metrics::promtool_check(&m);
    s.stop().await;
}

/// SHA-256 hex of `data` by `sha256sum`, an implementation independent of ours.
fn sha256sum(data: &[u8]) -> String {
    use std::io::Write;
    let mut child = Command::new("sha256sum")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("sha256sum (coreutils)");
    child.stdin.take().unwrap().write_all(data).unwrap();
    let out = child.wait_with_output().unwrap();
    String::from_utf8(out.stdout).unwrap()[..64].to_string()
}
