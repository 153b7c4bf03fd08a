//! Reading YAML written by people into typed structs, safely and with positions in every error.
//!
//! Request files come from pull requests, i.e. from anyone who can open one, so the parser runs
//! with a small budget (no billion-laughs, no deep nesting, one document) and a size cap, and
//! every error says where it is: `line 3, column 11: …`.

use std::fmt;

use serde::de::DeserializeOwned;

/// The largest YAML file we read. Real requests and policies are a few hundred bytes.
pub const MAX_BYTES: usize = 64 * 1024;

/// Why a YAML file could not become the struct it should be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct YamlError {
    /// 1-based line of the problem, when the parser knows it.
    pub line: Option<u64>,
    /// 1-based column of the problem, when the parser knows it.
    pub column: Option<u64>,
    /// What is wrong, without the position.
    pub message: String,
}

impl fmt::Display for YamlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.line, self.column) {
            (Some(line), Some(column)) => {
                write!(f, "line {line}, column {column}: {}", self.message)
            }
            (Some(line), None) => write!(f, "line {line}: {}", self.message),
            _ => f.write_str(&self.message),
        }
    }
}

impl std::error::Error for YamlError {}

/// Parses `text` into `T`, refusing oversize input and anything beyond a small node budget.
pub fn from_str<T: DeserializeOwned>(text: &str) -> Result<T, YamlError> {
    if text.len() > MAX_BYTES {
        return Err(YamlError {
            line: None,
            column: None,
            message: format!(
                "the file is {} bytes; breakglass reads YAML files of at most {MAX_BYTES} bytes",
                text.len()
            ),
        });
    }
    if text.trim().is_empty() {
        return Err(YamlError {
            line: None,
            column: None,
            message: "the file is empty".into(),
        });
    }
    if let Some(line) = text
        .lines()
        .position(|l| l.trim_start_matches(' ').starts_with('\t'))
    {
        // The parser's own message for this points at the previous token; say it plainly.
        return Err(YamlError {
            line: Some(line as u64 + 1),
            column: Some(
                text.lines()
                    .nth(line)
                    .map_or(0, |l| l.find('\t').unwrap_or(0)) as u64
                    + 1,
            ),
            message: "indentation uses a tab; YAML indents with spaces".into(),
        });
    }
    refuse_hidden_values(text)?;
    let options = serde_saphyr::options! {
        // A merge key (`<<: {role: admin}`) would put a value in the file that no line names,
        // and tools disagree on which of two merges wins: a reader must see each key written.
        merge_keys: serde_saphyr::MergeKeyPolicy::Error,
        // `yes`, `no`, `on` and `off` are YAML 1.1 booleans, and people write them by mistake:
        // a flag takes `true` or `false` only.
        strict_booleans: true,
        // No `!tag` of an application: nothing in these files needs one.
        reject_unsupported_tags: true,
        budget: serde_saphyr::budget! {
            max_depth: 16,
            max_documents: 1,
            max_nodes: 10_000,
            max_aliases: 0,
            max_anchors: 0,
        },
    };
    serde_saphyr::from_str_with_options(text, options).map_err(|err| to_yaml_error(&err))
}

/// Refuses what would make the parser read a value that no line of the file shows, so that a
/// reviewer reads what the bot grants:
/// - any explicit tag (`!!binary`, `!!str`, `!name`): `role: !!binary YWRtaW4=` is `admin`;
/// - in a double-quoted value or key, any escape but `\"`, `\\`, `\n` and `\t`: `"\x61dmin"` and
///   `"\u0061dmin"` are `admin`, and a `\` at a line's end joins two lines into one word.
///
/// Nothing in these files needs either. A file the parser cannot read is left to [`from_str`]'s
/// own error.
fn refuse_hidden_values(text: &str) -> Result<(), YamlError> {
    use serde_saphyr::granit_parser::{Event, Parser, ScalarStyle};
    for event in Parser::new_from_str(text) {
        let Ok((event, span)) = event else {
            return Ok(());
        };
        let refusal = |message: String| YamlError {
            line: Some(span.start.line() as u64),
            column: Some(span.start.col() as u64 + 1),
            message,
        };
        let tag = match &event {
            Event::Scalar(_, _, _, tag)
            | Event::SequenceStart(_, _, tag)
            | Event::MappingStart(_, _, tag) => tag.as_deref(),
            _ => None,
        };
        if let Some(tag) = tag {
            return Err(refusal(format!(
                "tags such as `{}` are not allowed; write the value as it is",
                crate::names::shorten(&format!("{}{}", tag.original_handle(), tag.suffix()))
            )));
        }
        if let Event::Scalar(_, ScalarStyle::DoubleQuoted, _, _) = &event {
            let written = span
                .start
                .byte_offset()
                .zip(span.end.byte_offset())
                .and_then(|(start, end)| text.get(start..end));
            // Without its text the value cannot be checked: refused, never let through.
            if written.is_none_or(has_hiding_escape) {
                return Err(refusal(
                    "escapes such as `\\x61` or `\\u0061` (or a `\\` that joins two lines) are not allowed in a quoted value; write the text as it is (only `\\\"`, `\\\\`, `\\n` and `\\t` may be escaped)"
                        .into(),
                ));
            }
        }
    }
    Ok(())
}

/// Whether a double-quoted scalar as written holds an escape other than `\"`, `\\`, `\n` or
/// `\t` (a line and a tab are text in a reason; no name can hold them, so they spell nothing).
fn has_hiding_escape(written: &str) -> bool {
    let mut chars = written.chars();
    while let Some(c) = chars.next() {
        if c == '\\' && !matches!(chars.next(), Some('"' | '\\' | 'n' | 't')) {
            return true;
        }
    }
    false
}

fn to_yaml_error(err: &serde_saphyr::Error) -> YamlError {
    let location = err.location();
    let plain = err
        .without_snippet()
        .render_with_options(serde_saphyr::render_options! {
            snippets: serde_saphyr::SnippetMode::Off,
        });
    YamlError {
        line: location.map(|l| l.line()).filter(|l| *l > 0),
        column: location.map(|l| l.column()).filter(|c| *c > 0),
        message: plain_words(strip_location_suffix(&plain)),
    }
}

/// The parser's messages that speak of its own internals, said for the person who wrote the
/// file (they end up in a PR comment).
fn plain_words(message: &str) -> String {
    if let Some(key) = message
        .strip_prefix("duplicate mapping key: ")
        .and_then(|rest| rest.split(", set DuplicateKeyPolicy").next())
    {
        return format!("`{key}` is given twice; keep one");
    }
    let said = match message {
        m if m.starts_with("budget breached: Anchors")
            || m.starts_with("budget breached: Aliases") =>
        {
            "anchors and aliases (`&name`, `*name`) are not allowed"
        }
        m if m.starts_with("YAML merge keys are not allowed") => {
            "merge keys (`<<`) are not allowed; write each key of the file once"
        }
        m if m.starts_with("budget breached: Documents") => {
            "the file holds more than one YAML document (`---`); write one request or policy per file"
        }
        m if m.starts_with("budget breached") => {
            "the file is nested too deeply or holds too many values"
        }
        m if m.starts_with("cannot deserialize null into string") => "a value is missing here",
        "expected string scalar" => "expected a single text value here, not a list or a mapping",
        "mapping values are not allowed in this context" => {
            "a `: ` inside a value reads as another key; put the whole value in quotes, e.g. `reason: \"incident: INC-1 db failover\"`"
        }
        "simple key expected ':'" => {
            "a key and its value need a colon and a space between them, e.g. `role: admin`"
        }
        "invalid trailing content after single-quoted scalar"
        | "invalid trailing content after double-quoted scalar" => {
            "text follows the closing quote; put the whole value inside the quotes"
        }
        "unexpected end of input" => {
            "the file ends early: it is empty or only comments, or a quote or bracket is never closed"
        }
        "block sequence entries are not allowed in this context" => {
            "`- ` starts a list item, which is not allowed here; a value that starts with `-` needs quotes"
        }
        other => return other.to_owned(),
    };
    said.to_owned()
}

/// The plain rendering ends with ` at line L, column C`; we print the position first instead.
fn strip_location_suffix(message: &str) -> &str {
    match message.rfind(" at line ") {
        Some(at) => &message[..at],
        None => message,
    }
}
