//! Resident memory and load time of compiled lists, measured the way an operator sees them:
//! RSS of this process before and after loading, time to load, and the peak while one list is
//! rebuilt next to its old copy (the reload case).
//!
//! Not a criterion benchmark (RSS is a process-wide figure). Usage:
//!
//! ```text
//! cargo bench --bench list_memory -- FORMAT:PATH [FORMAT:PATH …]
//! cargo bench --bench list_memory -- wildcard:/tmp/bench-data-10m/blocklist.txt
//! ```
//!
//! FORMAT is a list format name as in the config (`plain`, `hosts`, `adblock`, …). The synthetic
//! lists come from `../shared/bench/gen-data.py`; nothing here needs `../shared` otherwise.

use std::{path::PathBuf, process::ExitCode, time::Instant};

use rampart::{config::ListConfig, policy::CompiledList};

fn status_kib(field: &str) -> u64 {
    let text = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    text.lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn rss() -> u64 {
    status_kib("VmRSS:") * 1024
}

fn hwm() -> u64 {
    status_kib("VmHWM:") * 1024
}

/// Reset VmHWM to the current RSS (Linux: `5` in clear_refs).
fn reset_hwm() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

fn mib(b: u64) -> f64 {
    b as f64 / (1024.0 * 1024.0)
}

fn main() -> ExitCode {
    let specs: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    if specs.is_empty() {
        eprintln!("list_memory: not run; usage: cargo bench --bench list_memory -- FORMAT:PATH …");
        return ExitCode::SUCCESS;
    }
    let mut lists = Vec::new();
    for (i, spec) in specs.iter().enumerate() {
        let Some((format, path)) = spec.split_once(':') else {
            eprintln!("`{spec}`: expected FORMAT:PATH");
            return ExitCode::FAILURE;
        };
        let format = match toml::Value::String(format.into()).try_into() {
            Ok(f) => f,
            Err(e) => {
                eprintln!("`{format}`: {e}");
                return ExitCode::FAILURE;
            }
        };
        lists.push(ListConfig::block(
            &format!("list{i}"),
            PathBuf::from(path),
            Some(format),
        ));
    }

    println!(
        "{:<44} {:>10} {:>9} {:>9} {:>8} {:>8} {:>10} {:>11} {:>11}",
        "list",
        "names",
        "load s",
        "RSS MiB",
        "B/name",
        "heap B/n",
        "peak+ MiB",
        "rebuild s",
        "peak/size"
    );
    for list in &lists {
        let base = rss();
        let started = Instant::now();
        let compiled = CompiledList::load(list);
        let load = started.elapsed();
        if let Some(e) = &compiled.info.error {
            eprintln!("{}: {e}", list.path.display());
            return ExitCode::FAILURE;
        }
        let steady = rss();
        let size = steady.saturating_sub(base);
        let names = compiled.info.names.max(1) as u64;
        let heap_per_name = compiled.info.bytes as f64 / names as f64;

        // Reload: build a second copy while the first is still in service.
        let can_peak = reset_hwm();
        let started = Instant::now();
        let again = CompiledList::load(list);
        let rebuild = started.elapsed();
        let peak_extra = hwm().saturating_sub(steady);
        drop(compiled);
        drop(again);

        println!(
            "{:<44} {:>10} {:>9.2} {:>9.1} {:>8.1} {:>8.1} {:>10} {:>11.2} {:>11}",
            list.path.display().to_string(),
            names,
            load.as_secs_f64(),
            mib(size),
            size as f64 / names as f64,
            heap_per_name,
            if can_peak {
                format!("{:.1}", mib(peak_extra))
            } else {
                "n/a".into()
            },
            rebuild.as_secs_f64(),
            if can_peak && size > 0 {
                format!("{:.2}", peak_extra as f64 / size as f64)
            } else {
                "n/a".into()
            },
        );
    }
    ExitCode::SUCCESS
}
