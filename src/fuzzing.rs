//! Entry points for the fuzz targets in `fuzz/` and the smoke test in `tests/fuzz_smoke.rs`:
//! one function per parser that reads untrusted input, fed the raw bytes.
//!
//! Each feeds the bytes to the real parser (as UTF-8 where it reads text; other bytes return
//! early) and then asserts what must hold for *any* input, so that the fuzzer finds wrong
//! answers as well as panics: a stored delivery reads back as parsed, a command re-renders to
//! itself, a request file the bot rewrites parses to the same request. An error is a valid
//! outcome; a panic never is. Not part of the product's API.

use crate::audit::history::RawCommit;
use crate::audit::trailers::{BotTrailers, Message};
use crate::command::{self, Command, MAX_COMMANDS};
use crate::forge::{Delivery, ForgeEvent, github, gitlab};
use crate::names::{Login, Name};
use crate::policy::decision::{Context, Requester};
use crate::policy::{PolicyFile, PolicySet, evaluate, lint};
use crate::request::{AccessRequest, RequestPath};

/// Splits `event\nbody`: the first line is the event header, the rest the body.
fn header_and_body(data: &[u8]) -> Option<(&str, &[u8])> {
    let end = data.iter().position(|&b| b == b'\n')?;
    Some((std::str::from_utf8(&data[..end]).ok()?, &data[end + 1..]))
}

/// What the server stores must read back as the same delivery (the worker parses it again).
fn assert_stores(delivery: &Delivery, id: &str) {
    assert_eq!(delivery.id, id);
    let stored = serde_json::to_string(delivery).expect("a delivery serializes");
    let back: Delivery = serde_json::from_str(&stored).expect("a stored delivery reads back");
    assert_eq!(&back, delivery, "stored as {stored}");
}

/// `X-GitHub-Event` on the first line, the body after it.
pub fn github_webhook(data: &[u8]) {
    let Some((event, body)) = header_and_body(data) else {
        return;
    };
    if let Ok(delivery) = github::webhook::parse("fuzz", event, body) {
        assert_stores(&delivery, "fuzz");
        let known = [
            "ping",
            "pull_request",
            "issue_comment",
            "issues",
            "pull_request_review",
            "pull_request_review_comment",
            "push",
        ];
        if !known.contains(&event) {
            let ignored = ForgeEvent::Ignored {
                event: event.to_owned(),
            };
            assert_eq!(delivery.event, ignored);
        }
    }
}

/// `X-Gitlab-Event` on the first line, the body after it; the same line serves as an
/// `Idempotency-Key` for [`gitlab::webhook::delivery_id`].
pub fn gitlab_webhook(data: &[u8]) {
    let Some((event, body)) = header_and_body(data) else {
        return;
    };
    let hashed = gitlab::webhook::delivery_id(None, body);
    assert_eq!(hashed, gitlab::webhook::delivery_id(None, body), "stable");
    assert_eq!(hashed.len(), "body-sha256:".len() + 64, "{hashed}");
    let keyed = gitlab::webhook::delivery_id(Some(event), body);
    if !event.trim().is_empty() {
        assert_eq!(keyed, event.trim());
    } else {
        assert_eq!(keyed, hashed);
    }
    if let Ok(delivery) = gitlab::webhook::parse(&hashed, event, body) {
        assert_stores(&delivery, &hashed);
    }
}

/// A comment body. Every command read re-renders (its `Display`) to a line that reads back as
/// the same command; only a reason may change, through markdown it contained, unless it is
/// plain. Quoting the whole comment leaves no command.
pub fn slash_commands(data: &[u8]) {
    let Ok(body) = std::str::from_utf8(data) else {
        return;
    };
    let parsed = command::parse_commands(body);
    assert!(parsed.len() <= MAX_COMMANDS);
    for command in parsed.iter().flatten() {
        let again = command::parse_commands(&command.to_string());
        let [Ok(back)] = again.as_slice() else {
            panic!("{command:?} renders as `{command}`, which reads back as {again:?}");
        };
        assert_eq!(without_reason(back), without_reason(command), "`{command}`");
        if reason_of(command).is_none_or(|r| r.chars().all(is_plain)) {
            assert_eq!(back, command, "`{command}`");
        }
    }
    let quoted: String = body
        .split(['\n', '\r'])
        .map(|l| format!("> {l}\n"))
        .collect();
    let from_quote = command::parse_commands(&quoted);
    assert!(from_quote.iter().all(Result::is_err), "{from_quote:?}");
}

fn is_plain(c: char) -> bool {
    c.is_ascii_alphanumeric() || " .,:!?-".contains(c)
}

fn reason_of(command: &Command) -> Option<&str> {
    match command {
        Command::Request { reason, .. } | Command::Deny { reason } => reason.as_deref(),
        _ => None,
    }
}

fn without_reason(command: &Command) -> Command {
    let mut command = command.clone();
    if let Command::Request { reason, .. } | Command::Deny { reason } = &mut command {
        *reason = None;
    }
    command
}

/// A request file's text, and the same text as a repo path. A parsed request holds only valid
/// names and reasons, and the file the bot writes for it parses back to it.
pub fn request_yaml(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Some(path) = RequestPath::parse(text) {
        assert_eq!(path.to_repo_path(), text);
    }
    let Ok(request) = AccessRequest::from_yaml(text) else {
        return;
    };
    for name in [request.environment.as_str(), request.role.as_str()] {
        assert!(Name::try_from(name.to_owned()).is_ok(), "{name:?}");
    }
    let reason = request.reason.as_str();
    assert!(!reason.is_empty() && reason == reason.trim(), "{reason:?}");
    assert!(reason.chars().count() <= crate::request::MAX_REASON_CHARS);
    let written = request.to_yaml();
    let back = AccessRequest::from_yaml(&written);
    assert_eq!(back.as_ref(), Ok(&request), "the bot wrote:\n{written}");
}

/// A policy file. Lint and the policy set agree on whether it is valid; a valid one decides a
/// request for each of its roles without panicking, with and without a known requester.
pub fn policy_yaml(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // Name the file after its environment, so that a valid policy can be lint-clean.
    let stem = crate::yaml::from_str::<crate::policy::Policy>(text)
        .map_or_else(|_| "fuzz".to_owned(), |p| p.environment.to_string());
    let files = [PolicyFile {
        path: format!("policies/{stem}.yaml").into(),
        text: text.to_owned(),
    }];
    let problems = lint(&files);
    let Ok(set) = PolicySet::from_files(&files) else {
        assert!(!problems.is_empty(), "from_files refused what lint passed");
        return;
    };
    assert!(problems.is_empty(), "{problems:?}");
    let policy = set.iter().next().expect("one policy");
    let login = Login::try_from("fuzzer".to_owned()).expect("a valid login");
    let requester = Requester::new(login, None);
    for role in policy.roles.keys() {
        let yaml = format!(
            "environment: \"{}\"\nrole: \"{role}\"\nreason: incident INC-1\nticket: INC-1\n",
            policy.environment
        );
        let request = AccessRequest::from_yaml(&yaml).expect("a valid request");
        for who in [None, Some(&requester)] {
            let ctx = Context {
                requester: who,
                labels: &[],
                now: chrono::DateTime::UNIX_EPOCH,
                path: None,
            };
            let decision = evaluate(&set, &request, &ctx);
            assert_eq!(decision.allowed, decision.violations.is_empty());
        }
    }
}

/// A commit message: the split git makes and the bot's trailers picked out of it.
pub fn trailers(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    check_message(text);
}

fn check_message(text: &str) {
    let message = Message::parse(text);
    assert!(!message.subject().contains('\n'));
    assert!(text.starts_with(message.subject()));
    let mut any = false;
    for trailer in message.trailers() {
        assert!(!trailer.key.is_empty(), "{trailer:?}");
        assert!(
            trailer
                .key
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-'),
            "{trailer:?}"
        );
        assert!(!trailer.value.contains('\n'), "{trailer:?}");
        any |= trailer.key.to_ascii_lowercase().starts_with("breakglass-");
    }
    let bot = BotTrailers::from_message(&message);
    assert_eq!(bot.any, any);
    assert!(!message.body().contains('\n'));
}

/// A raw commit object as the audit's history walk reads it: its header fields, then its
/// message the way the walk reads it (lossy UTF-8).
pub fn audit_commit(data: &[u8]) {
    let Some(commit) = RawCommit::parse(data) else {
        return;
    };
    assert!(data.ends_with(commit.message));
    let text = String::from_utf8_lossy(commit.message);
    check_message(&text);
    let bot = BotTrailers::parse(&text);
    let _ = crate::audit::history::TrailerTime::parse(bot.expires.as_deref());
    let _ = chrono::DateTime::from_timestamp(commit.committer_time, 0);
}
