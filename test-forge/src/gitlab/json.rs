//! GitLab's REST v4 JSON shapes, rendered from the model: users, projects, branches, commits,
//! files, merge requests, notes, award emoji, approvals, commit statuses and group members.

use git2::Oid;
use serde_json::{Value, json};

use super::{api_ts, award_name, group_id};
use crate::git;
use crate::model::UserKind;
use crate::ops::protection;
use crate::state::{CommentRec, ForgeState, IssueRec, PrRec, ReactionRec, RepoRec, StatusRec};

fn opt_ts(t: Option<chrono::DateTime<chrono::Utc>>) -> Value {
    t.map(|t| Value::String(api_ts(t))).unwrap_or(Value::Null)
}

/// The avatar a user would have; the forge serves none.
pub(crate) fn avatar(st: &ForgeState, id: u64) -> String {
    format!(
        "{}/uploads/-/system/user/avatar/{id}/avatar.png",
        st.base_url
    )
}

/// `UserBasic`: what GitLab embeds as `author`, `user`, `merged_by`, ….
pub(crate) fn user(st: &ForgeState, login: &str) -> Value {
    let id = st.user_id(login);
    json!({
        "id": id,
        "username": login,
        "public_email": null,
        "name": login,
        "state": "active",
        "locked": false,
        "avatar_url": avatar(st, id),
        "web_url": format!("{}/{login}", st.base_url),
    })
}

/// The full user of `GET /user` and `GET /users`: adds `bot`, `created_at` and `email`.
pub(crate) fn user_full(st: &ForgeState, login: &str) -> Value {
    let mut v = user(st, login);
    let rec = st.users.get(login);
    if let Value::Object(m) = &mut v {
        m.insert(
            "bot".into(),
            json!(rec.is_some_and(|u| u.kind == UserKind::Bot)),
        );
        m.insert("created_at".into(), opt_ts(rec.map(|u| u.created_at)));
        m.insert("bio".into(), json!(""));
        m.insert("email".into(), json!(format!("{login}@test-forge.invalid")));
        m.insert("is_admin".into(), json!(false));
    }
    v
}

/// A project (`GET /projects/:id`).
pub(crate) fn project(st: &ForgeState, r: &RepoRec) -> Value {
    let b = &st.base_url;
    let full = r.full_name();
    json!({
        "id": r.id,
        "description": null,
        "name": r.name,
        "name_with_namespace": format!("{} / {}", r.owner, r.name),
        "path": r.name,
        "path_with_namespace": full,
        "created_at": api_ts(r.created_at),
        "default_branch": r.default_branch,
        "tag_list": [],
        "topics": [],
        "ssh_url_to_repo": format!("git@{}:{full}.git", super::hooks::ssh_host(b)),
        "http_url_to_repo": format!("{b}/{full}.git"),
        "web_url": format!("{b}/{full}"),
        "readme_url": null,
        "avatar_url": null,
        "forks_count": 0,
        "star_count": 0,
        "last_activity_at": api_ts(r.created_at),
        "namespace": {
            "id": group_id(&r.owner),
            "name": r.owner,
            "path": r.owner,
            "kind": if st.users.contains_key(&r.owner) { "user" } else { "group" },
            "full_path": r.owner,
            "parent_id": null,
            "web_url": format!("{b}/{}", r.owner),
        },
        "visibility": "private",
        "archived": false,
        "empty_repo": false,
        "merge_method": "merge",
        "only_allow_merge_if_pipeline_succeeds": false,
        "remove_source_branch_after_merge": false,
    })
}

/// A fork the forge knows only by name (the head of a merge request from a fork).
pub(crate) fn fork_project(st: &ForgeState, base: &RepoRec, fork: &str) -> Value {
    let (owner, name) = fork.split_once('/').unwrap_or((fork, fork));
    let b = &st.base_url;
    json!({
        "id": fork_id(fork),
        "name": name,
        "path": name,
        "path_with_namespace": fork,
        "default_branch": base.default_branch,
        "web_url": format!("{b}/{fork}"),
        "http_url_to_repo": format!("{b}/{fork}.git"),
        "namespace": {"id": group_id(owner), "name": owner, "path": owner, "kind": "user", "full_path": owner},
        "forked_from_project": {"id": base.id, "path_with_namespace": base.full_name()},
        "visibility": "private",
    })
}

/// The stable project id of a fork.
pub(crate) fn fork_id(fork: &str) -> u64 {
    group_id(&format!("fork:{fork}")) + 1_000_000
}

/// A commit (`POST /repository/commits`, `GET /repository/commits/:sha`, MR commits).
pub(crate) fn commit(st: &ForgeState, r: &RepoRec, d: &git::CommitDetail) -> Value {
    let title = d.message.lines().next().unwrap_or_default();
    json!({
        "id": d.sha,
        "short_id": &d.sha[..8.min(d.sha.len())],
        "created_at": api_ts(d.committer_time),
        "parent_ids": d.parents,
        "title": title,
        "message": d.message,
        "author_name": d.author_name,
        "author_email": d.author_email,
        "authored_date": api_ts(d.author_time),
        "committer_name": d.committer_name,
        "committer_email": d.committer_email,
        "committed_date": api_ts(d.committer_time),
        "trailers": {},
        "extended_trailers": {},
        "web_url": format!("{}/{}/-/commit/{}", st.base_url, r.full_name(), d.sha),
    })
}

/// A branch.
pub(crate) fn branch(st: &ForgeState, r: &RepoRec, name: &str, tip: Oid) -> Value {
    let commit = git::commit_detail(&r.git, tip)
        .map(|d| self::commit(st, r, &d))
        .unwrap_or(Value::Null);
    let protected = r.protections.contains_key(name);
    json!({
        "name": name,
        "commit": commit,
        "merged": false,
        "protected": protected,
        "developers_can_push": !protected,
        "developers_can_merge": !protected,
        "can_push": true,
        "default": name == r.default_branch,
        "web_url": format!("{}/{}/-/tree/{name}", st.base_url, r.full_name()),
    })
}

/// GitLab's state word of an issue or merge request.
pub(crate) fn state(i: &IssueRec) -> &'static str {
    match &i.pr {
        Some(pr) if pr.merged_at.is_some() => "merged",
        _ if i.open => "opened",
        _ => "closed",
    }
}

/// The title GitLab shows: a draft's title starts with `Draft: `, which is how GitLab itself
/// marks drafts (the model keeps the flag and the bare title apart).
pub(crate) fn title(i: &IssueRec) -> String {
    match &i.pr {
        Some(pr) if pr.draft => format!("Draft: {}", i.title),
        _ => i.title.clone(),
    }
}

/// (`detailed_merge_status`, `merge_status`, `has_conflicts`) of a merge request.
pub(crate) fn merge_status(
    st: &ForgeState,
    r: &RepoRec,
    i: &IssueRec,
    pr: &PrRec,
) -> (&'static str, &'static str, bool) {
    if pr.merged_at.is_some() {
        return ("not_open", "can_be_merged", false);
    }
    let base = git::branch_tip(&r.git, &pr.base_ref);
    let head = Oid::from_str(&pr.head_sha).ok();
    let clean = !pr.conflicting
        && match (base, head) {
            (Some(b), Some(h)) => git::merges_cleanly(&r.git, b, h).unwrap_or(false),
            _ => false,
        };
    let merge_status = if clean {
        "can_be_merged"
    } else {
        "cannot_be_merged"
    };
    let detailed = if !i.open {
        "not_open"
    } else if pr.draft {
        "draft_status"
    } else if !clean {
        "conflict"
    } else {
        match protection::unmet(st, r, pr, None) {
            _ if st.gl_pipeline_unlinked_merges > 0 => "ci_still_running",
            Some(why) if why.contains("approving review") => "not_approved",
            Some(_) => "ci_must_pass",
            None => "mergeable",
        }
    };
    (detailed, merge_status, !clean)
}

/// The project id of a merge request's source: its fork, or the project itself.
pub(crate) fn source_project_id(r: &RepoRec, pr: &PrRec) -> u64 {
    pr.head_repo.as_deref().map_or(r.id, fork_id)
}

/// A merge request (`GET /projects/:id/merge_requests/:iid`).
pub(crate) fn merge_request(st: &ForgeState, r: &RepoRec, i: &IssueRec, pr: &PrRec) -> Value {
    let b = &st.base_url;
    let full = r.full_name();
    let (detailed, merge_status, conflicts) = merge_status(st, r, i, pr);
    let head = Oid::from_str(&pr.head_sha).ok();
    let target_tip = git::branch_tip(&r.git, &pr.base_ref);
    let base_sha = match (crate::routes::pulls::pr_range(r, pr), target_tip) {
        (Ok((from, _)), _) => Some(from.to_string()),
        (Err(_), Some(t)) => Some(t.to_string()),
        _ => None,
    };
    let merged_by = pr.merged_by.as_deref().map(|u| user(st, u));
    let closed = !i.open && pr.merged_at.is_none();
    let upvotes = i.reactions.iter().filter(|x| x.content == "+1").count();
    let downvotes = i.reactions.iter().filter(|x| x.content == "-1").count();
    let notes = r
        .comments
        .values()
        .filter(|c| c.issue_number == i.number)
        .count();
    json!({
        "id": pr.id,
        "iid": i.gl_iid,
        "project_id": r.id,
        "title": title(i),
        "description": i.body,
        "state": state(i),
        "created_at": api_ts(i.created_at),
        "updated_at": api_ts(i.updated_at),
        "merged_by": merged_by.clone(),
        "merge_user": merged_by,
        "merged_at": opt_ts(pr.merged_at),
        "closed_by": null,
        "closed_at": if closed { opt_ts(i.closed_at) } else { Value::Null },
        "target_branch": pr.base_ref,
        "source_branch": pr.head_ref,
        "user_notes_count": notes,
        "upvotes": upvotes,
        "downvotes": downvotes,
        "author": user(st, &i.user),
        "assignees": [],
        "assignee": null,
        "reviewers": [],
        "source_project_id": source_project_id(r, pr),
        "target_project_id": r.id,
        "labels": i.labels,
        "draft": pr.draft,
        "work_in_progress": pr.draft,
        "milestone": null,
        "merge_when_pipeline_succeeds": false,
        "merge_status": merge_status,
        "detailed_merge_status": detailed,
        "sha": pr.head_sha,
        "merge_commit_sha": pr.merge_commit_sha,
        "squash_commit_sha": null,
        "discussion_locked": null,
        "should_remove_source_branch": null,
        "force_remove_source_branch": false,
        "prepared_at": api_ts(i.created_at),
        "reference": format!("!{}", i.gl_iid),
        "references": {
            "short": format!("!{}", i.gl_iid),
            "relative": format!("!{}", i.gl_iid),
            "full": format!("{full}!{}", i.gl_iid),
        },
        "web_url": format!("{b}/{full}/-/merge_requests/{}", i.gl_iid),
        "time_stats": {"time_estimate": 0, "total_time_spent": 0, "human_time_estimate": null, "human_total_time_spent": null},
        "squash": false,
        "squash_on_merge": false,
        "task_completion_status": {"count": 0, "completed_count": 0},
        "has_conflicts": conflicts,
        "blocking_discussions_resolved": true,
        "first_contribution": false,
        "diff_refs": {
            "base_sha": base_sha,
            "head_sha": head.map(|h| h.to_string()),
            "start_sha": target_tip.map(|t| t.to_string()),
        },
    })
}

/// An issue (`GET /projects/:id/issues/:iid`).
pub(crate) fn issue(st: &ForgeState, r: &RepoRec, i: &IssueRec) -> Value {
    let b = &st.base_url;
    json!({
        "id": i.id,
        "iid": i.gl_iid,
        "project_id": r.id,
        "title": i.title,
        "description": i.body,
        "state": state(i),
        "created_at": api_ts(i.created_at),
        "updated_at": api_ts(i.updated_at),
        "closed_at": if i.open { Value::Null } else { opt_ts(i.closed_at) },
        "closed_by": null,
        "labels": i.labels,
        "author": user(st, &i.user),
        "assignees": [],
        "assignee": null,
        "type": "ISSUE",
        "issue_type": "issue",
        "confidential": false,
        "discussion_locked": null,
        "user_notes_count": r.comments.values().filter(|c| c.issue_number == i.number).count(),
        "web_url": format!("{b}/{}/-/issues/{}", r.full_name(), i.gl_iid),
        "references": {"short": format!("#{}", i.gl_iid), "relative": format!("#{}", i.gl_iid), "full": format!("{}#{}", r.full_name(), i.gl_iid)},
    })
}

/// The global id GitLab gives the issue or merge request (`noteable_id`, `awardable_id`).
pub(crate) fn global_id(i: &IssueRec) -> u64 {
    i.pr.as_ref().map_or(i.id, |p| p.id)
}

/// A note on an issue or merge request.
pub(crate) fn note(st: &ForgeState, r: &RepoRec, i: &IssueRec, c: &CommentRec) -> Value {
    let of = super::noteable_of(i);
    json!({
        "id": c.id,
        "type": null,
        "body": c.body,
        "attachment": null,
        "author": user(st, &c.user),
        "created_at": api_ts(c.created_at),
        "updated_at": api_ts(c.updated_at),
        "system": false,
        "noteable_id": global_id(i),
        "noteable_type": of.type_name(),
        "project_id": r.id,
        "noteable_iid": i.gl_iid,
        "commit_id": null,
        "resolvable": false,
        "confidential": false,
        "internal": false,
        "imported": false,
        "imported_from": "none",
        "commands_changes": {},
    })
}

/// An award emoji; `awardable` is (`awardable_id`, `awardable_type`).
pub(crate) fn award(st: &ForgeState, x: &ReactionRec, awardable: (u64, &str)) -> Value {
    json!({
        "id": x.id,
        "name": award_name(&x.content),
        "user": user(st, &x.user),
        "created_at": api_ts(x.created_at),
        "updated_at": api_ts(x.created_at),
        "awardable_id": awardable.0,
        "awardable_type": awardable.1,
        "url": null,
    })
}

/// The GitLab state of a stored commit status.
pub(crate) fn status_state(s: &StatusRec) -> String {
    s.gl_state.clone().unwrap_or_else(|| {
        match s.state.as_str() {
            "error" | "failure" => "failed",
            other => other,
        }
        .to_owned()
    })
}

/// A commit status.
pub(crate) fn status(st: &ForgeState, s: &StatusRec, git_ref: Option<&str>) -> Value {
    let state = status_state(s);
    let finished = matches!(
        state.as_str(),
        "success" | "failed" | "canceled" | "skipped"
    );
    json!({
        "id": s.id,
        "sha": s.sha,
        "ref": git_ref,
        "status": state,
        "name": s.context,
        "target_url": s.target_url,
        "description": s.description,
        "created_at": api_ts(s.created_at),
        "started_at": if state == "pending" { Value::Null } else { json!(api_ts(s.created_at)) },
        "finished_at": if finished { json!(api_ts(s.created_at)) } else { Value::Null },
        "allow_failure": false,
        "coverage": null,
        "pipeline_id": null,
        "author": user(st, &s.creator),
    })
}

/// A group member (`GET /groups/:id/members/all/:user_id`): Developer access, expiring on the
/// date set for its membership of `group`, if any.
pub(crate) fn member(st: &ForgeState, group: &str, login: &str) -> Value {
    let mut v = user(st, login);
    let expires_at = st
        .membership_expiry
        .get(&(group.to_owned(), login.to_owned()))
        .map_or(Value::Null, |day| json!(day.format("%Y-%m-%d").to_string()));
    if let Value::Object(m) = &mut v {
        m.insert("access_level".into(), json!(30));
        m.insert("created_at".into(), Value::Null);
        m.insert("expires_at".into(), expires_at);
        m.insert("membership_state".into(), json!("active"));
    }
    v
}

/// One file of an MR's diff (`GET …/merge_requests/:iid/diffs`).
pub(crate) fn diff(f: &git::FileDiff) -> Value {
    let new_file = f.status == "added";
    let deleted = f.status == "removed";
    let old_path = f
        .previous_filename
        .clone()
        .unwrap_or_else(|| f.filename.clone());
    json!({
        "old_path": old_path,
        "new_path": f.filename,
        "a_mode": f.old_mode,
        "b_mode": f.new_mode,
        "new_file": new_file,
        "renamed_file": f.status == "renamed",
        "deleted_file": deleted,
        "generated_file": false,
        "diff": f.patch.clone().unwrap_or_default(),
    })
}

/// An MR's approval state (`GET …/approvals`): `approvers` are (login, approved at).
pub(crate) fn approvals(
    st: &ForgeState,
    r: &RepoRec,
    i: &IssueRec,
    pr: &PrRec,
    approvers: &[(String, chrono::DateTime<chrono::Utc>)],
    required: usize,
    caller: &str,
) -> Value {
    let (_, merge_status, _) = merge_status(st, r, i, pr);
    let approved_by: Vec<Value> = approvers
        .iter()
        .map(|(u, at)| match st.gl_approvals_untimed {
            // GitLab before `approved_at` was added to the approvals API.
            true => json!({"user": user(st, u)}),
            false => json!({"user": user(st, u), "approved_at": api_ts(*at)}),
        })
        .collect();
    json!({
        "id": pr.id,
        "iid": i.gl_iid,
        "project_id": r.id,
        "title": title(i),
        "description": i.body,
        "state": state(i),
        "created_at": api_ts(i.created_at),
        "updated_at": api_ts(i.updated_at),
        "merge_status": merge_status,
        "approved": approvers.len() >= required.max(1),
        "approvals_required": required,
        "approvals_left": required.saturating_sub(approvers.len()),
        "require_password_to_approve": false,
        "approved_by": approved_by,
        "suggested_approvers": [],
        "approvers": [],
        "approver_groups": [],
        "user_has_approved": approvers.iter().any(|(u, _)| u == caller),
        "user_can_approve": i.user != caller && !approvers.iter().any(|(u, _)| u == caller),
        "approval_rules_left": [],
        "has_approval_rules": false,
        "merge_request_approvers_available": false,
        "multiple_approval_rules_available": false,
        "invalid_approvers_rules": [],
    })
}
