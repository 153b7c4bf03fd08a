//! The report as people and programs read it: an aligned table for a terminal, a Markdown
//! table, CSV (RFC 4180) for a spreadsheet, and JSON with a stable, versioned schema
//! (documented in the README, "The audit trail").
//!
//! Every value that came from a commit message is untrusted text: the table escapes control
//! characters (a message must not drive the auditor's terminal), Markdown escapes its own
//! syntax, and CSV defuses cells a spreadsheet would run as formulas.

use std::borrow::Cow;
use std::fmt;
use std::io::{self, Write};

use chrono::{DateTime, Datelike, Timelike, Utc};
use git2::Oid;
use serde::Serialize;
use serde::ser::{SerializeSeq, Serializer};

use super::report::{Anomaly, GrantRow, Report, short};
use crate::duration::HumanDuration;

/// The JSON schema's version; bumped on any change that is not a pure addition.
pub const SCHEMA_VERSION: u32 = 1;

/// An output format of `breakglass audit`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// Aligned columns for a terminal, then the anomalies.
    Table,
    /// The documented JSON document.
    Json,
    /// RFC 4180 CSV: a header row and one row per grant.
    Csv,
    /// A Markdown table of grants, then one of anomalies.
    Markdown,
}

/// Writes `report` in `format`.
pub fn render(report: &Report, format: Format, out: &mut dyn Write) -> io::Result<()> {
    match format {
        Format::Table => table(report, out),
        Format::Json => json(report, out),
        Format::Csv => csv(report, out),
        Format::Markdown => markdown(report, out),
    }
}

/// The columns, in the CSV and JSON order (the order the issue lists them in).
const KEYS: [&str; 16] = [
    "request_id",
    "requester",
    "environment",
    "role",
    "reason",
    "ticket",
    "approved_by",
    "granted_at",
    "expires_at",
    "revoked_at",
    "revoked_how",
    "revoked_by",
    "review",
    "grant_commit",
    "revoke_commit",
    "anomalies",
];

/// The same columns for people, in the table's order: the reason, the one long free-text
/// column, goes last so that it cannot push the others out of line.
const TABLE_COLUMNS: [(usize, &str); 16] = [
    (0, "request"),
    (1, "requester"),
    (2, "environment"),
    (3, "role"),
    (6, "approved by"),
    (5, "ticket"),
    (7, "granted at"),
    (8, "expires at"),
    (9, "revoked at"),
    (10, "revoked how"),
    (11, "revoked by"),
    (12, "review"),
    (13, "grant"),
    (14, "revoke"),
    (15, "anomalies"),
    (4, "reason"),
];

/// A non-empty text cell.
fn text(s: &str) -> Option<Cow<'_, str>> {
    (!s.is_empty()).then_some(Cow::Borrowed(s))
}

/// A row's cells in [`KEYS`] order; `None` for an empty cell. Commit ids are abbreviated
/// unless `full_ids`.
fn cells(row: &GrantRow, full_ids: bool) -> [Option<Cow<'_, str>>; 16] {
    let id = |oid: Oid| -> Cow<'_, str> {
        if full_ids {
            Cow::Owned(oid.to_string())
        } else {
            Cow::Owned(short(oid))
        }
    };
    let time = |at: Option<DateTime<Utc>>| at.map(|at| Cow::Owned(Iso(at).to_string()));
    let anomalies = row
        .anomalies
        .iter()
        .map(|a| a.as_str())
        .collect::<Vec<_>>()
        .join(";");
    [
        text(&row.request_id),
        text(&row.requester),
        text(&row.environment),
        text(&row.role),
        text(&row.reason),
        row.ticket.as_deref().and_then(text),
        text(&row.approved_by),
        time(Some(row.granted_at)),
        time(row.expires_at),
        time(row.revoked_at),
        row.revoked_how.as_deref().and_then(text),
        row.revoked_by.as_deref().and_then(text),
        Some(Cow::Owned(row.review.to_string())),
        Some(id(row.grant_commit)),
        row.revoke_commit.map(id),
        (!anomalies.is_empty()).then_some(Cow::Owned(anomalies)),
    ]
}

/// Aligned columns with upper-case headers (like `kubectl get`), empty cells as `-`, then a
/// summary line and the anomalies with their details.
pub fn table(report: &Report, out: &mut dyn Write) -> io::Result<()> {
    if report.grants.is_empty() {
        writeln!(out, "no grants on {}", report.branch)?;
    } else {
        let header: Vec<String> = TABLE_COLUMNS
            .iter()
            .map(|(_, title)| title.to_uppercase())
            .collect();
        let rows: Vec<Vec<String>> = report
            .grants
            .iter()
            .map(|row| {
                let cells = cells(row, false);
                TABLE_COLUMNS
                    .iter()
                    .map(|(index, _)| {
                        cells[*index]
                            .as_deref()
                            .map_or_else(|| "-".to_owned(), terminal_safe)
                    })
                    .collect()
            })
            .collect();
        write_aligned(out, &header, &rows)?;
    }
    writeln!(out)?;
    writeln!(
        out,
        "{} grant(s) on {}{}, {} anomal{}",
        report.grants.len(),
        report.branch,
        report
            .head
            .map(|head| format!(" at {}", short(head)))
            .unwrap_or_default(),
        report.anomalies.len(),
        if report.anomalies.len() == 1 {
            "y"
        } else {
            "ies"
        },
    )?;
    if !report.anomalies.is_empty() {
        writeln!(out)?;
        let header = ["ANOMALY", "REQUEST", "COMMIT", "DETAIL"].map(str::to_owned);
        let rows: Vec<Vec<String>> = report
            .anomalies
            .iter()
            .map(|a| {
                vec![
                    a.kind.as_str().to_owned(),
                    terminal_safe(&a.request_id),
                    short(a.commit),
                    terminal_safe(&a.detail),
                ]
            })
            .collect();
        write_aligned(out, &header, &rows)?;
    }
    Ok(())
}

/// Columns padded to their widest cell, two spaces apart, no trailing spaces.
fn write_aligned(out: &mut dyn Write, header: &[String], rows: &[Vec<String>]) -> io::Result<()> {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    for row in std::iter::once(header).chain(rows.iter().map(Vec::as_slice)) {
        let mut line = String::new();
        for (i, (cell, width)) in row.iter().zip(&widths).enumerate() {
            if i + 1 == row.len() {
                line.push_str(cell);
            } else {
                line.push_str(cell);
                line.extend(std::iter::repeat_n(' ', width - cell.chars().count() + 2));
            }
        }
        writeln!(out, "{}", line.trim_end())?;
    }
    Ok(())
}

/// Control characters (escape sequences, carriage returns, tabs) and the bidirectional
/// controls (which make text read otherwise than it is) shown escaped.
fn terminal_safe(text: &str) -> String {
    if !text.chars().any(hidden) {
        return text.to_owned();
    }
    text.chars()
        .map(|c| {
            if hidden(c) {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

/// `text` with its hidden characters escaped, but for line ends (a cell may span lines).
fn csv_safe(text: &str) -> Cow<'_, str> {
    let hides = |c: char| hidden(c) && !matches!(c, '\n' | '\r');
    if !text.chars().any(hides) {
        return Cow::Borrowed(text);
    }
    let escaped = text.chars().map(|c| match hides(c) {
        true => c.escape_default().to_string(),
        false => c.to_string(),
    });
    Cow::Owned(escaped.collect())
}

/// A character that changes how the text around it shows instead of showing itself.
fn hidden(c: char) -> bool {
    c.is_control() || crate::comment::is_bidi_control(c)
}

/// A GitHub-flavoured Markdown table of grants, then one of anomalies.
pub fn markdown(report: &Report, out: &mut dyn Write) -> io::Result<()> {
    if report.grants.is_empty() {
        // Escaped as text, not in a code span (where a backslash shows and a backtick ends it).
        writeln!(out, "No grants on {}.", markdown_escape(&report.branch))?;
    } else {
        let titles: Vec<String> = TABLE_COLUMNS
            .iter()
            .map(|(_, title)| capitalize(title))
            .collect();
        markdown_row(out, titles.iter().map(String::as_str))?;
        markdown_row(out, TABLE_COLUMNS.iter().map(|_| "---"))?;
        for row in &report.grants {
            let cells = cells(row, false);
            let escaped: Vec<String> = TABLE_COLUMNS
                .iter()
                .map(|(index, _)| cells[*index].as_deref().map_or("-".into(), markdown_escape))
                .collect();
            markdown_row(out, escaped.iter().map(String::as_str))?;
        }
    }
    writeln!(out)?;
    if report.anomalies.is_empty() {
        return writeln!(out, "No anomalies.");
    }
    markdown_row(out, ["Anomaly", "Request", "Commit", "Detail"].into_iter())?;
    markdown_row(out, ["---"; 4].into_iter())?;
    for anomaly in &report.anomalies {
        markdown_row(
            out,
            [
                anomaly.kind.as_str(),
                &markdown_escape(&anomaly.request_id),
                &short(anomaly.commit),
                &markdown_escape(&anomaly.detail),
            ]
            .into_iter(),
        )?;
    }
    Ok(())
}

fn markdown_row<'a>(out: &mut dyn Write, cells: impl Iterator<Item = &'a str>) -> io::Result<()> {
    let mut line = String::from("|");
    for cell in cells {
        line.push(' ');
        line.push_str(cell);
        line.push_str(" |");
    }
    writeln!(out, "{line}")
}

fn capitalize(title: &str) -> String {
    let mut chars = title.chars();
    chars
        .next()
        .map(|first| first.to_uppercase().chain(chars).collect())
        .unwrap_or_default()
}

/// Backslash-escapes the punctuation that means something in a Markdown table cell (a `|`
/// would end the cell; `<` could open HTML, `[` a link) and flattens line ends, so a reason
/// renders as the text it is. Pasted where a forge renders it (an issue, a wiki), it mentions
/// nobody and links nowhere either: an invisible word joiner follows each `@` and the start
/// of an autolink (`://`, `www.`), as in the bot's own comments.
fn markdown_escape(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut escaped = String::with_capacity(text.len());
    for (i, &c) in chars.iter().enumerate() {
        if c == '@' || crate::comment::starts_autolink(&chars, i) {
            escaped.push(c);
            escaped.push(crate::comment::WORD_JOINER);
            continue;
        }
        match c {
            '\\' | '|' | '*' | '_' | '`' | '[' | ']' | '<' | '>' | '~' | '&' | '!' | '#' => {
                escaped.push('\\');
                escaped.push(c);
            }
            '\r' | '\n' => escaped.push(' '),
            c if hidden(c) => escaped.extend(c.escape_default()),
            c => escaped.push(c),
        }
    }
    escaped
}

/// RFC 4180 CSV: a header row of the JSON keys, one row per grant, CRLF line ends, fields
/// quoted when they hold a comma, a quote or a line end. A cell that a spreadsheet would
/// read as a formula (starting with `=`, `+`, `-`, `@`, tab or CR) gets a leading `'`, so
/// that opening the file never runs a formula someone wrote in a reason; other control and
/// bidirectional characters (an escape sequence in a trailer) are shown escaped, as in the
/// table, line ends kept. UTF-8, no BOM. An anomaly that no grant row carries (forged
/// trailers with no grant, a file that landed without the bot, a revoke of nothing) follows
/// as a row of its own with only `request_id` and `anomalies` filled, so that no format drops
/// one.
pub fn csv(report: &Report, out: &mut dyn Write) -> io::Result<()> {
    csv_record(out, KEYS.iter().copied())?;
    for row in &report.grants {
        let cells = cells(row, true);
        csv_record(out, cells.iter().map(|c| c.as_deref().unwrap_or("")))?;
    }
    let on_a_row = |anomaly: &Anomaly| {
        report.grants.iter().any(|row| {
            row.request_id == anomaly.request_id && row.anomalies.contains(&anomaly.kind)
        })
    };
    for anomaly in report.anomalies.iter().filter(|a| !on_a_row(a)) {
        let mut cells = [""; KEYS.len()];
        cells[0] = &anomaly.request_id;
        cells[KEYS.len() - 1] = anomaly.kind.as_str();
        csv_record(out, cells.into_iter())?;
    }
    Ok(())
}

fn csv_record<'a>(out: &mut dyn Write, fields: impl Iterator<Item = &'a str>) -> io::Result<()> {
    let mut first = true;
    for field in fields {
        if !first {
            out.write_all(b",")?;
        }
        first = false;
        let field = csv_safe(field);
        let defused = if field.starts_with(['=', '+', '-', '@', '\t', '\r']) {
            Cow::Owned(format!("'{field}"))
        } else {
            field
        };
        if defused.contains([',', '"', '\r', '\n']) {
            write!(out, "\"{}\"", defused.replace('"', "\"\""))?;
        } else {
            out.write_all(defused.as_bytes())?;
        }
    }
    out.write_all(b"\r\n")
}

/// The JSON document (schema version [`SCHEMA_VERSION`]), pretty-printed, streamed to `out`.
pub fn json(report: &Report, out: &mut dyn Write) -> io::Result<()> {
    let options = &report.options;
    let document = JsonReport {
        schema_version: SCHEMA_VERSION,
        generated_at: Iso(options.now),
        repository: &report.repository,
        branch: &report.branch,
        head: report.head.map(Hex),
        filters: JsonFilters {
            since: options.since.map(Iso),
            until: options.until.map(Iso),
            environment: options.environment.as_deref(),
            grace: HumanDuration::from_secs(options.grace.num_seconds().max(0).unsigned_abs())
                .to_string(),
        },
        grants: Grants(&report.grants),
        anomalies: report.anomalies.iter().map(JsonAnomaly::from).collect(),
    };
    serde_json::to_writer_pretty(&mut *out, &document)?;
    out.write_all(b"\n")
}

#[derive(Serialize)]
struct JsonReport<'a> {
    schema_version: u32,
    generated_at: Iso,
    repository: &'a str,
    branch: &'a str,
    head: Option<Hex>,
    filters: JsonFilters<'a>,
    grants: Grants<'a>,
    anomalies: Vec<JsonAnomaly<'a>>,
}

#[derive(Serialize)]
struct JsonFilters<'a> {
    since: Option<Iso>,
    until: Option<Iso>,
    environment: Option<&'a str>,
    grace: String,
}

/// Serializes the rows one by one, without building them all first.
struct Grants<'a>(&'a [GrantRow]);

impl Serialize for Grants<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut seq = serializer.serialize_seq(Some(self.0.len()))?;
        for row in self.0 {
            seq.serialize_element(&JsonGrant::from(row))?;
        }
        seq.end()
    }
}

#[derive(Serialize)]
struct JsonGrant<'a> {
    request_id: &'a str,
    requester: &'a str,
    environment: &'a str,
    role: &'a str,
    reason: &'a str,
    ticket: Option<&'a str>,
    approved_by: &'a str,
    approvers: Approvers<'a>,
    granted_at: Iso,
    expires_at: Option<Iso>,
    revoked_at: Option<Iso>,
    revoked_how: Option<&'a str>,
    revoked_by: Option<&'a str>,
    review: JsonReview<'a>,
    grant_commit: Hex,
    revoke_commit: Option<Hex>,
    anomalies: Kinds<'a>,
}

impl<'a> From<&'a GrantRow> for JsonGrant<'a> {
    fn from(row: &'a GrantRow) -> Self {
        Self {
            request_id: &row.request_id,
            requester: &row.requester,
            environment: &row.environment,
            role: &row.role,
            reason: &row.reason,
            ticket: row.ticket.as_deref(),
            approved_by: &row.approved_by,
            approvers: Approvers(row),
            granted_at: Iso(row.granted_at),
            expires_at: row.expires_at.map(Iso),
            revoked_at: row.revoked_at.map(Iso),
            revoked_how: row.revoked_how.as_deref(),
            revoked_by: row.revoked_by.as_deref(),
            review: JsonReview {
                status: row.review.status(),
                due: row.review.due().map(Iso),
                reviewed_by: row.review.reviewed_by(),
            },
            grant_commit: Hex(row.grant_commit),
            revoke_commit: row.revoke_commit.map(Hex),
            anomalies: Kinds(row),
        }
    }
}

#[derive(Serialize)]
struct JsonReview<'a> {
    status: &'static str,
    due: Option<Iso>,
    reviewed_by: Option<&'a str>,
}

struct Approvers<'a>(&'a GrantRow);

impl Serialize for Approvers<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.0.approvers())
    }
}

struct Kinds<'a>(&'a GrantRow);

impl Serialize for Kinds<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.0.anomalies.iter().map(|k| k.as_str()))
    }
}

#[derive(Serialize)]
struct JsonAnomaly<'a> {
    kind: &'static str,
    request_id: &'a str,
    commit: Hex,
    detail: &'a str,
}

impl<'a> From<&'a Anomaly> for JsonAnomaly<'a> {
    fn from(anomaly: &'a Anomaly) -> Self {
        Self {
            kind: anomaly.kind.as_str(),
            request_id: &anomaly.request_id,
            commit: Hex(anomaly.commit),
            detail: &anomaly.detail,
        }
    }
}

/// A UTC time as `2026-11-26T03:14:00Z`, written without an intermediate `String` (a
/// report of 100k grants writes half a million of them).
#[derive(Clone, Copy)]
struct Iso(DateTime<Utc>);

impl fmt::Display for Iso {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let at = self.0;
        write!(
            f,
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
            at.year(),
            at.month(),
            at.day(),
            at.hour(),
            at.minute(),
            at.second()
        )
    }
}

impl Serialize for Iso {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// A full commit id in hex.
#[derive(Clone, Copy)]
struct Hex(Oid);

impl Serialize for Hex {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_fields_are_quoted_and_defused() {
        let mut out = Vec::new();
        csv_record(
            &mut out,
            [
                "plain",
                "a,b",
                "say \"hi\"",
                "two\nlines",
                "=SUM(A1)",
                "-1",
                "",
                "é",
            ]
            .into_iter(),
        )
        .unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "plain,\"a,b\",\"say \"\"hi\"\"\",\"two\nlines\",'=SUM(A1),'-1,,é\r\n"
        );
    }

    #[test]
    fn markdown_cells_cannot_break_the_table() {
        assert_eq!(
            markdown_escape("a|b <img> [x](y) *z*\r\nnext \u{1b}[31m"),
            "a\\|b \\<img\\> \\[x\\](y) \\*z\\*  next \\u{1b}\\[31m"
        );
    }

    #[test]
    fn terminal_output_escapes_control_characters() {
        assert_eq!(terminal_safe("ok"), "ok");
        assert_eq!(terminal_safe("red \u{1b}[31m\r"), "red \\u{1b}[31m\\r");
        assert_eq!(terminal_safe("abc\u{202e}fed"), "abc\\u{202e}fed");
        assert_eq!(markdown_escape("abc\u{2066}x"), "abc\\u{2066}x");
        // Nobody is mentioned and nothing links, once rendered on a forge.
        let wj = crate::comment::WORD_JOINER;
        assert_eq!(
            markdown_escape("ping @acme/everyone, see https://evil.example and www.evil.example"),
            format!(
                "ping @{wj}acme/everyone, see https:{wj}//evil.example and www{wj}.evil.example"
            )
        );
    }

    #[test]
    fn csv_cells_keep_their_line_ends_and_escape_what_hides() {
        assert_eq!(csv_safe("a\r\nb"), "a\r\nb");
        assert_eq!(
            csv_safe("-carol\u{1b}[31m\u{202e}"),
            "-carol\\u{1b}[31m\\u{202e}"
        );
        let mut out = Vec::new();
        csv_record(&mut out, ["x\u{1b}[2Jy"].into_iter()).unwrap();
        assert_eq!(String::from_utf8(out).unwrap(), "x\\u{1b}[2Jy\r\n");
    }

    #[test]
    fn iso_matches_the_trailer_format() {
        let at = DateTime::parse_from_rfc3339("2026-11-26T03:04:05+01:00")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(Iso(at).to_string(), crate::clock::iso(at));
        assert_eq!(Iso(at).to_string(), "2026-11-26T02:04:05Z");
    }
}
