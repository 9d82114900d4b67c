//! TEMPORARY stub, replaced by the real parsers.
use super::name::{normalize, NameError};
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format { Plain, Hosts, Adblock }
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule { pub name: String, pub line: u32, pub allow: bool, pub exact: bool }
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SkipReason { Malformed(String), InvalidName(NameError), Unsupported(&'static str), Localhost }
impl std::fmt::Display for SkipReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result { write!(f, "{self:?}") }
}
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped { pub line: u32, pub reason: SkipReason, pub text: String }
#[derive(Debug, Default)]
pub struct ParsedList { pub rules: Vec<Rule>, pub skipped: Vec<Skipped>, pub lines: u32 }
impl ParsedList {
    pub fn rejected(&self) -> impl Iterator<Item = &Skipped> {
        self.skipped.iter().filter(|s| matches!(s.reason, SkipReason::Malformed(_) | SkipReason::InvalidName(_)))
    }
}
pub fn parse(format: Format, text: &str) -> ParsedList {
    let mut out = ParsedList::default();
    for (i, line) in text.lines().enumerate() {
        let line_no = i as u32 + 1;
        let l = line.split('#').next().unwrap_or("").trim();
        if l.is_empty() || l.starts_with('!') { continue; }
        let (tok, allow) = match format {
            Format::Hosts => (l.split_whitespace().nth(1).unwrap_or(""), false),
            Format::Plain => (l, false),
            Format::Adblock => {
                let allow = l.starts_with("@@");
                (l.trim_start_matches("@@").trim_start_matches("||").trim_end_matches('^'), allow)
            }
        };
        match normalize(tok) {
            Ok(name) => out.rules.push(Rule { name, line: line_no, allow, exact: false }),
            Err(e) => out.skipped.push(Skipped { line: line_no, reason: SkipReason::InvalidName(e), text: line.into() }),
        }
    }
    out
}
