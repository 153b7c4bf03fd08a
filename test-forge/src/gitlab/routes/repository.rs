//! Repository routes: branches, files, trees, multi-file commits and commit statuses.

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine;
use git2::Oid;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::{GlPath, project, project_name};
use crate::git;
use crate::gitlab::http::{GlError, GlParams, GlQuery, GlResult, GlUser, paginate};
use crate::gitlab::json;
use crate::gitlab::ops::{FileAction, NewCommit, last_commit_for};
use crate::routes::App;
use crate::state::RepoRec;

pub(super) fn routes() -> axum::Router<App> {
    axum::Router::new()
        .route(
            "/api/v4/projects/{id}/repository/branches",
            get(list_branches).post(create_branch),
        )
        .route(
            "/api/v4/projects/{id}/repository/branches/{branch}",
            get(get_branch).delete(delete_branch),
        )
        .route(
            "/api/v4/projects/{id}/repository/files/{file_path}",
            get(get_file),
        )
        .route(
            "/api/v4/projects/{id}/repository/files/{file_path}/raw",
            get(get_raw_file),
        )
        .route("/api/v4/projects/{id}/repository/tree", get(tree))
        .route(
            "/api/v4/projects/{id}/repository/commits",
            post(create_commit),
        )
        .route(
            "/api/v4/projects/{id}/repository/commits/{sha}",
            get(get_commit),
        )
        .route(
            "/api/v4/projects/{id}/repository/commits/{sha}/statuses",
            get(list_statuses),
        )
        .route("/api/v4/projects/{id}/statuses/{sha}", post(create_status))
        .route("/api/v4/projects/{id}/repository/compare", get(compare))
}

/// The most files a compare's `diffs` holds: GitLab's default `diff_max_files`. Past it GitLab
/// cuts the diff collection short and says so with `compare_timeout: true` (the API entity
/// exposes `compare.diffs.diffs.overflow?` under that name).
const COMPARE_MAX_FILES: usize = 1000;

/// A branch, a sha or (for `ref`) any revision of the repository.
fn resolve(r: &RepoRec, rev: &str) -> Option<Oid> {
    git::resolve(&r.git, rev).or_else(|| {
        Oid::from_str(rev)
            .ok()
            .filter(|o| git::commit_exists(&r.git, *o))
    })
}

async fn list_branches(
    State(app): State<App>,
    _u: GlUser,
    GlPath(id): GlPath<String>,
    q: GlQuery,
    uri: Uri,
) -> GlResult<Response> {
    let st = app.lock();
    let r = project(&st, &id)?;
    let mut list = git::branches(&r.git)?;
    list.sort();
    let items = list
        .into_iter()
        .filter(|(name, _)| q.get("search").is_none_or(|s| name.contains(s)))
        .map(|(name, tip)| json::branch(&st, r, &name, tip))
        .collect();
    Ok(paginate(items, &q, &uri, &st.base_url))
}

async fn get_branch(
    State(app): State<App>,
    _u: GlUser,
    GlPath((id, branch)): GlPath<(String, String)>,
) -> GlResult<Json<Value>> {
    let st = app.lock();
    let r = project(&st, &id)?;
    let tip = git::branch_tip(&r.git, &branch).ok_or_else(|| GlError::not_found("Branch"))?;
    Ok(Json(json::branch(&st, r, &branch, tip)))
}

async fn create_branch(
    State(app): State<App>,
    GlUser(login): GlUser,
    GlPath(id): GlPath<String>,
    p: GlParams,
) -> GlResult<Response> {
    let branch = p.required("branch")?;
    let rev = p.required("ref")?;
    let mut st = app.lock();
    let (name, tip) = {
        let r = project(&st, &id)?;
        if git::branch_tip(&r.git, &branch).is_some() {
            return Err(GlError::bad_request("Branch already exists"));
        }
        if !crate::ops::valid_branch(&branch) {
            return Err(GlError::bad_request("Branch name is invalid"));
        }
        let tip = resolve(r, &rev)
            .ok_or_else(|| GlError::bad_request(format!("Invalid reference name: {rev}")))?;
        (r.full_name(), tip)
    };
    st.create_branch(&name, &branch, &tip.to_string(), &login)?;
    let r = st.repo(&name)?;
    Ok((
        StatusCode::CREATED,
        Json(json::branch(&st, r, &branch, tip)),
    )
        .into_response())
}

async fn delete_branch(
    State(app): State<App>,
    GlUser(login): GlUser,
    GlPath((id, branch)): GlPath<(String, String)>,
) -> GlResult<StatusCode> {
    let mut st = app.lock();
    let name = {
        let r = project(&st, &id)?;
        if git::branch_tip(&r.git, &branch).is_none() {
            return Err(GlError::not_found("Branch"));
        }
        if branch == r.default_branch {
            return Err(GlError::bad_request(
                "The default branch of a project cannot be deleted.",
            ));
        }
        r.full_name()
    };
    st.delete_branch(&name, &branch, &login)?;
    Ok(StatusCode::NO_CONTENT)
}

/// The bytes, blob id and commit of `path` at `rev`; GitLab's 404s otherwise.
fn read_file(r: &RepoRec, path: &str, rev: &str) -> GlResult<(Vec<u8>, String, Oid)> {
    let commit = resolve(r, rev).ok_or_else(|| GlError::not_found("Commit"))?;
    match git::read_path(&r.git, commit, path)? {
        Some(git::PathEntry::File { sha, bytes }) => Ok((bytes, sha, commit)),
        // GitLab serves a symbolic link's blob: its link text.
        Some(git::PathEntry::Symlink { sha, target }) => Ok((target, sha, commit)),
        _ => Err(GlError::not_found("File")),
    }
}

async fn get_file(
    State(app): State<App>,
    _u: GlUser,
    GlPath((id, path)): GlPath<(String, String)>,
    q: GlQuery,
) -> GlResult<Json<Value>> {
    let rev = q
        .get("ref")
        .ok_or_else(|| GlError::missing("ref"))?
        .to_owned();
    let st = app.lock();
    let r = project(&st, &id)?;
    let (bytes, blob, commit) = read_file(r, &path, &rev)?;
    let last = last_commit_for(&r.git, commit, &path).unwrap_or(commit);
    Ok(Json(json!({
        "file_name": path.rsplit('/').next().unwrap_or(&path),
        "file_path": path,
        "size": bytes.len(),
        "encoding": "base64",
        "content_sha256": hex::encode(Sha256::digest(&bytes)),
        "ref": rev,
        "blob_id": blob,
        "commit_id": commit.to_string(),
        "last_commit_id": last.to_string(),
        "execute_filemode": false,
        "content": base64::engine::general_purpose::STANDARD.encode(&bytes),
    })))
}

async fn get_raw_file(
    State(app): State<App>,
    _u: GlUser,
    GlPath((id, path)): GlPath<(String, String)>,
    q: GlQuery,
) -> GlResult<Response> {
    let st = app.lock();
    let r = project(&st, &id)?;
    let rev = q.get("ref").unwrap_or(&r.default_branch).to_owned();
    let (bytes, _, _) = read_file(r, &path, &rev)?;
    Ok(([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], bytes).into_response())
}

async fn tree(
    State(app): State<App>,
    _u: GlUser,
    GlPath(id): GlPath<String>,
    q: GlQuery,
    uri: Uri,
) -> GlResult<Response> {
    let st = app.lock();
    let r = project(&st, &id)?;
    let rev = q.get("ref").unwrap_or(&r.default_branch);
    let path = q.get("path").unwrap_or("").trim_matches('/');
    let recursive = q.get("recursive") == Some("true");
    let commit = resolve(r, rev).ok_or_else(|| GlError::not_found("Tree"))?;
    let tree_oid = match git::read_path(&r.git, commit, path)? {
        Some(git::PathEntry::Dir(_)) if path.is_empty() => r.git.find_commit(commit)?.tree_id(),
        Some(git::PathEntry::Dir(_)) => r
            .git
            .find_commit(commit)?
            .tree()?
            .get_path(std::path::Path::new(path))?
            .id(),
        _ => return Err(GlError::not_found("Tree")),
    };
    let prefix = if path.is_empty() {
        String::new()
    } else {
        format!("{path}/")
    };
    let (_, items) =
        git::list_tree(&r.git, tree_oid, recursive)?.ok_or_else(|| GlError::not_found("Tree"))?;
    let items = items
        .into_iter()
        .map(|it| {
            json!({
                "id": it.sha,
                "name": it.path.rsplit('/').next().unwrap_or(&it.path),
                "type": it.git_type(),
                "path": format!("{prefix}{}", it.path),
                "mode": if it.is_tree { "040000".to_owned() } else { it.mode },
            })
        })
        .collect();
    Ok(paginate(items, &q, &uri, &st.base_url))
}

async fn create_commit(
    State(app): State<App>,
    GlUser(login): GlUser,
    GlPath(id): GlPath<String>,
    p: GlParams,
) -> GlResult<Response> {
    let branch = p.required("branch")?;
    let message = p.required("commit_message")?;
    let actions = match p.0.get("actions") {
        Some(Value::Array(list)) => list
            .iter()
            .enumerate()
            .map(|(n, v)| FileAction::parse(n, v))
            .collect::<GlResult<Vec<_>>>()?,
        _ => return Err(GlError::missing("actions")),
    };
    let mut st = app.lock();
    let name = project_name(&st, &id)?;
    let oid = st.gl_commit(
        &name,
        &login,
        NewCommit {
            branch,
            message,
            start_branch: p.str("start_branch"),
            start_sha: p.str("start_sha"),
            force: p.0.get("force").and_then(Value::as_bool).unwrap_or(false),
            actions,
        },
    )?;
    let r = st.repo(&name)?;
    let d = git::commit_detail(&r.git, oid).ok_or_else(|| GlError::not_found("Commit"))?;
    Ok((StatusCode::CREATED, Json(json::commit(&st, r, &d))).into_response())
}

async fn get_commit(
    State(app): State<App>,
    _u: GlUser,
    GlPath((id, sha)): GlPath<(String, String)>,
) -> GlResult<Json<Value>> {
    let st = app.lock();
    let r = project(&st, &id)?;
    let d = resolve(r, &sha)
        .and_then(|o| git::commit_detail(&r.git, o))
        .ok_or_else(|| GlError::not_found("Commit"))?;
    Ok(Json(json::commit(&st, r, &d)))
}

async fn list_statuses(
    State(app): State<App>,
    _u: GlUser,
    GlPath((id, sha)): GlPath<(String, String)>,
    q: GlQuery,
    uri: Uri,
) -> GlResult<Response> {
    let st = app.lock();
    let r = project(&st, &id)?;
    let oid = resolve(r, &sha).ok_or_else(|| GlError::not_found("Commit"))?;
    let sha = oid.to_string();
    let all = q.get("all") == Some("true");
    let mut latest: Vec<&crate::state::StatusRec> = Vec::new();
    for s in r.statuses.iter().filter(|s| s.sha == sha) {
        if q.get("name").is_some_and(|n| n != s.context) {
            continue;
        }
        if !all {
            latest.retain(|x| x.context != s.context);
        }
        latest.push(s);
    }
    let git_ref = q.get("ref");
    let items = latest
        .into_iter()
        .rev()
        .map(|s| json::status(&st, s, git_ref))
        .collect();
    Ok(paginate(items, &q, &uri, &st.base_url))
}

async fn create_status(
    State(app): State<App>,
    GlUser(login): GlUser,
    GlPath((id, sha)): GlPath<(String, String)>,
    p: GlParams,
) -> GlResult<Response> {
    let state = p.required("state")?;
    let name = p
        .str("name")
        .or_else(|| p.str("context"))
        .unwrap_or_else(|| "default".to_owned());
    let mut st = app.lock();
    let full = project_name(&st, &id)?;
    let status_id = st.gl_status(
        &full,
        &sha,
        &login,
        &state,
        &name,
        p.str("description").as_deref(),
        p.str("target_url").as_deref(),
    )?;
    let r = st.repo(&full)?;
    let s = r
        .statuses
        .iter()
        .find(|s| s.id == status_id)
        .ok_or_else(|| GlError::not_found("Commit Status"))?;
    let git_ref = p.str("ref");
    Ok((
        StatusCode::CREATED,
        Json(json::status(&st, s, git_ref.as_deref())),
    )
        .into_response())
}

/// `GET …/repository/compare?from=&to=&straight=`: the commits on `to` and not on `from`
/// (oldest first) and the diff from their merge base (`from...to`) or, with `straight=true`,
/// from `from` itself (`from..to`).
async fn compare(
    State(app): State<App>,
    _u: GlUser,
    GlPath(id): GlPath<String>,
    q: GlQuery,
) -> GlResult<Json<Value>> {
    let (from, to) = match (q.get("from"), q.get("to")) {
        (Some(f), Some(t)) => (f, t),
        (f, t) => return Err(missing(&[("from", f.is_none()), ("to", t.is_none())])),
    };
    let straight = matches!(q.get("straight"), Some("true" | "1"));
    let st = app.lock();
    let r = project(&st, &id)?;
    let from = resolve(r, from).ok_or_else(|| GlError::not_found("Ref"))?;
    let to = resolve(r, to).ok_or_else(|| GlError::not_found("Ref"))?;
    let base = if straight {
        from
    } else {
        // Histories without a common commit (never the case within one forge repository) are
        // diffed straight.
        git::merge_base(&r.git, from, to).unwrap_or(from)
    };
    let commits: Vec<Value> = git::commits_between(&r.git, from, to)?
        .into_iter()
        .filter_map(|oid| git::commit_detail(&r.git, oid))
        .map(|d| json::commit(&st, r, &d))
        .collect();
    let files = git::diff(&r.git, base, to)?;
    let diffs: Vec<Value> = files
        .iter()
        .take(COMPARE_MAX_FILES)
        .map(json::diff)
        .collect();
    Ok(Json(json!({
        "commit": commits.last().cloned().unwrap_or(Value::Null),
        "commits": commits,
        "diffs": diffs,
        "compare_timeout": files.len() > COMPARE_MAX_FILES,
        "compare_same_ref": from == to,
        "web_url": format!("{}/{}/-/compare/{from}...{to}", st.base_url, r.full_name()),
    })))
}

/// Grape's 400 for missing required parameters: `{"error": "from is missing, to is missing"}`.
fn missing(params: &[(&str, bool)]) -> GlError {
    let message: Vec<String> = params
        .iter()
        .filter(|(_, gone)| *gone)
        .map(|(name, _)| format!("{name} is missing"))
        .collect();
    GlError {
        status: StatusCode::BAD_REQUEST,
        body: json!({ "error": message.join(", ") }),
    }
}
