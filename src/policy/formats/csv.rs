//! CSV feeds from authorities (a regulator's or a CERT's list of names to block), one row per
//! name with where it came from. The first line that is not blank or a `#` comment is the
//! header; it must name a `domain` column and may name `category`, `reference` and `added`, in
//! any order and any case. Other columns are ignored. Fields follow RFC 4180 on one line:
//! `"…"` quotes a field that holds commas, `""` inside quotes is one quote, blanks around
//! fields are trimmed. A row shorter than the header leaves the missing columns empty; a row
//! without a domain field is malformed.
//!
//! Every row is a block rule for the name and its subdomains, carrying its category, reference
//! and date as [`Provenance`] so an operator can say which decision blocked a name. Consecutive
//! rows with the same provenance share one allocation.

use std::{borrow::Cow, sync::Arc};

use super::{ParsedList, Provenance, Shape, SkipReason};
use crate::policy::name;

/// Where each known column is in a row.
#[derive(Debug, Clone, Copy)]
struct Columns {
    domain: usize,
    category: Option<usize>,
    reference: Option<usize>,
    added: Option<usize>,
}

/// The state of a feed being read line by line.
#[derive(Debug, Default)]
pub(super) struct Feed {
    /// `None` before the header; `Some(None)` after a header without a `domain` column.
    columns: Option<Option<Columns>>,
    /// The provenance of the last row, shared by the next rows while they say the same.
    last: Option<Arc<Provenance>>,
}

impl Feed {
    /// `raw` is one line without its line ending (BOM already removed from the first).
    pub(super) fn line(&mut self, raw: &str, line: u32, list: &mut ParsedList) {
        let trimmed = raw.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            return;
        }
        let Some(header) = self.columns else {
            let mut found = Header::default();
            if let Err(why) = for_each_field(trimmed, |i, field| found.see(i, &field)) {
                list.skip(line, SkipReason::Malformed(why.into()), trimmed);
                return;
            }
            let columns = found.columns();
            if columns.is_none() {
                let why = "the header line names no `domain` column (expected e.g. \
                           `domain,category,reference,added`)";
                list.skip(line, SkipReason::Malformed(why.into()), trimmed);
            }
            self.columns = Some(columns);
            return;
        };
        let Some(header) = header else {
            let why = "row under a header without a `domain` column";
            list.skip(line, SkipReason::Malformed(why.into()), trimmed);
            return;
        };
        let (mut domain, mut category, mut reference, mut added) = (None, None, None, None);
        let split = for_each_field(trimmed, |i, field| {
            let slot = if i == header.domain {
                &mut domain
            } else if Some(i) == header.category {
                &mut category
            } else if Some(i) == header.reference {
                &mut reference
            } else if Some(i) == header.added {
                &mut added
            } else {
                return;
            };
            *slot = Some(field);
        });
        if let Err(why) = split {
            list.skip(line, SkipReason::Malformed(why.into()), trimmed);
            return;
        }
        let Some(domain) = domain else {
            let why = "the row has no field in the `domain` column";
            list.skip(line, SkipReason::Malformed(why.into()), trimmed);
            return;
        };
        let filled = |field: &Option<Cow<'_, str>>| {
            field
                .as_deref()
                .filter(|f| !f.is_empty())
                .map(ToOwned::to_owned)
        };
        let (category, reference, added) = (filled(&category), filled(&reference), filled(&added));
        let provenance = if category.is_none() && reference.is_none() && added.is_none() {
            None
        } else if let Some(same) = self.last.as_ref().filter(|p| {
            p.category.as_deref() == category.as_deref()
                && p.reference.as_deref() == reference.as_deref()
                && p.added.as_deref() == added.as_deref()
        }) {
            Some(Arc::clone(same))
        } else {
            let fresh = Arc::new(Provenance {
                category,
                reference,
                added,
            });
            self.last = Some(Arc::clone(&fresh));
            Some(fresh)
        };
        let shape = Shape {
            provenance,
            ..Shape::default()
        };
        list.add(&domain, name::normalize, line, shape, trimmed);
    }
}

/// Column positions found in a header row so far.
#[derive(Debug, Default)]
struct Header {
    domain: Option<usize>,
    category: Option<usize>,
    reference: Option<usize>,
    added: Option<usize>,
}

impl Header {
    /// The first column of each name counts.
    fn see(&mut self, index: usize, field: &str) {
        for (name, slot) in [
            ("domain", &mut self.domain),
            ("category", &mut self.category),
            ("reference", &mut self.reference),
            ("added", &mut self.added),
        ] {
            if slot.is_none() && field.eq_ignore_ascii_case(name) {
                *slot = Some(index);
            }
        }
    }

    fn columns(&self) -> Option<Columns> {
        Some(Columns {
            domain: self.domain?,
            category: self.category,
            reference: self.reference,
            added: self.added,
        })
    }
}

/// Calls `field` with the index and text of each field of one line (RFC 4180, without line
/// breaks inside quotes). Fields borrow from the line unless a doubled quote has to be undone.
fn for_each_field<'a>(
    line: &'a str,
    mut field: impl FnMut(usize, Cow<'a, str>),
) -> Result<(), &'static str> {
    let bytes = line.as_bytes();
    let is_blank = |b: &u8| *b == b' ' || *b == b'\t';
    let mut i = 0;
    let mut index = 0;
    loop {
        while bytes.get(i).is_some_and(is_blank) {
            i += 1;
        }
        if bytes.get(i) == Some(&b'"') {
            i += 1;
            let mut piece_start = i;
            let mut unescaped: Option<String> = None;
            loop {
                match bytes.get(i) {
                    None => return Err("a quoted field is not closed on its line"),
                    Some(b'"') if bytes.get(i + 1) == Some(&b'"') => {
                        // Keep the first quote of the pair, drop the second.
                        let kept = line.get(piece_start..=i).unwrap_or_default();
                        unescaped.get_or_insert_with(String::new).push_str(kept);
                        i += 2;
                        piece_start = i;
                    }
                    Some(b'"') => break,
                    Some(_) => i += 1,
                }
            }
            // Every index here is at an ASCII quote or just after one: a character boundary.
            let tail = line.get(piece_start..i).unwrap_or_default();
            field(
                index,
                match unescaped {
                    Some(mut text) => {
                        text.push_str(tail);
                        Cow::Owned(text)
                    }
                    None => Cow::Borrowed(tail),
                },
            );
            i += 1;
            while bytes.get(i).is_some_and(is_blank) {
                i += 1;
            }
            match bytes.get(i) {
                None => return Ok(()),
                Some(b',') => i += 1,
                Some(_) => return Err("text after the closing quote of a field"),
            }
        } else {
            let end = bytes
                .get(i..)
                .and_then(|rest| rest.iter().position(|&b| b == b','))
                .map_or(bytes.len(), |p| i + p);
            field(
                index,
                Cow::Borrowed(line.get(i..end).unwrap_or_default().trim()),
            );
            if end >= bytes.len() {
                return Ok(());
            }
            i = end + 1;
        }
        index += 1;
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::for_each_field;
    use crate::policy::formats::{Format, ParsedList, Provenance, SkipReason, parse};
    use crate::policy::name::NameError;

    fn fields(line: &str) -> Result<Vec<String>, &'static str> {
        let mut out = Vec::new();
        for_each_field(line, |index, field| {
            assert_eq!(index, out.len());
            out.push(field.into_owned());
        })?;
        Ok(out)
    }

    fn provenance(c: Option<&str>, r: Option<&str>, a: Option<&str>) -> Provenance {
        Provenance {
            category: c.map(Into::into),
            reference: r.map(Into::into),
            added: a.map(Into::into),
        }
    }

    /// (name, line, provenance)
    fn rules(list: &ParsedList) -> Vec<(&str, u32, Option<&Provenance>)> {
        list.rules
            .iter()
            .map(|r| (r.name.as_str(), r.line, r.provenance.as_deref()))
            .collect()
    }

    #[test]
    fn splitting() {
        assert_eq!(
            fields("a,b,c"),
            Ok(vec!["a".into(), "b".into(), "c".into()])
        );
        assert_eq!(
            fields(" a , \"b, with comma\" ,c "),
            Ok(vec!["a".into(), "b, with comma".into(), "c".into()])
        );
        assert_eq!(
            fields("\"say \"\"hi\"\"\",\"\",x\"y"),
            Ok(vec!["say \"hi\"".into(), String::new(), "x\"y".into()])
        );
        assert_eq!(fields("a,"), Ok(vec!["a".into(), String::new()]));
        assert_eq!(fields(",,"), Ok(vec![String::new(); 3]));
        assert_eq!(fields("\"ü, ß\",é"), Ok(vec!["ü, ß".into(), "é".into()]));
        assert!(fields("\"open").is_err());
        assert!(fields("\"a\"b,c").is_err());
        assert!(fields("\"a\"\"").is_err());
    }

    #[test]
    fn header_order_extra_columns_and_provenance() {
        let text = "\u{feff}# Feed of the regulator\nAdded,Domain,Extra,Category,Reference\n\
                    2026-01-02,Bad.Example,x,gambling,\"case 12, appeal\"\n\
                    2026-01-02,other.example,y,gambling,\"case 12, appeal\"\n\
                    2026-01-03,third.example,z,phishing,ref-9\n";
        let list = parse(Format::Csv, text);
        let case12 = provenance(
            Some("gambling"),
            Some("case 12, appeal"),
            Some("2026-01-02"),
        );
        let ref9 = provenance(Some("phishing"), Some("ref-9"), Some("2026-01-03"));
        assert_eq!(
            rules(&list),
            [
                ("bad.example", 3, Some(&case12)),
                ("other.example", 4, Some(&case12)),
                ("third.example", 5, Some(&ref9)),
            ]
        );
        // Equal consecutive provenance is one allocation.
        match (&list.rules[0].provenance, &list.rules[1].provenance) {
            (Some(a), Some(b)) => assert!(Arc::ptr_eq(a, b)),
            other => panic!("{other:?}"),
        }
        assert!(
            list.rules
                .iter()
                .all(|r| !r.allow && !r.exact && !r.subdomains_only && r.action.is_none())
        );
        assert!(list.skipped.is_empty());
        assert_eq!(list.lines, 5);
    }

    #[test]
    fn missing_and_empty_columns() {
        let text = "domain,category,reference,added\na.example\nb.example,phishing\n\
                    c.example,,,\n,malware\n\"\",malware\n";
        let list = parse(Format::Csv, text);
        assert_eq!(
            rules(&list),
            [
                ("a.example", 2, None),
                (
                    "b.example",
                    3,
                    Some(&provenance(Some("phishing"), None, None))
                ),
                ("c.example", 4, None),
            ]
        );
        let reasons: Vec<_> = list.skipped.iter().map(|s| (s.line, &s.reason)).collect();
        assert_eq!(
            reasons,
            [
                (5, &SkipReason::InvalidName(NameError::Empty)),
                (6, &SkipReason::InvalidName(NameError::Empty)),
            ]
        );
        // Only a domain column: rules without provenance.
        let list = parse(Format::Csv, "DOMAIN\nx.example\n");
        assert_eq!(rules(&list), [("x.example", 2, None)]);
    }

    #[test]
    fn rows_shorter_than_the_domain_column() {
        let list = parse(
            Format::Csv,
            "category,domain\nphishing\nphishing,ok.example\n",
        );
        assert_eq!(
            rules(&list),
            [(
                "ok.example",
                3,
                Some(&provenance(Some("phishing"), None, None))
            )]
        );
        assert_eq!(list.skipped.len(), 1);
        assert!(matches!(list.skipped[0].reason, SkipReason::Malformed(_)));
    }

    #[test]
    fn header_without_domain_reports_every_row() {
        let list = parse(Format::Csv, "name,category\na.example,x\nb.example,y\n");
        assert!(list.rules.is_empty());
        let lines: Vec<_> = list.rejected().map(|s| s.line).collect();
        assert_eq!(lines, [1, 2, 3]);
        let list = parse(Format::Csv, "a.example,phishing\n");
        assert_eq!(list.rejected().count(), 1);
    }

    #[test]
    fn bad_rows_and_names() {
        let text = "domain,category\n\"open,x\n1.2.3.4,ip\n*.wild.example,x\nlocalhost,x\n\
                    bücher.example,idn\nhttp://x.example/path,url\n";
        let list = parse(Format::Csv, text);
        assert_eq!(rules(&list).len(), 1);
        assert_eq!(list.rules[0].name, "xn--bcher-kva.example");
        let reasons: Vec<_> = list.skipped.iter().map(|s| (s.line, &s.reason)).collect();
        assert!(matches!(reasons[0], (2, SkipReason::Malformed(_))));
        assert_eq!(
            reasons[1..],
            [
                (3, &SkipReason::InvalidName(NameError::IpLiteral)),
                (4, &SkipReason::InvalidName(NameError::Wildcard)),
                (5, &SkipReason::Localhost),
                (7, &SkipReason::InvalidName(NameError::BadCharacter)),
            ]
        );
        assert_eq!(list.ip_literals.len(), 1);
    }
}
