//! The admin endpoint: /metrics content and format, /health, and counters that move by exactly
//! what was sent.

use std::process::{Command, Stdio};

use hickory_proto::rr::RecordType;

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocked_counter_moves_by_exactly_the_blocked_queries() {
    let h = Hierarchy::start().await;
    let (files, extra) = standard_lists();
    let s = TestServer::start(
        &h,
        Setup {
            files,
            extra,
            ..Setup::default()
        },
    )
    .await;

    let (status, body) = http_get(s.admin, "/health").await;
    assert_eq!(status, 200, "{body}");

    let before = s.metrics().await;
    let blocked_before = metric_sum(&before, "rampart_blocked_queries_total", &[]);
    let outcome_before = metric_sum(&before, "rampart_queries_total", &["outcome=\"blocked\""]);

    // 7 blocked queries (3 lists' worth, both transports), plus allowed ones that must not count.
    let blocked = [
        ("ads.corp.test.", RecordType::A, Transport::Udp),
        ("x.ads.corp.test.", RecordType::AAAA, Transport::Udp),
        ("ads.corp.test.", RecordType::MX, Transport::Tcp),
        ("tracker.test.", RecordType::A, Transport::Tcp),
        ("other.test.", RecordType::A, Transport::Udp),
        ("adnet.test.", RecordType::A, Transport::Udp),
        ("www.adnet.test.", RecordType::TXT, Transport::Tcp),
    ];
    for (qname, rtype, t) in blocked {
        ask(s.dns, t, qname, rtype).await;
    }
    for qname in ["www.corp.test.", "ok.ads.corp.test."] {
        ask(s.dns, Transport::Udp, qname, RecordType::A).await;
    }

    let after = s.metrics().await;
    assert_eq!(
        metric_sum(&after, "rampart_blocked_queries_total", &[]) - blocked_before,
        7.0
    );
    assert_eq!(
        metric_sum(&after, "rampart_queries_total", &["outcome=\"blocked\""]) - outcome_before,
        7.0
    );
    assert_eq!(
        metric_sum(&after, "rampart_blocked_queries_total", &["list=\"hosts\""]),
        5.0
    );
    assert_eq!(
        metric_sum(&after, "rampart_blocked_queries_total", &["list=\"adnet\""]),
        2.0
    );
    assert_eq!(
        metric_sum(
            &after,
            "rampart_allowlisted_queries_total",
            &["list=\"allow\""]
        ),
        1.0
    );
    assert_eq!(
        metric_sum(
            &after,
            "rampart_queries_total",
            &["outcome=\"blocked\"", "protocol=\"tcp\""]
        ),
        3.0
    );
    for family in [
        "rampart_queries_total",
        "rampart_query_duration_seconds_bucket",
        "rampart_cache_entries",
        "rampart_list_entries",
        "rampart_list_rejected_lines",
        "rampart_upstream_errors_total",
        "rampart_build_info",
    ] {
        assert!(after.contains(family), "{family} exported");
    }
    // The hosts list had one malformed line and one invalid name.
    assert_eq!(
        metric_sum(&after, "rampart_list_rejected_lines", &["list=\"hosts\""]),
        2.0
    );

    for reason in ["malformed", "invalid_name"] {
        assert_eq!(
            metric_sum(
                &after,
                "rampart_list_skipped_lines",
                &["list=\"hosts\"", &format!("reason=\"{reason}\"")]
            ),
            1.0,
            "{reason}"
        );
    }

    promtool_check(&after);
    s.stop().await;
}

/// `promtool check metrics` must accept the exposition. CI installs promtool (Debian package
/// `prometheus`) and sets RAMPART_REQUIRE_PROMTOOL=1 so a missing tool fails there; elsewhere
/// the check is reported as not run.
pub(crate) fn promtool_check(text: &str) {
    let child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) => {
            assert!(
                std::env::var_os("RAMPART_REQUIRE_PROMTOOL").is_none(),
                "promtool is required but cannot run: {e}"
            );
            eprintln!("promtool not installed; format check not run");
            return;
        }
    };
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool rejected /metrics:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
