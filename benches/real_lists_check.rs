//! Checks the list parsers against the real public lists in `shared/lists/real` (kept outside the
//! repository because of their licences). For every file of every folder (hosts, domains,
//! wildcard, adblock, rpz, dnsmasq) it reads the bytes through `formats::parse_bytes`, computes
//! [`ListStats`], and compares the distinct names and distinct IP literals with the figures of
//! the independent reference counter (`reference-counts.json`, SOURCES.md §2); "distinct" is
//! defined per format in `policy::stats`. It also reads each file through the streaming
//! `formats::parse_reader` and requires the same rules and skipped lines, shows what
//! `formats::detect` guesses for each file, and the parse time (best of several runs).
//!
//! Usage: `cargo bench --bench real_lists_check -- <shared> [<names-dir>]`
//! where `<shared>` is the folder holding `lists/real`, and the optional `<names-dir>` is the
//! `--dump-dir` output of `count_reference.py`; with it, the name sets are diffed, not just
//! counted. The exit status is non-zero when any distinct-name figure or name set differs.

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use rampart::policy::formats::{self, Format, ParsedList};
use rampart::policy::stats::{self, ListStats};

/// Folders checked, with the syntax their files use.
const FOLDERS: [(&str, Format); 6] = [
    ("hosts", Format::Hosts),
    ("domains", Format::Plain),
    ("wildcard", Format::Wildcard),
    ("adblock", Format::Adblock),
    ("rpz", Format::Rpz),
    ("dnsmasq", Format::Dnsmasq),
];

/// How many differing names to print per file before summarising.
const SHOW_DIFFERENCES: usize = 5;

/// Parse runs per file; the fastest is reported, to keep scheduler noise out of the figure.
const RUNS: usize = 5;

/// The largest real list, turned in memory into the formats whose real samples are small (the
/// largest real RPZ has 2,689 names): `name CNAME .` plus `*.name CNAME .` (the shape of the
/// hagezi and TrustPositif zones) and a CSV feed row per name. Nothing is written to disk.
const SYNTHETIC_SOURCE: &str = "domains/blocklistproject-phishing.domains.txt";

struct Outcome {
    ours: usize,
    reference: Option<usize>,
    only_ours: Vec<String>,
    only_reference: Vec<String>,
}

// Under `harness = true` (no `[[bench]]` entry) the test harness supplies its own `main`.
#[cfg_attr(test, allow(dead_code))]
fn main() -> ExitCode {
    let mut args = std::env::args_os().skip(1).filter(|a| a != "--bench");
    let Some(shared) = args.next().map(PathBuf::from) else {
        // `cargo bench` runs every bench without arguments; this one needs the shared folder,
        // so say how to run it and do not fail the whole bench run.
        eprintln!(
            "real_lists_check: not run; usage: cargo bench --bench real_lists_check -- <shared-folder> [<reference-names-dir>]"
        );
        return ExitCode::SUCCESS;
    };
    let names_dir = args.next().map(PathBuf::from);
    let real = shared.join("lists").join("real");
    let reference = match std::fs::read_to_string(real.join("reference-counts.json")) {
        Ok(text) => text,
        Err(err) => {
            eprintln!(
                "cannot read {}: {err}",
                real.join("reference-counts.json").display()
            );
            return ExitCode::FAILURE;
        }
    };

    println!(
        "{:<52} {:>7} {:>7} {:>7} {:>7} {:>5} {:>5} {:>6} {:>6} {:>6} {:>6} {:>6} {:<9} {:>4} {:>8}",
        "file",
        "lines",
        "rules",
        "ref",
        "ours",
        "+ours",
        "+ref",
        "ip ref",
        "ip",
        "reject",
        "unsupp",
        "localh",
        "detected",
        "diff",
        "parse ms"
    );
    let mut all_match = true;
    let mut files_checked = 0;
    // Largest file per format: (file, bytes, best parse time).
    let mut largest: BTreeMap<&str, (String, usize, Duration)> = BTreeMap::new();
    let mut synthetic_names: Vec<String> = Vec::new();
    for (folder, format) in FOLDERS {
        let mut files = match std::fs::read_dir(real.join(folder)) {
            Ok(dir) => dir
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|e| e == "txt"))
                .collect::<Vec<_>>(),
            Err(err) => {
                eprintln!("cannot list {}: {err}", real.join(folder).display());
                all_match = false;
                continue;
            }
        };
        files.sort();
        for path in files {
            let Some(file_name) = path.file_name().and_then(|n| n.to_str()) else {
                continue;
            };
            let key = format!("{folder}/{file_name}");
            let bytes = match std::fs::read(&path) {
                Ok(bytes) => bytes,
                Err(err) => {
                    eprintln!("cannot read {}: {err}", path.display());
                    all_match = false;
                    continue;
                }
            };
            let (parsed, elapsed) = match parse_timed(format, &bytes) {
                Ok(result) => result,
                Err(err) => {
                    println!("{key:<52} REFUSED: {err}");
                    all_match = false;
                    continue;
                }
            };
            files_checked += 1;
            let entry = largest
                .entry(format.as_str())
                .or_insert_with(|| (key.clone(), 0, Duration::ZERO));
            if bytes.len() > entry.1 {
                *entry = (key.clone(), bytes.len(), elapsed);
            }
            let stats = ListStats::new(format, &parsed);
            let streamed_same = streams_the_same(format, &bytes, &parsed);
            if !streamed_same {
                println!("{key:<52} parse_reader DIFFERS from parse_bytes");
                all_match = false;
            }
            if key == SYNTHETIC_SOURCE {
                synthetic_names = parsed.rules.iter().map(|r| r.name.clone()).collect();
            }
            let detected = formats::detect(&String::from_utf8_lossy(&bytes));

            let reference_names = names_dir
                .as_ref()
                .map(|dir| dir.join(folder).join(format!("{file_name}.names")))
                .and_then(|p| std::fs::read_to_string(p).ok());
            let outcome = compare(
                format,
                &parsed,
                reference_figure(&reference, &key, "distinct_names"),
                reference_names.as_deref(),
            );
            debug_assert_eq!(outcome.ours, stats.distinct_names);
            let matches = outcome.reference == Some(outcome.ours)
                && outcome.only_ours.is_empty()
                && outcome.only_reference.is_empty();
            all_match &= matches;
            let ip_reference = reference_figure(&reference, &key, "distinct_ip_literals");
            println!(
                "{:<52} {:>7} {:>7} {:>7} {:>7} {:>5} {:>5} {:>6} {:>6} {:>6} {:>6} {:>6} {:<9} {:>4} {:>8.2}",
                key,
                stats.lines,
                stats.rules,
                or_question(outcome.reference),
                outcome.ours,
                count_or_dash(reference_names.is_some(), outcome.only_ours.len()),
                count_or_dash(reference_names.is_some(), outcome.only_reference.len()),
                or_question(ip_reference),
                format!(
                    "{}{}",
                    stats.distinct_ip_literals,
                    if ip_reference == Some(stats.distinct_ip_literals) {
                        ""
                    } else {
                        "!"
                    }
                ),
                stats.rejected,
                stats.unsupported,
                stats.localhost,
                format!("{}{}", detected, if detected == format { "" } else { "*" }),
                if matches { "same" } else { "DIFF" },
                elapsed.as_secs_f64() * 1000.0
            );
            for name in outcome.only_ours.iter().take(SHOW_DIFFERENCES) {
                println!("    only ours:      {name}");
            }
            for name in outcome.only_reference.iter().take(SHOW_DIFFERENCES) {
                println!("    only reference: {name}");
            }
        }
    }
    if !synthetic_names.is_empty() {
        all_match &= check_synthetic(&synthetic_names, &mut largest);
    }
    println!("\nlargest file per format (release build, best of {RUNS} runs of parse_bytes):");
    for (format, (file, size, elapsed)) in &largest {
        println!(
            "  {format:<9} {file:<52} {size:>9} bytes {:>8.2} ms {:>6.0} MB/s",
            elapsed.as_secs_f64() * 1000.0,
            *size as f64 / elapsed.as_secs_f64().max(1e-9) / 1e6
        );
    }
    println!(
        "(`ip` ends in ! where the distinct IP literals differ from the reference; `detected` ends \
         in * where formats::detect guesses another format than the folder's)"
    );
    if names_dir.is_none() {
        println!(
            "(counts only; pass count_reference.py's --dump-dir folder to diff the name sets)"
        );
    }
    if all_match {
        println!("all {files_checked} files match the reference");
        ExitCode::SUCCESS
    } else {
        println!("some files differ from the reference");
        ExitCode::FAILURE
    }
}

fn parse_timed(format: Format, bytes: &[u8]) -> Result<(ParsedList, Duration), formats::ListError> {
    let started = Instant::now();
    let parsed = formats::parse_bytes(format, bytes)?;
    let mut best = started.elapsed();
    for _ in 1..RUNS {
        let started = Instant::now();
        let again = formats::parse_bytes(format, bytes)?;
        best = best.min(started.elapsed());
        drop(again);
    }
    Ok((parsed, best))
}

/// Whether the streaming reader gives exactly the rules and skipped lines of `parsed`.
fn streams_the_same(format: Format, bytes: &[u8], parsed: &ParsedList) -> bool {
    let mut rules = Vec::with_capacity(parsed.rules.len());
    let reader = std::io::BufReader::new(bytes);
    match formats::parse_reader(format, reader, |rule| rules.push(rule)) {
        Ok(streamed) => {
            rules == parsed.rules
                && streamed.skipped == parsed.skipped
                && streamed.ip_rules == parsed.ip_rules
                && streamed.ip_literals == parsed.ip_literals
                && streamed.lines == parsed.lines
                && streamed.serial == parsed.serial
        }
        Err(_) => false,
    }
}

/// Parses the synthetic RPZ zone and CSV feed built from `names` and checks that the distinct
/// names survive the round trip. Their timings join the per-format table.
fn check_synthetic(
    names: &[String],
    largest: &mut BTreeMap<&str, (String, usize, Duration)>,
) -> bool {
    let distinct: HashSet<&str> = names.iter().map(String::as_str).collect();
    let mut zone = String::from(
        "$TTL 300\n@ IN SOA localhost. root.localhost. (\n 1 ; serial\n 3600 600 86400 300 )\n NS localhost.\n",
    );
    let mut feed = String::from("domain,category,reference,added\n");
    for (i, name) in names.iter().enumerate() {
        zone.push_str(&format!("{name} CNAME .\n*.{name} CNAME .\n"));
        feed.push_str(&format!(
            "{name},phishing,\"case {}, list {}\",2026-08-{:02}\n",
            i / 100,
            i % 7,
            1 + i % 28
        ));
    }
    let mut ok = true;
    for (format, label, text) in [
        (Format::Rpz, "synthetic/phishing.rpz (name + *.name)", zone),
        (Format::Csv, "synthetic/phishing.csv", feed),
    ] {
        let (parsed, elapsed) = match parse_timed(format, text.as_bytes()) {
            Ok(result) => result,
            Err(err) => {
                println!("{label:<52} REFUSED: {err}");
                ok = false;
                continue;
            }
        };
        let stats = ListStats::new(format, &parsed);
        let ours = stats::distinct_names(format, &parsed);
        let same = ours == distinct
            && parsed.skipped.is_empty()
            && streams_the_same(format, text.as_bytes(), &parsed);
        ok &= same;
        println!(
            "{label:<52} {:>7} {:>7} {:>7} {:>7} {:>47} {:>4} {:>8.2}",
            stats.lines,
            stats.rules,
            distinct.len(),
            stats.distinct_names,
            "",
            if same { "same" } else { "DIFF" },
            elapsed.as_secs_f64() * 1000.0
        );
        largest.insert(format.as_str(), (label.to_owned(), text.len(), elapsed));
    }
    ok
}

fn compare(
    format: Format,
    parsed: &ParsedList,
    reference: Option<usize>,
    reference_names: Option<&str>,
) -> Outcome {
    let ours: HashSet<&str> = stats::distinct_names(format, parsed);
    let (mut only_ours, mut only_reference) = (Vec::new(), Vec::new());
    if let Some(text) = reference_names {
        let theirs: HashSet<&str> = text.lines().filter(|l| !l.is_empty()).collect();
        only_ours = ours.difference(&theirs).map(|s| s.to_string()).collect();
        only_reference = theirs.difference(&ours).map(|s| s.to_string()).collect();
        only_ours.sort();
        only_reference.sort();
    }
    Outcome {
        ours: ours.len(),
        reference,
        only_ours,
        only_reference,
    }
}

/// Finds `"<field>": N` in the object whose `"file"` is `key`. The JSON is written by the
/// reference script with one key per line, so a plain text search is enough and keeps this
/// program free of a JSON dependency.
fn reference_figure(json: &str, key: &str, field: &str) -> Option<usize> {
    let anchor = format!("\"file\": \"{key}\"");
    let after = json.get(json.find(&anchor)? + anchor.len()..)?;
    // Stop at the next file's entry so a missing field cannot borrow a neighbour's figure.
    let entry = after.split("\"file\":").next()?;
    let field = format!("\"{field}\":");
    let value = entry.get(entry.find(&field)? + field.len()..)?;
    let digits: String = value
        .trim_start()
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

fn or_question(n: Option<usize>) -> String {
    n.map_or_else(|| "?".to_owned(), |n| n.to_string())
}

fn count_or_dash(known: bool, n: usize) -> String {
    if known { n.to_string() } else { "-".to_owned() }
}
