//! Unit tests of [`decide`]: one per branch, each with the exact verdict (the engine's own
//! decision is table-tested in `policy`; here it is the input every expectation starts from).

use std::collections::BTreeSet;
use std::path::PathBuf;

use chrono::{TimeDelta, TimeZone};

use super::*;
use crate::forge::{Actor, EntryKind, FileChange};
use crate::policy::{PolicyFile, evaluate};
use crate::store::ForgeKind;
use crate::workflow::pull_request::NewRequest;

const PROD: &str = r#"
environment: prod
max_duration: 4h
default_duration: 1h
requesters: [alice, bob]
approvers: [carol]
approvals: 1
ticket_pattern: "^(INC|CHG)-[0-9]+$"
roles:
  admin:
    provider: noop
fast_path:
  - name: sev1
    labels_any: [sev1]
    requesters: [bob]
    max_duration: 1h
    review_within: 24h
    block_until_reviewed: true
"#;

const STAGING: &str = r#"
environment: staging
max_duration: 8h
requesters: [alice]
approvers: [carol]
approvals: 0
roles:
  admin:
    provider: noop
"#;

const OK: &str = "environment: prod\nrole: admin\nduration: 1h\nreason: \"INC-1234 checkout DB failover\"\nticket: INC-1234\n";
const FILE: &str = "requests/prod/r-1.yaml";
const HEAD: &str = "1111111111111111111111111111111111111111";
const BOT: u64 = 99;

fn t(secs: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 26, 2, 0, 0).unwrap() + TimeDelta::seconds(secs)
}

fn policies() -> PolicySet {
    PolicySet::from_files(&[
        PolicyFile {
            path: PathBuf::from("policies/prod.yaml"),
            text: PROD.into(),
        },
        PolicyFile {
            path: PathBuf::from("policies/staging.yaml"),
            text: STAGING.into(),
        },
    ])
    .expect("test policies are valid")
}

fn login(name: &str) -> Login {
    Login::try_from(name.to_owned()).unwrap()
}

/// Alice's request `yaml` at `file`, opened by her, pushed at t(5), decided at t(60).
fn inputs_at(file: &str, yaml: &str) -> Inputs {
    let path = RequestPath::parse(file).expect("a request path");
    Inputs {
        forge: ForgeKind::GitHub,
        pr: PullRequestInfo {
            number: 7,
            author: Actor {
                id: 1001,
                login: "alice".into(),
                is_bot: false,
            },
            head_sha: HEAD.into(),
            head_ref: "alice/r-1".into(),
            base_ref: "main".into(),
            head_repo: None,
            labels: Vec::new(),
            merged: false,
            draft: false,
            updated_at: Some(t(10)),
        },
        bot_id: BOT,
        existing: None,
        pushed: Some((HEAD.into(), t(5))),
        files: vec![ChangedFile {
            path: file.into(),
            change: FileChange::Added,
            previous_path: None,
            kind: EntryKind::File,
            blob: None,
        }],
        file_path: file.into(),
        text: yaml.into(),
        request: AccessRequest::from_yaml(yaml).expect("a valid request"),
        path,
        policies: policies(),
        requester: Requester::new(login("alice"), Some(BTreeSet::new())),
        requester_id: 1001,
        now: t(60),
        overdue_review: None,
        held: Vec::new(),
        grant: Some(GrantFacts::default()),
    }
}

fn inputs(yaml: &str) -> Inputs {
    inputs_at(FILE, yaml)
}

/// The request asked by `who` (a requester of the policy), with the PR's labels.
fn by(mut inputs: Inputs, who: &str, labels: &[&str]) -> Inputs {
    inputs.pr.author.login = who.into();
    inputs.requester = Requester::new(login(who), Some(BTreeSet::new()));
    inputs.pr.labels = labels.iter().map(|l| (*l).to_owned()).collect();
    inputs
}

/// The engine's decision on the inputs: what every expected verdict starts from.
fn engine(inputs: &Inputs) -> Decision {
    evaluate(
        &inputs.policies,
        &inputs.request,
        &Context {
            requester: Some(&inputs.requester),
            labels: &inputs.pr.labels,
            now: inputs.now,
            path: Some(&inputs.path),
        },
    )
}

/// The record of an earlier decision `stored` on head `head`.
fn recorded(inputs: &Inputs, head: &str, stored: StoredDecision) -> RequestRecord {
    let mut record = NewRequest {
        path: &inputs.path,
        request: &inputs.request,
        requester: &inputs.requester.login,
        requester_id: inputs.requester_id,
        pr_number: inputs.pr.number,
        head_sha: head,
        duration_secs: None,
        seen_at: t(0),
    }
    .into_record(ForgeKind::GitHub, "acme/access-requests");
    record.decision = Some(stored);
    record
}

fn decided(inputs: &Inputs) -> Decided {
    match decide(inputs) {
        Verdict::Record(decided) => decided,
        Verdict::Reopen => panic!("expected a decision, got a re-open"),
    }
}

#[test]
fn an_allowed_request_waits_for_its_approvals() {
    let inputs = inputs(OK);
    let decision = engine(&inputs);
    assert!(decision.allowed && decision.approvals_required == 1);
    assert_eq!(
        decide(&inputs),
        Verdict::Record(Decided {
            comment: Some(comment::decision_comment(
                "r-1",
                &decision,
                ForgeKind::GitHub
            )),
            stored: StoredDecision {
                decision,
                head_since: Some(t(5)),
                head_since_is_bound: false,
                scope_problems: Vec::new(),
                merge_refused: None,
                draft: false,
                unservable: None,
                labels: Vec::new(),
                review_since: None,
                extension_hold: None,
                stamp: None,
            },
            state: RequestState::Pending,
            status: (StatusState::Pending, "allowed: needs 1 approval(s)".into()),
            next: Next::Approvals,
        })
    );
}

#[test]
fn a_denied_request_says_its_rules_and_stops() {
    let inputs = inputs(&OK.replace("INC-1234\n", "nope\n"));
    let decision = engine(&inputs);
    assert!(!decision.allowed);
    let verdict = decided(&inputs);
    assert_eq!(verdict.state, RequestState::Denied);
    assert_eq!(
        verdict.status,
        (StatusState::Failure, "denied: ticket_pattern".into())
    );
    assert_eq!(
        verdict.comment,
        Some(comment::decision_comment(
            "r-1",
            &decision,
            ForgeKind::GitHub
        ))
    );
    assert!(
        verdict
            .comment
            .as_deref()
            .unwrap()
            .starts_with("❌ **Request `r-1` is denied** by the `prod` policy.")
    );
    assert_eq!(verdict.next, Next::Stop);
    assert_eq!(verdict.stored.decision, decision);
}

#[test]
fn self_service_merges_at_once() {
    let inputs = inputs_at(
        "requests/staging/r-1.yaml",
        &OK.replace("environment: prod", "environment: staging"),
    );
    let verdict = decided(&inputs);
    assert_eq!(verdict.state, RequestState::Pending);
    assert_eq!(
        verdict.status,
        (StatusState::Success, "allowed: self-service".into())
    );
    assert_eq!(verdict.next, Next::SelfService);
}

#[test]
fn files_beyond_the_request_deny_an_allowed_request() {
    let mut inputs = inputs(OK);
    inputs.files.push(ChangedFile {
        path: "policies/prod.yaml".into(),
        change: FileChange::Modified,
        previous_path: None,
        kind: EntryKind::File,
        blob: None,
    });
    inputs.files.push(ChangedFile {
        path: "docs/new.md".into(),
        change: FileChange::Renamed,
        previous_path: Some(".github/workflows/ci.yml".into()),
        kind: EntryKind::File,
        blob: None,
    });
    let decision = engine(&inputs);
    let extra = vec![
        ".github/workflows/ci.yml".to_owned(),
        "docs/new.md".into(),
        "policies/prod.yaml".into(),
    ];
    assert_eq!(
        decide(&inputs),
        Verdict::Record(Decided {
            comment: Some(comment::out_of_scope_comment(
                &extra,
                &inputs.file_path,
                ForgeKind::GitHub
            )),
            stored: StoredDecision {
                decision,
                head_since: Some(t(5)),
                head_since_is_bound: false,
                scope_problems: extra,
                merge_refused: None,
                draft: false,
                unservable: None,
                labels: Vec::new(),
                review_since: None,
                extension_hold: None,
                stamp: None,
            },
            state: RequestState::Denied,
            status: (
                StatusState::Failure,
                "denied: the PR changes files beyond its request".into()
            ),
            next: Next::Stop,
        })
    );
}

#[test]
fn files_beyond_a_denied_request_are_said_before_its_rules() {
    let mut inputs = inputs(&OK.replace("INC-1234\n", "nope\n"));
    inputs.files.push(ChangedFile {
        path: "policies/prod.yaml".into(),
        change: FileChange::Modified,
        previous_path: None,
        kind: EntryKind::File,
        blob: None,
    });
    let decision = engine(&inputs);
    let extra = ["policies/prod.yaml".to_owned()];
    let verdict = decided(&inputs);
    assert_eq!(
        verdict.comment,
        Some(format!(
            "{}\n\n{}",
            comment::out_of_scope_comment(&extra, &inputs.file_path, ForgeKind::GitHub),
            comment::decision_comment("r-1", &decision, ForgeKind::GitHub)
        ))
    );
    assert_eq!(
        verdict.status,
        (StatusState::Failure, "denied: ticket_pattern".into())
    );
    assert_eq!(verdict.state, RequestState::Denied);
}

#[test]
fn a_request_file_already_on_the_default_branch_is_never_allowed_to_change() {
    // Editing a merged request (a grant) to ask for more: the guard would refuse the merge, so
    // the verdict says so first instead of "allowed".
    let mut inputs = inputs(OK);
    inputs.files[0].change = FileChange::Modified;
    let verdict = decided(&inputs);
    assert_eq!(verdict.state, RequestState::Denied);
    assert_eq!(
        verdict.status,
        (
            StatusState::Failure,
            "denied: the PR changes files beyond its request".into()
        )
    );
    assert_eq!(verdict.next, Next::Stop);
    let said = verdict.comment.expect("a comment");
    assert!(
        said.contains(&format!("does not add `{FILE}` as a new file")),
        "{said}"
    );
    assert!(!said.contains("beyond its request file:"), "{said}");
}

#[test]
fn a_request_file_renamed_from_another_is_refused_by_both_names() {
    let mut inputs = inputs(OK);
    inputs.files[0].change = FileChange::Renamed;
    inputs.files[0].previous_path = Some("requests/prod/older.yaml".into());
    let verdict = decided(&inputs);
    assert_eq!(verdict.state, RequestState::Denied);
    let said = verdict.comment.expect("a comment");
    assert!(
        said.contains("does not add `requests/prod/r-1.yaml` as a new file"),
        "{said}"
    );
    assert!(
        said.contains("It also changes files beyond its request file: `requests/prod/older.yaml`"),
        "{said}"
    );
}

#[test]
fn a_draft_is_decided_but_never_merged() {
    let mut inputs = inputs(OK);
    inputs.pr.draft = true;
    let decision = engine(&inputs);
    let verdict = decided(&inputs);
    assert_eq!(verdict.state, RequestState::Pending);
    assert!(verdict.stored.draft);
    assert_eq!(
        verdict.status,
        (
            StatusState::Pending,
            "allowed; a draft is never merged".into()
        )
    );
    assert_eq!(
        verdict.comment,
        Some(format!(
            "{}\n\n{}",
            comment::decision_comment("r-1", &decision, ForgeKind::GitHub),
            comment::draft_note(ForgeKind::GitHub)
        ))
    );
    assert_eq!(verdict.next, Next::Stop);
}

#[test]
fn a_role_the_provider_cannot_serve_is_denied_now() {
    let mut inputs = inputs(OK);
    inputs.grant = Some(GrantFacts {
        unservable: Some("no AWS configuration".into()),
        staged: Vec::new(),
    });
    let verdict = decided(&inputs);
    assert!(verdict.stored.decision.allowed, "the policy allows it");
    assert_eq!(
        verdict.stored.unservable.as_deref(),
        Some("no AWS configuration")
    );
    assert_eq!(verdict.state, RequestState::Denied);
    assert_eq!(
        verdict.status,
        (
            StatusState::Failure,
            "denied: the role cannot be granted".into()
        )
    );
    assert_eq!(
        verdict.comment,
        Some(comment::role_unservable_comment(
            "prod",
            "admin",
            "no AWS configuration"
        ))
    );
    assert_eq!(verdict.next, Next::Stop);

    // A request the policy denies is not said to be unservable as well.
    let mut denied = inputs.clone();
    denied.request = AccessRequest::from_yaml(&OK.replace("INC-1234\n", "nope\n")).unwrap();
    let verdict = decided(&denied);
    assert_eq!(verdict.stored.unservable, None);
    assert_eq!(
        verdict.status,
        (StatusState::Failure, "denied: ticket_pattern".into())
    );
}

#[test]
fn a_fast_path_merges_at_once() {
    let inputs = by(inputs(OK), "bob", &["sev1"]);
    let verdict = decided(&inputs);
    assert_eq!(
        verdict
            .stored
            .decision
            .fast_path
            .as_ref()
            .map(|f| f.rule.as_str()),
        Some("sev1")
    );
    assert_eq!(
        verdict.status,
        (StatusState::Success, "allowed: fast path sev1".into())
    );
    assert_eq!(verdict.next, Next::FastPath("sev1".into()));
}

#[test]
fn an_overdue_review_blocks_the_fast_path() {
    let mut inputs = by(inputs(OK), "bob", &["sev1"]);
    inputs.overdue_review = Some(RequestId::try_from("r-0".to_owned()).unwrap());
    let mut expected = engine(&inputs);
    let fast = expected.fast_path.take().expect("the rule matches");
    expected.fast_path_misses.push(FastPathMiss {
        rule: fast.rule,
        reasons: vec!["`bob` has an overdue review of `r-0` (block_until_reviewed)".into()],
    });
    let verdict = decided(&inputs);
    assert_eq!(verdict.stored.decision, expected);
    assert_eq!(verdict.state, RequestState::Pending);
    assert_eq!(
        verdict.status,
        (StatusState::Pending, "allowed: needs 1 approval(s)".into())
    );
    assert_eq!(
        verdict.comment,
        Some(comment::decision_comment(
            "r-1",
            &expected,
            ForgeKind::GitHub
        ))
    );
    assert_eq!(verdict.next, Next::Approvals);
}

#[test]
fn a_fast_path_is_held_to_its_max_duration_with_the_grants_held() {
    // bob holds 10 minutes more of an earlier fast-path grant: 1h more is 1h10m in total.
    let mut inputs = by(inputs(OK), "bob", &["sev1"]);
    inputs.held = vec![HeldGrant {
        id: "r-0".into(),
        until: inputs.now + TimeDelta::minutes(10),
    }];
    let mut expected = engine(&inputs);
    let fast = expected.fast_path.take().expect("the rule matches alone");
    expected.fast_path_misses.push(FastPathMiss {
        rule: fast.rule,
        reasons: vec![
            "`bob` already holds `prod` access: `r-0` (10m left); with this 1h that is 1h10m in total, above its max_duration 1h"
                .into(),
        ],
    });
    let verdict = decided(&inputs);
    assert_eq!(verdict.stored.decision, expected);
    assert_eq!(verdict.state, RequestState::Pending);
    assert_eq!(
        verdict.status,
        (StatusState::Pending, "allowed: needs 1 approval(s)".into())
    );
    assert_eq!(verdict.next, Next::Approvals);

    // A grant that has ended, or a shorter request within the total, keeps the fast path.
    inputs.held[0].until = inputs.now;
    assert_eq!(decided(&inputs).next, Next::FastPath("sev1".into()));
    inputs.held[0].until = inputs.now + TimeDelta::minutes(30);
    inputs.request.duration = Some(crate::duration::HumanDuration::from_secs(30 * 60));
    assert_eq!(decided(&inputs).next, Next::FastPath("sev1".into()));
}

#[test]
fn the_same_verdict_on_the_same_head_is_not_said_again() {
    let first = inputs(OK);
    let stored = decided(&first).stored;
    // A label event later: same head, same verdict.
    let mut again = inputs(OK);
    again.existing = Some(recorded(&again, HEAD, stored.clone()));
    again.pushed = None;
    again.pr.labels = vec!["unrelated".into()];
    again.now = t(120);
    let verdict = decided(&again);
    assert_eq!(verdict.comment, None);
    assert_eq!(
        verdict.status,
        (StatusState::Pending, "allowed: needs 1 approval(s)".into())
    );
    assert_eq!(verdict.next, Next::Approvals);

    // Another verdict on the same head is said.
    let mut draft = again.clone();
    draft.pr.draft = true;
    assert!(decided(&draft).comment.is_some());

    // The same verdict on a new head is said again.
    let mut pushed = inputs(OK);
    pushed.existing = Some(recorded(&pushed, &"2".repeat(40), stored));
    assert!(decided(&pushed).comment.is_some());
}

#[test]
fn the_comment_names_the_recorded_id() {
    let mut inputs = inputs(OK);
    let mut record = recorded(&inputs, &"2".repeat(40), decided(&inputs).stored);
    record.id = RequestId::try_from("r-0".to_owned()).unwrap();
    inputs.existing = Some(record);
    let verdict = decided(&inputs);
    assert_eq!(
        verdict.comment,
        Some(comment::decision_comment(
            "r-0",
            &verdict.stored.decision,
            ForgeKind::GitHub
        ))
    );
}

#[test]
fn head_since_is_kept_on_the_same_head_until_it_is_pushed_again_and_taken_from_the_push_otherwise()
{
    let first = decided(&inputs(OK)).stored;
    assert_eq!(
        first.head_since,
        Some(t(5)),
        "the push's time, not updated_at"
    );

    // Same head, a later event: the time the head arrived stays.
    let mut same = inputs(OK);
    same.existing = Some(recorded(&same, HEAD, first.clone()));
    same.pushed = None;
    same.pr.updated_at = Some(t(50));
    assert_eq!(decided(&same).stored.head_since, Some(t(5)));
    assert!(!decided(&same).stored.head_since_is_bound);

    // A new head: the push that announced it.
    let mut pushed = inputs(OK);
    pushed.existing = Some(recorded(&pushed, &"2".repeat(40), first.clone()));
    pushed.pushed = Some((HEAD.into(), t(40)));
    assert_eq!(decided(&pushed).stored.head_since, Some(t(40)));

    // A push event for an older head than the PR's: the PR's own time.
    let mut stale = inputs(OK);
    stale.existing = Some(recorded(&stale, &"2".repeat(40), first.clone()));
    stale.pushed = Some(("3".repeat(40), t(40)));
    stale.pr.updated_at = Some(t(45));
    assert_eq!(decided(&stale).stored.head_since, Some(t(45)));
    assert!(
        decided(&stale).stored.head_since_is_bound,
        "updated_at only bounds the push"
    );

    // The same head pushed again later (it went away and came back): from that push.
    let mut again = inputs(OK);
    again.existing = Some(recorded(&again, HEAD, first.clone()));
    again.pushed = Some((HEAD.into(), t(40)));
    assert_eq!(decided(&again).stored.head_since, Some(t(40)));
    assert!(!decided(&again).stored.head_since_is_bound);

    // A push to another head, while the PR is back on this one: at the PR's latest time.
    let mut away = inputs(OK);
    away.existing = Some(recorded(&away, HEAD, first.clone()));
    away.pushed = Some(("3".repeat(40), t(40)));
    away.pr.updated_at = Some(t(45));
    assert_eq!(decided(&away).stored.head_since, Some(t(45)));
    assert!(
        !decided(&away).stored.head_since_is_bound,
        "what came before its return may be of the other head: stale"
    );

    // An event of the push it arrived with, heard again: nothing moves.
    let mut heard_again = inputs(OK);
    heard_again.existing = Some(recorded(&heard_again, HEAD, first.clone()));
    heard_again.pushed = Some((HEAD.into(), t(5)));
    assert_eq!(decided(&heard_again).stored.head_since, Some(t(5)));

    // The same head without a known time: taken now that one is known.
    let mut unknown = inputs(OK);
    let without = StoredDecision {
        head_since: None,
        ..first
    };
    unknown.existing = Some(recorded(&unknown, HEAD, without));
    unknown.pushed = None;
    assert_eq!(decided(&unknown).stored.head_since, Some(t(10)));
    assert!(decided(&unknown).stored.head_since_is_bound);

    // A bound kept on the same head stays a bound.
    let mut kept = inputs(OK);
    let bound = StoredDecision {
        head_since_is_bound: true,
        ..decided(&stale).stored
    };
    kept.existing = Some(recorded(&kept, HEAD, bound));
    kept.pushed = None;
    assert!(decided(&kept).stored.head_since_is_bound);
}

#[test]
fn a_refused_merge_waits_on_its_head_and_is_forgotten_on_a_new_one() {
    let mut stored = decided(&inputs(OK)).stored;
    stored.merge_refused = Some("the PR has conflicts".into());
    let mut same = inputs(OK);
    same.existing = Some(recorded(&same, HEAD, stored.clone()));
    let verdict = decided(&same);
    assert_eq!(
        verdict.stored.merge_refused.as_deref(),
        Some("the PR has conflicts")
    );
    assert_eq!(
        verdict.status,
        (
            StatusState::Pending,
            "not merged: the PR has conflicts".into()
        )
    );
    assert_eq!(verdict.next, Next::AfterRefusedMerge);

    let mut new_head = inputs(OK);
    new_head.existing = Some(recorded(&new_head, &"2".repeat(40), stored));
    let verdict = decided(&new_head);
    assert_eq!(verdict.stored.merge_refused, None);
    assert_eq!(verdict.next, Next::Approvals);
}

/// `requests/prod/r-1.yaml` with a grant file the role renders, as the head holds it.
fn with_grant_file(at_head: Option<&str>) -> Inputs {
    let mut inputs = inputs(OK);
    inputs.files.push(ChangedFile {
        path: "grants/prod/r-1.tf".into(),
        change: FileChange::Added,
        previous_path: None,
        kind: EntryKind::File,
        blob: None,
    });
    inputs.grant = Some(GrantFacts {
        unservable: None,
        staged: vec![Staged {
            rendered: RenderedFile {
                path: "grants/prod/r-1.tf".into(),
                content: "resource {}\n".into(),
            },
            at_head: at_head.map(str::to_owned),
        }],
    });
    inputs
}

#[test]
fn grant_files_as_rendered_are_in_scope() {
    let verdict = decided(&with_grant_file(Some("resource {}\n")));
    assert_eq!(verdict.stored.scope_problems, Vec::<String>::new());
    assert_eq!(verdict.state, RequestState::Pending);
}

#[test]
fn grant_files_not_as_rendered_reopen_a_persons_pr_from_a_bot_branch() {
    assert_eq!(decide(&with_grant_file(None)), Verdict::Reopen);
    assert_eq!(decide(&with_grant_file(Some("edited\n"))), Verdict::Reopen);
}

#[test]
fn a_bot_branch_rendered_with_an_older_policy_is_not_merged_as_it_is() {
    let mut inputs = with_grant_file(Some("older\n"));
    inputs.pr.author.id = BOT;
    let verdict = decided(&inputs);
    assert_eq!(verdict.stored.scope_problems, ["grants/prod/r-1.tf"]);
    assert_eq!(verdict.state, RequestState::Denied);
    assert_eq!(
        verdict.status,
        (
            StatusState::Failure,
            "denied: the PR changes files beyond its request".into()
        )
    );
}

#[test]
fn grant_files_of_a_denied_request_are_not_looked_at() {
    let mut inputs = with_grant_file(None);
    inputs.request = AccessRequest::from_yaml(&OK.replace("INC-1234\n", "nope\n")).unwrap();
    let verdict = decided(&inputs);
    assert_eq!(verdict.stored.scope_problems, ["grants/prod/r-1.tf"]);
    assert_eq!(verdict.state, RequestState::Denied);
}

#[test]
fn only_what_the_decision_looks_at_is_read() {
    let needs_of = |inputs: &Inputs| {
        needs(
            &inputs.policies,
            &inputs.request,
            &inputs.requester,
            &inputs.pr.labels,
            inputs.now,
            &inputs.path,
        )
    };
    assert_eq!(
        needs_of(&inputs(OK)),
        Needs {
            overdue_review: false,
            held: false,
            grant: true
        }
    );
    assert_eq!(
        needs_of(&inputs(&OK.replace("INC-1234\n", "nope\n"))),
        Needs {
            overdue_review: false,
            held: false,
            grant: false
        },
        "a denied request reads no grant files"
    );
    assert_eq!(
        needs_of(&by(inputs(OK), "bob", &["sev1"])),
        Needs {
            overdue_review: true,
            held: true,
            grant: true
        },
        "a fast path that blocks until reviewed looks up overdue reviews"
    );
    assert!(
        !needs_of(&by(inputs(OK), "bob", &[])).overdue_review,
        "no fast path, no lookup"
    );
}
