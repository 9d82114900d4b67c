//! Checks the list parsers against the real public lists in `shared/lists/real` (kept outside the
//! repository because of their licences). For every hosts, domains and adblock file it parses the
//! file, takes the distinct block names, and compares them with the figures of the independent
//! reference counter (`reference-counts.json`, SOURCES.md §2). Adblock files are compared on
//! subtree block rules only (`||name^`, `||name^|`), which is what the reference counts.
//!
//! Usage: `cargo bench --bench real_lists_check -- <shared> [<names-dir>]`
//! where `<shared>` is the folder holding `lists/real`, and the optional `<names-dir>` is the
//! `--dump-dir` output of `count_reference.py`; with it, the name sets are diffed, not just
//! counted. The exit status is non-zero when any figure differs.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use rampart::policy::formats::{self, Format, ParsedList, SkipReason};

/// Folders checked, with the syntax their files use. Wildcard, RPZ and dnsmasq lists need
/// parsers that do not exist yet.
const FOLDERS: [(&str, Format); 3] = [
    ("hosts", Format::Hosts),
    ("domains", Format::Plain),
    ("adblock", Format::Adblock),
];

/// How many differing names to print per file before summarising.
const SHOW_DIFFERENCES: usize = 5;

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
        "{:<52} {:>8} {:>9} {:>9} {:>9} {:>7} {:>7} {:>8} {:>8} {:>8} {:>6} {:>9}",
        "file",
        "lines",
        "rules",
        "ref",
        "ours",
        "+ours",
        "+ref",
        "rejected",
        "unsupp",
        "localh",
        "diff",
        "parse ms"
    );
    let mut all_match = true;
    let mut slowest: Option<(String, Duration, usize)> = None;
    for (folder, format) in FOLDERS {
        let mut files = match std::fs::read_dir(real.join(folder)) {
            Ok(dir) => dir
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| wanted(format, p))
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
            let text = String::from_utf8_lossy(&bytes);
            let started = Instant::now();
            let parsed = formats::parse(format, &text);
            let elapsed = started.elapsed();
            if slowest
                .as_ref()
                .is_none_or(|(_, _, size)| bytes.len() > *size)
            {
                slowest = Some((key.clone(), elapsed, bytes.len()));
            }

            let reference_names = names_dir
                .as_ref()
                .map(|dir| dir.join(folder).join(format!("{file_name}.names")))
                .and_then(|p| std::fs::read_to_string(p).ok());
            let outcome = compare(
                format,
                &parsed,
                reference_figure(&reference, &key),
                reference_names.as_deref(),
            );
            let matches = outcome.reference == Some(outcome.ours)
                && outcome.only_ours.is_empty()
                && outcome.only_reference.is_empty();
            all_match &= matches;
            let (rejected, unsupported, localhost) = skip_counts(&parsed);
            println!(
                "{:<52} {:>8} {:>9} {:>9} {:>9} {:>7} {:>7} {:>8} {:>8} {:>8} {:>6} {:>9.2}",
                key,
                parsed.lines,
                parsed.rules.len(),
                outcome
                    .reference
                    .map_or_else(|| "?".to_owned(), |n| n.to_string()),
                outcome.ours,
                count_or_dash(reference_names.is_some(), outcome.only_ours.len()),
                count_or_dash(reference_names.is_some(), outcome.only_reference.len()),
                rejected,
                unsupported,
                localhost,
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
    if let Some((file, elapsed, size)) = slowest {
        println!(
            "\nlargest file: {file} ({size} bytes) parsed in {:.2} ms ({:.0} MB/s)",
            elapsed.as_secs_f64() * 1000.0,
            size as f64 / elapsed.as_secs_f64().max(1e-9) / 1e6
        );
    }
    if names_dir.is_none() {
        println!(
            "(counts only; pass count_reference.py's --dump-dir folder to diff the name sets)"
        );
    }
    if all_match {
        println!("all files match the reference");
        ExitCode::SUCCESS
    } else {
        println!("some files differ from the reference");
        ExitCode::FAILURE
    }
}

/// Adblock folders also hold other dialects; only the AdGuard/ABP ones are parsed.
fn wanted(format: Format, path: &Path) -> bool {
    let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
        return false;
    };
    match format {
        Format::Adblock => name.ends_with(".adblock.txt") || name.ends_with(".agh.txt"),
        _ => name.ends_with(".txt"),
    }
}

fn compare(
    format: Format,
    parsed: &ParsedList,
    reference: Option<usize>,
    reference_names: Option<&str>,
) -> Outcome {
    // The reference counts block rules that cover a subtree; adblock exact (`|name^`) rules
    // and exceptions are real rules too, but outside that figure.
    let ours: HashSet<&str> = parsed
        .rules
        .iter()
        .filter(|r| !r.allow && (format != Format::Adblock || !r.exact))
        .map(|r| r.name.as_str())
        .collect();
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

/// Finds `"distinct_names": N` in the object whose `"file"` is `key`. The JSON is written by
/// the reference script with one key per line, so a plain text search is enough and keeps
/// this program free of a JSON dependency.
fn reference_figure(json: &str, key: &str) -> Option<usize> {
    let anchor = format!("\"file\": \"{key}\"");
    let after = json.get(json.find(&anchor)? + anchor.len()..)?;
    // Stop at the next file's entry so a missing field cannot borrow a neighbour's figure.
    let entry = after.split("\"file\":").next()?;
    let field = "\"distinct_names\":";
    let value = entry.get(entry.find(field)? + field.len()..)?;
    let digits: String = value
        .trim_start()
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

fn skip_counts(parsed: &ParsedList) -> (usize, usize, usize) {
    let (mut rejected, mut unsupported, mut localhost) = (0, 0, 0);
    for skipped in &parsed.skipped {
        match skipped.reason {
            SkipReason::Malformed(_) | SkipReason::InvalidName(_) => rejected += 1,
            SkipReason::Unsupported(_) => unsupported += 1,
            SkipReason::Localhost => localhost += 1,
        }
    }
    (rejected, unsupported, localhost)
}

fn count_or_dash(known: bool, n: usize) -> String {
    if known { n.to_string() } else { "-".to_owned() }
}
