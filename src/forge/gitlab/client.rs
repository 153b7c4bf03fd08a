//! The GitLab REST v4 client: the calls the lifecycle makes, in domain words.
//!
//! Plain `reqwest` over GitLab's REST API (the `gitlab` crate's blocking builders are more than
//! we need, and they call `GET /user` on construction). Requests and responses go through small
//! private structs here so that every status code the lifecycle branches on (304, 400, 401,
//! 404, 405, 406, 409, 422, 429) is visible, and retries happen in exactly one place
//! ([`crate::forge::retry`]). The project is addressed by its URL-encoded path
//! (`group%2Fsub%2Fproject`), so the configuration names it the way people read it.

use std::collections::BTreeMap;
use std::time::Duration;

use base64::Engine as _;
use chrono::{DateTime, NaiveDate, Utc};
use http::{HeaderMap, HeaderValue, Method, StatusCode};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use super::{looks_like_bot, reaction_name, route};
use crate::forge::Landed;
use crate::forge::Thread;
use crate::forge::error::{decode, transport};
use crate::forge::etag_cache::EtagCache;
use crate::forge::note_mark::Marked;
use crate::forge::retry::{
    RetryPolicy, branch_at, forge_now, perform_checked, perform_retryable, window_start,
};
use crate::forge::{
    Actor, ChangedFile, ChangedFiles, EntryKind, FileChange, FileContent, ForgeError, HeadMove,
    ListedComment, MergeError, Note, OpenChange, Polled, PullRequestInfo, PullRequestState,
    Reaction, StatusState, ThreadLabels,
};
use crate::secret::Secret;

/// How the bot authenticates to GitLab.
#[derive(Clone, Debug)]
pub enum GitlabAuth {
    /// A personal, project or group access token, sent as `PRIVATE-TOKEN`.
    PrivateToken(Secret),
    /// An OAuth 2 access token, sent as `Authorization: Bearer`.
    OAuth(Secret),
}

/// One file change of a commit made through the API ([`GitlabClient::commit_on`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CommitAction {
    /// A new file; the commit fails if it exists.
    Create { path: String, content: String },
    /// A new version of an existing file; the commit fails if it does not exist.
    Update { path: String, content: String },
    /// Removes a file; the commit fails if it does not exist.
    Delete { path: String },
}

impl CommitAction {
    fn to_json(&self) -> Value {
        match self {
            Self::Create { path, content } => {
                json!({ "action": "create", "file_path": path, "content": content })
            }
            Self::Update { path, content } => {
                json!({ "action": "update", "file_path": path, "content": content })
            }
            Self::Delete { path } => json!({ "action": "delete", "file_path": path }),
        }
    }
}

/// A client bound to one project (the requests repo).
#[derive(Clone, Debug)]
pub struct GitlabClient {
    http: reqwest::Client,
    /// `https://gitlab.example.com/api/v4`, without a trailing slash.
    api_url: String,
    /// The path part of `api_url` (`/api/v4`), to read `Link` headers that name the instance by
    /// its external URL.
    api_path: String,
    /// `group/sub/project`.
    project: String,
    auth: GitlabAuth,
    retry: RetryPolicy,
    /// Bodies of earlier GETs by route, with their ETags: GitLab answers `If-None-Match` with
    /// `304` where it sends ETags, which saves the body (not the rate limit).
    cache: EtagCache,
}

/// Most items GitLab returns per page.
const PER_PAGE: u32 = 100;
/// Most pages read for one list. A longer list is an error, never a silent truncation: a
/// missing file in a merge request's diff or a missing withdrawal would change a decision.
const MAX_PAGES: usize = 50;
/// GitLab's limit on a commit status description.
const STATUS_DESCRIPTION_CHARS: usize = 255;
/// The lowest access level that makes someone a member (Guest); Minimal Access (5) does not.
const GUEST: u32 = 10;

/// A raw answer: status, headers and body text.
struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: String,
}

impl GitlabClient {
    /// Builds a client for the project `group/…/name` at `api_url` (for example
    /// `https://gitlab.example.com/api/v4`). Makes no call: a wrong token shows on first use.
    pub async fn connect(
        api_url: &str,
        project_path: &str,
        auth: GitlabAuth,
    ) -> Result<Self, ForgeError> {
        let config = |message: String| ForgeError::Refused {
            call: "configuration".into(),
            status: 0,
            message,
        };
        let project = project_path.trim_matches('/');
        if !project.contains('/') || project.split('/').any(str::is_empty) {
            return Err(config(format!(
                "project `{project_path}` is not `group/name` (subgroups allowed)"
            )));
        }
        let api_url = api_url.trim_end_matches('/').to_owned();
        let parsed = url::Url::parse(&api_url)
            .map_err(|err| config(format!("api_url `{api_url}`: {err}")))?;
        let http = reqwest::Client::builder()
            .user_agent(concat!("breakglass/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(10))
            // The token travels in `PRIVATE-TOKEN`, which reqwest does not strip on a redirect
            // to another host: never follow one.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|err| transport("configuration", err))?;
        Ok(Self {
            http,
            api_path: parsed.path().trim_end_matches('/').to_owned(),
            api_url,
            project: project.to_owned(),
            auth,
            retry: RetryPolicy::default(),
            cache: EtagCache::default(),
        })
    }

    /// Overrides the retry policy (tests use short timeouts).
    pub fn with_retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// The project's path, `group/…/name`.
    pub fn repository(&self) -> String {
        self.project.clone()
    }

    /// `/projects/<encoded path><rest>`.
    fn project_route(&self, rest: &str) -> String {
        format!("/projects/{}{rest}", encode(&self.project))
    }

    fn auth_header(&self) -> Result<(&'static str, HeaderValue), ForgeError> {
        let (name, value) = match &self.auth {
            GitlabAuth::PrivateToken(token) => ("private-token", token.expose().to_owned()),
            GitlabAuth::OAuth(token) => ("authorization", format!("Bearer {}", token.expose())),
        };
        let mut value = HeaderValue::from_str(&value).map_err(|_| ForgeError::Refused {
            call: "configuration".into(),
            status: 0,
            message: "the GitLab token is not a valid HTTP header value".into(),
        })?;
        value.set_sensitive(true);
        Ok((name, value))
    }

    /// One attempt of a call, with our own status handling.
    async fn attempt(
        &self,
        method: &Method,
        route: &str,
        body: Option<&Value>,
        headers: &HeaderMap,
    ) -> Result<Answer, ForgeError> {
        let call = format!("{method} {route}");
        let (name, value) = self.auth_header()?;
        let mut request = self
            .http
            .request(method.clone(), format!("{}{route}", self.api_url))
            .headers(headers.clone())
            .header(name, value);
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await.map_err(|err| transport(&call, err))?;
        let status = response.status();
        let headers = response.headers().clone();
        let body = response.text().await.map_err(|err| transport(&call, err))?;
        classify(&call, status, &headers, &body)?;
        Ok(Answer {
            status,
            headers,
            body,
        })
    }

    async fn send(
        &self,
        method: Method,
        route: &str,
        body: Option<Value>,
        headers: HeaderMap,
    ) -> Result<Answer, ForgeError> {
        let name = format!("{method} {route}");
        perform_retryable(self.retry, &name, || {
            self.attempt(&method, route, body.as_ref(), &headers)
        })
        .await
    }

    /// A write (POST, PUT, DELETE) whose answer is decoded.
    async fn write<T: DeserializeOwned>(
        &self,
        method: Method,
        route: &str,
        body: Value,
    ) -> Result<T, ForgeError> {
        let answer = self
            .send(method.clone(), route, Some(body), HeaderMap::new())
            .await?;
        decode(&format!("{method} {route}"), &answer.body)
    }

    /// A GET of one object, conditional on the ETag of an earlier answer when there is one.
    async fn get<T: DeserializeOwned>(&self, route: &str) -> Result<T, ForgeError> {
        self.get_answered(route).await.map(|(value, _)| value)
    }

    /// [`Self::get`], with the answer's headers (a `304 Not Modified`'s own, which are as
    /// current as a full answer's).
    async fn get_answered<T: DeserializeOwned>(
        &self,
        route: &str,
    ) -> Result<(T, HeaderMap), ForgeError> {
        let call = format!("GET {route}");
        let cached = self.cache.get(route);
        let mut headers = HeaderMap::new();
        if let Some(etag) = cached
            .as_ref()
            .and_then(|cached| HeaderValue::from_str(&cached.etag).ok())
        {
            headers.insert(http::header::IF_NONE_MATCH, etag);
        }
        let answer = self.send(Method::GET, route, None, headers).await?;
        if answer.status == StatusCode::NOT_MODIFIED {
            return match cached {
                Some(cached) => Ok((decode(&call, &cached.body)?, answer.headers)),
                None => Err(ForgeError::Decode {
                    call,
                    detail: "304 Not Modified to a request without If-None-Match".into(),
                }),
            };
        }
        if let Some(etag) = header(&answer.headers, "etag") {
            self.cache.put(route, etag, &answer.body);
        }
        Ok((decode(&call, &answer.body)?, answer.headers))
    }

    /// Every page of a list, following `X-Next-Page` (offset pagination) or `Link: rel="next"`
    /// (keyset pagination), up to [`MAX_PAGES`].
    async fn get_all<T: DeserializeOwned>(&self, route: &str) -> Result<Vec<T>, ForgeError> {
        let first = with_param(route, "per_page", &PER_PAGE.to_string());
        self.pages_from(&first, None).await.map(|(items, _)| items)
    }

    /// Reads pages starting at `first` (whose answer, when given, is already in hand).
    async fn pages_from<T: DeserializeOwned>(
        &self,
        first: &str,
        answered: Option<Answer>,
    ) -> Result<(Vec<T>, Option<String>), ForgeError> {
        let mut items = Vec::new();
        let mut route = first.to_owned();
        let mut answer = match answered {
            Some(answer) => answer,
            None => {
                self.send(Method::GET, &route, None, HeaderMap::new())
                    .await?
            }
        };
        let etag = header(&answer.headers, "etag").map(str::to_owned);
        for page in 1..=MAX_PAGES {
            let batch: Vec<T> = decode(&format!("GET {route}"), &answer.body)?;
            items.extend(batch);
            let next = next_page(first, &self.api_path, &answer.headers).map_err(|detail| {
                ForgeError::Decode {
                    call: format!("GET {route}"),
                    detail,
                }
            })?;
            let Some(next) = next else {
                return Ok((items, etag));
            };
            if page == MAX_PAGES {
                break;
            }
            route = next;
            answer = self
                .send(Method::GET, &route, None, HeaderMap::new())
                .await?;
        }
        Err(ForgeError::Decode {
            call: format!("GET {first}"),
            detail: format!("more than {MAX_PAGES} pages of {PER_PAGE}; refusing a partial list"),
        })
    }

    /// The account the bot acts as (`GET /user`; GitLab marks bot users `"bot": true`).
    pub async fn me(&self) -> Result<Actor, ForgeError> {
        Ok(self.get::<User>("/user").await?.into())
    }

    /// The project's default branch, where policies and active requests live.
    pub async fn default_branch(&self) -> Result<String, ForgeError> {
        #[derive(Deserialize)]
        struct Project {
            default_branch: Option<String>,
        }
        let route = self.project_route("");
        let project: Project = self.get(&route).await?;
        project.default_branch.ok_or_else(|| ForgeError::Decode {
            call: format!("GET {route}"),
            detail: "the project has no default branch (empty repository?)".into(),
        })
    }

    /// The commit a branch points at.
    pub async fn branch_head(&self, branch: &str) -> Result<String, ForgeError> {
        #[derive(Deserialize)]
        struct Branch {
            commit: Commit,
        }
        let route = self.project_route(&format!("/repository/branches/{}", encode(branch)));
        Ok(self.get::<Branch>(&route).await?.commit.id)
    }

    /// A file at a ref, or `None` when it does not exist there.
    pub async fn read_file(
        &self,
        git_ref: &str,
        path: &str,
    ) -> Result<Option<FileContent>, ForgeError> {
        #[derive(Deserialize)]
        struct File {
            blob_id: String,
            #[serde(default)]
            encoding: String,
            #[serde(default)]
            content: String,
        }
        let route = self.project_route(&format!(
            "/repository/files/{}?ref={}",
            encode(path),
            encode(&unambiguous(git_ref))
        ));
        let file: File = match self.get(&route).await {
            Ok(file) => file,
            Err(err) if err.status() == Some(404) => return Ok(None),
            Err(err) => return Err(err),
        };
        let call = format!("GET {route}");
        let bytes = if file.encoding == "base64" {
            let cleaned: String = file.content.split_whitespace().collect();
            base64::engine::general_purpose::STANDARD
                .decode(cleaned)
                .map_err(|err| ForgeError::Decode {
                    call: call.clone(),
                    detail: err.to_string(),
                })?
        } else {
            file.content.into_bytes()
        };
        let text = String::from_utf8(bytes).map_err(|_| ForgeError::Decode {
            call,
            detail: format!("{path} is not UTF-8"),
        })?;
        Ok(Some(FileContent {
            path: path.to_owned(),
            text,
            blob_sha: file.blob_id,
        }))
    }

    /// The files of a directory at a ref (full paths, no subdirectories), all pages; empty when
    /// the directory does not exist.
    pub async fn list_dir(&self, git_ref: &str, path: &str) -> Result<Vec<String>, ForgeError> {
        let files = self.list_tree(git_ref, path, false).await?;
        Ok(files.into_iter().map(|(path, _)| path).collect())
    }

    /// The files of a directory at a ref (full path and blob id, no subdirectories), all pages;
    /// empty when the directory does not exist.
    pub async fn list_dir_blobs(
        &self,
        git_ref: &str,
        path: &str,
    ) -> Result<Vec<(String, String)>, ForgeError> {
        self.list_tree(git_ref, path, false).await
    }

    /// The files under a directory at a ref at any depth (full path and blob id), all pages;
    /// empty when the directory does not exist.
    pub async fn list_files_under(
        &self,
        git_ref: &str,
        path: &str,
    ) -> Result<Vec<(String, String)>, ForgeError> {
        self.list_tree(git_ref, path, true).await
    }

    async fn list_tree(
        &self,
        git_ref: &str,
        path: &str,
        recursive: bool,
    ) -> Result<Vec<(String, String)>, ForgeError> {
        #[derive(Deserialize)]
        struct Entry {
            path: String,
            #[serde(rename = "type")]
            kind: String,
            /// The blob id, for a file.
            id: String,
        }
        let mut route = self.project_route(&format!(
            "/repository/tree?ref={}",
            encode(&unambiguous(git_ref))
        ));
        let dir = path.trim_matches('/');
        if !dir.is_empty() {
            route = with_param(&route, "path", &encode(dir));
        }
        if recursive {
            route = with_param(&route, "recursive", "true");
        }
        match self.get_all::<Entry>(&route).await {
            Ok(entries) => Ok(entries
                .into_iter()
                .filter(|e| e.kind == "blob")
                .map(|e| (e.path, e.id))
                .collect()),
            Err(err) if err.status() == Some(404) => Ok(Vec::new()),
            Err(err) => Err(err),
        }
    }

    /// Creates `branch` at `sha`.
    pub async fn create_branch(&self, branch: &str, sha: &str) -> Result<(), ForgeError> {
        let route = self.project_route("/repository/branches");
        let body = json!({ "branch": branch, "ref": sha });
        let create = || async {
            self.attempt(&Method::POST, &route, Some(&body), &HeaderMap::new())
                .await
                .map(drop)
        };
        // A creation whose answer was lost may have made it: made again, it would be
        // refused ("Branch already exists").
        let done = || async { branch_at(self.branch_head(branch).await, sha) };
        perform_checked(self.retry, &format!("POST {route}"), create, done).await
    }

    /// Deletes a branch (after its merge request is merged or closed); a missing branch is fine.
    pub async fn delete_branch(&self, branch: &str) -> Result<(), ForgeError> {
        let route = self.project_route(&format!("/repository/branches/{}", encode(branch)));
        match self
            .send(Method::DELETE, &route, None, HeaderMap::new())
            .await
        {
            Ok(_) => Ok(()),
            Err(err) if err.status() == Some(404) => Ok(()),
            Err(err) => Err(err),
        }
    }

    /// Puts `branch` back to the tree of commit `sha`, whatever it holds now; returns the new
    /// head. GitLab's REST API cannot move a branch to an older commit (there is no ref
    /// update), and deleting a merge request's source branch closes the merge request. So the
    /// branch is overwritten (`force`) with one commit on top of `sha` that rewrites `path`
    /// with `content`, its text at `sha`: the same tree as `sha`, under a new commit id.
    pub async fn restore_branch(
        &self,
        branch: &str,
        sha: &str,
        path: &str,
        content: &str,
        message: &str,
    ) -> Result<String, ForgeError> {
        let action = CommitAction::Update {
            path: path.to_owned(),
            content: content.to_owned(),
        };
        let body = json!({
            "branch": branch,
            "commit_message": message,
            "start_sha": sha,
            "force": true,
            "actions": [action.to_json()],
        });
        let route = self.project_route("/repository/commits");
        Ok(self.write::<Commit>(Method::POST, &route, body).await?.id)
    }

    /// Writes a file on a branch as one commit on `parent` and returns the commit.
    /// `previous_blob` says whether the file exists (update) or not (create). GitLab's commits
    /// API takes no blob to check against (only a commit id), so the blob is not compared: the
    /// commit is made on `parent`, the head the bot left, and overwrites the branch (see
    /// [`Self::commit_on`]).
    pub async fn put_file(
        &self,
        branch: &str,
        parent: &str,
        path: &str,
        content: &str,
        message: &str,
        previous_blob: Option<&str>,
    ) -> Result<String, ForgeError> {
        let (path, content) = (path.to_owned(), content.to_owned());
        let action = match previous_blob {
            Some(_) => CommitAction::Update { path, content },
            None => CommitAction::Create { path, content },
        };
        self.commit_on(branch, parent, message, &[action]).await
    }

    /// Deletes a file on a branch as one commit on `parent`; returns the commit.
    pub async fn delete_file(
        &self,
        branch: &str,
        parent: &str,
        path: &str,
        message: &str,
    ) -> Result<String, ForgeError> {
        let action = CommitAction::Delete {
            path: path.to_owned(),
        };
        self.commit_on(branch, parent, message, &[action]).await
    }

    /// One commit of `actions` on commit `parent`, which `branch` (one of the bot's own) is
    /// then overwritten with (`start_sha` and `force`): a commit someone pushed onto the
    /// branch after `parent` is dropped with it, never built on and merged unseen.
    pub async fn commit_on(
        &self,
        branch: &str,
        parent: &str,
        message: &str,
        actions: &[CommitAction],
    ) -> Result<String, ForgeError> {
        let body = json!({
            "branch": branch,
            "commit_message": message,
            "start_sha": parent,
            "force": true,
            "actions": actions.iter().map(CommitAction::to_json).collect::<Vec<_>>(),
        });
        let route = self.project_route("/repository/commits");
        Ok(self.write::<Commit>(Method::POST, &route, body).await?.id)
    }

    /// Opens a merge request from `source` into `target`, labelled `labels` (GitLab takes them
    /// with the merge request, as one comma-separated list); returns it.
    pub async fn open_pull_request(
        &self,
        source: &str,
        target: &str,
        title: &str,
        body: &str,
        labels: &[String],
    ) -> Result<PullRequestState, ForgeError> {
        let route = self.project_route("/merge_requests");
        let mut request = json!({
            "source_branch": source,
            "target_branch": target,
            "title": title,
            "description": body,
        });
        if !labels.is_empty() {
            let labels = labels
                .iter()
                .map(|label| one_label(label))
                .collect::<Result<Vec<_>, _>>()?;
            request["labels"] = json!(labels.join(","));
        }
        let call = format!("POST {route}");
        let open = || async {
            let answer = self
                .attempt(&Method::POST, &route, Some(&request), &HeaderMap::new())
                .await?;
            decode::<MergeRequest>(&call, &answer.body)
        };
        // An opening whose answer was lost may have opened it: a retry would be refused
        // ("Another open merge request already exists"), so GitLab is asked first.
        let mr = perform_checked(self.retry, &call, open, || {
            self.open_merge_request_from(source, target)
        })
        .await?;
        // Opened from a branch of this project: no fork to look up.
        Ok(mr.into_state(self.project.clone()))
    }

    /// The open merge request from branch `source` of this project into `target`, if there
    /// is one (GitLab allows one such; a fork's branch of that name is another source).
    async fn open_merge_request_from(
        &self,
        source: &str,
        target: &str,
    ) -> Result<Option<MergeRequest>, ForgeError> {
        let route = self.project_route(&format!(
            "/merge_requests?state=opened&source_branch={}&target_branch={}",
            encode(source),
            encode(target)
        ));
        let answer = self
            .attempt(&Method::GET, &route, None, &HeaderMap::new())
            .await?;
        let listed: Vec<MergeRequest> = decode(&format!("GET {route}"), &answer.body)?;
        Ok(listed.into_iter().find(|mr| {
            mr.source_branch == source
                && mr.target_branch == target
                && mr.source_project_id == mr.target_project_id
        }))
    }

    /// Every open merge request of the project, newest first, with whether each was updated
    /// within `window` before GitLab's own time.
    pub async fn open_pull_requests(
        &self,
        window: chrono::TimeDelta,
    ) -> Result<Vec<OpenChange>, ForgeError> {
        // Page by page, newest first: past the last page kept, the oldest are left out (and
        // said so), where `get_all` would refuse the whole list.
        let mut listed: Vec<MergeRequest> = Vec::new();
        let mut since = None;
        for page in 1..=MAX_PAGES {
            let route = self.project_route(&format!(
                "/merge_requests?state=opened&per_page={PER_PAGE}&page={page}"
            ));
            let answer = self
                .send(Method::GET, &route, None, HeaderMap::new())
                .await?;
            window_start(&mut since, &answer.headers, window);
            let batch: Vec<MergeRequest> = decode(&format!("GET {route}"), &answer.body)?;
            let done = batch.len() < PER_PAGE as usize;
            listed.extend(batch);
            if done {
                break;
            }
            if page == MAX_PAGES {
                tracing::warn!(
                    listed = listed.len(),
                    "more open merge requests than the catch-up lists; the oldest are not looked at"
                );
            }
        }
        Ok(listed
            .into_iter()
            .filter_map(|mr| {
                Some(OpenChange {
                    number: mr.iid,
                    recently_updated: since.zip(mr.updated_at).is_some_and(|(s, at)| at >= s),
                    head_sha: mr.sha?,
                    author_id: mr.author.id,
                    draft: mr.draft.or(mr.work_in_progress).unwrap_or(false),
                    labels: mr.labels,
                })
            })
            .collect())
    }

    /// The project's notes made within `window` before GitLab's own time (the `Date` of its
    /// answer), from its events (`action=commented`), newest first. A note on an issue whose
    /// body `keep` takes is internal when the issue is confidential (one read per such issue:
    /// the event does not say). Empty when GitLab says no time.
    pub async fn recent_notes(
        &self,
        window: chrono::TimeDelta,
        keep: &impl Fn(&str) -> bool,
    ) -> Result<Vec<ListedComment>, ForgeError> {
        let mut notes: Vec<EventNote> = Vec::new();
        let mut kept = None;
        for page in 1..=10 {
            let route = self.project_route(&format!(
                "/events?action=commented&sort=desc&per_page={PER_PAGE}&page={page}"
            ));
            let answer = self
                .send(Method::GET, &route, None, HeaderMap::new())
                .await?;
            let Some(since) = window_start(&mut kept, &answer.headers, window) else {
                tracing::warn!(
                    "GitLab's answer says no time: notes made while the bot was down are not looked for"
                );
                return Ok(Vec::new());
            };
            let events: Vec<CommentedEvent> = decode(&format!("GET {route}"), &answer.body)?;
            let last_page = events.len() < PER_PAGE as usize
                || events
                    .iter()
                    .any(|e| e.note.as_ref().is_some_and(|n| n.created_at < since));
            notes.extend(
                events
                    .into_iter()
                    .filter_map(|e| e.note)
                    .filter(|n| n.created_at >= since && !n.system),
            );
            if last_page {
                break;
            }
        }
        // The forge's time of the listing (its first answer's `Date`).
        let listed_at = kept.map_or(DateTime::<Utc>::MIN_UTC, |since| since + window);
        let mut confidential: BTreeMap<u64, bool> = BTreeMap::new();
        let mut listed = Vec::new();
        for note in notes {
            let (number, on_change) = match (note.noteable_type.as_deref(), note.noteable_iid) {
                (Some("MergeRequest"), Some(iid)) => (iid, true),
                (Some("Issue"), Some(iid)) => (iid, false),
                _ => continue, // a commit's or a snippet's: no thread of the bot's
            };
            let mut internal = note.internal || note.confidential;
            if !on_change && !internal && keep(&note.body) {
                internal = match confidential.get(&number) {
                    Some(&hidden) => hidden,
                    None => {
                        let hidden = self.issue_is_confidential(number).await?;
                        confidential.insert(number, hidden);
                        hidden
                    }
                };
            }
            listed.push(ListedComment {
                id: note.id,
                number,
                on_change,
                body: note.body,
                author: note.author.into(),
                created_at: note.created_at,
                internal,
                edited: note.updated_at.is_some_and(|at| at > note.created_at),
                age: listed_at - note.created_at,
            });
        }
        Ok(listed)
    }

    /// Whether issue `iid` is confidential (only some members see it).
    async fn issue_is_confidential(&self, iid: u64) -> Result<bool, ForgeError> {
        #[derive(Deserialize)]
        struct Issue {
            #[serde(default)]
            confidential: bool,
        }
        let route = self.project_route(&format!("/issues/{iid}"));
        Ok(self.get::<Issue>(&route).await?.confidential)
    }

    /// The open merge request from `branch` of this project (not of a fork), if there is one:
    /// makes opening one idempotent (GitLab refuses a second with 409).
    pub async fn find_open_pull_request(&self, branch: &str) -> Result<Option<u64>, ForgeError> {
        #[derive(Deserialize)]
        struct Listed {
            iid: u64,
            source_branch: String,
            source_project_id: u64,
            target_project_id: u64,
        }
        let route = self.project_route(&format!(
            "/merge_requests?state=opened&source_branch={}",
            encode(branch)
        ));
        let found: Vec<Listed> = self.get_all(&route).await?;
        Ok(found
            .into_iter()
            .find(|mr| mr.source_branch == branch && mr.source_project_id == mr.target_project_id)
            .map(|mr| mr.iid))
    }

    /// A merge request's current state. `locked` (GitLab is merging it right now) counts as
    /// open and not merged: the next read shows the outcome.
    pub async fn pull_request(&self, iid: u64) -> Result<PullRequestState, ForgeError> {
        let route = self.project_route(&format!("/merge_requests/{iid}"));
        let mr: MergeRequest = self.get(&route).await?;
        let head_repo = self.head_repo(&mr).await?;
        Ok(mr.into_state(head_repo))
    }

    /// The newest version of merge request `iid` (GitLab makes one at every push, a push
    /// back to an earlier head too), with its head; `None` when it lists none.
    pub async fn latest_head_move(&self, iid: u64) -> Result<Option<HeadMove>, ForgeError> {
        #[derive(Deserialize)]
        struct Version {
            head_commit_sha: String,
            created_at: DateTime<Utc>,
        }
        let route = self.project_route(&format!("/merge_requests/{iid}/versions?per_page=1"));
        let newest: Vec<Version> = self.get(&route).await?;
        Ok(newest.into_iter().next().map(|v| HeadMove {
            at: Some(v.created_at),
            sha: Some(v.head_commit_sha),
        }))
    }

    /// The project a merge request's source branch lives in: this project, or a fork named by
    /// its own path (a fork we cannot read is still named as something other than this project).
    async fn head_repo(&self, mr: &MergeRequest) -> Result<String, ForgeError> {
        #[derive(Deserialize)]
        struct Project {
            path_with_namespace: String,
        }
        if mr.source_project_id == mr.target_project_id {
            return Ok(self.project.clone());
        }
        let route = format!("/projects/{}", mr.source_project_id);
        match self.get::<Project>(&route).await {
            Ok(fork) => Ok(fork.path_with_namespace),
            Err(err) if matches!(err.status(), Some(403 | 404)) => {
                Ok(format!("gitlab project {}", mr.source_project_id))
            }
            Err(err) => Err(err),
        }
    }

    /// The files that merging commit `head_sha` into branch `base` would change: the
    /// comparison from their merge base (`straight=false`), pinned to the commit.
    pub async fn compare_files(
        &self,
        base: &str,
        head_sha: &str,
    ) -> Result<ChangedFiles, ForgeError> {
        #[derive(Deserialize)]
        struct Compare {
            #[serde(default)]
            diffs: Vec<Diff>,
            /// GitLab's name for a diff collection cut at its limits (`overflow?`).
            #[serde(default)]
            compare_timeout: bool,
            #[serde(default)]
            commits: Vec<Commit>,
        }
        #[derive(Deserialize)]
        struct Commit {
            #[serde(default)]
            parent_ids: Vec<String>,
        }
        let route = self.project_route(&format!(
            "/repository/compare?from={}&to={}&straight=false",
            encode(&unambiguous(base)),
            encode(head_sha)
        ));
        let compare: Compare = self.get(&route).await?;
        Ok(ChangedFiles {
            files: compare
                .diffs
                .into_iter()
                .map(Diff::into_changed_file)
                .collect(),
            complete: !compare.compare_timeout,
            merge_commits: compare.commits.iter().any(|c| c.parent_ids.len() > 1),
            // GitLab's comparison does not say which commit `from` named.
            base_sha: None,
        })
    }

    /// Every file a merge request changes (`GET …/diffs`, GitLab 15.7+, all pages), at whatever
    /// head it has when served: only for a forge without the comparison API.
    pub async fn pull_request_files(&self, iid: u64) -> Result<Vec<ChangedFile>, ForgeError> {
        let route = self.project_route(&format!("/merge_requests/{iid}/diffs"));
        let diffs: Vec<Diff> = self.get_all(&route).await?;
        Ok(diffs.into_iter().map(Diff::into_changed_file).collect())
    }

    /// The labels of issue `iid` (an issue's iid, not a merge request's), and whether it is
    /// open (`state` `opened`), from one read of the issue.
    pub async fn issue_labels(&self, iid: u64) -> Result<ThreadLabels, ForgeError> {
        #[derive(Deserialize)]
        struct Issue {
            state: String,
            #[serde(default)]
            labels: Vec<String>,
        }
        let route = self.project_route(&format!("/issues/{iid}"));
        let issue = self.get::<Issue>(&route).await?;
        Ok(ThreadLabels {
            open: issue.state == "opened",
            labels: issue.labels,
        })
    }

    /// Closes a merge request without merging.
    /// Sets a merge request's title and description.
    pub async fn retitle_pull_request(
        &self,
        iid: u64,
        title: &str,
        body: &str,
    ) -> Result<(), ForgeError> {
        self.update_merge_request(iid, json!({ "title": title, "description": body }))
            .await
    }

    pub async fn close_pull_request(&self, iid: u64) -> Result<(), ForgeError> {
        self.update_merge_request(iid, json!({ "state_event": "close" }))
            .await
    }

    /// Adds a label (GitLab creates a project label that does not exist yet).
    pub async fn add_label(&self, iid: u64, label: &str) -> Result<(), ForgeError> {
        let label = one_label(label)?;
        self.update_merge_request(iid, json!({ "add_labels": label }))
            .await
    }

    /// Removes a label; a label that is not there is fine.
    pub async fn remove_label(&self, iid: u64, label: &str) -> Result<(), ForgeError> {
        let label = one_label(label)?;
        self.update_merge_request(iid, json!({ "remove_labels": label }))
            .await
    }

    async fn update_merge_request(&self, iid: u64, body: Value) -> Result<(), ForgeError> {
        let route = self.project_route(&format!("/merge_requests/{iid}"));
        self.write::<Value>(Method::PUT, &route, body)
            .await
            .map(drop)
    }

    /// Posts a note on an issue or merge request; returns its id.
    /// Posts `note` on `thread`, once: an attempt whose answer was lost is looked for on the
    /// thread (by its mark) before the note is posted again.
    pub async fn comment(&self, thread: Thread, note: &Marked) -> Result<u64, ForgeError> {
        #[derive(Deserialize)]
        struct Created {
            id: u64,
        }
        let notes = self.project_route(&format!("/{}/notes", route(thread)));
        let call = format!("POST {notes}");
        let body = json!({ "body": note.body });
        let post = || async {
            let answer = self
                .attempt(&Method::POST, &notes, Some(&body), &HeaderMap::new())
                .await?;
            decode::<Created>(&call, &answer.body).map(|created| created.id)
        };
        perform_checked(self.retry, &call, post, || {
            self.find_note(thread, &note.mark)
        })
        .await
    }

    /// The id of the note on `thread` that carries `mark`, if it is there (newest first:
    /// a lost answer is of a note just posted).
    async fn find_note(&self, thread: Thread, mark: &str) -> Result<Option<u64>, ForgeError> {
        #[derive(Deserialize)]
        struct Raw {
            id: u64,
            #[serde(default)]
            body: String,
        }
        let route = self.project_route(&format!("/{}/notes?sort=desc", route(thread)));
        let notes: Vec<Raw> = self.get_all(&route).await?;
        Ok(notes.iter().find(|n| n.body.contains(mark)).map(|n| n.id))
    }

    /// The notes on `thread` as (author id, body), oldest first.
    pub async fn comments(&self, thread: Thread) -> Result<Vec<Note>, ForgeError> {
        #[derive(Deserialize)]
        struct Raw {
            author: User,
            #[serde(default)]
            body: String,
            created_at: DateTime<Utc>,
        }
        let route = self.project_route(&format!("/{}/notes?sort=asc", route(thread)));
        let notes: Vec<Raw> = self.get_all(&route).await?;
        Ok(notes
            .into_iter()
            .map(|n| Note {
                author_id: n.author.id,
                body: n.body,
                created_at: n.created_at,
            })
            .collect())
    }

    /// The text of note `note_id` on `thread` now; `None` once deleted.
    pub async fn comment_body(
        &self,
        thread: Thread,
        note_id: u64,
    ) -> Result<Option<String>, ForgeError> {
        #[derive(Deserialize)]
        struct Raw {
            #[serde(default)]
            body: Option<String>,
        }
        let route = self.project_route(&format!("/{}/notes/{note_id}", route(thread)));
        match self.get::<Raw>(&route).await {
            Ok(raw) => Ok(Some(raw.body.unwrap_or_default())),
            Err(err) if err.status() == Some(404) => Ok(None),
            Err(err) => Err(err),
        }
    }

    /// Sets the commit status `context` on `sha`. GitLab's statuses are a state machine that
    /// refuses (400) a move to the state the status is already in; that is what we wanted, so
    /// it counts as done.
    pub async fn set_status(
        &self,
        sha: &str,
        state: StatusState,
        context: &str,
        description: &str,
    ) -> Result<(), ForgeError> {
        let wanted = status_name(state);
        let description: String = description.chars().take(STATUS_DESCRIPTION_CHARS).collect();
        // `name` and `context` are the same parameter; older instances know only one of them.
        let body = json!({
            "state": wanted,
            "name": context,
            "context": context,
            "description": description,
        });
        let route = self.project_route(&format!("/statuses/{}", encode(sha)));
        match self
            .send(Method::POST, &route, Some(body), HeaderMap::new())
            .await
        {
            Ok(_) => Ok(()),
            Err(err) if already_in_state(&err, wanted) => Ok(()),
            Err(err) => Err(err),
        }
    }

    /// Merges with a merge commit (never squash), only if the source branch's head is still
    /// `sha`; returns the commit that landed. `remove_source` has GitLab delete the source
    /// branch once merged.
    pub async fn merge(
        &self,
        iid: u64,
        sha: &str,
        merge_commit_message: &str,
        remove_source: bool,
    ) -> Result<Landed, MergeError> {
        let route = self.project_route(&format!("/merge_requests/{iid}/merge"));
        let body = json!({
            "sha": sha,
            "merge_commit_message": merge_commit_message,
            "squash": false,
            "should_remove_source_branch": remove_source,
        });
        let call = format!("PUT {route}");
        // What landed, or why GitLab says nothing did.
        let put = || async {
            let answer = self
                .attempt(&Method::PUT, &route, Some(&body), &HeaderMap::new())
                .await?;
            let merged: MergeRequest = decode(&call, &answer.body)?;
            if merged.state != "merged" {
                return Ok(Err(format!(
                    "GitLab answered the merge with state `{}`",
                    merged.state
                )));
            }
            // A fast-forward project makes no merge commit: what landed is the head itself.
            Ok(Ok(Landed {
                sha: merged
                    .merge_commit_sha
                    .or(merged.squash_commit_sha)
                    .unwrap_or_else(|| sha.to_owned()),
                base: Some(merged.target_branch),
                found_merged_by: None,
            }))
        };
        // A merge whose answer was lost may have happened: merged again, it would be refused,
        // and a merge the bot made taken for one it did not.
        let done = || async {
            let mr = self.pull_request(iid).await?;
            let landed = mr.info.merged && mr.info.head_sha == sha;
            Ok(landed.then(|| {
                Ok(Landed {
                    sha: mr.merge_sha.unwrap_or_else(|| sha.to_owned()),
                    base: Some(mr.info.base_ref),
                    found_merged_by: Some(mr.merged_by),
                })
            }))
        };
        let mut settling = SETTLING_WAITS.iter();
        loop {
            let answer = perform_checked(self.retry, &call, &put, &done).await;
            if !matches!(answer, Err(ForgeError::Refused { status: 405, .. })) {
                return answer
                    .map_err(merge_error)?
                    .map_err(MergeError::NotMergeable);
            }
            // "Pipelines must succeed": GitLab links the status the bot has just set to the
            // merge request a moment later, and refuses the merge until then.
            let (status, settles) = self.merge_status_now(iid, sha).await?;
            let Some(&times) = settling.next().filter(|_| settles) else {
                return Err(MergeError::NotMergeable(format!(
                    "HTTP 405: GitLab says the merge request is `{status}`"
                )));
            };
            tracing::info!(iid, %status, "GitLab refused the merge while the merge request settles; trying again");
            tokio::time::sleep(self.retry.first_backoff * times).await;
        }
    }

    /// The merge request's `detailed_merge_status` (its state on GitLab before 15.6), and
    /// whether a refused merge may only be GitLab settling: open, not a draft, still at `sha`,
    /// and nothing that waits for a person.
    async fn merge_status_now(&self, iid: u64, sha: &str) -> Result<(String, bool), MergeError> {
        let route = self.project_route(&format!("/merge_requests/{iid}"));
        let mr: MergeRequest = self.get(&route).await.map_err(MergeError::Forge)?;
        let draft = mr.draft.or(mr.work_in_progress).unwrap_or(false);
        let mut status = mr.detailed_merge_status.unwrap_or(mr.state.clone());
        // Echoed in a comment: GitLab's own word, never anything else.
        status.retain(|c| c.is_ascii_alphanumeric() || c == '_');
        let settles = mr.state == "opened"
            && !draft
            && mr.sha.as_deref() == Some(sha)
            && SETTLING_STATUSES.contains(&status.as_str());
        Ok((status, settles))
    }

    /// The emoji awarded on an issue or merge request itself, all pages, in GitHub's reaction
    /// names.
    pub async fn award_emoji(&self, thread: Thread) -> Result<Vec<Reaction>, ForgeError> {
        let route = self.project_route(&format!("/{}/award_emoji", route(thread)));
        let awards: Vec<Award> = self.get_all(&route).await?;
        Ok(awards.into_iter().map(Award::into_reaction).collect())
    }

    /// [`Self::award_emoji`] as a conditional request: when `etag` (the first page's, from an
    /// earlier answer) still matches, GitLab answers `304` and nothing is read.
    pub async fn award_emoji_polled(
        &self,
        thread: Thread,
        etag: Option<&str>,
    ) -> Result<Polled<Vec<Reaction>>, ForgeError> {
        let route = self.project_route(&format!("/{}/award_emoji", route(thread)));
        let first = with_param(&route, "per_page", &PER_PAGE.to_string());
        let mut headers = HeaderMap::new();
        if let Some(etag) = etag.and_then(|e| HeaderValue::from_str(e).ok()) {
            headers.insert(http::header::IF_NONE_MATCH, etag);
        }
        let answer = self.send(Method::GET, &first, None, headers).await?;
        if answer.status == StatusCode::NOT_MODIFIED {
            return Ok(Polled::NotModified);
        }
        let (awards, etag) = self.pages_from::<Award>(&first, Some(answer)).await?;
        Ok(Polled::Changed {
            etag,
            value: awards.into_iter().map(Award::into_reaction).collect(),
        })
    }

    /// Who approved a merge request (GitLab's own approvals), with when (GitLab sends
    /// `approved_at` since 17.x; older instances do not).
    pub async fn approvals(
        &self,
        iid: u64,
    ) -> Result<Vec<(Actor, Option<DateTime<Utc>>)>, ForgeError> {
        #[derive(Deserialize)]
        struct Approval {
            user: User,
            #[serde(default)]
            approved_at: Option<DateTime<Utc>>,
        }
        #[derive(Deserialize)]
        struct Approvals {
            #[serde(default)]
            approved_by: Vec<Approval>,
        }
        let route = self.project_route(&format!("/merge_requests/{iid}/approvals"));
        let approvals: Approvals = self.get(&route).await?;
        Ok(approvals
            .approved_by
            .into_iter()
            .map(|a| (a.user.into(), a.approved_at))
            .collect())
    }

    /// A user by username (for the numeric id of people named in policies).
    pub async fn user(&self, username: &str) -> Result<Option<Actor>, ForgeError> {
        let route = format!("/users?username={}", encode(username));
        let found: Vec<User> = self.get(&route).await?;
        Ok(found
            .into_iter()
            .find(|u| u.username.eq_ignore_ascii_case(username))
            .map(Actor::from))
    }

    /// Whether user `user_id` is a bot account, as GitLab itself says (`GET /users/:id`): a
    /// service account or access token user may have any username, so the name alone cannot
    /// tell. A user GitLab does not know is taken for a bot (never counted as a person).
    pub async fn is_bot(&self, user_id: u64) -> Result<bool, ForgeError> {
        match self.get::<User>(&format!("/users/{user_id}")).await {
            Ok(user) => Ok(Actor::from(user).is_bot),
            Err(err) if err.status() == Some(404) => Ok(true),
            Err(err) => Err(err),
        }
    }

    /// Whether user `user_id` is a direct member of the group `group` (its full path, subgroups
    /// included, e.g. `acme/sre/leads`; a policy's leading `@` is allowed). Members inherited
    /// from a parent group do not count: with them, every member of `acme` (often everyone)
    /// would be in `@acme/sre-leads`. Only active memberships of Guest (10) or more that have
    /// not expired count; Minimal Access does not. Expiry is judged on GitLab's own date (the
    /// answer's `Date` header; the bot's clock only without one), as GitLab judges it.
    pub async fn is_group_member(&self, group: &str, user_id: u64) -> Result<bool, ForgeError> {
        let route = format!(
            "/groups/{}/members/{user_id}",
            encode(group.trim_start_matches('@').trim_matches('/'))
        );
        match self.get_answered::<Member>(&route).await {
            Ok((member, headers)) => Ok(member.counts(forge_today(&headers))),
            Err(err) if err.status() == Some(404) => Ok(false),
            Err(err) => Err(err),
        }
    }
}

/// GitLab's name for a status state. `failed` is a refusal; `canceled` is GitHub's `error`
/// (the check could not judge, e.g. invalid policies), kept apart so the two read differently.
fn status_name(state: StatusState) -> &'static str {
    match state {
        StatusState::Pending => "pending",
        StatusState::Success => "success",
        StatusState::Failure => "failed",
        StatusState::Error => "canceled",
    }
}

/// Whether a status refusal says the status already is `wanted` (GitLab: 400 `Cannot
/// transition status via :enqueue from :pending …`).
fn already_in_state(err: &ForgeError, wanted: &str) -> bool {
    match err {
        ForgeError::Refused {
            status: 400,
            message,
            ..
        } => {
            message.contains("Cannot transition status")
                && message.contains(&format!("from :{wanted}"))
        }
        _ => false,
    }
}

/// How long to wait before each retry of a merge GitLab refused while settling, in multiples
/// of the retry policy's first backoff (production: 0.4 s, 1 s, 2 s).
const SETTLING_WAITS: [u32; 3] = [2, 5, 10];

/// `detailed_merge_status` values that a moment can change without anyone acting: the merge
/// request is (being) checked, or its pipeline (the bot's own `breakglass/policy` status, set
/// just before) is not linked or done yet. `ci_must_pass` also means a failed pipeline, which
/// the few bounded retries cannot hide. Anything else (a draft, conflicts, unresolved
/// discussions, missing approvals) waits for a person.
const SETTLING_STATUSES: [&str; 7] = [
    "mergeable",
    "checking",
    "unchecked",
    "preparing",
    "ci_still_running",
    "ci_must_pass",
    "approvals_syncing",
];

/// What a refused merge means, as GitLab documents its merge endpoint: 401 this user may not
/// merge (e.g. the target branch is protected), 405 not mergeable now (draft, closed, pipeline,
/// discussions, approvals), 406 conflicts or already merged (older GitLab), 422 the merge
/// failed; 409 the `sha` is not the source branch's head any more.
fn merge_error(err: ForgeError) -> MergeError {
    match err {
        ForgeError::Refused { status: 409, .. } => MergeError::HeadChanged,
        ForgeError::Refused {
            status: status @ (401 | 403 | 405 | 406 | 422),
            message,
            ..
        } => MergeError::NotMergeable(format!("HTTP {status}: {message}")),
        other => MergeError::Forge(other),
    }
}

/// GitLab takes labels as a comma-separated list: a comma would make one label two.
fn one_label(label: &str) -> Result<&str, ForgeError> {
    if label.contains(',') || label.trim().is_empty() {
        return Err(ForgeError::Refused {
            call: "label".into(),
            status: 0,
            message: format!("`{label}` is not one GitLab label"),
        });
    }
    Ok(label)
}

/// Turns a status into success or the right kind of error.
fn classify(
    call: &str,
    status: StatusCode,
    headers: &HeaderMap,
    body: &str,
) -> Result<(), ForgeError> {
    if status.is_success() || status == StatusCode::NOT_MODIFIED {
        return Ok(());
    }
    // GitLab throttles with 429 only (Rack::Attack and the application limits alike). Any other
    // answer was served, whatever `RateLimit-Remaining` says: the call that spends the last of
    // the budget reads 0 and still gets its real answer, such as the 404 of a membership check
    // or the 400 of a status already set, which must not wait for the window's reset.
    if status == StatusCode::TOO_MANY_REQUESTS {
        return Err(ForgeError::RateLimited {
            call: call.to_owned(),
            retry_after: retry_after(headers, forge_now(headers, Utc::now().timestamp())),
        });
    }
    if status.is_server_error() || status == StatusCode::REQUEST_TIMEOUT {
        return Err(ForgeError::Transient {
            call: call.to_owned(),
            detail: format!("HTTP {}", status.as_u16()),
        });
    }
    Err(ForgeError::Refused {
        call: call.to_owned(),
        status: status.as_u16(),
        message: crate::secret::scrub(&gitlab_message(body)),
    })
}

/// How long a rate limit asks us to wait: `Retry-After` (seconds), else until `RateLimit-Reset`
/// (GitLab sends a Unix time; a small number is read as seconds from now), else a minute.
fn retry_after(headers: &HeaderMap, now: i64) -> Duration {
    let seconds = |name| header(headers, name).and_then(|v| v.trim().parse::<i64>().ok());
    let wait = seconds("retry-after").or_else(|| {
        seconds("ratelimit-reset").map(|reset| {
            if reset > 1_000_000_000 {
                reset.saturating_sub(now)
            } else {
                reset
            }
        })
    });
    Duration::from_secs(wait.unwrap_or(60).clamp(1, 3600) as u64)
}

/// GitLab's error text: `{"message": "…"}` (a string, or field errors as an object or list), or
/// `{"error": "…"}`; else the start of the body.
fn gitlab_message(body: &str) -> String {
    let value: Value = serde_json::from_str(body).unwrap_or(Value::Null);
    match value.get("message").or_else(|| value.get("error")) {
        Some(Value::String(text)) => text.clone(),
        Some(other) => other.to_string(),
        None => body.chars().take(200).collect(),
    }
}

/// The route of the page after this one, from `X-Next-Page` (empty on the last page) or, when
/// GitLab paginates by keyset, `Link: <…>; rel="next"`. The link names the instance by its
/// external URL, which may not be the one we call: only its path under the API is kept, and the
/// request goes to our own `api_url` (the token never leaves for another host).
fn next_page(first: &str, api_path: &str, headers: &HeaderMap) -> Result<Option<String>, String> {
    if let Some(page) = header(headers, "x-next-page").map(str::trim) {
        if page.is_empty() {
            return Ok(None);
        }
        if !page.bytes().all(|b| b.is_ascii_digit()) {
            return Err(format!("X-Next-Page `{page}` is not a page number"));
        }
        return Ok(Some(with_param(first, "page", page)));
    }
    let Some(link) = header(headers, "link").and_then(next_link) else {
        return Ok(None);
    };
    let url = url::Url::parse(&link).map_err(|err| format!("Link `{link}`: {err}"))?;
    let path = url
        .path()
        .strip_prefix(api_path)
        .filter(|rest| rest.starts_with('/'))
        .ok_or_else(|| format!("Link `{link}` is not under {api_path}"))?;
    Ok(Some(match url.query() {
        Some(query) => format!("{path}?{query}"),
        None => path.to_owned(),
    }))
}

/// The `rel="next"` target of a `Link` header.
fn next_link(link: &str) -> Option<String> {
    link.split(',').find_map(|part| {
        let (target, params) = part.split_once(';')?;
        let is_next = params
            .split(';')
            .any(|p| matches!(p.trim(), "rel=\"next\"" | "rel=next"));
        let target = target.trim().strip_prefix('<')?.strip_suffix('>')?;
        is_next.then(|| target.to_owned())
    })
}

/// `route` with `name=value` added to its query.
fn with_param(route: &str, name: &str, value: &str) -> String {
    let separator = if route.contains('?') { '&' } else { '?' };
    format!("{route}{separator}{name}={value}")
}

/// A ref GitLab cannot take for another: a branch name becomes `refs/heads/<name>`, since git
/// (and so GitLab) resolves a plain name to a tag before a branch, and a member who may push a
/// tag `main` would otherwise choose what "the default branch" reads as. Commit SHAs and full
/// ref names stay as they are.
fn unambiguous(git_ref: &str) -> std::borrow::Cow<'_, str> {
    let is_sha = matches!(git_ref.len(), 40 | 64) && git_ref.bytes().all(|b| b.is_ascii_hexdigit());
    if is_sha || git_ref.starts_with("refs/") {
        git_ref.into()
    } else {
        format!("refs/heads/{git_ref}").into()
    }
}

/// Percent-encodes everything but RFC 3986's unreserved characters: project and group paths,
/// file paths and branch names become one path segment (`a/b` → `a%2Fb`), and query values
/// cannot add parameters.
fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

fn header<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

#[derive(Deserialize)]
struct User {
    id: u64,
    username: String,
    /// Only `GET /user` and admin views say it; elsewhere the name tells.
    #[serde(default)]
    bot: bool,
}

impl From<User> for Actor {
    fn from(user: User) -> Self {
        Actor {
            id: user.id,
            is_bot: user.bot || looks_like_bot(&user.username),
            login: user.username,
        }
    }
}

#[derive(Deserialize)]
struct Commit {
    id: String,
}

#[derive(Deserialize)]
struct MergeRequest {
    iid: u64,
    #[serde(default)]
    title: String,
    #[serde(default)]
    description: Option<String>,
    state: String,
    author: User,
    source_branch: String,
    target_branch: String,
    #[serde(default)]
    sha: Option<String>,
    #[serde(default)]
    draft: Option<bool>,
    #[serde(default)]
    work_in_progress: Option<bool>,
    #[serde(default)]
    labels: Vec<String>,
    source_project_id: u64,
    target_project_id: u64,
    #[serde(default)]
    merge_commit_sha: Option<String>,
    #[serde(default)]
    squash_commit_sha: Option<String>,
    #[serde(default)]
    merged_at: Option<DateTime<Utc>>,
    /// Who merged it (`merged_by` is its deprecated name).
    #[serde(default)]
    merge_user: Option<User>,
    #[serde(default)]
    merged_by: Option<User>,
    #[serde(default)]
    updated_at: Option<DateTime<Utc>>,
    #[serde(default)]
    diff_refs: Option<DiffRefs>,
    /// Why it can or cannot be merged now (GitLab 15.6+), e.g. `ci_still_running`.
    #[serde(default)]
    detailed_merge_status: Option<String>,
}

/// A project event of `action=commented`, as far as the catch-up reads it.
#[derive(Deserialize)]
struct CommentedEvent {
    #[serde(default)]
    note: Option<EventNote>,
}

#[derive(Deserialize)]
struct EventNote {
    id: u64,
    #[serde(default)]
    body: String,
    author: User,
    created_at: DateTime<Utc>,
    #[serde(default)]
    updated_at: Option<DateTime<Utc>>,
    #[serde(default)]
    noteable_type: Option<String>,
    #[serde(default)]
    noteable_iid: Option<u64>,
    #[serde(default)]
    internal: bool,
    #[serde(default)]
    confidential: bool,
    #[serde(default)]
    system: bool,
}

/// The commits a merge request's diff is between.
#[derive(Deserialize)]
struct DiffRefs {
    #[serde(default)]
    base_sha: Option<String>,
}

impl MergeRequest {
    fn into_state(self, head_repo: String) -> PullRequestState {
        let merged = self.state == "merged";
        let head_sha = self.sha.unwrap_or_default();
        PullRequestState {
            title: self.title,
            body: self.description.unwrap_or_default(),
            open: matches!(self.state.as_str(), "opened" | "locked"),
            merge_sha: merged.then(|| {
                self.merge_commit_sha
                    .or(self.squash_commit_sha)
                    .unwrap_or_else(|| head_sha.clone())
            }),
            merged_at: self.merged_at,
            merged_by: self
                .merge_user
                .or(self.merged_by)
                .filter(|_| merged)
                .map(Into::into),
            changed_files: None,
            merge_base: self.diff_refs.and_then(|d| d.base_sha),
            default_branch: None,
            info: PullRequestInfo {
                number: self.iid,
                author: self.author.into(),
                head_sha,
                head_ref: self.source_branch,
                base_ref: self.target_branch,
                head_repo: Some(head_repo),
                labels: self.labels,
                merged,
                draft: self.draft.or(self.work_in_progress).unwrap_or(false),
                updated_at: self.updated_at,
            },
        }
    }
}

#[derive(Deserialize)]
struct Diff {
    old_path: String,
    new_path: String,
    #[serde(default)]
    new_file: bool,
    #[serde(default)]
    renamed_file: bool,
    #[serde(default)]
    deleted_file: bool,
    /// The modes before and after (`0` where there is no file), in octal.
    #[serde(default)]
    a_mode: String,
    #[serde(default)]
    b_mode: String,
}

impl Diff {
    fn into_changed_file(self) -> ChangedFile {
        // A removed file is what it was; any other, what it is at the head.
        let mode = if self.deleted_file {
            &self.a_mode
        } else {
            &self.b_mode
        };
        let kind = EntryKind::from_mode(mode);
        let (path, change, previous_path) = if self.new_file {
            (self.new_path, FileChange::Added, None)
        } else if self.deleted_file {
            (self.old_path, FileChange::Removed, None)
        } else if self.renamed_file {
            (self.new_path, FileChange::Renamed, Some(self.old_path))
        } else {
            (self.new_path, FileChange::Modified, None)
        };
        ChangedFile {
            path,
            change,
            previous_path,
            kind,
            // GitLab's diffs give no blob ids.
            blob: None,
        }
    }
}

#[derive(Deserialize)]
struct Award {
    id: u64,
    name: String,
    user: User,
    created_at: DateTime<Utc>,
}

impl Award {
    fn into_reaction(self) -> Reaction {
        Reaction {
            id: self.id,
            user: self.user.into(),
            content: reaction_name(&self.name),
            created_at: self.created_at,
        }
    }
}

#[derive(Deserialize)]
struct Member {
    access_level: u32,
    /// The user's state (`active`, `blocked`, …).
    #[serde(default)]
    state: Option<String>,
    /// The membership's own state (`active`, or `awaiting` a seat); newer GitLab only.
    #[serde(default)]
    membership_state: Option<String>,
    /// `YYYY-MM-DD`, the day the membership ends (UTC): from that day on it gives no access.
    #[serde(default)]
    expires_at: Option<String>,
}

/// GitLab's date (UTC) of an answer, from its `Date` header; the bot's clock only without one.
fn forge_today(headers: &HeaderMap) -> NaiveDate {
    let now = forge_now(headers, Utc::now().timestamp());
    DateTime::<Utc>::from_timestamp(now, 0)
        .unwrap_or_else(Utc::now)
        .date_naive()
}

impl Member {
    /// Whether this membership gives access on `today` (GitLab's date, UTC). A membership is
    /// expired ON its `expires_at` day, not after it: GitLab's own rule (`Member#expired?` is
    /// `expires_at <= today`) and its daily job removes such members at the start of that day
    /// (the UI says access ends on the expiration date), so counting it through that day
    /// would let an approver approve for up to a day after GitLab itself took the access away.
    fn counts(&self, today: NaiveDate) -> bool {
        let active = |s: &Option<String>| s.as_deref().is_none_or(|s| s == "active");
        let expired = self
            .expires_at
            .as_deref()
            .and_then(|d| NaiveDate::parse_from_str(d, "%Y-%m-%d").ok())
            .is_some_and(|ends| ends <= today);
        self.access_level >= GUEST
            && active(&self.state)
            && active(&self.membership_state)
            && !expired
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, HeaderValue::from_str(value).unwrap());
        }
        map
    }

    fn member(expires_at: Option<&str>) -> Member {
        Member {
            access_level: 30,
            state: Some("active".into()),
            membership_state: Some("active".into()),
            expires_at: expires_at.map(str::to_owned),
        }
    }

    #[test]
    fn a_membership_counts_until_its_expiry_day_and_not_on_it() {
        let day = |d: &str| NaiveDate::parse_from_str(d, "%Y-%m-%d").unwrap();
        let expiring = member(Some("2026-11-26"));
        assert!(expiring.counts(day("2026-11-25")), "the day before");
        assert!(!expiring.counts(day("2026-11-26")), "on its expires_at day");
        assert!(!expiring.counts(day("2026-11-27")), "after it");
        assert!(member(None).counts(day("2026-11-26")), "no expiry");
    }

    #[test]
    fn membership_expiry_is_judged_on_gitlabs_date() {
        let late = headers(&[("date", "Thu, 26 Nov 2026 00:00:01 GMT")]);
        assert_eq!(
            forge_today(&late),
            NaiveDate::from_ymd_opt(2026, 11, 26).unwrap()
        );
        let early = headers(&[("date", "Wed, 25 Nov 2026 23:59:59 GMT")]);
        assert_eq!(
            forge_today(&early),
            NaiveDate::from_ymd_opt(2026, 11, 25).unwrap()
        );
        assert_eq!(forge_today(&HeaderMap::new()), Utc::now().date_naive());
        assert_eq!(
            forge_today(&headers(&[("date", "not a date")])),
            Utc::now().date_naive()
        );
    }

    fn refused(status: u16, message: &str) -> ForgeError {
        ForgeError::Refused {
            call: "c".into(),
            status,
            message: message.into(),
        }
    }

    #[test]
    fn paths_become_one_segment() {
        assert_eq!(encode("group/sub/project"), "group%2Fsub%2Fproject");
        assert_eq!(
            encode("requests/prod/a-1_b.yaml"),
            "requests%2Fprod%2Fa-1_b.yaml"
        );
        assert_eq!(encode("a b&c=d?#"), "a%20b%26c%3Dd%3F%23");
        assert_eq!(encode("é"), "%C3%A9");
    }

    #[test]
    fn statuses_are_classified_for_the_retry_layer() {
        assert!(classify("c", StatusCode::CREATED, &HeaderMap::new(), "").is_ok());
        assert!(classify("c", StatusCode::NOT_MODIFIED, &HeaderMap::new(), "").is_ok());
        for status in [StatusCode::BAD_GATEWAY, StatusCode::SERVICE_UNAVAILABLE] {
            let err = classify("c", status, &HeaderMap::new(), "").unwrap_err();
            assert!(matches!(err, ForgeError::Transient { .. }), "{err:?}");
        }
        let err = classify(
            "c",
            StatusCode::TOO_MANY_REQUESTS,
            &headers(&[("retry-after", "7"), ("ratelimit-remaining", "0")]),
            "Retry later",
        )
        .unwrap_err();
        assert!(
            matches!(err, ForgeError::RateLimited { retry_after, .. } if retry_after == Duration::from_secs(7)),
            "{err:?}"
        );
        for status in [StatusCode::UNAUTHORIZED, StatusCode::FORBIDDEN] {
            let err = classify(
                "c",
                status,
                &HeaderMap::new(),
                r#"{"message":"401 Unauthorized"}"#,
            )
            .unwrap_err();
            assert_eq!(err.status(), Some(status.as_u16()));
            assert!(!err.is_retryable());
        }
        let err = classify(
            "c",
            StatusCode::BAD_REQUEST,
            &HeaderMap::new(),
            r#"{"message":{"branch":["is invalid"]}}"#,
        )
        .unwrap_err();
        assert_eq!(err.to_string(), r#"c: HTTP 400: {"branch":["is invalid"]}"#);
        let err = classify(
            "c",
            StatusCode::NOT_FOUND,
            &HeaderMap::new(),
            r#"{"error":"404 Not Found"}"#,
        )
        .unwrap_err();
        assert_eq!(err.to_string(), "c: HTTP 404: 404 Not Found");
    }

    #[test]
    fn rate_limit_waits_come_from_retry_after_or_the_reset_time() {
        let now = 1_700_000_000;
        let wait = |pairs: &[(&'static str, &str)]| retry_after(&headers(pairs), now);
        assert_eq!(wait(&[("retry-after", "30")]), Duration::from_secs(30));
        assert_eq!(
            wait(&[("ratelimit-reset", "1700000042")]),
            Duration::from_secs(42),
            "a Unix time"
        );
        assert_eq!(wait(&[("ratelimit-reset", "5")]), Duration::from_secs(5));
        assert_eq!(wait(&[]), Duration::from_secs(60));
        assert_eq!(
            wait(&[("ratelimit-reset", "1600000000")]),
            Duration::from_secs(1)
        );
        // A reset no forge would send, read against a `Date` before 1970: no overflow.
        let far = retry_after(&headers(&[("ratelimit-reset", "9223372036854775807")]), -5);
        assert_eq!(far, Duration::from_secs(3600));
        // A spent budget on an answer that is not a 429 is that answer, not a throttle.
        let spent = headers(&[
            ("ratelimit-remaining", "0"),
            ("ratelimit-reset", "1700003600"),
        ]);
        let err = classify("c", StatusCode::NOT_FOUND, &spent, "").unwrap_err();
        assert_eq!(err.status(), Some(404), "{err:?}");
        assert!(!err.is_retryable(), "{err:?}");
        let err = classify("c", StatusCode::SERVICE_UNAVAILABLE, &spent, "").unwrap_err();
        assert!(matches!(err, ForgeError::Transient { .. }), "{err:?}");
    }

    #[test]
    fn merge_refusals_map_as_gitlab_documents_them() {
        assert!(matches!(
            merge_error(refused(409, "SHA does not match HEAD of source branch")),
            MergeError::HeadChanged
        ));
        for status in [401, 405, 406, 422] {
            let err = merge_error(refused(status, "Branch cannot be merged"));
            assert!(
                matches!(&err, MergeError::NotMergeable(m) if m == &format!("HTTP {status}: Branch cannot be merged")),
                "{status}: {err:?}"
            );
        }
        assert!(matches!(
            merge_error(refused(404, "404 Not found")),
            MergeError::Forge(_)
        ));
        assert!(matches!(
            merge_error(ForgeError::Transient {
                call: "c".into(),
                detail: "HTTP 502".into()
            }),
            MergeError::Forge(_)
        ));
    }

    #[test]
    fn a_status_already_in_the_wanted_state_is_done() {
        let same = refused(
            400,
            r#"Cannot transition status via :enqueue from :pending (Reason(s): Status cannot transition via "enqueue")"#,
        );
        assert!(already_in_state(&same, "pending"));
        assert!(!already_in_state(&same, "success"));
        assert!(!already_in_state(
            &refused(400, "state is invalid"),
            "pending"
        ));
        assert!(!already_in_state(
            &refused(403, "Cannot transition status via :run from :pending"),
            "pending"
        ));
        assert_eq!(
            [
                StatusState::Pending,
                StatusState::Success,
                StatusState::Failure,
                StatusState::Error
            ]
            .map(status_name),
            ["pending", "success", "failed", "canceled"]
        );
    }

    #[test]
    fn next_pages_follow_x_next_page_then_link() {
        let first = "/projects/1/x?per_page=100";
        let next = |pairs: &[(&'static str, &str)]| next_page(first, "/api/v4", &headers(pairs));
        assert_eq!(
            next(&[("x-next-page", "2")]),
            Ok(Some("/projects/1/x?per_page=100&page=2".into()))
        );
        assert_eq!(next(&[("x-next-page", "")]), Ok(None), "the last page");
        assert_eq!(next(&[]), Ok(None));
        assert!(next(&[("x-next-page", "2&private_token=x")]).is_err());
        let link = r#"<https://gitlab.example.com/api/v4/projects/1/x?per_page=100&page=1>; rel="first", <https://gitlab.example.com/api/v4/projects/1/x?cursor=abc&per_page=100>; rel="next""#;
        assert_eq!(
            next(&[("link", link)]),
            Ok(Some("/projects/1/x?cursor=abc&per_page=100".into())),
            "keyset pagination, on whatever host GitLab calls itself"
        );
        assert!(next(&[("link", r#"<https://evil.example/other/path>; rel="next""#)]).is_err());
        assert_eq!(
            next(&[("link", r#"<https://g/api/v4/p?page=1>; rel="prev""#)]),
            Ok(None)
        );
    }

    #[test]
    fn diffs_become_changed_files() {
        let diff = |new_file, renamed_file, deleted_file| Diff {
            old_path: "requests/old.yaml".into(),
            new_path: "requests/new.yaml".into(),
            new_file,
            renamed_file,
            deleted_file,
            a_mode: if new_file { "0" } else { "100644" }.into(),
            b_mode: if deleted_file { "0" } else { "100644" }.into(),
        };
        let added = diff(true, false, false).into_changed_file();
        assert_eq!(
            (added.path.as_str(), added.change),
            ("requests/new.yaml", FileChange::Added)
        );
        let removed = diff(false, false, true).into_changed_file();
        assert_eq!(
            (removed.path.as_str(), removed.change),
            ("requests/old.yaml", FileChange::Removed)
        );
        let renamed = diff(false, true, false).into_changed_file();
        assert_eq!(renamed.change, FileChange::Renamed);
        assert_eq!(renamed.previous_path.as_deref(), Some("requests/old.yaml"));
        assert_eq!(
            diff(false, false, false).into_changed_file().change,
            FileChange::Modified
        );
    }

    fn added_with_mode(b_mode: &str) -> ChangedFile {
        Diff {
            old_path: "requests/prod/r1.yaml".into(),
            new_path: "requests/prod/r1.yaml".into(),
            new_file: true,
            renamed_file: false,
            deleted_file: false,
            a_mode: "0".into(),
            b_mode: b_mode.into(),
        }
        .into_changed_file()
    }

    #[test]
    fn a_diffs_mode_says_what_kind_of_entry_the_path_is() {
        assert_eq!(added_with_mode("100644").kind, EntryKind::File);
        // Executable is still a file: its text is what the forge serves.
        assert_eq!(added_with_mode("100755").kind, EntryKind::File);
        assert_eq!(added_with_mode("120000").kind, EntryKind::Symlink);
        assert_eq!(added_with_mode("160000").kind, EntryKind::Submodule);
        assert_eq!(added_with_mode("040000").kind, EntryKind::Unknown);
        assert_eq!(
            added_with_mode("").kind,
            EntryKind::Unknown,
            "no mode given"
        );
        assert_eq!(
            added_with_mode("100644").blob,
            None,
            "GitLab gives no blob ids"
        );
    }

    #[test]
    fn a_removed_entry_is_what_it_was() {
        let removed = Diff {
            old_path: "requests/prod/r1.yaml".into(),
            new_path: "requests/prod/r1.yaml".into(),
            new_file: false,
            renamed_file: false,
            deleted_file: true,
            a_mode: "120000".into(),
            b_mode: "0".into(),
        }
        .into_changed_file();
        assert_eq!(
            (removed.change, removed.kind),
            (FileChange::Removed, EntryKind::Symlink)
        );
    }

    #[test]
    fn only_active_unexpired_members_of_guest_or_more_count() {
        let today = NaiveDate::from_ymd_opt(2026, 12, 2).unwrap();
        let member =
            |level, state: Option<&str>, membership: Option<&str>, expires: Option<&str>| Member {
                access_level: level,
                state: state.map(Into::into),
                membership_state: membership.map(Into::into),
                expires_at: expires.map(Into::into),
            };
        assert!(member(10, Some("active"), None, None).counts(today));
        assert!(
            member(50, None, Some("active"), Some("2026-12-03")).counts(today),
            "the day before its expiry"
        );
        assert!(
            !member(50, None, Some("active"), Some("2026-12-02")).counts(today),
            "its expiry day: GitLab has removed it"
        );
        assert!(
            !member(5, Some("active"), None, None).counts(today),
            "minimal access"
        );
        assert!(!member(30, Some("blocked"), None, None).counts(today));
        assert!(!member(30, Some("active"), Some("awaiting"), None).counts(today));
        assert!(!member(30, Some("active"), None, Some("2026-12-01")).counts(today));
    }

    #[test]
    fn merge_requests_map_to_the_forge_independent_state() {
        let mr: MergeRequest = serde_json::from_value(json!({
            "iid": 7, "title": "t", "description": null, "state": "merged",
            "author": {"id": 5, "username": "project_3_bot_ab12"},
            "source_branch": "breakglass/x", "target_branch": "main",
            "sha": "a".repeat(40), "draft": false, "labels": ["sev1"],
            "source_project_id": 3, "target_project_id": 3,
            "merge_commit_sha": null, "squash_commit_sha": null,
            "merged_at": "2026-01-01T00:00:00.000Z", "updated_at": "2026-01-01T00:00:01Z"
        }))
        .unwrap();
        let state = mr.into_state("acme/requests".into());
        assert!(!state.open && state.info.merged && state.info.author.is_bot);
        assert_eq!(
            state.merge_sha,
            Some("a".repeat(40)),
            "fast-forward: the head landed"
        );
        assert_eq!(state.info.head_repo.as_deref(), Some("acme/requests"));
        assert_eq!(state.info.labels, ["sev1"]);
        assert_eq!(state.body, "");
    }

    #[test]
    fn labels_with_commas_are_refused() {
        assert!(one_label("breakglass/needs-review").is_ok());
        assert!(one_label("a,b").is_err());
        assert!(one_label(" ").is_err());
    }

    /// A loopback stand-in for GitLab that answers by route and records what it was asked:
    /// only for what cannot be seen without HTTP (pagination, headers, retries).
    mod over_http {
        use std::sync::{Arc, Mutex};

        use axum::extract::Request;
        use axum::response::{IntoResponse, Response};

        use super::*;

        type Seen = Arc<Mutex<Vec<(String, String, Option<String>)>>>;

        async fn serve(answer: fn(&str, usize) -> Response) -> (GitlabClient, Seen) {
            let seen: Seen = Arc::default();
            let log = seen.clone();
            let app = axum::Router::new().fallback(move |request: Request| {
                let log = log.clone();
                async move {
                    let uri = request.uri().to_string();
                    let token = request
                        .headers()
                        .get("private-token")
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_owned);
                    let mut log = log.lock().unwrap();
                    let earlier = log.iter().filter(|(_, u, _)| *u == uri).count();
                    log.push((request.method().to_string(), uri.clone(), token));
                    answer(&uri, earlier)
                }
            });
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
            let client = GitlabClient::connect(
                &format!("http://{addr}/api/v4/"),
                "acme/sub/requests",
                GitlabAuth::PrivateToken(Secret::new("glpat-test")),
            )
            .await
            .unwrap()
            .with_retry(RetryPolicy {
                attempts: 3,
                timeout: Duration::from_secs(5),
                first_backoff: Duration::from_millis(1),
                max_wait: Duration::from_secs(5),
            });
            (client, seen)
        }

        fn answer(status: u16, headers: &[(&'static str, &str)], body: Value) -> Response {
            let mut response =
                (StatusCode::from_u16(status).unwrap(), body.to_string()).into_response();
            for (name, value) in headers {
                response
                    .headers_mut()
                    .insert(*name, HeaderValue::from_str(value).unwrap());
            }
            response
        }

        #[tokio::test]
        async fn lists_follow_x_next_page_with_the_token_and_the_encoded_project() {
            let (client, seen) = serve(|uri, _| {
                if uri.ends_with("&page=2") {
                    answer(200, &[("x-next-page", "")], json!([
                        {"id": "c", "name": "b.yaml", "type": "blob", "path": "requests/prod/b.yaml", "mode": "100644"}
                    ]))
                } else {
                    answer(200, &[("x-next-page", "2")], json!([
                        {"id": "a", "name": "a.yaml", "type": "blob", "path": "requests/prod/a.yaml", "mode": "100644"},
                        {"id": "t", "name": "old", "type": "tree", "path": "requests/prod/old", "mode": "040000"}
                    ]))
                }
            })
            .await;
            assert!(
                !format!("{client:?}").contains("glpat-test"),
                "the token never shows in Debug output"
            );
            let files = client.list_dir("main", "requests/prod").await.unwrap();
            assert_eq!(files, ["requests/prod/a.yaml", "requests/prod/b.yaml"]);
            let seen = seen.lock().unwrap();
            let base = "/api/v4/projects/acme%2Fsub%2Frequests/repository/tree?ref=refs%2Fheads%2Fmain&path=requests%2Fprod&per_page=100";
            assert_eq!(
                seen.iter()
                    .map(|(m, u, t)| (m.as_str(), u.as_str(), t.as_deref()))
                    .collect::<Vec<_>>(),
                [
                    ("GET", base, Some("glpat-test")),
                    ("GET", &*format!("{base}&page=2"), Some("glpat-test")),
                ]
            );
        }

        #[tokio::test]
        async fn a_moved_head_is_head_changed_and_is_not_retried() {
            let (client, seen) = serve(|_, _| {
                answer(
                    409,
                    &[],
                    json!({"message": "SHA does not match HEAD of source branch"}),
                )
            })
            .await;
            let err = client
                .merge(7, &"a".repeat(40), "Merge", false)
                .await
                .unwrap_err();
            assert!(matches!(err, MergeError::HeadChanged), "{err:?}");
            let seen = seen.lock().unwrap();
            assert_eq!(seen.len(), 1);
            assert_eq!(
                (seen[0].0.as_str(), seen[0].1.as_str()),
                (
                    "PUT",
                    "/api/v4/projects/acme%2Fsub%2Frequests/merge_requests/7/merge"
                )
            );
        }

        #[tokio::test]
        async fn a_rate_limit_is_waited_out_as_retry_after_says() {
            let (client, seen) = serve(|_, earlier| {
                if earlier == 0 {
                    answer(
                        429,
                        &[("retry-after", "1"), ("ratelimit-remaining", "0")],
                        json!({"message": "Retry later"}),
                    )
                } else {
                    answer(
                        200,
                        &[],
                        json!({"id": 9, "username": "breakglass-bot", "bot": true}),
                    )
                }
            })
            .await;
            let started = std::time::Instant::now();
            let me = client.me().await.unwrap();
            assert!(
                started.elapsed() >= Duration::from_secs(1),
                "{:?}",
                started.elapsed()
            );
            assert_eq!((me.id, me.is_bot), (9, true));
            assert_eq!(seen.lock().unwrap().len(), 2);
        }

        #[tokio::test]
        async fn a_status_already_set_is_not_an_error() {
            let (client, _) = serve(|_, _| {
                answer(400, &[], json!({"message": "Cannot transition status via :enqueue from :pending (Reason(s): Status cannot transition via \"enqueue\")"}))
            })
            .await;
            client
                .set_status(
                    &"b".repeat(40),
                    StatusState::Pending,
                    "breakglass/policy",
                    "awaiting approval",
                )
                .await
                .unwrap();
            let err = client
                .set_status(
                    &"b".repeat(40),
                    StatusState::Success,
                    "breakglass/policy",
                    "approved",
                )
                .await
                .unwrap_err();
            assert_eq!(err.status(), Some(400));
        }
    }
}
