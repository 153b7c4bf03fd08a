//! GitLab webhooks: every change the model announces to GitHub hooks is also rendered, when a
//! GitLab hook exists, as the GitLab event a GitLab instance would send for it, with the key
//! paths of GitLab's documented examples (`shared/fixtures/gitlab/`).
//!
//! | model change | GitLab event |
//! |---|---|
//! | PR opened, reopened, closed, merged | `Merge Request Hook` `open`, `reopen`, `close`, `merge` |
//! | push to the source branch | `Merge Request Hook` `update` with `object_attributes.oldrev` |
//! | title/description, draft flag, labels | `Merge Request Hook` `update` with `changes` |
//! | an approval given or withdrawn | `Merge Request Hook` `approved`/`approval`, `unapproved`/`unapproval` |
//! | a comment created or edited | `Note Hook` `create`/`update` |
//! | a reaction added or removed | `Emoji Hook` `award`/`revoke` |
//! | a push | `Push Hook` |
//!
//! GitLab's `approved` means the merge request became approved (enough approvals; at least one
//! when none are required) and `unapproved` that it stopped being so; `approval` and
//! `unapproval` are the approvals that change nothing of the kind, as GitLab sends them since
//! 18.3 (gitlab-org/gitlab!200263).

use std::collections::BTreeMap;

use git2::Oid;
use serde_json::{Map, Value, json};

use super::{hook_ts, json::global_id, noteable_of};
use crate::git;
use crate::model::ReviewState;
use crate::ops::ReactionTarget;
use crate::state::{CommentRec, ForgeState, IssueRec, PrRec, ReactionRec, RepoRec};

const ZERO_SHA: &str = "0000000000000000000000000000000000000000";

/// The users whose latest review (comments aside) approves, with when they approved, in the
/// order they approved: GitLab's `approved_by`.
pub(crate) fn approvers(pr: &PrRec) -> Vec<(String, chrono::DateTime<chrono::Utc>)> {
    let mut latest: BTreeMap<&str, (ReviewState, chrono::DateTime<chrono::Utc>)> = BTreeMap::new();
    for review in &pr.reviews {
        if review.state != ReviewState::Commented {
            latest.insert(&review.user, (review.state, review.submitted_at));
        }
    }
    let mut out: Vec<(String, chrono::DateTime<chrono::Utc>)> = latest
        .into_iter()
        .filter(|(_, (state, _))| *state == ReviewState::Approved)
        .map(|(user, (_, at))| (user.to_owned(), at))
        .collect();
    out.sort_by_key(|(_, at)| *at);
    out
}

/// How many approvals the target branch asks for (its protection's approving reviews).
pub(crate) fn approvals_required(r: &RepoRec, pr: &PrRec) -> usize {
    r.protections
        .get(&pr.base_ref)
        .map_or(0, |p| p.required_approving_reviews as usize)
}

/// The number of current approvers of PR `number` (0 when it is no PR).
pub(crate) fn approver_count(st: &ForgeState, full: &str, number: u64) -> usize {
    st.repo(full)
        .ok()
        .and_then(|r| r.pull(number).ok())
        .map_or(0, |(_, pr)| approvers(pr).len())
}

fn wanted(st: &ForgeState) -> bool {
    st.hub.has_gitlab_hooks()
}

/// `user` of a payload.
fn hook_user(st: &ForgeState, login: &str) -> Value {
    let id = st.user_id(login);
    json!({
        "id": id,
        "name": login,
        "username": login,
        "avatar_url": super::json::avatar(st, id),
        "email": "[REDACTED]",
    })
}

/// `project` (also `source`/`target` of a merge request).
fn hook_project(st: &ForgeState, r: &RepoRec) -> Value {
    project_named(st, &r.full_name(), &r.default_branch, r.id)
}

fn project_named(st: &ForgeState, full: &str, default_branch: &str, id: u64) -> Value {
    let b = &st.base_url;
    let host = ssh_host(b);
    let (owner, name) = full.split_once('/').unwrap_or((full, full));
    json!({
        "id": id,
        "name": name,
        "description": "",
        "web_url": format!("{b}/{full}"),
        "avatar_url": null,
        "git_ssh_url": format!("git@{host}:{full}.git"),
        "git_http_url": format!("{b}/{full}.git"),
        "namespace": owner,
        "visibility_level": 0,
        "path_with_namespace": full,
        "default_branch": default_branch,
        "ci_config_path": null,
        "homepage": format!("{b}/{full}"),
        "url": format!("git@{host}:{full}.git"),
        "ssh_url": format!("git@{host}:{full}.git"),
        "http_url": format!("{b}/{full}.git"),
    })
}

/// The host of `git@host:path.git` URLs: the forge's, without its HTTP port.
pub(crate) fn ssh_host(base_url: &str) -> &str {
    let host = base_url.split("://").nth(1).unwrap_or(base_url);
    host.split(':').next().unwrap_or(host)
}

fn hook_repository(st: &ForgeState, r: &RepoRec) -> Value {
    let b = &st.base_url;
    let full = r.full_name();
    let host = ssh_host(b);
    json!({
        "name": r.name,
        "url": format!("git@{host}:{full}.git"),
        "description": "",
        "homepage": format!("{b}/{full}"),
        "git_http_url": format!("{b}/{full}.git"),
        "git_ssh_url": format!("git@{host}:{full}.git"),
        "visibility_level": 0,
    })
}

/// Label objects, as payloads carry them (REST has plain names).
fn hook_labels(r: &RepoRec, names: &[String]) -> Value {
    Value::Array(
        names
            .iter()
            .map(|name| {
                let (id, color, description) = r
                    .labels
                    .get(name)
                    .map_or((0, "#428bca".to_owned(), None), |l| {
                        (l.id, format!("#{}", l.color), l.description.clone())
                    });
                json!({
                    "id": id,
                    "title": name,
                    "color": color,
                    "project_id": r.id,
                    "created_at": hook_ts(r.created_at),
                    "updated_at": hook_ts(r.created_at),
                    "template": false,
                    "description": description,
                    "type": "ProjectLabel",
                    "group_id": null,
                })
            })
            .collect(),
    )
}

/// `last_commit` of a merge request, and each commit of a push.
fn hook_commit(st: &ForgeState, r: &RepoRec, sha: &str) -> Value {
    let Some(d) = Oid::from_str(sha)
        .ok()
        .and_then(|o| git::commit_detail(&r.git, o))
    else {
        return Value::Null;
    };
    json!({
        "id": d.sha,
        "message": d.message,
        "title": d.message.lines().next().unwrap_or_default(),
        "timestamp": d.author_time.to_rfc3339(),
        "url": format!("{}/{}/-/commit/{}", st.base_url, r.full_name(), d.sha),
        "author": {"name": d.author_name, "email": d.author_email},
    })
}

/// A merge request as payloads carry it (`object_attributes`, or `merge_request` of a note or
/// an award), without `action`.
fn hook_mr(st: &ForgeState, r: &RepoRec, i: &IssueRec, pr: &PrRec) -> Map<String, Value> {
    let (detailed, merge_status, _) = super::json::merge_status(st, r, i, pr);
    let state = super::json::state(i);
    let state_id = match state {
        "opened" => 1,
        "closed" => 2,
        "merged" => 3,
        _ => 4,
    };
    let source = match &pr.head_repo {
        Some(fork) => project_named(st, fork, &r.default_branch, super::json::fork_id(fork)),
        None => hook_project(st, r),
    };
    let author_id = st.user_id(&i.user);
    let v = json!({
        "id": pr.id,
        "iid": i.gl_iid,
        "target_branch": pr.base_ref,
        "source_branch": pr.head_ref,
        "source_project_id": super::json::source_project_id(r, pr),
        "target_project_id": r.id,
        "author_id": author_id,
        "assignee_ids": [],
        "assignee_id": null,
        "assignee": null,
        "reviewer_ids": [],
        "title": super::json::title(i),
        "created_at": hook_ts(i.created_at),
        "updated_at": hook_ts(i.updated_at),
        "last_edited_at": null,
        "last_edited_by_id": null,
        "milestone_id": null,
        "state_id": state_id,
        "state": state,
        "blocking_discussions_resolved": true,
        "work_in_progress": pr.draft,
        "draft": pr.draft,
        "first_contribution": false,
        "merge_status": merge_status,
        "detailed_merge_status": detailed,
        "merge_commit_sha": pr.merge_commit_sha,
        "description": i.body,
        "position": 0,
        "prepared_at": hook_ts(i.created_at),
        "total_time_spent": 0,
        "time_change": 0,
        "human_total_time_spent": null,
        "human_time_change": null,
        "human_time_estimate": null,
        "url": format!("{}/{}/-/merge_requests/{}", st.base_url, r.full_name(), i.gl_iid),
        "source": source,
        "target": hook_project(st, r),
        "last_commit": hook_commit(st, r, &pr.head_sha),
        "labels": hook_labels(r, &i.labels),
    });
    match v {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

/// An issue as note and award payloads carry it.
fn hook_issue(st: &ForgeState, r: &RepoRec, i: &IssueRec) -> Value {
    let state = super::json::state(i);
    json!({
        "id": i.id,
        "iid": i.gl_iid,
        "title": i.title,
        "description": i.body,
        "state": state,
        "state_id": if i.open { 1 } else { 2 },
        "author_id": st.user_id(&i.user),
        "project_id": r.id,
        "assignee_ids": [],
        "assignee_id": null,
        "created_at": hook_ts(i.created_at),
        "updated_at": hook_ts(i.updated_at),
        "closed_at": if i.open { Value::Null } else { i.closed_at.map(hook_ts).into() },
        "position": 0,
        "branch_name": null,
        "milestone_id": null,
        "labels": hook_labels(r, &i.labels),
        "confidential": false,
        "discussion_locked": null,
        "due_date": null,
        "last_edited_at": null,
        "last_edited_by_id": null,
        "moved_to_id": null,
        "duplicated_to_id": null,
        "relative_position": 0,
        "time_estimate": 0,
        "updated_by_id": null,
        "weight": null,
        "health_status": null,
        "url": format!("{}/{}/-/issues/{}", st.base_url, r.full_name(), i.gl_iid),
        "total_time_spent": 0,
        "time_change": 0,
        "human_total_time_spent": null,
        "human_time_change": null,
        "human_time_estimate": null,
        "severity": "unknown",
    })
}

/// The web URL of a note.
fn note_url(st: &ForgeState, r: &RepoRec, i: &IssueRec, note_id: u64) -> String {
    let kind = if i.pr.is_some() {
        "merge_requests"
    } else {
        "issues"
    };
    format!(
        "{}/{}/-/{kind}/{}#note_{note_id}",
        st.base_url,
        r.full_name(),
        i.gl_iid
    )
}

/// A note as payloads carry it (`object_attributes` of a Note Hook, `note` of an Emoji Hook).
fn hook_note(st: &ForgeState, r: &RepoRec, i: &IssueRec, c: &CommentRec) -> Map<String, Value> {
    let v = json!({
        "id": c.id,
        "note": c.body,
        "description": c.body,
        "noteable_type": noteable_of(i).type_name(),
        "noteable_id": global_id(i),
        "author_id": st.user_id(&c.user),
        "created_at": hook_ts(c.created_at),
        "updated_at": hook_ts(c.updated_at),
        "project_id": r.id,
        "attachment": null,
        "line_code": null,
        "commit_id": "",
        "discussion_id": format!("{:040x}", c.id),
        "change_position": null,
        "original_position": null,
        "position": null,
        "resolved_at": null,
        "resolved_by_id": null,
        "resolved_by_push": null,
        "system": false,
        "st_diff": null,
        "type": null,
        "updated_by_id": null,
        "url": note_url(st, r, i, c.id),
    });
    match v {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

/// Adds `merge_request` or `issue` for the thread `i`.
fn add_thread(p: &mut Map<String, Value>, st: &ForgeState, r: &RepoRec, i: &IssueRec) {
    match &i.pr {
        Some(pr) => {
            p.insert("merge_request".into(), Value::Object(hook_mr(st, r, i, pr)));
        }
        None => {
            p.insert("issue".into(), hook_issue(st, r, i));
        }
    }
}

/// Translates a GitHub `issues` action into GitLab's Issue Hook: only an issue's opening is
/// modelled (its `user` is the opener).
pub(crate) fn on_issue(st: &ForgeState, full: &str, number: u64, gh_action: &str, sender: &str) {
    if !wanted(st) || gh_action != "opened" {
        return;
    }
    let Ok(r) = st.repo(full) else {
        return;
    };
    let Ok(i) = r.issue(number) else {
        return;
    };
    let mut attrs = match hook_issue(st, r, i) {
        Value::Object(attrs) => attrs,
        _ => Map::new(),
    };
    attrs.insert("action".into(), json!("open"));
    let payload = json!({
        "object_kind": "issue",
        "event_type": "issue",
        "user": hook_user(st, sender),
        "project": hook_project(st, r),
        "repository": hook_repository(st, r),
        "object_attributes": attrs,
        "labels": hook_labels(r, &i.labels),
        "changes": {},
        "assignees": [],
    });
    st.hub.enqueue_gitlab("Issue Hook", &payload);
}

/// Translates a GitHub `pull_request` action into GitLab's Merge Request Hook.
pub(crate) fn on_pull(
    st: &ForgeState,
    full: &str,
    number: u64,
    gh_action: &str,
    sender: &str,
    extra: &[(&str, Value)],
) {
    if !wanted(st) {
        return;
    }
    let Ok(r) = st.repo(full) else {
        return;
    };
    let Ok((i, pr)) = r.pull(number) else {
        return;
    };
    let get = |k: &str| extra.iter().find(|(key, _)| *key == k).map(|(_, v)| v);
    let mut changes = Map::new();
    let mut oldrev = None;
    let action = match gh_action {
        "opened" => "open",
        "reopened" => "reopen",
        "closed" if pr.merged_at.is_some() => "merge",
        "closed" => "close",
        "synchronize" => {
            oldrev = get("before").cloned();
            "update"
        }
        "edited" => {
            if let Some(Value::Object(ch)) = get("changes") {
                let pairs = [
                    ("title", "title", super::json::title(i)),
                    ("body", "description", i.body.clone()),
                ];
                for (gh, gl, current) in pairs {
                    if let Some(from) = ch.get(gh).and_then(|c| c.get("from")) {
                        changes.insert(gl.into(), json!({"previous": from, "current": current}));
                    }
                }
            }
            "update"
        }
        "converted_to_draft" | "ready_for_review" => {
            let now = pr.draft;
            let bare = i.title.clone();
            let drafted = format!("Draft: {bare}");
            let (prev_title, cur_title) = if now {
                (bare, drafted)
            } else {
                (drafted, bare)
            };
            changes.insert("draft".into(), json!({"previous": !now, "current": now}));
            changes.insert(
                "title".into(),
                json!({"previous": prev_title, "current": cur_title}),
            );
            "update"
        }
        "labeled" | "unlabeled" => {
            let name = get("label")
                .and_then(|l| l.get("name"))
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned();
            let current = i.labels.clone();
            let previous: Vec<String> = if gh_action == "labeled" {
                current.iter().filter(|l| **l != name).cloned().collect()
            } else {
                let mut p = current.clone();
                p.push(name);
                p
            };
            changes.insert(
                "labels".into(),
                json!({"previous": hook_labels(r, &previous), "current": hook_labels(r, &current)}),
            );
            "update"
        }
        _ => return,
    };
    emit_mr(st, r, i, pr, action, sender, changes, oldrev);
}

#[allow(clippy::too_many_arguments)]
fn emit_mr(
    st: &ForgeState,
    r: &RepoRec,
    i: &IssueRec,
    pr: &PrRec,
    action: &str,
    sender: &str,
    changes: Map<String, Value>,
    oldrev: Option<Value>,
) {
    let mut attrs = hook_mr(st, r, i, pr);
    attrs.insert("action".into(), json!(action));
    if let Some(old) = oldrev {
        attrs.insert("oldrev".into(), old);
    }
    if matches!(
        action,
        "approved" | "approval" | "unapproved" | "unapproval"
    ) {
        // An approval touches the merge request: its time is the approval's.
        attrs.insert(
            "updated_at".into(),
            json!(hook_ts(st.now().max(i.updated_at))),
        );
    }
    let payload = json!({
        "object_kind": "merge_request",
        "event_type": "merge_request",
        "user": hook_user(st, sender),
        "project": hook_project(st, r),
        "repository": hook_repository(st, r),
        "object_attributes": attrs,
        "labels": hook_labels(r, &i.labels),
        "changes": changes,
        "assignees": [],
        "reviewers": [],
    });
    st.hub.enqueue_gitlab("Merge Request Hook", &payload);
}

/// Sends `approved`/`approval` or `unapproved`/`unapproval` when the approvers of PR `number`
/// changed from `before` in number.
pub(crate) fn on_approvals(
    st: &mut ForgeState,
    full: &str,
    number: u64,
    actor: &str,
    before: usize,
) {
    if !wanted(st) {
        return;
    }
    let Ok(r) = st.repo(full) else {
        return;
    };
    let Ok((_, pr)) = r.pull(number) else {
        return;
    };
    let after = approvers(pr).len();
    let needed = approvals_required(r, pr).max(1);
    let (was, is) = (before >= needed, after >= needed);
    let action = match after.cmp(&before) {
        std::cmp::Ordering::Greater if !was && is => "approved",
        std::cmp::Ordering::Greater => "approval",
        std::cmp::Ordering::Less if was && !is => "unapproved",
        std::cmp::Ordering::Less => "unapproval",
        std::cmp::Ordering::Equal => return,
    };
    let hook = (full.to_owned(), number, action.to_owned(), actor.to_owned());
    match st.gl_approval_hooks_waiting.as_mut() {
        Some(waiting) => waiting.push(hook),
        None => send_approval_hook(st, hook),
    }
}

/// Builds and sends one approval hook from its merge request as it is now.
fn send_approval_hook(
    st: &ForgeState,
    (full, number, action, actor): (String, u64, String, String),
) {
    let Ok(r) = st.repo(&full) else {
        return;
    };
    let Ok((i, pr)) = r.pull(number) else {
        return;
    };
    emit_mr(st, r, i, pr, &action, &actor, Map::new(), None);
}

/// GitLab's `ExecuteApprovalHooksWorker`: sends the approval hooks that wait for it, each built
/// from its merge request as it is now (its head, its time), as GitLab's Sidekiq worker loads
/// the merge request when it runs, not when the approval was given. Returns how many.
pub(crate) fn run_approval_hook_worker(st: &mut ForgeState) -> usize {
    let waiting = st
        .gl_approval_hooks_waiting
        .as_mut()
        .map(std::mem::take)
        .unwrap_or_default();
    let sent = waiting.len();
    for hook in waiting {
        send_approval_hook(st, hook);
    }
    sent
}

/// Translates `issue_comment` created/edited into a Note Hook (GitLab sends none on delete).
pub(crate) fn on_comment(
    st: &ForgeState,
    full: &str,
    c: &CommentRec,
    gh_action: &str,
    sender: &str,
) {
    let action = match gh_action {
        "created" => "create",
        "edited" => "update",
        _ => return,
    };
    if !wanted(st) {
        return;
    }
    let Ok(r) = st.repo(full) else {
        return;
    };
    let Ok(i) = r.issue(c.issue_number) else {
        return;
    };
    let mut attrs = hook_note(st, r, i, c);
    attrs.insert("action".into(), json!(action));
    let mut p = Map::new();
    p.insert("object_kind".into(), json!("note"));
    p.insert("event_type".into(), json!("note"));
    p.insert("user".into(), hook_user(st, sender));
    p.insert("project_id".into(), json!(r.id));
    p.insert("project".into(), hook_project(st, r));
    p.insert("repository".into(), hook_repository(st, r));
    p.insert("object_attributes".into(), Value::Object(attrs));
    add_thread(&mut p, st, r, i);
    st.hub.enqueue_gitlab("Note Hook", &Value::Object(p));
}

/// An Emoji Hook for a reaction added (`award`) or removed (`revoke`) by its user.
pub(crate) fn on_reaction(
    st: &ForgeState,
    full: &str,
    target: ReactionTarget,
    x: &ReactionRec,
    awarded: bool,
) {
    if !wanted(st) {
        return;
    }
    let Ok(r) = st.repo(full) else {
        return;
    };
    let (thread, note) = match target {
        ReactionTarget::Issue(n) => (r.issue(n).ok(), None),
        ReactionTarget::Comment(id) => {
            let c = r.comments.get(&id);
            (c.and_then(|c| r.issue(c.issue_number).ok()), c)
        }
    };
    let Some(i) = thread else {
        return;
    };
    let (awardable_id, awardable_type, url) = match note {
        Some(c) => (c.id, "Note", note_url(st, r, i, c.id)),
        None => {
            let of = noteable_of(i);
            let kind = if i.pr.is_some() {
                "merge_requests"
            } else {
                "issues"
            };
            (
                global_id(i),
                of.type_name(),
                format!("{}/{}/-/{kind}/{}", st.base_url, r.full_name(), i.gl_iid),
            )
        }
    };
    let action = if awarded { "award" } else { "revoke" };
    let mut p = Map::new();
    p.insert("object_kind".into(), json!("emoji"));
    p.insert("event_type".into(), json!(action));
    p.insert("user".into(), hook_user(st, &x.user));
    p.insert("project_id".into(), json!(r.id));
    p.insert("project".into(), hook_project(st, r));
    p.insert(
        "object_attributes".into(),
        json!({
            "user_id": st.user_id(&x.user),
            "created_at": hook_ts(x.created_at),
            "id": x.id,
            "name": super::award_name(&x.content),
            "awardable_type": awardable_type,
            "awardable_id": awardable_id,
            "updated_at": hook_ts(x.created_at),
            "action": action,
            "awarded_on_url": url,
        }),
    );
    if let Some(c) = note {
        p.insert("note".into(), Value::Object(hook_note(st, r, i, c)));
    }
    add_thread(&mut p, st, r, i);
    st.hub.enqueue_gitlab("Emoji Hook", &Value::Object(p));
}

/// A Push Hook for `branch` moving from `before` to `after` (`None`: created / deleted).
pub(crate) fn on_push(
    st: &ForgeState,
    full: &str,
    branch: &str,
    before: Option<Oid>,
    after: Option<Oid>,
    actor: &str,
) {
    if !wanted(st) {
        return;
    }
    let Ok(r) = st.repo(full) else {
        return;
    };
    let list = match after {
        None => Vec::new(),
        Some(a) => {
            let from =
                before.or_else(|| git::branch_tip(&r.git, &r.default_branch).filter(|d| *d != a));
            match from {
                Some(f) => git::commits_between(&r.git, f, a).unwrap_or_default(),
                None => vec![a],
            }
        }
    };
    let total = list.len();
    // GitLab lists at most 20 commits, oldest first, and counts them all.
    let commits: Vec<Value> = list
        .iter()
        .rev()
        .take(20)
        .rev()
        .map(|oid| push_commit(st, r, *oid))
        .collect();
    let sha = |o: Option<Oid>| o.map_or_else(|| ZERO_SHA.to_owned(), |o| o.to_string());
    let id = st.user_id(actor);
    let payload = json!({
        "object_kind": "push",
        "event_name": "push",
        "before": sha(before),
        "after": sha(after),
        "ref": format!("refs/heads/{branch}"),
        "ref_protected": r.protections.contains_key(branch),
        "checkout_sha": after.map(|a| a.to_string()),
        "message": null,
        "user_id": id,
        "user_name": actor,
        "user_username": actor,
        "user_email": "[REDACTED]",
        "user_avatar": super::json::avatar(st, id),
        "project_id": r.id,
        "project": hook_project(st, r),
        "repository": hook_repository(st, r),
        "commits": commits,
        "total_commits_count": total,
    });
    st.hub.enqueue_gitlab("Push Hook", &payload);
}

/// One commit of a Push Hook, with the files it added, modified and removed.
fn push_commit(st: &ForgeState, r: &RepoRec, oid: Oid) -> Value {
    let mut v = hook_commit(st, r, &oid.to_string());
    let parent = r
        .git
        .find_commit(oid)
        .ok()
        .and_then(|c| c.parent_id(0).ok());
    let files = match parent {
        Some(p) => git::diff(&r.git, p, oid).unwrap_or_default(),
        None => Vec::new(),
    };
    let (mut added, mut modified, mut removed) = (vec![], vec![], vec![]);
    for f in files {
        match f.status {
            "added" => added.push(f.filename),
            "removed" => removed.push(f.filename),
            "renamed" => {
                removed.extend(f.previous_filename);
                added.push(f.filename);
            }
            _ => modified.push(f.filename),
        }
    }
    if let Value::Object(m) = &mut v {
        m.insert("added".into(), json!(added));
        m.insert("modified".into(), json!(modified));
        m.insert("removed".into(), json!(removed));
    }
    v
}
