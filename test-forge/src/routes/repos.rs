//! Repository-level routes: the repository, refs and branches, contents, trees, commits,
//! compare, statuses and check runs.

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine;
use git2::Oid;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{ApiJson, ApiPath, ApiQuery, App, Caller, paginate};
use crate::error::{ApiError, ApiResult};
use crate::git::{self, PathEntry};
use crate::json;
use crate::ops::CheckRunInput;
use crate::state::{ForgeState, RepoRec};

pub(super) fn routes() -> axum::Router<App> {
    axum::Router::new()
        .route("/repos/{owner}/{repo}", get(get_repo))
        .route("/repos/{owner}/{repo}/git/ref/{*ref}", get(get_ref))
        .route(
            "/repos/{owner}/{repo}/git/matching-refs/{*ref}",
            get(matching_refs),
        )
        .route("/repos/{owner}/{repo}/git/refs", post(create_ref))
        .route(
            "/repos/{owner}/{repo}/git/refs/{*ref}",
            get(get_refs)
                .patch(update_ref)
                .post(update_ref)
                .delete(delete_ref),
        )
        .route("/repos/{owner}/{repo}/branches", get(list_branches))
        .route("/repos/{owner}/{repo}/branches/{*branch}", get(get_branch))
        .route("/repos/{owner}/{repo}/contents", get(get_root_contents))
        .route(
            "/repos/{owner}/{repo}/contents/{*path}",
            get(get_contents).put(put_contents).delete(delete_contents),
        )
        .route("/repos/{owner}/{repo}/commits", get(list_commits))
        .route(
            "/repos/{owner}/{repo}/commits/{*rest}",
            get(get_commit_or_sub),
        )
        .route("/repos/{owner}/{repo}/compare/{*basehead}", get(compare))
        .route("/repos/{owner}/{repo}/statuses/{sha}", post(create_status))
        .route("/repos/{owner}/{repo}/check-runs", post(create_check_run))
        .route(
            "/repos/{owner}/{repo}/check-runs/{id}",
            get(get_check_run)
                .patch(update_check_run)
                .post(update_check_run),
        )
}

/// The most `files` a compare lists. GitHub documents that "the list of changed files is only
/// shown on the first page of results, and it includes up to 300 changed files for the entire
/// comparison"; a client that reads a bigger change from compare alone misses files, and a
/// test must be able to show that.
const COMPARE_MAX_FILES: usize = 300;

type RepoPath = ApiPath<(String, String)>;
type RepoRest = ApiPath<(String, String, String)>;

fn full(owner: &str, repo: &str) -> String {
    format!("{owner}/{repo}")
}

async fn get_repo(
    State(app): State<App>,
    _c: Caller,
    ApiPath((o, r)): RepoPath,
) -> ApiResult<Json<Value>> {
    let st = app.lock();
    let rec = st.repo(&full(&o, &r))?;
    Ok(Json(json::repo(&st, rec)))
}

/// `heads/x` or `refs/heads/x` → `x`; other namespaces do not exist here.
fn branch_of(reference: &str) -> Option<&str> {
    let r = reference.strip_prefix("refs/").unwrap_or(reference);
    r.strip_prefix("heads/").filter(|b| !b.is_empty())
}

async fn get_ref(
    State(app): State<App>,
    _c: Caller,
    ApiPath((o, r, reference)): RepoRest,
) -> ApiResult<Json<Value>> {
    let st = app.lock();
    let rec = st.repo(&full(&o, &r))?;
    let branch = branch_of(&reference).ok_or_else(ApiError::not_found)?;
    let tip = git::branch_tip(&rec.git, branch).ok_or_else(ApiError::not_found)?;
    Ok(Json(json::git_ref(&st, rec, branch, &tip.to_string())))
}

fn refs_with_prefix(st: &ForgeState, rec: &RepoRec, prefix: &str) -> ApiResult<Vec<Value>> {
    let prefix = prefix.strip_prefix("refs/").unwrap_or(prefix);
    let mut out = Vec::new();
    for (name, oid) in git::branches(&rec.git)? {
        if format!("heads/{name}").starts_with(prefix) {
            out.push(json::git_ref(st, rec, &name, &oid.to_string()));
        }
    }
    Ok(out)
}

async fn matching_refs(
    State(app): State<App>,
    _c: Caller,
    ApiPath((o, r, reference)): RepoRest,
) -> ApiResult<Json<Value>> {
    let st = app.lock();
    let rec = st.repo(&full(&o, &r))?;
    Ok(Json(Value::Array(refs_with_prefix(&st, rec, &reference)?)))
}

/// The legacy `GET /git/refs/{ref}`: one ref when it names one exactly, else the refs under it.
async fn get_refs(
    State(app): State<App>,
    _c: Caller,
    ApiPath((o, r, reference)): RepoRest,
) -> ApiResult<Json<Value>> {
    let st = app.lock();
    let rec = st.repo(&full(&o, &r))?;
    if let Some(branch) = branch_of(&reference)
        && let Some(tip) = git::branch_tip(&rec.git, branch)
    {
        return Ok(Json(json::git_ref(&st, rec, branch, &tip.to_string())));
    }
    let list = refs_with_prefix(&st, rec, &format!("{}/", reference.trim_end_matches('/')))?;
    if list.is_empty() {
        return Err(ApiError::not_found());
    }
    Ok(Json(Value::Array(list)))
}

#[derive(Deserialize)]
struct CreateRef {
    #[serde(rename = "ref")]
    reference: String,
    sha: String,
}

async fn create_ref(
    State(app): State<App>,
    caller: Caller,
    ApiPath((o, r)): RepoPath,
    ApiJson(body): ApiJson<CreateRef>,
) -> ApiResult<Response> {
    let login = caller.login()?.to_owned();
    let name = full(&o, &r);
    if !body.reference.starts_with("refs/") || body.reference.matches('/').count() < 2 {
        return Err(ApiError::unprocessable(
            "Reference name must start with 'refs/' and have at least two slashes.",
        ));
    }
    let branch = branch_of(&body.reference)
        .ok_or_else(|| ApiError::unprocessable("Only refs/heads/ references are supported"))?
        .to_owned();
    let mut st = app.lock();
    st.create_branch(&name, &branch, &body.sha, &login)?;
    let rec = st.repo(&name)?;
    Ok((
        StatusCode::CREATED,
        Json(json::git_ref(&st, rec, &branch, &body.sha)),
    )
        .into_response())
}

#[derive(Deserialize)]
struct UpdateRef {
    sha: String,
    #[serde(default)]
    force: bool,
}

async fn update_ref(
    State(app): State<App>,
    caller: Caller,
    ApiPath((o, r, reference)): RepoRest,
    ApiJson(body): ApiJson<UpdateRef>,
) -> ApiResult<Json<Value>> {
    let login = caller.login()?.to_owned();
    let name = full(&o, &r);
    let branch = branch_of(&reference)
        .ok_or_else(|| ApiError::unprocessable("Reference does not exist"))?
        .to_owned();
    let mut st = app.lock();
    st.update_branch(&name, &branch, &body.sha, body.force, &login)?;
    let rec = st.repo(&name)?;
    Ok(Json(json::git_ref(&st, rec, &branch, &body.sha)))
}

async fn delete_ref(
    State(app): State<App>,
    caller: Caller,
    ApiPath((o, r, reference)): RepoRest,
) -> ApiResult<StatusCode> {
    let login = caller.login()?.to_owned();
    let branch = branch_of(&reference)
        .ok_or_else(|| ApiError::unprocessable("Reference does not exist"))?
        .to_owned();
    app.lock().delete_branch(&full(&o, &r), &branch, &login)?;
    Ok(StatusCode::NO_CONTENT)
}

fn branch_json(st: &ForgeState, rec: &RepoRec, name: &str, oid: Oid) -> Value {
    let mut commit = git::commit_detail(&rec.git, oid)
        .map(|d| json::commit(st, rec, &d))
        .unwrap_or(Value::Null);
    if commit.is_null() {
        commit = json!({"sha": oid.to_string(), "url": format!("{}/repos/{}/commits/{oid}", st.base_url, rec.full_name())});
    }
    let b = &st.base_url;
    let fullname = rec.full_name();
    let rule = rec.protections.get(name);
    let contexts = rule
        .map(|p| p.required_status_checks.clone())
        .unwrap_or_default();
    let checks: Vec<Value> = contexts
        .iter()
        .map(|c| json!({"context": c, "app_id": null}))
        .collect();
    // GitHub's "non_admins" level: the checks bind everyone but administrators.
    let level = if contexts.is_empty() {
        "off"
    } else {
        "non_admins"
    };
    json!({
        "name": name,
        "commit": commit,
        "_links": {
            "self": format!("{b}/repos/{fullname}/branches/{}", json::url_seg(name)),
            "html": format!("{b}/{fullname}/tree/{}", json::url_seg(name)),
        },
        "protected": rule.is_some(),
        "protection": {
            "enabled": rule.is_some(),
            "required_status_checks": {"enforcement_level": level, "contexts": contexts, "checks": checks},
        },
        "protection_url": format!("{b}/repos/{fullname}/branches/{}/protection", json::url_seg(name)),
    })
}

async fn list_branches(
    State(app): State<App>,
    _c: Caller,
    ApiPath((o, r)): RepoPath,
    q: ApiQuery,
    uri: Uri,
) -> ApiResult<Response> {
    let st = app.lock();
    let rec = st.repo(&full(&o, &r))?;
    let items = git::branches(&rec.git)?
        .into_iter()
        .map(|(name, oid)| {
            json!({
                "name": name,
                "commit": {"sha": oid.to_string(), "url": format!("{}/repos/{}/commits/{oid}", st.base_url, rec.full_name())},
                "protected": rec.protections.contains_key(&name),
            })
        })
        .collect();
    Ok(paginate(items, &q, &uri, &st.base_url))
}

async fn get_branch(
    State(app): State<App>,
    _c: Caller,
    ApiPath((o, r, branch)): RepoRest,
) -> ApiResult<Json<Value>> {
    let st = app.lock();
    let rec = st.repo(&full(&o, &r))?;
    let tip = git::branch_tip(&rec.git, &branch)
        .ok_or_else(|| ApiError::not_found_msg("Branch not found"))?;
    Ok(Json(branch_json(&st, rec, &branch, tip)))
}

/// GitHub lists at most this many entries of a directory through the contents API (the rest
/// only through the Git Trees API), silently.
pub const CONTENTS_DIR_LIMIT: usize = 1000;

fn contents(st: &ForgeState, name: &str, path: &str, q: &ApiQuery) -> ApiResult<Value> {
    let rec = st.repo(name)?;
    // Without a ref GitHub reads the default branch itself, never a tag that shares its name.
    let (reference, commit) = match q.get("ref") {
        Some(reference) => (reference.to_owned(), git::resolve(&rec.git, reference)),
        None => (
            rec.default_branch.clone(),
            git::branch_tip(&rec.git, &rec.default_branch),
        ),
    };
    let commit = commit.ok_or_else(|| {
        ApiError::not_found_msg(format!("No commit found for the ref {reference}"))
    })?;
    let path = path.trim_matches('/');
    let file = |path: &str, sha: &str, bytes: &[u8]| {
        json::content_entry(
            st,
            rec,
            &json::ContentRef {
                git_ref: &reference,
                path,
                sha,
                kind: "file",
                size: bytes.len(),
            },
            Some(bytes),
        )
    };
    match git::read_path(&rec.git, commit, path)? {
        None => Err(ApiError::not_found()),
        Some(PathEntry::File { sha, bytes }) => Ok(file(path, &sha, &bytes)),
        // GitHub follows a link to a regular file of the repository and serves that file.
        Some(PathEntry::Symlink { sha, target }) => {
            match git::link_target(&rec.git, commit, path, &target)? {
                Some((path, sha, bytes)) => Ok(file(&path, &sha, &bytes)),
                None => Ok(json::symlink_entry(
                    st,
                    rec,
                    &json::ContentRef {
                        git_ref: &reference,
                        path,
                        sha: &sha,
                        kind: "symlink",
                        size: target.len(),
                    },
                    &String::from_utf8_lossy(&target),
                )),
            }
        }
        Some(PathEntry::Submodule { sha }) => Ok(json::content_entry(
            st,
            rec,
            &json::ContentRef {
                git_ref: &reference,
                path,
                sha: &sha,
                kind: "submodule",
                size: 0,
            },
            None,
        )),
        Some(PathEntry::Dir(entries)) => Ok(Value::Array(
            entries
                .iter()
                .take(CONTENTS_DIR_LIMIT)
                .map(|e| {
                    json::content_entry(
                        st,
                        rec,
                        &json::ContentRef {
                            git_ref: &reference,
                            path: &e.path,
                            sha: &e.sha,
                            kind: e.kind.contents_type(),
                            size: e.size,
                        },
                        None,
                    )
                })
                .collect(),
        )),
    }
}

async fn get_root_contents(
    State(app): State<App>,
    _c: Caller,
    ApiPath((o, r)): RepoPath,
    q: ApiQuery,
) -> ApiResult<Json<Value>> {
    let st = app.lock();
    Ok(Json(contents(&st, &full(&o, &r), "", &q)?))
}

async fn get_contents(
    State(app): State<App>,
    _c: Caller,
    ApiPath((o, r, path)): RepoRest,
    q: ApiQuery,
) -> ApiResult<Json<Value>> {
    let st = app.lock();
    Ok(Json(contents(&st, &full(&o, &r), &path, &q)?))
}

#[derive(Deserialize)]
struct PutContents {
    message: Option<String>,
    content: Option<String>,
    branch: Option<String>,
    sha: Option<String>,
}

/// The `commit` object of a contents write.
pub(super) fn git_commit_json(st: &ForgeState, rec: &RepoRec, sha: &str) -> Value {
    let b = &st.base_url;
    let fullname = rec.full_name();
    let Some(d) = Oid::from_str(sha)
        .ok()
        .and_then(|o| git::commit_detail(&rec.git, o))
    else {
        return Value::Null;
    };
    json!({
        "sha": d.sha,
        "node_id": format!("C_{}", &d.sha[..12]),
        "url": format!("{b}/repos/{fullname}/git/commits/{}", d.sha),
        "html_url": format!("{b}/{fullname}/commit/{}", d.sha),
        "author": {"name": d.author_name, "email": d.author_email, "date": json::ts(d.author_time)},
        "committer": {"name": d.committer_name, "email": d.committer_email, "date": json::ts(d.committer_time)},
        "message": d.message,
        "tree": {"sha": d.tree, "url": format!("{b}/repos/{fullname}/git/trees/{}", d.tree)},
        "parents": d.parents.iter().map(|p| json!({
            "sha": p,
            "url": format!("{b}/repos/{fullname}/git/commits/{p}"),
            "html_url": format!("{b}/{fullname}/commit/{p}"),
        })).collect::<Vec<_>>(),
        "verification": {"verified": false, "reason": "unsigned", "signature": null, "payload": null, "verified_at": null},
    })
}

async fn put_contents(
    State(app): State<App>,
    caller: Caller,
    ApiPath((o, r, path)): RepoRest,
    ApiJson(body): ApiJson<PutContents>,
) -> ApiResult<Response> {
    let login = caller.login()?.to_owned();
    let name = full(&o, &r);
    let message = body.message.ok_or_else(|| {
        ApiError::unprocessable("Invalid request.\n\n\"message\" wasn't supplied.")
    })?;
    let content = body.content.ok_or_else(|| {
        ApiError::unprocessable("Invalid request.\n\n\"content\" wasn't supplied.")
    })?;
    let cleaned: String = content.chars().filter(|c| !c.is_whitespace()).collect();
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(cleaned)
        .map_err(|_| ApiError::unprocessable("content is not valid Base64"))?;
    let path = path.trim_matches('/').to_owned();
    if path.is_empty() {
        return Err(ApiError::unprocessable("path is missing"));
    }
    let mut st = app.lock();
    let (commit, created) = st.put_file(
        &name,
        &path,
        &login,
        &message,
        bytes,
        body.branch.as_deref(),
        body.sha.as_deref(),
    )?;
    let rec = st.repo(&name)?;
    let branch = body.branch.unwrap_or_else(|| rec.default_branch.clone());
    let tip = Oid::from_str(&commit).map_err(ApiError::internal)?;
    let entry = match git::read_path(&rec.git, tip, &path)? {
        Some(PathEntry::File { sha, bytes }) => json::content_entry(
            &st,
            rec,
            &json::ContentRef {
                git_ref: &branch,
                path: &path,
                sha: &sha,
                kind: "file",
                size: bytes.len(),
            },
            None,
        ),
        _ => Value::Null,
    };
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((
        status,
        Json(json!({"content": entry, "commit": git_commit_json(&st, rec, &commit)})),
    )
        .into_response())
}

#[derive(Deserialize)]
struct DeleteContents {
    message: Option<String>,
    sha: Option<String>,
    branch: Option<String>,
}

async fn delete_contents(
    State(app): State<App>,
    caller: Caller,
    ApiPath((o, r, path)): RepoRest,
    ApiJson(body): ApiJson<DeleteContents>,
) -> ApiResult<Json<Value>> {
    let login = caller.login()?.to_owned();
    let name = full(&o, &r);
    let message = body.message.ok_or_else(|| {
        ApiError::unprocessable("Invalid request.\n\n\"message\" wasn't supplied.")
    })?;
    let mut st = app.lock();
    let commit = st.delete_file(
        &name,
        path.trim_matches('/'),
        &login,
        &message,
        body.branch.as_deref(),
        body.sha.as_deref(),
    )?;
    let rec = st.repo(&name)?;
    Ok(Json(
        json!({"content": null, "commit": git_commit_json(&st, rec, &commit)}),
    ))
}

async fn list_commits(
    State(app): State<App>,
    _c: Caller,
    ApiPath((o, r)): RepoPath,
    q: ApiQuery,
    uri: Uri,
) -> ApiResult<Response> {
    let st = app.lock();
    let rec = st.repo(&full(&o, &r))?;
    let from = q.get("sha").unwrap_or(&rec.default_branch);
    let tip = git::resolve(&rec.git, from).ok_or_else(ApiError::not_found)?;
    let path = q.get("path").map(|p| p.trim_matches('/').to_owned());
    let mut items = Vec::new();
    for info in git::log(&rec.git, tip)? {
        let Some(d) = Oid::from_str(&info.sha)
            .ok()
            .and_then(|o| git::commit_detail(&rec.git, o))
        else {
            continue;
        };
        if let Some(p) = &path {
            let touched = match d.parents.first().and_then(|p| Oid::from_str(p).ok()) {
                Some(parent) => git::diff(
                    &rec.git,
                    parent,
                    Oid::from_str(&d.sha).map_err(ApiError::internal)?,
                )?
                .iter()
                .any(|f| f.filename == *p || f.filename.starts_with(&format!("{p}/"))),
                None => true,
            };
            if !touched {
                continue;
            }
        }
        items.push(json::commit(&st, rec, &d));
    }
    Ok(paginate(items, &q, &uri, &st.base_url))
}

/// `GET /commits/{ref}` plus its sub-resources `/statuses`, `/status` and `/check-runs`; one
/// wildcard route because a ref may contain slashes.
async fn get_commit_or_sub(
    State(app): State<App>,
    _c: Caller,
    ApiPath((o, r, rest)): RepoRest,
    q: ApiQuery,
    uri: Uri,
) -> ApiResult<Response> {
    let st = app.lock();
    let rec = st.repo(&full(&o, &r))?;
    let (reference, sub) = if let Some(x) = rest.strip_suffix("/statuses") {
        (x, "statuses")
    } else if let Some(x) = rest.strip_suffix("/status") {
        (x, "status")
    } else if let Some(x) = rest.strip_suffix("/check-runs") {
        (x, "check-runs")
    } else {
        (rest.as_str(), "")
    };
    let oid = git::resolve(&rec.git, reference)
        .ok_or_else(|| ApiError::unprocessable(format!("No commit found for SHA: {reference}")))?;
    let sha = oid.to_string();
    match sub {
        "statuses" => {
            let items = rec
                .statuses
                .iter()
                .rev()
                .filter(|s| s.sha == sha)
                .map(|s| json::status(&st, rec, s))
                .collect();
            Ok(paginate(items, &q, &uri, &st.base_url))
        }
        "status" => {
            let mut latest: Vec<&crate::state::StatusRec> = Vec::new();
            for s in rec.statuses.iter().rev().filter(|s| s.sha == sha) {
                if !latest.iter().any(|l| l.context == s.context) {
                    latest.push(s);
                }
            }
            let state = if latest
                .iter()
                .any(|s| s.state == "error" || s.state == "failure")
            {
                "failure"
            } else if latest.is_empty() || latest.iter().any(|s| s.state == "pending") {
                "pending"
            } else {
                "success"
            };
            Ok(Json(json!({
                "state": state,
                "statuses": latest.iter().map(|s| json::status(&st, rec, s)).collect::<Vec<_>>(),
                "sha": sha,
                "total_count": latest.len(),
                "repository": json::repo(&st, rec),
                "commit_url": format!("{}/repos/{}/commits/{sha}", st.base_url, rec.full_name()),
                "url": format!("{}/repos/{}/commits/{sha}/status", st.base_url, rec.full_name()),
            }))
            .into_response())
        }
        "check-runs" => {
            let runs: Vec<Value> = rec
                .check_runs
                .iter()
                .rev()
                .filter(|c| c.head_sha == sha)
                .filter(|c| q.get("check_name").is_none_or(|n| n == c.name))
                .filter(|c| q.get("status").is_none_or(|s| s == c.status))
                .map(|c| json::check_run(&st, rec, c))
                .collect();
            Ok(Json(json!({"total_count": runs.len(), "check_runs": runs})).into_response())
        }
        _ => {
            let d = git::commit_detail(&rec.git, oid).ok_or_else(ApiError::not_found)?;
            let mut v = json::commit(&st, rec, &d);
            let files = match d.parents.first().and_then(|p| Oid::from_str(p).ok()) {
                Some(parent) => git::diff(&rec.git, parent, oid)?,
                None => Vec::new(),
            };
            let additions: usize = files.iter().map(|f| f.additions).sum();
            let deletions: usize = files.iter().map(|f| f.deletions).sum();
            if let Value::Object(m) = &mut v {
                m.insert(
                    "stats".into(),
                    json!({"total": additions + deletions, "additions": additions, "deletions": deletions}),
                );
                m.insert(
                    "files".into(),
                    Value::Array(
                        files
                            .iter()
                            .map(|f| json::file_diff(&st, rec, &sha, f))
                            .collect(),
                    ),
                );
            }
            Ok(Json(v).into_response())
        }
    }
}

async fn compare(
    State(app): State<App>,
    _c: Caller,
    ApiPath((o, r, basehead)): RepoRest,
) -> ApiResult<Json<Value>> {
    let st = app.lock();
    let rec = st.repo(&full(&o, &r))?;
    let (base, head) = basehead
        .split_once("...")
        .or_else(|| basehead.split_once(".."))
        .ok_or_else(ApiError::not_found)?;
    let strip = |s: &str| s.split_once(':').map_or(s, |(_, b)| b).to_owned();
    let (base, head) = (strip(base), strip(head));
    let base_oid = git::resolve(&rec.git, &base).ok_or_else(ApiError::not_found)?;
    let head_oid = git::resolve(&rec.git, &head).ok_or_else(ApiError::not_found)?;
    let mb = git::merge_base(&rec.git, base_oid, head_oid).ok_or_else(|| {
        ApiError::not_found_msg(format!("No common ancestor between {base} and {head}."))
    })?;
    let ahead = git::commits_between(&rec.git, base_oid, head_oid)?;
    let behind = git::commits_between(&rec.git, head_oid, base_oid)?;
    let status = match (ahead.is_empty(), behind.is_empty()) {
        (true, true) => "identical",
        (false, true) => "ahead",
        (true, false) => "behind",
        (false, false) => "diverged",
    };
    let commit_json = |oid: Oid| {
        git::commit_detail(&rec.git, oid)
            .map(|d| json::commit(&st, rec, &d))
            .unwrap_or(Value::Null)
    };
    let files: Vec<Value> = git::diff(&rec.git, mb, head_oid)?
        .iter()
        .take(COMPARE_MAX_FILES)
        .map(|f| json::file_diff(&st, rec, &head_oid.to_string(), f))
        .collect();
    let b = &st.base_url;
    let fullname = rec.full_name();
    Ok(Json(json!({
        "url": format!("{b}/repos/{fullname}/compare/{basehead}"),
        "html_url": format!("{b}/{fullname}/compare/{basehead}"),
        "permalink_url": format!("{b}/{fullname}/compare/{base_oid}...{head_oid}"),
        "diff_url": format!("{b}/{fullname}/compare/{basehead}.diff"),
        "patch_url": format!("{b}/{fullname}/compare/{basehead}.patch"),
        "base_commit": commit_json(base_oid),
        "merge_base_commit": commit_json(mb),
        "status": status,
        "ahead_by": ahead.len(),
        "behind_by": behind.len(),
        "total_commits": ahead.len(),
        "commits": ahead.iter().map(|o| commit_json(*o)).collect::<Vec<_>>(),
        "files": files,
    })))
}

#[derive(Deserialize)]
struct CreateStatus {
    state: String,
    target_url: Option<String>,
    description: Option<String>,
    context: Option<String>,
}

async fn create_status(
    State(app): State<App>,
    caller: Caller,
    ApiPath((o, r, sha)): RepoRest,
    ApiJson(body): ApiJson<CreateStatus>,
) -> ApiResult<Response> {
    let login = caller.login()?.to_owned();
    let name = full(&o, &r);
    let mut st = app.lock();
    let id = st.create_status(
        &name,
        &sha,
        &login,
        &body.state,
        body.context.as_deref(),
        body.description.as_deref(),
        body.target_url.as_deref(),
    )?;
    let rec = st.repo(&name)?;
    let s = rec
        .statuses
        .iter()
        .find(|s| s.id == id)
        .ok_or_else(ApiError::not_found)?;
    Ok((StatusCode::CREATED, Json(json::status(&st, rec, s))).into_response())
}

#[derive(Deserialize, Default)]
struct CheckOutput {
    title: Option<String>,
    summary: Option<String>,
    text: Option<String>,
}

#[derive(Deserialize)]
struct CheckRunBody {
    name: Option<String>,
    head_sha: Option<String>,
    status: Option<String>,
    conclusion: Option<String>,
    details_url: Option<String>,
    external_id: Option<String>,
    output: Option<CheckOutput>,
}

impl From<CheckRunBody> for CheckRunInput {
    fn from(b: CheckRunBody) -> Self {
        let out = b.output.unwrap_or_default();
        CheckRunInput {
            name: b.name,
            head_sha: b.head_sha,
            status: b.status,
            conclusion: b.conclusion,
            title: out.title,
            summary: out.summary,
            text: out.text,
            details_url: b.details_url,
            external_id: b.external_id,
        }
    }
}

fn check_run_response(st: &ForgeState, name: &str, id: u64) -> ApiResult<Value> {
    let rec = st.repo(name)?;
    let c = rec
        .check_runs
        .iter()
        .find(|c| c.id == id)
        .ok_or_else(ApiError::not_found)?;
    Ok(json::check_run(st, rec, c))
}

async fn create_check_run(
    State(app): State<App>,
    caller: Caller,
    ApiPath((o, r)): RepoPath,
    ApiJson(body): ApiJson<CheckRunBody>,
) -> ApiResult<Response> {
    caller.login()?;
    let name = full(&o, &r);
    let mut st = app.lock();
    let id = st.create_check_run(&name, body.into())?;
    Ok((
        StatusCode::CREATED,
        Json(check_run_response(&st, &name, id)?),
    )
        .into_response())
}

async fn update_check_run(
    State(app): State<App>,
    caller: Caller,
    ApiPath((o, r, id)): ApiPath<(String, String, u64)>,
    ApiJson(body): ApiJson<CheckRunBody>,
) -> ApiResult<Json<Value>> {
    caller.login()?;
    let name = full(&o, &r);
    let mut st = app.lock();
    st.update_check_run(&name, id, body.into())?;
    Ok(Json(check_run_response(&st, &name, id)?))
}

async fn get_check_run(
    State(app): State<App>,
    _c: Caller,
    ApiPath((o, r, id)): ApiPath<(String, String, u64)>,
) -> ApiResult<Json<Value>> {
    let st = app.lock();
    Ok(Json(check_run_response(&st, &full(&o, &r), id)?))
}
