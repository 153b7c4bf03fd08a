//! Merge request routes: list, open, read, edit, diffs, commits, merge and approvals.

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use git2::Oid;
use serde_json::Value;

use super::{GlPath, project, project_name};
use crate::git;
use crate::gitlab::http::{GlError, GlParams, GlQuery, GlResult, GlUser, paginate};
use crate::gitlab::{Noteable, by_iid, hooks, json, number_of};
use crate::ops::{IssueEdit, MergeRequest, NewPull, protection};
use crate::routes::App;
use crate::state::ForgeState;

pub(super) fn routes() -> axum::Router<App> {
    axum::Router::new()
        .route(
            "/api/v4/projects/{id}/merge_requests",
            get(list).post(create),
        )
        .route(
            "/api/v4/projects/{id}/merge_requests/{iid}",
            get(get_one).put(edit),
        )
        .route(
            "/api/v4/projects/{id}/merge_requests/{iid}/diffs",
            get(diffs),
        )
        .route(
            "/api/v4/projects/{id}/merge_requests/{iid}/commits",
            get(commits),
        )
        .route(
            "/api/v4/projects/{id}/merge_requests/{iid}/versions",
            get(versions),
        )
        .route(
            "/api/v4/projects/{id}/merge_requests/{iid}/merge",
            put(merge),
        )
        .route(
            "/api/v4/projects/{id}/merge_requests/{iid}/approve",
            post(approve),
        )
        .route(
            "/api/v4/projects/{id}/merge_requests/{iid}/unapprove",
            post(unapprove),
        )
        .route(
            "/api/v4/projects/{id}/merge_requests/{iid}/approvals",
            get(approvals),
        )
}

/// Whether a title marks a draft, and the title without the marker: GitLab's `Draft:`,
/// `[Draft]` and `(Draft)` prefixes, in any case.
pub(crate) fn split_draft(title: &str) -> (bool, &str) {
    let t = title.trim_start();
    for marker in ["draft:", "[draft]", "(draft)"] {
        if t.len() >= marker.len() && t[..marker.len()].eq_ignore_ascii_case(marker) {
            return (true, t[marker.len()..].trim_start());
        }
    }
    (false, title)
}

/// Merge request `iid` of project `id`: its project, its issue record and its pull half.
fn merge_request_of<'a>(
    st: &'a ForgeState,
    id: &str,
    iid: u64,
) -> GlResult<(
    &'a crate::state::RepoRec,
    &'a crate::state::IssueRec,
    &'a crate::state::PrRec,
)> {
    let r = project(st, id)?;
    let i = by_iid(r, Noteable::MergeRequest(iid))?;
    let pr =
        i.pr.as_ref()
            .ok_or_else(|| GlError::not_found("Merge Request"))?;
    Ok((r, i, pr))
}

/// The merge request JSON of iid `iid` in `full`.
fn mr_json(st: &ForgeState, full: &str, iid: u64) -> GlResult<Value> {
    let r = st.repo(full)?;
    let i = by_iid(r, Noteable::MergeRequest(iid))?;
    let pr =
        i.pr.as_ref()
            .ok_or_else(|| GlError::not_found("Merge Request"))?;
    Ok(json::merge_request(st, r, i, pr))
}

async fn list(
    State(app): State<App>,
    _u: GlUser,
    GlPath(id): GlPath<String>,
    q: GlQuery,
    uri: Uri,
) -> GlResult<Response> {
    let st = app.lock();
    let r = project(&st, &id)?;
    let state = q.get("state").unwrap_or("all");
    let labels: Vec<&str> = q
        .get("labels")
        .map(|l| l.split(',').collect())
        .unwrap_or_default();
    let items = r
        .issues
        .values()
        .rev()
        .filter_map(|i| Some((i, i.pr.as_ref()?)))
        .filter(|(i, _)| state == "all" || json::state(i) == state)
        .filter(|(_, pr)| q.get("source_branch").is_none_or(|b| b == pr.head_ref))
        .filter(|(_, pr)| q.get("target_branch").is_none_or(|b| b == pr.base_ref))
        .filter(|(i, _)| q.get("author_username").is_none_or(|u| u == i.user))
        .filter(|(i, _)| labels.iter().all(|l| i.labels.iter().any(|x| x == l)))
        .map(|(i, pr)| json::merge_request(&st, r, i, pr))
        .collect();
    let resp = paginate(items, &q, &uri, &st.base_url);
    Ok(crate::routes::forge_dated(resp, st.now()))
}

async fn create(
    State(app): State<App>,
    GlUser(login): GlUser,
    GlPath(id): GlPath<String>,
    p: GlParams,
) -> GlResult<Response> {
    let source = p.required("source_branch")?;
    let target = p.required("target_branch")?;
    let title = p.required("title")?;
    let description = p.str("description").unwrap_or_default();
    let (draft, bare_title) = split_draft(&title);
    let mut st = app.lock();
    let full = project_name(&st, &id)?;
    {
        let r = st.repo(&full)?;
        if source == target {
            return Err(GlError::bad_request(serde_json::json!([
                "You can't use same project/branch for source and target"
            ])));
        }
        if let Some(other) = r.issues.values().find(|i| {
            i.open
                && i.pr.as_ref().is_some_and(|pr| {
                    pr.head_is_local() && pr.head_ref == source && pr.base_ref == target
                })
        }) {
            return Err(GlError::message(
                StatusCode::CONFLICT,
                serde_json::json!([format!(
                    "Another open merge request already exists for this source branch: !{}",
                    other.gl_iid
                )]),
            ));
        }
        for branch in [&source, &target] {
            if git::branch_tip(&r.git, branch).is_none() {
                return Err(GlError::bad_request(serde_json::json!([format!(
                    "Branch {branch} does not exist"
                )])));
            }
        }
    }
    let number = st.open_pull(
        &full,
        &login,
        NewPull {
            head: &source,
            base: Some(&target),
            title: bare_title,
            body: &description,
            draft,
        },
    )?;
    if let Some(labels) = p.list("labels").filter(|l| !l.is_empty()) {
        st.add_labels(&full, number, &login, &labels)?;
    }
    let iid = st.repo(&full)?.issue(number)?.gl_iid;
    Ok((StatusCode::CREATED, Json(mr_json(&st, &full, iid)?)).into_response())
}

async fn get_one(
    State(app): State<App>,
    _u: GlUser,
    GlPath((id, iid)): GlPath<(String, u64)>,
) -> GlResult<Json<Value>> {
    let st = app.lock();
    let full = project_name(&st, &id)?;
    Ok(Json(mr_json(&st, &full, iid)?))
}

/// `PUT /merge_requests/:iid`: title (a `Draft:` prefix toggles the draft flag), description,
/// target branch, labels (`labels` replaces, `add_labels`/`remove_labels` adjust) and
/// `state_event` (`close`, `reopen`), in that order.
async fn edit(
    State(app): State<App>,
    GlUser(login): GlUser,
    GlPath((id, iid)): GlPath<(String, u64)>,
    p: GlParams,
) -> GlResult<Json<Value>> {
    let mut st = app.lock();
    let full = project_name(&st, &id)?;
    let number = number_of(st.repo(&full)?, Noteable::MergeRequest(iid))?;
    let title = p.str("title");
    let description = p.str("description");
    if title.is_some() || description.is_some() {
        let split = title.as_deref().map(split_draft);
        st.edit_issue(
            &full,
            number,
            &login,
            IssueEdit {
                title: split.map(|(_, t)| t),
                body: description.as_deref(),
                state: None,
            },
        )?;
        // A title that keeps the draft flag as it is changes nothing else: GitLab retitles a
        // closed merge request too.
        let was_draft = st.repo(&full)?.pull(number)?.1.draft;
        if let Some((draft, _)) = split.filter(|(draft, _)| *draft != was_draft) {
            st.set_draft(&full, number, &login, draft)?;
        }
    }
    if let Some(target) = p.str("target_branch") {
        st.retarget(&full, number, &login, &target)?;
    }
    if let Some(labels) = p.list("labels") {
        st.set_labels(&full, number, &login, &labels)?;
    }
    if let Some(add) = p.list("add_labels") {
        st.add_labels(&full, number, &login, &add)?;
    }
    if let Some(remove) = p.list("remove_labels") {
        let current = st.repo(&full)?.issue(number)?.labels.clone();
        for name in remove.iter().filter(|n| current.contains(n)) {
            st.remove_label(&full, number, &login, name)?;
        }
    }
    match p.str("state_event").as_deref() {
        None => {}
        Some(event @ ("close" | "reopen")) => {
            let state = if event == "close" { "closed" } else { "open" };
            st.edit_issue(
                &full,
                number,
                &login,
                IssueEdit {
                    state: Some(state),
                    ..Default::default()
                },
            )?;
        }
        Some(_) => {
            return Err(GlError {
                status: StatusCode::BAD_REQUEST,
                body: serde_json::json!({"error": "state_event does not have a valid value"}),
            });
        }
    }
    Ok(Json(mr_json(&st, &full, iid)?))
}

async fn diffs(
    State(app): State<App>,
    _u: GlUser,
    GlPath((id, iid)): GlPath<(String, u64)>,
    q: GlQuery,
    uri: Uri,
) -> GlResult<Response> {
    let st = app.lock();
    let (r, _, pr) = merge_request_of(&st, &id, iid)?;
    let (from, head) = crate::routes::pulls::pr_range(r, pr)?;
    let items = git::diff(&r.git, from, head)?
        .iter()
        .map(json::diff)
        .collect();
    Ok(paginate(items, &q, &uri, &st.base_url))
}

async fn commits(
    State(app): State<App>,
    _u: GlUser,
    GlPath((id, iid)): GlPath<(String, u64)>,
    q: GlQuery,
    uri: Uri,
) -> GlResult<Response> {
    let st = app.lock();
    let (r, _, pr) = merge_request_of(&st, &id, iid)?;
    let (from, head) = crate::routes::pulls::pr_range(r, pr)?;
    // GitLab lists a merge request's commits newest first.
    let items = git::commits_between(&r.git, from, head)?
        .into_iter()
        .rev()
        .filter_map(|oid| git::commit_detail(&r.git, oid))
        .map(|d| json::commit(&st, r, &d))
        .collect();
    Ok(paginate(items, &q, &uri, &st.base_url))
}

/// `GET …/merge_requests/:iid/versions`: one version per head the MR had while open (every
/// push makes one, a push back to an earlier head too), newest first.
async fn versions(
    State(app): State<App>,
    _u: GlUser,
    GlPath((id, iid)): GlPath<(String, u64)>,
    q: GlQuery,
    uri: Uri,
) -> GlResult<Response> {
    let st = app.lock();
    let (r, i, pr) = merge_request_of(&st, &id, iid)?;
    let base = git::branch_tip(&r.git, &pr.base_ref).map(|o| o.to_string());
    let items = pr
        .head_moves
        .iter()
        .enumerate()
        .rev()
        .map(|(k, m)| {
            serde_json::json!({
                "id": i.id * 1000 + k as u64,
                "head_commit_sha": m.sha,
                "base_commit_sha": base,
                "start_commit_sha": base,
                "created_at": crate::gitlab::api_ts(m.at),
                "merge_request_id": pr.id,
                "state": "collected",
                "real_size": "1",
            })
        })
        .collect();
    Ok(paginate(items, &q, &uri, &st.base_url))
}

/// GitLab's refusals before a merge, in its order: 401 when `actor` may not merge into a
/// protected target (read access only, not in the rule's bypass list), 405 when the merge
/// request is not open or is a draft or its target's rule is unmet (approvals, required
/// statuses, or a pipeline not linked yet), 406 when it conflicts, 409 when `sha` is not the
/// head.
fn check_merge(
    st: &ForgeState,
    full: &str,
    iid: u64,
    actor: &str,
    sha: Option<&str>,
) -> GlResult<u64> {
    let r = st.repo(full)?;
    let i = by_iid(r, Noteable::MergeRequest(iid))?;
    let pr =
        i.pr.as_ref()
            .ok_or_else(|| GlError::not_found("Merge Request"))?;
    if let Some(rule) = r.protections.get(&pr.base_ref)
        && !rule.bypass.iter().any(|b| b == actor)
        && st.permission(r, actor) == "read"
    {
        return Err(GlError::unauthorized());
    }
    if !i.open || pr.merged_at.is_some() || pr.draft {
        return Err(GlError::not_allowed());
    }
    let base = git::branch_tip(&r.git, &pr.base_ref);
    let head = Oid::from_str(&pr.head_sha).ok();
    let clean = !pr.conflicting
        && match (base, head) {
            (Some(b), Some(h)) => git::merges_cleanly(&r.git, b, h).unwrap_or(false),
            _ => false,
        };
    if !clean {
        return Err(GlError::message(
            StatusCode::NOT_ACCEPTABLE,
            "Branch cannot be merged",
        ));
    }
    if protection::unmet(st, r, pr, Some(actor)).is_some() || st.gl_pipeline_unlinked_merges > 0 {
        return Err(GlError::not_allowed());
    }
    if sha.is_some_and(|s| s != pr.head_sha) {
        return Err(GlError::message(
            StatusCode::CONFLICT,
            format!("SHA does not match HEAD of source branch: {}", pr.head_sha),
        ));
    }
    Ok(i.number)
}

/// `PUT /merge_requests/:iid/merge`: a real two-parent merge commit whose message is
/// `merge_commit_message` verbatim (GitLab's default message otherwise).
async fn merge(
    State(app): State<App>,
    GlUser(login): GlUser,
    GlPath((id, iid)): GlPath<(String, u64)>,
    p: GlParams,
) -> GlResult<Json<Value>> {
    let sha = p.str("sha");
    let mut st = app.lock();
    let full = project_name(&st, &id)?;
    let checked = check_merge(&st, &full, iid, &login, sha.as_deref());
    if checked.is_err() {
        st.gl_pipeline_unlinked_merges = st.gl_pipeline_unlinked_merges.saturating_sub(1);
    }
    let number = checked?;
    let (source, local, default_message) = {
        let r = st.repo(&full)?;
        let (i, pr) = r.pull(number)?;
        let message = format!(
            "Merge branch '{}' into '{}'\n\n{}\n\nSee merge request {full}!{iid}",
            pr.head_ref, pr.base_ref, i.title
        );
        (pr.head_ref.clone(), pr.head_is_local(), message)
    };
    let message = p
        .str("merge_commit_message")
        .filter(|m| !m.trim().is_empty())
        .unwrap_or(default_message);
    // The model's "merge" method writes `title\n\nmessage`, trimmed: with the whole message as
    // the title and an empty message it writes GitLab's message unchanged.
    let merged = st.merge_pull(
        &full,
        number,
        &login,
        MergeRequest {
            sha: sha.as_deref(),
            method: "merge",
            title: Some(&message),
            message: Some(""),
        },
    );
    match merged {
        Ok(_) => {}
        Err(e) if e.status == StatusCode::METHOD_NOT_ALLOWED => {
            // Past GitLab's own checks only git's trial merge can refuse: a conflict.
            return Err(GlError::message(
                StatusCode::NOT_ACCEPTABLE,
                "Branch cannot be merged",
            ));
        }
        Err(e) => return Err(e.into()),
    }
    if p.bool("should_remove_source_branch") == Some(true) && local {
        st.delete_branch(&full, &source, &login)?;
    }
    Ok(Json(mr_json(&st, &full, iid)?))
}

fn approvals_json(st: &ForgeState, full: &str, iid: u64, caller: &str) -> GlResult<Value> {
    let r = st.repo(full)?;
    let i = by_iid(r, Noteable::MergeRequest(iid))?;
    let pr =
        i.pr.as_ref()
            .ok_or_else(|| GlError::not_found("Merge Request"))?;
    let approvers = hooks::approvers(pr);
    let required = hooks::approvals_required(r, pr);
    Ok(json::approvals(st, r, i, pr, &approvers, required, caller))
}

async fn approve(
    State(app): State<App>,
    GlUser(login): GlUser,
    GlPath((id, iid)): GlPath<(String, u64)>,
    p: GlParams,
) -> GlResult<Response> {
    let mut st = app.lock();
    let full = project_name(&st, &id)?;
    st.gl_approve(&full, iid, &login, p.str("sha").as_deref())?;
    Ok((
        StatusCode::CREATED,
        Json(approvals_json(&st, &full, iid, &login)?),
    )
        .into_response())
}

async fn unapprove(
    State(app): State<App>,
    GlUser(login): GlUser,
    GlPath((id, iid)): GlPath<(String, u64)>,
) -> GlResult<Response> {
    let mut st = app.lock();
    let full = project_name(&st, &id)?;
    st.gl_unapprove(&full, iid, &login)?;
    Ok((
        StatusCode::CREATED,
        Json(approvals_json(&st, &full, iid, &login)?),
    )
        .into_response())
}

async fn approvals(
    State(app): State<App>,
    GlUser(login): GlUser,
    GlPath((id, iid)): GlPath<(String, u64)>,
) -> GlResult<Json<Value>> {
    let st = app.lock();
    let full = project_name(&st, &id)?;
    Ok(Json(approvals_json(&st, &full, iid, &login)?))
}

#[cfg(test)]
mod tests {
    use super::split_draft;

    #[test]
    fn draft_markers_are_gitlabs_prefixes_in_any_case() {
        assert_eq!(split_draft("Draft: x"), (true, "x"));
        assert_eq!(split_draft("[draft] x"), (true, "x"));
        assert_eq!(split_draft("(DRAFT) x"), (true, "x"));
        assert_eq!(split_draft("Drafting x"), (false, "Drafting x"));
    }
}
