//! `rampart lists stats FILE`: the report for a list in each format, format detection, and the
//! refusal of files that are not lists at all.

use std::process::{Command, Output};

fn stats(content: &[u8], args: &[&str]) -> Output {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("list.txt");
    std::fs::write(&path, content).unwrap();
    Command::new(env!("CARGO_BIN_EXE_rampart"))
        .args(["lists", "stats"])
        .arg(&path)
        .args(args)
        .output()
        .unwrap()
}

fn stdout_of(out: &Output) -> String {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn rpz_report_with_detected_format() {
    let zone = "$TTL 30\n@ SOA ns. h. 2026 1 1 1 1\n NS ns.\nbad.example CNAME .\n\
                *.bad.example CNAME .\nok.example CNAME rpz-passthru.\nvg.no.* CNAME .\n\
                $INCLUDE /etc/passwd\n";
    let text = stdout_of(&stats(zone.as_bytes(), &[]));
    for want in [
        "format:          rpz\n",
        "rules:           3 (1 exceptions, 2 exact, 1 subdomains only)\n",
        "distinct names:  2\n",
        "SOA serial:      2026\n",
        "$INCLUDE",
        "format guessed",
    ] {
        assert!(text.contains(want), "missing {want:?} in\n{text}");
    }
}

#[test]
fn explicit_format_wins() {
    let text = stdout_of(&stats(
        b"*.a.example\nb.example\n",
        &["--format", "wildcard"],
    ));
    assert!(text.contains("format:          wildcard"), "{text}");
    assert!(text.contains("1 subdomains only"), "{text}");
    assert!(!text.contains("format guessed"), "{text}");
}

#[test]
fn refused_files_exit_non_zero_with_the_reason() {
    for (content, reason) in [
        (
            &b"<!DOCTYPE html>\n<html><body>Not Found</body></html>\n"[..],
            "HTML page",
        ),
        (b"  \n\n", "empty"),
        (b"a.example\n\xff\xfe\n", "not valid UTF-8"),
    ] {
        let out = stats(content, &["--format", "plain"]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{content:?} accepted");
        assert!(stderr.contains(reason), "{stderr}");
        assert!(stderr.contains("list.txt"), "{stderr}");
    }
    let out = stats(b"a.example\n", &["--format", "csv-ish"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a list format"));
}
