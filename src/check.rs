//! `breakglass check`: validates request files offline against a policy directory, the same way
//! the service decides, for the requests repo's own CI and for people writing a request.

use std::path::{Path, PathBuf};

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;

use crate::names::{Login, RequestId};
use crate::policy::decision::Context;
use crate::policy::{Decision, PolicySet, Problem, Requester, evaluate};
use crate::request::{AccessRequest, RequestPath};

/// What the caller knows beyond the files: who asks, in which teams, with which PR labels.
#[derive(Clone, Debug)]
pub struct CheckInput {
    pub requester: Option<Login>,
    /// The requester's teams (`@org/team`); `None` when unknown, so team rules are not guessed.
    pub teams: Option<std::collections::BTreeSet<crate::names::Team>>,
    pub labels: Vec<String>,
    pub now: DateTime<Utc>,
}

/// The verdict on one file. Ordered by severity: the worst decides the exit code.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Allowed,
    Denied,
    Invalid,
}

impl Status {
    /// `breakglass check`'s exit code: 0 allowed, 1 denied, 2 invalid input.
    pub fn exit_code(self) -> u8 {
        self as u8
    }
}

/// The result for one request file.
#[derive(Clone, Debug, Serialize)]
pub struct FileReport {
    pub file: PathBuf,
    pub status: Status,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request: Option<AccessRequest>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decision: Option<Decision>,
    /// Why the file could not be read or parsed (with `line N, column M:` when known).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The result of a whole run.
#[derive(Clone, Debug, Serialize)]
pub struct CheckReport {
    pub status: Status,
    /// Problems of the policy directory; when present, no file was checked.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub policy_problems: Vec<Problem>,
    pub files: Vec<FileReport>,
}

/// Checks each file against the policies in `policies_dir`.
pub fn run(policies_dir: &Path, files: &[PathBuf], input: &CheckInput) -> CheckReport {
    let policies = match PolicySet::load_dir(policies_dir) {
        Ok(policies) => policies,
        Err(problems) => {
            return CheckReport {
                status: Status::Invalid,
                policy_problems: problems,
                files: Vec::new(),
            };
        }
    };
    let mut reports: Vec<FileReport> = files
        .iter()
        .map(|file| check_file(&policies, file, input))
        .collect();
    refuse_shared_ids(&mut reports);
    let files = reports;
    let status = files
        .iter()
        .map(|f| f.status)
        .max()
        .unwrap_or(Status::Invalid);
    CheckReport {
        status,
        policy_problems: Vec::new(),
        files,
    }
}

/// Request ids are unique in the repo (the bot refuses a second file with an id in use, in any
/// environment): files given together that share one are each invalid, naming the others.
fn refuse_shared_ids(reports: &mut [FileReport]) {
    let named: Vec<(PathBuf, Option<RequestId>)> = reports
        .iter()
        .map(|r| {
            (
                r.file.clone(),
                RequestPath::from_fs_path(&r.file).map(|p| p.id),
            )
        })
        .collect();
    for (report, (_, id)) in reports.iter_mut().zip(&named) {
        let Some(id) = id else { continue };
        let others: Vec<String> = named
            .iter()
            .filter(|(file, other)| *file != report.file && other.as_ref() == Some(id))
            .map(|(file, _)| file.display().to_string())
            .collect();
        if others.is_empty() {
            continue;
        }
        report.status = Status::Invalid;
        report.error = Some(format!(
            "request id `{id}` is also used by {}: ids are unique in the repo, rename one",
            others.join(", ")
        ));
    }
}

fn check_file(policies: &PolicySet, file: &Path, input: &CheckInput) -> FileReport {
    let invalid = |error: String| FileReport {
        file: file.to_owned(),
        status: Status::Invalid,
        request: None,
        decision: None,
        error: Some(error),
    };
    // The bot's own naming rule: a file under `requests/` that it would not take as a request
    // (`.yml`, a wrong depth) fails here too, instead of passing CI and then being refused.
    let under_requests = file
        .iter()
        .any(|part| part == std::ffi::OsStr::new(crate::request::REQUESTS_DIR));
    if under_requests && RequestPath::from_fs_path(file).is_none() {
        return invalid(
            "not a request file name: requests are named requests/<environment>/<id>.yaml".into(),
        );
    }
    // The bot refuses a request file that is a link (or no file at all): CI says so too, and
    // reads nothing the link points at (a file outside the repository among them).
    match std::fs::symlink_metadata(file) {
        Ok(meta) if meta.file_type().is_symlink() => {
            return invalid(
                "a symbolic link, not a file: breakglass never takes a link as a request".into(),
            );
        }
        Ok(meta) if !meta.is_file() => {
            return invalid("not a file: a request is a plain YAML file".into());
        }
        _ => {} // missing: the read below says so
    }
    let text = match crate::policy::read_capped(file) {
        Ok(text) => text,
        Err(error) => return invalid(error),
    };
    let request = match AccessRequest::from_yaml(&text) {
        Ok(request) => request,
        Err(error) => return invalid(error.to_string()),
    };
    // Without --requester, the file's own `requester:` is the best we know.
    let login = input
        .requester
        .clone()
        .or_else(|| request.requester.clone());
    let requester = login.map(|login| Requester::new(login, input.teams.clone()));
    let path = RequestPath::from_fs_path(file);
    let ctx = Context {
        requester: requester.as_ref(),
        labels: &input.labels,
        now: input.now,
        path: path.as_ref(),
    };
    let decision = evaluate(policies, &request, &ctx);
    FileReport {
        file: file.to_owned(),
        status: if decision.allowed {
            Status::Allowed
        } else {
            Status::Denied
        },
        request: Some(request),
        decision: Some(decision),
        error: None,
    }
}

/// The report for people: one block per file, every reason on its own line.
pub fn render_human(report: &CheckReport) -> String {
    let mut out = String::new();
    if !report.policy_problems.is_empty() {
        line(
            &mut out,
            format_args!("the policies are invalid, so no request was checked:"),
        );
        for problem in &report.policy_problems {
            line(&mut out, format_args!("  {problem}"));
        }
    }
    for file in &report.files {
        let status = match file.status {
            Status::Allowed => "allowed",
            Status::Denied => "denied",
            Status::Invalid => "invalid",
        };
        line(&mut out, format_args!("{}: {status}", file.file.display()));
        if let Some(error) = &file.error {
            line(&mut out, format_args!("  {error}"));
        }
        if let Some(decision) = &file.decision {
            render_decision(&mut out, decision);
        }
    }
    out
}

fn render_decision(out: &mut String, d: &Decision) {
    for violation in &d.violations {
        line(
            out,
            format_args!("  - {}: {}", violation.rule, violation.message),
        );
    }
    if let (Some(duration), Some(expires)) = (d.duration, d.expires_at) {
        let defaulted = if d.duration_defaulted {
            " (the policy's default)"
        } else {
            ""
        };
        line(
            out,
            format_args!(
                "  {}/{} for {duration}{defaulted}; would expire at {} if granted now",
                d.environment,
                d.role,
                expires.to_rfc3339_opts(SecondsFormat::Secs, true)
            ),
        );
    }
    for note in &d.unchecked {
        line(out, format_args!("  not checked: {note}"));
    }
    if !d.allowed {
        return;
    }
    match (&d.fast_path, d.approvals_required) {
        (Some(fast), _) => {
            line(
                out,
                format_args!(
                    "  fast path `{}`: granted at once, to be reviewed by an approver within {}",
                    fast.rule, fast.review_within
                ),
            );
        }
        (None, 0) => line(
            out,
            format_args!("  self-service: granted without approval"),
        ),
        (None, n) => {
            line(
                out,
                format_args!(
                    "  needs {n} approval(s) from {} (never the requester): an approving review, `/breakglass approve`, or a {} reaction",
                    d.approvers.join(", "),
                    d.approval_reactions.join("/")
                ),
            );
        }
    }
    if d.fast_path.is_none() {
        for miss in &d.fast_path_misses {
            line(
                out,
                format_args!(
                    "  fast path `{}` does not apply: {}",
                    miss.rule,
                    miss.reasons.join("; ")
                ),
            );
        }
    }
}

/// Writes one line of the report. What a request file says shows on it as text: line breaks
/// and other control characters (terminal escapes, the bidirectional controls) come out
/// escaped, so a value can neither begin a line of its own (a CI runner reads `::error::…` at
/// the start of a line as a command) nor restyle the terminal.
fn line(out: &mut String, text: std::fmt::Arguments<'_>) {
    for c in text.to_string().chars() {
        if c.is_control() || crate::comment::is_bidi_control(c) {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out.push('\n');
}
