//! The low-level Git data API: blobs, trees and commits, so a client can write several files
//! (or delete several) in one commit and then move a branch with `PATCH /git/refs/heads/{b}`.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine;
use git2::{FileMode, Oid};
use serde::Deserialize;
use serde_json::{Value, json};

use super::repos::git_commit_json;
use super::{ApiJson, ApiPath, ApiQuery, App, Caller};
use crate::error::{ApiError, ApiResult};
use crate::git::{self, NewTreeEntry};
use crate::json;
use crate::ops::valid_path;
use crate::state::{ForgeState, RepoRec};

pub(super) fn routes() -> axum::Router<App> {
    axum::Router::new()
        .route("/repos/{owner}/{repo}/git/blobs", post(create_blob))
        .route("/repos/{owner}/{repo}/git/blobs/{sha}", get(get_blob))
        .route("/repos/{owner}/{repo}/git/trees", post(create_tree))
        .route("/repos/{owner}/{repo}/git/trees/{sha}", get(get_tree))
        .route("/repos/{owner}/{repo}/git/commits", post(create_commit))
        .route(
            "/repos/{owner}/{repo}/git/commits/{sha}",
            get(get_git_commit),
        )
}

type RepoPath = ApiPath<(String, String)>;
type RepoRest = ApiPath<(String, String, String)>;

fn full(owner: &str, repo: &str) -> String {
    format!("{owner}/{repo}")
}

fn object_id(s: &str) -> ApiResult<Oid> {
    Oid::from_str(s).map_err(|_| ApiError::unprocessable(format!("{s} is not a valid SHA")))
}

#[derive(Deserialize)]
struct CreateBlob {
    content: String,
    encoding: Option<String>,
}

async fn create_blob(
    State(app): State<App>,
    caller: Caller,
    ApiPath((o, r)): RepoPath,
    ApiJson(body): ApiJson<CreateBlob>,
) -> ApiResult<Response> {
    caller.login()?;
    let bytes = match body.encoding.as_deref().unwrap_or("utf-8") {
        "utf-8" | "utf8" => body.content.into_bytes(),
        "base64" => {
            let cleaned: String = body
                .content
                .chars()
                .filter(|c| !c.is_whitespace())
                .collect();
            base64::engine::general_purpose::STANDARD
                .decode(cleaned)
                .map_err(|_| ApiError::unprocessable("content is not valid Base64"))?
        }
        other => {
            return Err(ApiError::unprocessable(format!(
                "encoding {other:?} is not one of utf-8, base64"
            )));
        }
    };
    let st = app.lock();
    let rec = st.repo(&full(&o, &r))?;
    let oid = rec.git.blob(&bytes)?;
    Ok((
        StatusCode::CREATED,
        Json(json!({
            "sha": oid.to_string(),
            "url": format!("{}/repos/{}/git/blobs/{oid}", st.base_url, rec.full_name()),
        })),
    )
        .into_response())
}

async fn get_blob(
    State(app): State<App>,
    _c: Caller,
    ApiPath((o, r, sha)): RepoRest,
) -> ApiResult<Json<Value>> {
    let st = app.lock();
    let rec = st.repo(&full(&o, &r))?;
    let oid = Oid::from_str(&sha).map_err(|_| ApiError::not_found())?;
    let blob = rec.git.find_blob(oid).map_err(|_| ApiError::not_found())?;
    Ok(Json(json!({
        "sha": sha,
        "node_id": format!("B_{}", &sha[..sha.len().min(12)]),
        "size": blob.size(),
        "url": format!("{}/repos/{}/git/blobs/{sha}", st.base_url, rec.full_name()),
        "content": json::wrapped_base64(blob.content()),
        "encoding": "base64",
    })))
}

/// A tree listing in the shape of `GET /git/trees/{sha}`.
fn tree_json(st: &ForgeState, rec: &RepoRec, oid: Oid, recursive: bool) -> ApiResult<Value> {
    let (tree_sha, items) =
        git::list_tree(&rec.git, oid, recursive)?.ok_or_else(ApiError::not_found)?;
    let b = &st.base_url;
    let fullname = rec.full_name();
    let tree: Vec<Value> = items
        .iter()
        .map(|i| {
            let kind = i.git_type();
            let mut v = json!({
                "path": i.path,
                "mode": i.mode,
                "type": kind,
                "sha": i.sha,
                "url": format!("{b}/repos/{fullname}/git/{kind}s/{}", i.sha),
            });
            if let (Some(size), Value::Object(m)) = (i.size, &mut v) {
                m.insert("size".into(), json!(size));
            }
            v
        })
        .collect();
    Ok(json!({
        "sha": tree_sha,
        "url": format!("{b}/repos/{fullname}/git/trees/{tree_sha}"),
        "tree": tree,
        "truncated": false,
    }))
}

async fn get_tree(
    State(app): State<App>,
    _c: Caller,
    ApiPath((o, r, sha)): RepoRest,
    q: ApiQuery,
) -> ApiResult<Json<Value>> {
    let st = app.lock();
    let rec = st.repo(&full(&o, &r))?;
    let oid = git::resolve(&rec.git, &sha)
        .or_else(|| Oid::from_str(&sha).ok())
        .ok_or_else(ApiError::not_found)?;
    let recursive = q
        .get("recursive")
        .is_some_and(|v| !v.is_empty() && v != "0" && v != "false");
    Ok(Json(tree_json(&st, rec, oid, recursive)?))
}

fn file_mode(mode: &str) -> ApiResult<FileMode> {
    match mode {
        "100644" => Ok(FileMode::Blob),
        "100755" => Ok(FileMode::BlobExecutable),
        "040000" => Ok(FileMode::Tree),
        "120000" => Ok(FileMode::Link),
        "160000" => Ok(FileMode::Commit),
        other => Err(ApiError::unprocessable(format!(
            "tree.mode {other:?} is not one of 100644, 100755, 040000, 160000, 120000"
        ))),
    }
}

/// `POST /git/trees`: entries are parsed by hand because `"sha": null` (delete) and a missing
/// `sha` (use `content`) mean different things.
async fn create_tree(
    State(app): State<App>,
    caller: Caller,
    ApiPath((o, r)): RepoPath,
    ApiJson(body): ApiJson<Value>,
) -> ApiResult<Response> {
    caller.login()?;
    let st = app.lock();
    let rec = st.repo(&full(&o, &r))?;
    let base = match body.get("base_tree") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(object_id(s)?),
        Some(_) => return Err(ApiError::unprocessable("base_tree must be a SHA")),
    };
    let list = body
        .get("tree")
        .and_then(Value::as_array)
        .ok_or_else(|| ApiError::unprocessable("Invalid request.\n\n\"tree\" wasn't supplied."))?;
    let mut entries = Vec::new();
    for e in list {
        let path = e
            .get("path")
            .and_then(Value::as_str)
            .ok_or_else(|| ApiError::unprocessable("tree.path is missing"))?;
        if !valid_path(path) {
            return Err(ApiError::unprocessable(format!(
                "tree.path {path:?} contains a malformed path component"
            )));
        }
        let mode = file_mode(e.get("mode").and_then(Value::as_str).unwrap_or("100644"))?;
        let oid = match (e.get("sha"), e.get("content")) {
            (Some(Value::Null), _) => None,
            (Some(Value::String(sha)), None) => {
                let oid = object_id(sha)?;
                rec.git.find_object(oid, None).map_err(|_| {
                    ApiError::unprocessable(format!("tree.sha {sha} is not a valid blob"))
                })?;
                Some(oid)
            }
            (None, Some(Value::String(content))) => Some(rec.git.blob(content.as_bytes())?),
            _ => {
                return Err(ApiError::unprocessable(
                    "each tree entry needs exactly one of sha (null deletes) and content",
                ));
            }
        };
        entries.push(NewTreeEntry {
            path: path.to_owned(),
            mode,
            oid,
        });
    }
    let oid = git::write_tree(&rec.git, base, &entries).map_err(|e| {
        ApiError::unprocessable(format!("tree could not be written: {}", e.message()))
    })?;
    Ok((StatusCode::CREATED, Json(tree_json(&st, rec, oid, false)?)).into_response())
}

#[derive(Deserialize)]
struct Person {
    name: String,
    email: String,
    date: Option<String>,
}

#[derive(Deserialize)]
struct CreateCommit {
    message: String,
    tree: String,
    #[serde(default)]
    parents: Vec<String>,
    author: Option<Person>,
    committer: Option<Person>,
}

fn signature(
    person: Option<&Person>,
    fallback: &git2::Signature<'static>,
) -> ApiResult<git2::Signature<'static>> {
    let Some(p) = person else {
        return Ok(fallback.clone());
    };
    let when = match &p.date {
        Some(d) => chrono::DateTime::parse_from_rfc3339(d)
            .map_err(|_| ApiError::unprocessable(format!("date {d:?} is not ISO 8601")))?
            .timestamp(),
        None => fallback.when().seconds(),
    };
    Ok(git2::Signature::new(
        &p.name,
        &p.email,
        &git2::Time::new(when, 0),
    )?)
}

async fn create_commit(
    State(app): State<App>,
    caller: Caller,
    ApiPath((o, r)): RepoPath,
    ApiJson(body): ApiJson<CreateCommit>,
) -> ApiResult<Response> {
    let login = caller.login()?.to_owned();
    let st = app.lock();
    let rec = st.repo(&full(&o, &r))?;
    let tree = object_id(&body.tree)?;
    rec.git
        .find_tree(tree)
        .map_err(|_| ApiError::unprocessable(format!("Tree SHA does not exist: {}", body.tree)))?;
    let mut parents = Vec::new();
    for p in &body.parents {
        let oid = object_id(p)?;
        if !git::commit_exists(&rec.git, oid) {
            return Err(ApiError::unprocessable(format!(
                "Parent SHA does not exist or is not a commit object: {p}"
            )));
        }
        parents.push(oid);
    }
    let me = git::user_signature(&login, st.user_id(&login), st.now())?;
    let author = signature(body.author.as_ref(), &me)?;
    let committer = signature(body.committer.as_ref().or(body.author.as_ref()), &me)?;
    let oid = git::write_commit(&rec.git, &body.message, tree, &parents, &author, &committer)?;
    Ok((
        StatusCode::CREATED,
        Json(git_commit_json(&st, rec, &oid.to_string())),
    )
        .into_response())
}

async fn get_git_commit(
    State(app): State<App>,
    _c: Caller,
    ApiPath((o, r, sha)): RepoRest,
) -> ApiResult<Json<Value>> {
    let st = app.lock();
    let rec = st.repo(&full(&o, &r))?;
    let v = git_commit_json(&st, rec, &sha);
    if v.is_null() {
        return Err(ApiError::not_found());
    }
    Ok(Json(v))
}
