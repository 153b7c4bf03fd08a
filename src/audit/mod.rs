//! `breakglass audit`: the audit trail, read from the requests repo's git history alone.
//!
//! The bot merges every grant and every revocation as a merge commit whose trailers say who
//! had what, until when, approved by whom, and how it ended (see
//! `src/workflow/trailers.rs`). This module walks the first-parent history of the default
//! branch and turns those commits into one row per grant, flagging what should never happen:
//! a grant never revoked, a revoke too late, a self-approval, an overdue fast-path review, a
//! revoke without its grant, a request or grant file that landed without the bot, and
//! trailers that claim a grant or a revoke the commit's files do not show.
//!
//! The parts, each knowing one thing:
//! - [`trailers`]: commit messages parsed as git parses them (pure);
//! - [`history`]: the git2 walk, into raw facts;
//! - [`files`]: which request files a commit adds or removes (path lookups, no diff), and
//!   which files under the grant roots (only the directories whose tree changed);
//! - [`grants`]: where grant files live (the policies at the branch's tip);
//! - [`report`]: pairing, rows and anomalies (pure; time is an input);
//! - [`render`]: table, Markdown, CSV and JSON;
//! - [`source`]: opening a local repository or cloning a URL.
//!
//! Everything here is blocking (git2, and `git clone` for URLs): async callers use
//! `tokio::task::spawn_blocking`.

pub mod files;
pub mod grants;
pub mod history;
pub mod render;
pub mod report;
pub mod source;
pub mod trailers;
pub mod verify;

use chrono::{DateTime, NaiveDate, TimeDelta, Utc};

pub use render::Format;
pub use report::{Anomaly, AnomalyKind, GrantRow, Report, ReportOptions, Review};
pub use source::Source;

/// Why an audit could not be made (`breakglass audit` exits 2 on any of them).
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("cannot open the repository {location}")]
    Open {
        location: String,
        #[source]
        source: git2::Error,
    },
    #[error("cannot clone {url}: {message}")]
    Clone { url: String, message: String },
    #[error("{0}")]
    Branch(String),
    #[error(
        "the repository is a shallow clone; the audit needs the whole history (git fetch --unshallow)"
    )]
    Shallow,
    #[error("commit {commit} is malformed: {what}")]
    Malformed { commit: String, what: &'static str },
    #[error("tree {tree} is malformed")]
    MalformedTree { tree: String },
    #[error("cannot read the history")]
    Git(#[source] git2::Error),
}

impl AuditError {
    fn git(err: git2::Error) -> Self {
        Self::Git(err)
    }
}

/// What `breakglass audit` was asked for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditOptions {
    /// The branch to read; the repository's `HEAD` branch when `None`.
    pub branch: Option<String>,
    /// Where the policies are in the repo (the config's `policies_path`), for the grant
    /// roots; `policies` when `None`.
    pub policies: Option<String>,
    /// How the report is filtered, and "now".
    pub report: ReportOptions,
}

/// Opens (or clones) the requests repo at `location` and reports on it: the library entry
/// point behind `breakglass audit`.
pub fn run(location: &str, options: &AuditOptions) -> Result<Report, AuditError> {
    let source = Source::open(location, options.branch.as_deref())?;
    report_on(&source, options)
}

/// The first-parent history of `branch` (the HEAD branch when `None`) of a path or URL, with
/// the grant files' places taken from the policies under `policies_dir`.
pub fn read_history(
    location: &str,
    branch: Option<&str>,
    policies_dir: &str,
) -> Result<history::History, AuditError> {
    let source = Source::open(location, branch)?;
    let repo = source.repository();
    let branch = match branch {
        Some(branch) => branch.to_owned(),
        None => history::head_branch(repo)?,
    };
    history::read(repo, &branch, policies_dir)
}

/// Reports on an opened repository.
pub fn report_on(source: &Source, options: &AuditOptions) -> Result<Report, AuditError> {
    let repo = source.repository();
    let branch = match &options.branch {
        Some(branch) => branch.clone(),
        None => history::head_branch(repo)?,
    };
    let policies = options.policies.as_deref().unwrap_or(grants::POLICIES_DIR);
    let history = history::read(repo, &branch, policies)?;
    Ok(report::build(
        history,
        source.name().to_owned(),
        options.report.clone(),
    ))
}

/// A `--since` or `--until` bound: an instant, or a time before the one the report is as of
/// (`30d`: the last thirty days), which is known only once `--now` is read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Bound {
    At(DateTime<Utc>),
    Ago(TimeDelta),
}

impl Bound {
    /// The instant, for a report as of `now`; a time before the calendar's first is its first.
    pub fn resolve(self, now: DateTime<Utc>) -> DateTime<Utc> {
        match self {
            Bound::At(at) => at,
            Bound::Ago(ago) => now
                .checked_sub_signed(ago)
                .unwrap_or(DateTime::<Utc>::MIN_UTC),
        }
    }
}

/// Reads a `--since` bound: `YYYY-MM-DD` (the start of that day, UTC), RFC 3339, or a duration
/// before now (`7d`, `12h`, `2w`).
pub fn parse_since(text: &str) -> Result<Bound, String> {
    parse_bound(text, false)
}

/// Reads an `--until` bound: `YYYY-MM-DD` (through the end of that day, UTC, so that
/// `--since 2026-11-01 --until 2026-11-30` is all of November), RFC 3339 (inclusive), or a
/// duration before now.
pub fn parse_until(text: &str) -> Result<Bound, String> {
    parse_bound(text, true)
}

fn parse_bound(text: &str, end_of_day: bool) -> Result<Bound, String> {
    if let Ok(date) = NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        let start = date.and_time(chrono::NaiveTime::MIN).and_utc();
        return Ok(Bound::At(if end_of_day {
            let last_second = TimeDelta::days(1) - TimeDelta::seconds(1);
            // The calendar's last day ends where the calendar does.
            start
                .checked_add_signed(last_second)
                .unwrap_or(DateTime::<Utc>::MAX_UTC)
        } else {
            start
        }));
    }
    if let Ok(at) = DateTime::parse_from_rfc3339(text) {
        return Ok(Bound::At(at.with_timezone(&Utc)));
    }
    humantime::parse_duration(text)
        .ok()
        .and_then(|ago| TimeDelta::from_std(ago).ok())
        .map(Bound::Ago)
        .ok_or_else(|| {
            format!(
                "`{text}` is neither a date nor a duration; write YYYY-MM-DD, RFC 3339 (2026-11-26T02:14:00Z) or a time before now (7d, 12h)"
            )
        })
}

/// Reads `--grace`: a duration like `5m` or `1h30m`, or `0` for none.
pub fn parse_grace(text: &str) -> Result<TimeDelta, String> {
    if text == "0" || text == "0s" {
        return Ok(TimeDelta::zero());
    }
    crate::duration::HumanDuration::parse(text)
        .map(crate::duration::HumanDuration::to_chrono)
        .map_err(|err| err.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn date_bounds() {
        let now = "2026-12-05T12:00:00Z".parse::<DateTime<Utc>>().unwrap();
        let at = |bound: Result<Bound, String>| bound.unwrap().resolve(now).to_rfc3339();
        assert_eq!(at(parse_since("2026-11-26")), "2026-11-26T00:00:00+00:00");
        assert_eq!(at(parse_until("2026-11-26")), "2026-11-26T23:59:59+00:00");
        assert_eq!(
            at(parse_until("2026-11-26T02:14:00+01:00")),
            "2026-11-26T01:14:00+00:00"
        );
        assert_eq!(at(parse_since("7d")), "2026-11-28T12:00:00+00:00");
        assert_eq!(at(parse_since("90days")), "2026-09-06T12:00:00+00:00");
        assert_eq!(at(parse_until("1h30m")), "2026-12-05T10:30:00+00:00");
        assert!(parse_since("yesterday").unwrap_err().contains("YYYY-MM-DD"));
        assert!(parse_since("2026-13-01").is_err());
    }

    #[test]
    fn bounds_beyond_the_calendar_are_its_ends_not_a_panic() {
        let now = "2026-12-05T12:00:00Z".parse::<DateTime<Utc>>().unwrap();
        let since = parse_since("280000y").unwrap().resolve(now);
        assert_eq!(since, DateTime::<Utc>::MIN_UTC);
        // The calendar's last day: its end, one day later, is past the calendar.
        let until = parse_until("+262142-12-31").unwrap().resolve(now);
        assert_eq!(until.to_rfc3339(), "+262142-12-31T23:59:59+00:00");
    }

    #[test]
    fn grace() {
        assert_eq!(parse_grace("5m").unwrap(), TimeDelta::minutes(5));
        assert_eq!(parse_grace("0").unwrap(), TimeDelta::zero());
        assert!(parse_grace("five minutes").is_err());
    }
}
