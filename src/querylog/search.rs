//! `rampart log search`: the entries of the query log (the current file and the rotated ones)
//! for a domain and its subdomains, a client, or a time range.

use std::{
    fs::File,
    io::{BufRead, BufReader, Write},
    net::IpAddr,
    path::{Path, PathBuf},
    time::SystemTime,
};

use serde_json::Value;

use super::{client_label, writer::rotated_files};
use crate::config::ClientPrivacy;

/// What to look for; every condition given must hold.
#[derive(Debug, Default)]
pub struct Filter {
    /// Lower-case, without the final dot; matches the name and its subdomains.
    pub domain: Option<String>,
    pub since: Option<SystemTime>,
    pub until: Option<SystemTime>,
    /// The ways the client may be written (full, truncated, hashed when the secret is known).
    pub clients: Vec<String>,
}

impl Filter {
    /// Build a filter from the command line's words; errors are one sentence for the user.
    pub fn new(
        domain: Option<&str>,
        since: Option<&str>,
        until: Option<&str>,
        client: Option<&str>,
        privacy: Option<&ClientPrivacy>,
        now: SystemTime,
    ) -> Result<Self, String> {
        let domain = match domain {
            None => None,
            Some(d) => {
                let d = d.trim().trim_end_matches('.').to_ascii_lowercase();
                if d.is_empty() || d.contains(char::is_whitespace) || d.contains("..") {
                    return Err(format!("`{}` is not a domain name", domain.unwrap_or("")));
                }
                Some(d)
            }
        };
        let since = since.map(|s| parse_time(s, now, "--since")).transpose()?;
        let until = until.map(|s| parse_time(s, now, "--until")).transpose()?;
        if let (Some(a), Some(b)) = (since, until)
            && a > b
        {
            return Err("--since is later than --until".into());
        }
        let clients = match client {
            None => Vec::new(),
            Some(c) => {
                let ip: IpAddr = c
                    .parse()
                    .map_err(|_| format!("--client `{c}` is not an IP address"))?;
                let mut labels = vec![
                    client_label(&ClientPrivacy::Full, ip),
                    client_label(&ClientPrivacy::Truncated, ip),
                ];
                if let Some(p @ ClientPrivacy::Hashed(_)) = privacy {
                    labels.push(client_label(p, ip));
                }
                labels
            }
        };
        Ok(Self {
            domain,
            since,
            until,
            clients,
        })
    }

    fn matches(&self, entry: &Value) -> bool {
        if let Some(d) = &self.domain {
            let Some(q) = entry.get("qname").and_then(Value::as_str) else {
                return false;
            };
            let q = q.trim_end_matches('.').to_ascii_lowercase();
            if !(q == *d || q.ends_with(&format!(".{d}"))) {
                return false;
            }
        }
        if !self.clients.is_empty() {
            let Some(c) = entry.get("client").and_then(Value::as_str) else {
                return false;
            };
            if !self.clients.iter().any(|l| l == c) {
                return false;
            }
        }
        if self.since.is_some() || self.until.is_some() {
            let Some(t) = entry
                .get("time")
                .and_then(Value::as_str)
                .and_then(|t| humantime::parse_rfc3339_weak(t).ok())
            else {
                return false;
            };
            if self.since.is_some_and(|s| t < s) || self.until.is_some_and(|u| t > u) {
                return false;
            }
        }
        true
    }
}

/// "1h", "30m", "2days" (that long before `now`), or a UTC time "2026-12-06T12:00:00Z".
pub fn parse_time(s: &str, now: SystemTime, flag: &str) -> Result<SystemTime, String> {
    if let Ok(d) = humantime::parse_duration(s.trim()) {
        return now
            .checked_sub(d)
            .ok_or_else(|| format!("{flag} `{s}` reaches before 1970"));
    }
    humantime::parse_rfc3339_weak(s.trim()).map_err(|_| {
        format!(
            "{flag} `{s}` is neither a duration (\"1h\", \"30m\", \"2days\") nor a UTC time \
             (\"2026-12-06T12:00:00Z\")"
        )
    })
}

/// The log files of the log at `path`: the rotated ones, oldest first, then the current one.
pub fn files_of(path: &Path) -> Vec<PathBuf> {
    let mut files = rotated_files(path);
    if path.is_file() {
        files.push(path.to_path_buf());
    }
    files
}

/// Every file in `dir`, oldest (by modification time) first.
pub fn files_in(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut files: Vec<(SystemTime, PathBuf)> = std::fs::read_dir(dir)?
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .map(|e| {
            let t = e
                .metadata()
                .and_then(|m| m.modified())
                .unwrap_or(SystemTime::UNIX_EPOCH);
            (t, e.path())
        })
        .collect();
    files.sort();
    Ok(files.into_iter().map(|(_, p)| p).collect())
}

/// What a search found.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Found {
    pub matched: usize,
    /// Lines that are not JSON objects (another file in the folder, a line cut by a crash).
    pub unreadable: usize,
}

/// Print the entries of `files` that match `filter` to `out`: the JSON lines as written, or a
/// table.
pub fn search(
    files: &[PathBuf],
    filter: &Filter,
    table: bool,
    out: &mut dyn Write,
) -> anyhow::Result<Found> {
    let mut found = Found::default();
    let mut rows: Vec<[String; 9]> = Vec::new();
    for path in files {
        let file =
            File::open(path).map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
        for line in BufReader::with_capacity(1 << 20, file).split(b'\n') {
            let line = line.map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
            if line.is_empty() {
                continue;
            }
            let Ok(entry) = serde_json::from_slice::<Value>(&line) else {
                found.unreadable += 1;
                continue;
            };
            if !entry.is_object() {
                found.unreadable += 1;
                continue;
            }
            if !filter.matches(&entry) {
                continue;
            }
            found.matched += 1;
            if table {
                let field = |k: &str| match entry.get(k) {
                    None | Some(Value::Null) => "-".to_string(),
                    Some(Value::String(s)) => s.clone(),
                    Some(v) => v.to_string(),
                };
                let list = match (entry.get("list"), entry.get("line")) {
                    (Some(_), Some(_)) => format!("{}:{}", field("list"), field("line")),
                    (Some(_), None) => field("list"),
                    _ => "-".into(),
                };
                rows.push([
                    field("time"),
                    field("client"),
                    field("protocol"),
                    field("qname"),
                    field("qtype"),
                    field("outcome"),
                    list,
                    field("category"),
                    field("reference"),
                ]);
            } else {
                out.write_all(&line)?;
                out.write_all(b"\n")?;
            }
        }
    }
    if table {
        let header = [
            "TIME",
            "CLIENT",
            "PROTO",
            "QNAME",
            "QTYPE",
            "OUTCOME",
            "LIST:LINE",
            "CATEGORY",
            "REFERENCE",
        ]
        .map(String::from);
        let mut widths = [0usize; 9];
        for row in std::iter::once(&header).chain(&rows) {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.chars().count());
            }
        }
        for row in std::iter::once(&header).chain(&rows) {
            let mut text = String::new();
            for (i, (cell, w)) in row.iter().zip(widths).enumerate() {
                if i + 1 == row.len() {
                    text.push_str(cell);
                } else {
                    text.push_str(&format!("{cell:<w$}  "));
                }
            }
            writeln!(out, "{}", text.trim_end())?;
        }
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(time: &str, client: &str, qname: &str) -> Value {
        serde_json::json!({"time": time, "client": client, "qname": qname})
    }

    #[test]
    fn domains_match_themselves_and_subdomains_only() {
        let now = SystemTime::now();
        let f = Filter::new(Some("Example.com."), None, None, None, None, now).unwrap();
        let t = "2026-12-06T12:00:00.000Z";
        assert!(f.matches(&entry(t, "1.2.3.4", "example.com")));
        assert!(f.matches(&entry(t, "1.2.3.4", "ads.EXAMPLE.com")));
        assert!(!f.matches(&entry(t, "1.2.3.4", "badexample.com")));
        assert!(!f.matches(&entry(t, "1.2.3.4", "example.org")));
    }

    #[test]
    fn times_and_clients_filter() {
        let now = humantime::parse_rfc3339("2026-12-06T12:00:00Z").unwrap();
        let f = Filter::new(
            None,
            Some("1h"),
            Some("2026-12-06T11:30:00Z"),
            None,
            None,
            now,
        )
        .unwrap();
        assert!(f.matches(&entry("2026-12-06T11:15:00.000Z", "x", "a")));
        assert!(!f.matches(&entry("2026-12-06T10:59:59.000Z", "x", "a")));
        assert!(!f.matches(&entry("2026-12-06T11:31:00.000Z", "x", "a")));
        let f = Filter::new(None, None, None, Some("10.1.2.3"), None, now).unwrap();
        assert!(f.matches(&entry("t", "10.1.2.3", "a")));
        assert!(f.matches(&entry("t", "10.1.2.0/24", "a")));
        assert!(!f.matches(&entry("t", "10.1.2.4", "a")));
    }

    #[test]
    fn bad_arguments_are_explained() {
        let now = SystemTime::now();
        for (since, client, want) in [
            (Some("yesterday-ish"), None, "--since"),
            (None, Some("10.0.0"), "--client"),
        ] {
            let e = Filter::new(None, since, None, client, None, now).unwrap_err();
            assert!(e.contains(want), "{e}");
        }
        let e = Filter::new(Some("a b"), None, None, None, None, now).unwrap_err();
        assert!(e.contains("not a domain"), "{e}");
        let e = Filter::new(None, Some("1h"), Some("2h"), None, None, now).unwrap_err();
        assert!(e.contains("later"), "{e}");
    }
}
