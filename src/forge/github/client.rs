//! The GitHub REST client: the calls the lifecycle makes, in domain words.
//!
//! octocrab does authentication (token, or GitHub App with installation tokens it refreshes)
//! and transport; requests and responses go through small private structs here so that every
//! status code the lifecycle branches on (304, 404, 405, 409, 422, 429) is visible, and so that
//! retries happen in exactly one place ([`crate::forge::retry`]).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use chrono::{DateTime, Utc};
use http::{HeaderMap, HeaderValue, Method, StatusCode};
use octocrab::Octocrab;
use octocrab::service::middleware::retry::RetryConfig;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use tokio::sync::OnceCell;

use crate::forge::error::{decode, transport};
use crate::forge::etag_cache::EtagCache;
use crate::forge::github::reaction_etags::{Listed, ReactionEtags, Tail, Validator};
use crate::forge::note_mark::Marked;
use crate::forge::retry::{
    RetryPolicy, branch_at, forge_now, perform_checked, perform_retryable, window_start,
};
use crate::forge::{
    Actor, ChangedFile, ChangedFiles, EntryKind, FileChange, FileContent, ForgeError, HeadMove,
    Landed, ListedComment, MergeError, Note, OpenChange, Polled, PullRequestInfo, PullRequestState,
    Reaction, Review, ReviewState, Served, StatusState, ThreadLabels,
};
use crate::secret::Secret;

/// How many files GitHub lists of one comparison at most ("the list of changed files … includes
/// up to 300 changed files for the entire comparison"): a listing this long may be cut short.
const COMPARE_FILES_SHOWN: usize = 300;

/// How the bot authenticates to GitHub.
#[derive(Clone, Debug)]
pub enum GithubAuth {
    /// A personal access token or an installation token.
    Token(Secret),
    /// A GitHub App: JWTs signed with the private key, exchanged for installation tokens that
    /// octocrab refreshes before they expire.
    App {
        app_id: u64,
        private_key_pem: Secret,
        installation_id: Option<u64>,
    },
}

/// A client bound to one repository (the requests repo).
#[derive(Clone, Debug)]
pub struct GithubClient {
    /// The client that makes the calls: a token's at once; a GitHub App's installation client
    /// on the first call that needs it (see [`AppLogin`]), so that the service starts, and
    /// revokes, while GitHub does not answer.
    crab: Arc<OnceCell<Octocrab>>,
    /// A GitHub App's own login, from which the installation client and the bot's account
    /// are learnt when GitHub first answers.
    app: Option<Arc<AppLogin>>,
    owner: String,
    repo: String,
    retry: RetryPolicy,
    /// Bodies of earlier GETs by path, with their ETags: asking again with `If-None-Match`
    /// costs nothing against the rate limit when nothing changed (policies are read at every
    /// decision).
    cache: EtagCache,
    /// The ETags of the reaction lists polled, by pull request.
    reaction_etags: ReactionEtags,
    /// The repository's `delete_branch_on_merge`, as last read with its default branch.
    deletes_merged_branches: Arc<std::sync::atomic::AtomicBool>,
}

/// What a GitHub App client learns from GitHub itself, once it answers: the installation (when
/// not configured) and the app's bot user (`<slug>[bot]`, which an installation token cannot
/// look up itself).
#[derive(Debug)]
struct AppLogin {
    /// The app's own client (a JWT), for the calls only the app may make.
    app: Octocrab,
    installation_id: Option<u64>,
    bot_login: OnceCell<String>,
}

/// Entries of a directory GitHub's contents API lists at most.
const CONTENTS_DIR_LIMIT: usize = 1000;

/// The most pages of a PR's timeline read for its head's moves (100 events each).
const TIMELINE_PAGES: u32 = 10;

/// The most pages of the repository's comments read at start (100 each), newest first.
const RECENT_COMMENT_PAGES: u32 = 10;

/// A raw answer: status, headers and body text.
struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: String,
}

impl GithubClient {
    /// Builds a client for `owner/name` at `api_url`. For a GitHub App without an
    /// installation id, the repository's installation is looked up.
    pub async fn connect(
        api_url: &str,
        repository: &str,
        auth: GithubAuth,
    ) -> Result<Self, ForgeError> {
        let api_url = api_url.trim_end_matches('/').to_owned();
        let (owner, repo) = repository
            .split_once('/')
            .ok_or_else(|| ForgeError::Refused {
                call: "configuration".into(),
                status: 0,
                // Not the value: a token written into the wrong key would show.
                message: "`github.repository` is not `owner/name`".to_owned(),
            })?;
        let builder = || {
            Octocrab::builder()
                .base_uri(api_url.as_str())
                .map_err(|err| transport("configuration", err))
                .map(|b| b.add_retry_config(RetryConfig::None))
        };
        let (crab, app) = match auth {
            GithubAuth::Token(token) => {
                let crab = builder()?
                    .personal_token(token.expose().to_owned())
                    .build()
                    .map_err(|err| transport("configuration", err))?;
                (OnceCell::new_with(Some(crab)), None)
            }
            GithubAuth::App {
                app_id,
                private_key_pem,
                installation_id,
            } => {
                let app = builder()?
                    .app_from_rsa_pem(app_id.into(), private_key_pem.expose().as_bytes())
                    .map_err(|err| transport("GitHub App key", err))?
                    .build()
                    .map_err(|err| transport("configuration", err))?;
                let login = AppLogin {
                    app,
                    installation_id,
                    bot_login: OnceCell::new(),
                };
                (OnceCell::new(), Some(Arc::new(login)))
            }
        };
        Ok(Self {
            crab: Arc::new(crab),
            app,
            owner: owner.into(),
            repo: repo.into(),
            retry: RetryPolicy::default(),
            cache: EtagCache::default(),
            reaction_etags: ReactionEtags::default(),
            deletes_merged_branches: Arc::default(),
        })
    }

    /// A client of this repository that calls as the GitHub App itself (a JWT).
    fn as_app(&self, login: &AppLogin) -> Self {
        Self {
            crab: Arc::new(OnceCell::new_with(Some(login.app.clone()))),
            app: None,
            owner: self.owner.clone(),
            repo: self.repo.clone(),
            retry: self.retry,
            cache: EtagCache::default(),
            reaction_etags: ReactionEtags::default(),
            deletes_merged_branches: Arc::default(),
        }
    }

    /// The client calls are made with: for a GitHub App, its installation's, looked up (when
    /// not configured) the first time GitHub answers.
    async fn crab(&self) -> Result<&Octocrab, ForgeError> {
        self.crab
            .get_or_try_init(|| async {
                let login = self.app.as_ref().ok_or_else(|| ForgeError::Refused {
                    call: "configuration".into(),
                    status: 0,
                    message: "no GitHub credentials".into(),
                })?;
                let installation = match login.installation_id {
                    Some(id) => id,
                    None => {
                        #[derive(Deserialize)]
                        struct Installation {
                            id: u64,
                        }
                        let as_app = self.as_app(login);
                        let path = as_app.repo_path("/installation");
                        let found: Installation = as_app.json(Method::GET, &path, None).await?;
                        found.id
                    }
                };
                login
                    .app
                    .installation(installation.into())
                    .map_err(|err| transport("installation", err))
            })
            .await
    }

    /// Overrides the retry policy (tests use short timeouts).
    pub fn with_retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// `owner/name`.
    pub fn repository(&self) -> String {
        format!("{}/{}", self.owner, self.repo)
    }

    fn repo_path(&self, rest: &str) -> String {
        format!("/repos/{}/{}{rest}", self.owner, self.repo)
    }

    /// One attempt of a call, with our own status handling.
    async fn attempt(
        &self,
        method: &Method,
        path: &str,
        body: Option<&Value>,
        headers: &HeaderMap,
    ) -> Result<Answer, ForgeError> {
        let call = format!("{method} {path}");
        let mut builder = http::Request::builder()
            .method(method.clone())
            // A relative URI: octocrab adds the base URI, and attaches App and installation
            // credentials only to requests bound for it.
            .uri(path);
        for (name, value) in headers {
            builder = builder.header(name, value);
        }
        builder = builder.header(http::header::ACCEPT, "application/vnd.github+json");
        let crab = self.crab().await?;
        let request = crab
            .build_request(builder, body)
            .map_err(|err| transport(&call, err))?;
        let response = crab
            .execute(request)
            .await
            .map_err(|err| transport(&call, err))?;
        let status = response.status();
        let headers = response.headers().clone();
        let body = crab
            .body_to_string(response)
            .await
            .map_err(|err| transport(&call, err))?;
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
        path: &str,
        body: Option<Value>,
        headers: HeaderMap,
    ) -> Result<Answer, ForgeError> {
        let name = format!("{method} {path}");
        perform_retryable(self.retry, &name, || {
            self.attempt(&method, path, body.as_ref(), &headers)
        })
        .await
    }

    async fn json<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<T, ForgeError> {
        let call = format!("{method} {path}");
        if method != Method::GET {
            let answer = self.send(method, path, body, HeaderMap::new()).await?;
            return decode(&call, &answer.body);
        }
        let cached = self.cache.get(path);
        let mut headers = HeaderMap::new();
        if let Some(etag) = cached
            .as_ref()
            .and_then(|cached| HeaderValue::from_str(&cached.etag).ok())
        {
            headers.insert(http::header::IF_NONE_MATCH, etag);
        }
        let answer = self.send(method, path, None, headers).await?;
        if answer.status == StatusCode::NOT_MODIFIED
            && let Some(cached) = cached
        {
            return decode(&call, &cached.body);
        }
        if let Some(etag) = answer
            .headers
            .get(http::header::ETAG)
            .and_then(|v| v.to_str().ok())
        {
            self.cache.put(path, etag, &answer.body);
        }
        decode(&call, &answer.body)
    }

    /// The repository's default branch, where policies and active requests live.
    pub async fn default_branch(&self) -> Result<String, ForgeError> {
        #[derive(Deserialize)]
        struct Repo {
            default_branch: String,
            #[serde(default)]
            delete_branch_on_merge: Option<bool>,
        }
        let repo: Repo = self.json(Method::GET, &self.repo_path(""), None).await?;
        self.deletes_merged_branches.store(
            repo.delete_branch_on_merge == Some(true),
            std::sync::atomic::Ordering::Relaxed,
        );
        Ok(repo.default_branch)
    }

    /// Whether the repository deletes a pull request's head branch once it is merged
    /// ("Automatically delete head branches"), as the last read of the repository said.
    pub fn deletes_merged_branches(&self) -> bool {
        self.deletes_merged_branches
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The commit a branch points at.
    pub async fn branch_head(&self, branch: &str) -> Result<String, ForgeError> {
        #[derive(Deserialize)]
        struct Object {
            sha: String,
        }
        #[derive(Deserialize)]
        struct Ref {
            object: Object,
        }
        let found: Ref = self
            .json(
                Method::GET,
                &self.repo_path(&format!("/git/ref/heads/{}", in_path(branch))),
                None,
            )
            .await?;
        Ok(found.object.sha)
    }

    /// A file at a ref, or `None` when it does not exist there.
    pub async fn read_file(
        &self,
        git_ref: &str,
        path: &str,
    ) -> Result<Option<FileContent>, ForgeError> {
        self.read_file_at(Some(git_ref), path).await
    }

    /// A file on the default branch, whatever its name is now: the contents API reads the
    /// default branch when it is given no ref.
    pub async fn read_default_file(&self, path: &str) -> Result<Option<FileContent>, ForgeError> {
        self.read_file_at(None, path).await
    }

    /// What the contents API serves for `path` at `git_ref`: a file (for a symbolic link to a
    /// file of the repository, GitHub follows it and serves that file, with its own path and
    /// blob id), or the kind of entry it serves no text of. `None` when nothing is there.
    pub async fn read_served(
        &self,
        git_ref: &str,
        path: &str,
    ) -> Result<Option<Served>, ForgeError> {
        let route = self.contents_route(Some(git_ref), path);
        let Some(content) = self.contents(&route).await? else {
            return Ok(None);
        };
        let kind = match content.kind.as_str() {
            "file" => {
                let served_path = content.path.clone().unwrap_or_else(|| path.to_owned());
                let file = Self::decoded(content, route, served_path)?;
                return Ok(Some(Served::File(file)));
            }
            "symlink" => EntryKind::Symlink,
            "submodule" => EntryKind::Submodule,
            _ => EntryKind::Unknown,
        };
        Ok(Some(Served::Other(kind)))
    }

    async fn read_file_at(
        &self,
        git_ref: Option<&str>,
        path: &str,
    ) -> Result<Option<FileContent>, ForgeError> {
        let route = self.contents_route(git_ref, path);
        match self.contents(&route).await? {
            Some(content) if content.kind == "file" => {
                Self::decoded(content, route, path.to_owned()).map(Some)
            }
            _ => Ok(None),
        }
    }

    /// The contents API's answer at `route`, `None` on a 404.
    async fn contents(&self, route: &str) -> Result<Option<Content>, ForgeError> {
        match self.json(Method::GET, route, None).await {
            Ok(content) => Ok(Some(content)),
            Err(err) if err.status() == Some(404) => Ok(None),
            Err(err) => Err(err),
        }
    }

    /// A file's text from its contents answer (read at `route`), as file `path`.
    fn decoded(content: Content, route: String, path: String) -> Result<FileContent, ForgeError> {
        let cleaned: String = content
            .content
            .chars()
            .filter(|c| !c.is_whitespace())
            .collect();
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(cleaned)
            .map_err(|err| ForgeError::Decode {
                call: route.clone(),
                detail: err.to_string(),
            })?;
        let text = String::from_utf8(bytes).map_err(|_| ForgeError::Decode {
            call: route,
            detail: format!("{path} is not UTF-8"),
        })?;
        Ok(FileContent {
            path,
            text,
            blob_sha: content.sha,
        })
    }

    /// The files of a directory at a ref (full paths), empty when it does not exist.
    ///
    /// The contents API lists at most [`CONTENTS_DIR_LIMIT`] entries of a directory and says
    /// nothing of the rest; a listing that long is read again, whole, as the directory's git
    /// tree (two more calls: the parent's listing for the tree's sha, then the tree).
    pub async fn list_dir(&self, git_ref: &str, path: &str) -> Result<Vec<String>, ForgeError> {
        let files = self.list_dir_at(Some(git_ref), git_ref, path).await?;
        Ok(files.into_keys().collect())
    }

    /// The files in a directory of the default branch (full path to blob id), whatever its name
    /// is now (`branch`, its name as last read, serves only a directory too large to list).
    pub async fn list_default_dir(
        &self,
        branch: &str,
        path: &str,
    ) -> Result<BTreeMap<String, String>, ForgeError> {
        self.list_dir_at(None, branch, path).await
    }

    async fn list_dir_at(
        &self,
        listed_at: Option<&str>,
        git_ref: &str,
        path: &str,
    ) -> Result<BTreeMap<String, String>, ForgeError> {
        let entries = match self.dir_entries(listed_at, path).await {
            Err(err) if err.status() == Some(404) => return Ok(BTreeMap::new()),
            listed => listed?,
        };
        if entries.len() >= CONTENTS_DIR_LIMIT
            && let Some(files) = self.tree_files(git_ref, path).await?
        {
            return Ok(files);
        }
        Ok(entries
            .into_iter()
            .filter(|e| e.kind == "file")
            .filter_map(|e| Some((e.path, e.sha?)))
            .collect())
    }

    /// Every file on the default branch (`branch`, its name as last read) under any of `roots`,
    /// at any depth (full path to blob id), and whether the forge listed the whole tree: one
    /// call, the branch's git tree read recursively (cut past the Trees API's own limit,
    /// 100,000 entries).
    pub async fn list_default_tree(
        &self,
        branch: &str,
        roots: &[String],
    ) -> Result<(BTreeMap<String, String>, bool), ForgeError> {
        let route = self.repo_path(&format!("/git/trees/{}?recursive=1", in_path(branch)));
        let tree: GitTree = match self.json(Method::GET, &route, None).await {
            Err(err) if err.status() == Some(404) => return Ok((BTreeMap::new(), false)),
            read => read?,
        };
        let files = tree
            .tree
            .into_iter()
            .filter(|e| e.kind == "blob" && roots.iter().any(|r| e.path.starts_with(r.as_str())))
            .map(|e| (e.path, e.sha))
            .collect();
        Ok((files, !tree.truncated))
    }

    async fn dir_entries(
        &self,
        git_ref: Option<&str>,
        path: &str,
    ) -> Result<Vec<DirEntry>, ForgeError> {
        let route = self.contents_route(git_ref, path);
        self.json::<Vec<DirEntry>>(Method::GET, &route, None).await
    }

    /// The contents API's route for `path` at `git_ref` (no ref: the default branch).
    fn contents_route(&self, git_ref: Option<&str>, path: &str) -> String {
        let query = git_ref
            .map(|r| format!("?ref={}", in_path(r)))
            .unwrap_or_default();
        match path {
            "" => self.repo_path(&format!("/contents{query}")),
            path => self.repo_path(&format!("/contents/{}{query}", in_path(path))),
        }
    }

    /// Every file of directory `path` at `git_ref` (full path to blob id), from its git tree;
    /// `None` when the directory is not found in its parent's listing.
    async fn tree_files(
        &self,
        git_ref: &str,
        path: &str,
    ) -> Result<Option<BTreeMap<String, String>>, ForgeError> {
        let path = path.trim_matches('/');
        let parent = path.rsplit_once('/').map_or("", |(parent, _)| parent);
        let siblings = self.dir_entries(Some(git_ref), parent).await?;
        let Some(dir) = siblings
            .into_iter()
            .find(|e| e.kind == "dir" && e.path == path)
        else {
            return Ok(None);
        };
        let Some(sha) = dir.sha else { return Ok(None) };
        let route = self.repo_path(&format!("/git/trees/{sha}"));
        let tree: GitTree = self.json(Method::GET, &route, None).await?;
        if tree.truncated {
            // Past the Trees API's own limit (100,000 entries): what it listed is all there is
            // to have; callers read any file they miss on its own.
            tracing::warn!(%path, "the directory's git tree was truncated");
        }
        Ok(Some(
            tree.tree
                .into_iter()
                .filter(|e| e.kind == "blob")
                .map(|e| (format!("{path}/{}", e.path), e.sha))
                .collect(),
        ))
    }

    /// Creates `branch` at `sha`.
    pub async fn create_branch(&self, branch: &str, sha: &str) -> Result<(), ForgeError> {
        let body = json!({ "ref": format!("refs/heads/{branch}"), "sha": sha });
        let path = self.repo_path("/git/refs");
        let create = || async {
            self.attempt(&Method::POST, &path, Some(&body), &HeaderMap::new())
                .await
                .map(drop)
        };
        // A creation whose answer was lost may have made it: made again, it would be
        // refused ("Reference already exists").
        let done = || async { branch_at(self.branch_head(branch).await, sha) };
        perform_checked(self.retry, &format!("POST {path}"), create, done).await
    }

    /// The commit the bot's lost write made on `branch`, if the branch's head is that commit: a
    /// write made again would be refused (the file is there already, or gone) or would add a
    /// second commit. The head is taken only if it is a commit of `message` on `parent` that
    /// changes nothing but `path`, to `text` (`None`: deleted): anyone else's commit there
    /// (one pushed over the bot's, with its message) is never taken for the bot's own.
    async fn written_on(
        &self,
        (branch, parent, message): (&str, &str, &str),
        path: &str,
        text: Option<&str>,
    ) -> Result<Option<Written>, ForgeError> {
        #[derive(Deserialize)]
        struct GitCommit {
            message: String,
            parents: Vec<ShaOnly>,
        }
        let head = match self.branch_head(branch).await {
            Ok(head) if head != parent => head,
            Ok(_) => return Ok(None),
            Err(err) if err.status() == Some(404) => return Ok(None),
            Err(err) => return Err(err),
        };
        let route = self.repo_path(&format!("/git/commits/{head}"));
        let commit: GitCommit = self.json(Method::GET, &route, None).await?;
        if commit.message != message
            || !matches!(commit.parents.as_slice(), [only] if only.sha == parent)
        {
            return Ok(None);
        }
        let changed = self.compare_files(parent, &head).await?;
        let blob = text.map(|text| {
            git2::Oid::hash_object(git2::ObjectType::Blob, text.as_bytes())
                .map(|oid| oid.to_string())
                .unwrap_or_default()
        });
        let ours = changed.complete
            && match changed.files.as_slice() {
                [file] if file.path == path => match &blob {
                    Some(blob) => {
                        matches!(file.change, FileChange::Added | FileChange::Modified)
                            && file.blob.as_ref() == Some(blob)
                    }
                    None => file.change == FileChange::Removed,
                },
                _ => false,
            };
        // The comparison names no file mode: a symbolic link whose link text is that text has
        // the very blob. The contents API tells a file from one.
        let a_file = match (ours, &blob) {
            (true, Some(blob)) => matches!(
                self.read_served(&head, path).await?,
                Some(Served::File(file)) if file.path == path && file.blob_sha == *blob
            ),
            _ => ours,
        };
        Ok(a_file.then_some(Written {
            commit: WrittenCommit {
                sha: head,
                parents: commit.parents,
            },
        }))
    }

    /// One write of the contents API (`PUT` a file, `DELETE` one) on `branch`, made once: an
    /// attempt whose answer was lost is looked for on the branch before the write is made
    /// again.
    async fn write_contents(
        &self,
        (method, route, body): (Method, &str, &Value),
        commit: (&str, &str, &str),
        (path, text): (&str, Option<&str>),
    ) -> Result<String, ForgeError> {
        let call = format!("{method} {route}");
        let write = || async {
            let answer = self
                .attempt(&method, route, Some(body), &HeaderMap::new())
                .await?;
            decode::<Written>(&call, &answer.body)
        };
        let done = || self.written_on(commit, path, text);
        let written = perform_checked(self.retry, &call, write, done).await?;
        on_parent(&call, written, commit.1)
    }

    /// Deletes a branch (after its PR is merged or closed); a missing branch is fine.
    pub async fn delete_branch(&self, branch: &str) -> Result<(), ForgeError> {
        match self
            .send(
                Method::DELETE,
                &self.repo_path(&format!("/git/refs/heads/{}", in_path(branch))),
                None,
                HeaderMap::new(),
            )
            .await
        {
            Ok(_) => Ok(()),
            Err(err) if matches!(err.status(), Some(404 | 422)) => Ok(()),
            Err(err) => Err(err),
        }
    }

    /// Writes a file on a branch as one commit; `blob_sha` is the current blob when updating.
    /// Returns the new commit.
    pub async fn put_file(
        &self,
        branch: &str,
        parent: &str,
        path: &str,
        text: &str,
        message: &str,
        blob_sha: Option<&str>,
    ) -> Result<String, ForgeError> {
        let mut body = json!({
            "message": message,
            "content": base64::engine::general_purpose::STANDARD.encode(text),
            "branch": branch,
        });
        if let Some(sha) = blob_sha {
            body["sha"] = json!(sha);
        }
        let route = self.repo_path(&format!("/contents/{}", in_path(path)));
        let put = (Method::PUT, route.as_str(), &body);
        self.write_contents(put, (branch, parent, message), (path, Some(text)))
            .await
    }

    /// Deletes a file on a branch as one commit; returns the new commit.
    pub async fn delete_file(
        &self,
        branch: &str,
        parent: &str,
        path: &str,
        message: &str,
        blob_sha: &str,
    ) -> Result<String, ForgeError> {
        let body = json!({ "message": message, "sha": blob_sha, "branch": branch });
        let route = self.repo_path(&format!("/contents/{}", in_path(path)));
        let delete = (Method::DELETE, route.as_str(), &body);
        self.write_contents(delete, (branch, parent, message), (path, None))
            .await
    }

    /// Moves `branch` to `sha` even when that is not a fast-forward: how the bot puts its own
    /// branch back after someone else pushed to it.
    pub async fn force_branch(&self, branch: &str, sha: &str) -> Result<(), ForgeError> {
        self.send(
            Method::PATCH,
            &self.repo_path(&format!("/git/refs/heads/{}", in_path(branch))),
            Some(json!({ "sha": sha, "force": true })),
            HeaderMap::new(),
        )
        .await
        .map(drop)
    }

    /// The account the bot acts as: a token's `GET /user`, or a GitHub App's bot user
    /// (`<slug>[bot]`, learnt when connecting: an installation token cannot ask).
    pub async fn me(&self) -> Result<Actor, ForgeError> {
        let Some(app) = &self.app else {
            return Ok(self.json::<User>(Method::GET, "/user", None).await?.into());
        };
        let login = app
            .bot_login
            .get_or_try_init(|| async {
                #[derive(Deserialize)]
                struct App {
                    slug: String,
                }
                let me: App = self.as_app(app).json(Method::GET, "/app", None).await?;
                Ok::<_, ForgeError>(format!("{}[bot]", me.slug))
            })
            .await?;
        self.user(login).await?.ok_or_else(|| ForgeError::Refused {
            call: format!("GET /users/{login}"),
            status: 404,
            message: format!("the app's bot user {login} does not exist"),
        })
    }

    /// The text of issue comment `id` now; `None` once deleted (conditional: a `304` is free).
    pub async fn comment_body(&self, id: u64) -> Result<Option<String>, ForgeError> {
        #[derive(Deserialize)]
        struct Raw {
            #[serde(default)]
            body: Option<String>,
        }
        let path = self.repo_path(&format!("/issues/comments/{id}"));
        match self.json::<Raw>(Method::GET, &path, None).await {
            Ok(raw) => Ok(Some(raw.body.unwrap_or_default())),
            Err(err) if err.status() == Some(404) => Ok(None),
            Err(err) => Err(err),
        }
    }

    /// The comments on issue or PR `number`, oldest first.
    pub async fn comments(&self, number: u64) -> Result<Vec<Note>, ForgeError> {
        #[derive(Deserialize)]
        struct Raw {
            user: User,
            #[serde(default)]
            body: String,
            created_at: DateTime<Utc>,
        }
        let mut all = Vec::new();
        for page in 1..=50 {
            let route = self.repo_path(&format!(
                "/issues/{number}/comments?per_page=100&page={page}"
            ));
            let batch: Vec<Raw> = self.json(Method::GET, &route, None).await?;
            let done = batch.len() < 100;
            all.extend(batch.into_iter().map(|c| Note {
                author_id: c.user.id,
                body: c.body,
                created_at: c.created_at,
            }));
            if done {
                break;
            }
        }
        Ok(all)
    }

    /// Opens a pull request labelled `labels` and returns it. GitHub takes no labels when it
    /// opens a pull request: they are added by one more call, made only when there are some.
    /// A label call that fails leaves the pull request unlabelled (and says so in the log): a
    /// label can only make a request easier to grant, so its absence never lets one through.
    pub async fn open_pull_request(
        &self,
        head: &str,
        base: &str,
        title: &str,
        body: &str,
        labels: &[String],
    ) -> Result<PullRequestState, ForgeError> {
        let path = self.repo_path("/pulls");
        let call = format!("POST {path}");
        let request = json!({ "title": title, "head": head, "base": base, "body": body });
        let open = || async {
            let answer = self
                .attempt(&Method::POST, &path, Some(&request), &HeaderMap::new())
                .await?;
            decode::<PullRequest>(&call, &answer.body)
        };
        // An opening whose answer was lost may have opened it: a retry would be refused
        // ("A pull request already exists"), so the forge is asked first.
        let looked = std::sync::atomic::AtomicBool::new(false);
        let created = perform_checked(self.retry, &call, open, || {
            looked.store(true, std::sync::atomic::Ordering::Relaxed);
            self.open_pull_request_from(head, base)
        })
        .await?;
        let mut state: PullRequestState = created.into();
        // One found by the look may be someone else's, opened from the bot's branch in the
        // moment before: the workflow refuses it, and the bot labels nothing of theirs.
        if !labels.is_empty()
            && (!looked.load(std::sync::atomic::Ordering::Relaxed)
                || state.info.author.id == self.me().await?.id)
        {
            let number = state.info.number;
            let route = self.repo_path(&format!("/issues/{number}/labels"));
            match self
                .json::<Vec<Label>>(Method::POST, &route, Some(json!({ "labels": labels })))
                .await
            {
                Ok(now) => state.info.labels = now.into_iter().map(|l| l.name).collect(),
                Err(err) => tracing::warn!(%err, number, "the new pull request was not labelled"),
            }
        }
        Ok(state)
    }

    /// The open pull request from branch `head` of this repository into `base`, if there is
    /// one (GitHub allows one such).
    async fn open_pull_request_from(
        &self,
        head: &str,
        base: &str,
    ) -> Result<Option<PullRequest>, ForgeError> {
        let route = self.repo_path(&format!(
            "/pulls?state=open&head={}&base={}",
            query_value(&format!("{}:{head}", self.owner)),
            query_value(base),
        ));
        let answer = self
            .attempt(&Method::GET, &route, None, &HeaderMap::new())
            .await?;
        let listed: Vec<PullRequest> = decode(&format!("GET {route}"), &answer.body)?;
        Ok(listed
            .into_iter()
            .find(|pr| pr.head.git_ref == head && pr.base.git_ref == base))
    }

    /// The labels of an issue or a pull request (GitHub numbers both from one sequence), and
    /// whether it is open: one read of the issue, which gives `state` and `labels` together.
    pub async fn issue_labels(&self, number: u64) -> Result<ThreadLabels, ForgeError> {
        #[derive(Deserialize)]
        struct Issue {
            state: String,
            #[serde(default)]
            labels: Vec<Label>,
        }
        let route = self.repo_path(&format!("/issues/{number}"));
        let issue: Issue = self.json(Method::GET, &route, None).await?;
        Ok(ThreadLabels {
            open: issue.state == "open",
            labels: issue.labels.into_iter().map(|l| l.name).collect(),
        })
    }

    /// Every open pull request, newest first (100 a page, as many pages as there are), with
    /// whether each was updated within `window` before GitHub's own time.
    pub async fn open_pull_requests(
        &self,
        window: chrono::TimeDelta,
    ) -> Result<Vec<OpenChange>, ForgeError> {
        let mut all = Vec::new();
        let mut since = None;
        for page in 1..=50 {
            let route = self.repo_path(&format!("/pulls?state=open&per_page=100&page={page}"));
            let answer = self
                .send(Method::GET, &route, None, HeaderMap::new())
                .await?;
            let since = window_start(&mut since, &answer.headers, window);
            let batch: Vec<PullRequest> = decode(&format!("GET {route}"), &answer.body)?;
            let done = batch.len() < 100;
            all.extend(batch.into_iter().map(|pr| OpenChange {
                number: pr.number,
                head_sha: pr.head.sha,
                author_id: pr.user.id,
                draft: pr.draft.unwrap_or(false),
                labels: pr.labels.into_iter().map(|l| l.name).collect(),
                recently_updated: since.zip(pr.updated_at).is_some_and(|(s, at)| at >= s),
            }));
            if done {
                break;
            }
            if page == 50 {
                tracing::warn!(
                    listed = all.len(),
                    "more open pull requests than the catch-up lists; the oldest are not looked at"
                );
            }
        }
        Ok(all)
    }

    /// The newest event of PR `number`'s timeline that rewrote its head branch: a force push,
    /// or the branch deleted or restored (see [`crate::forge::Forge::latest_head_move`]).
    /// Read to its end, at most [`TIMELINE_PAGES`] pages; past them the time is not known.
    pub async fn latest_head_move(&self, number: u64) -> Result<Option<HeadMove>, ForgeError> {
        #[derive(Deserialize)]
        struct Event {
            #[serde(default)]
            event: Option<String>,
            #[serde(default)]
            created_at: Option<DateTime<Utc>>,
        }
        const REWRITES: [&str; 3] = [
            "head_ref_force_pushed",
            "head_ref_deleted",
            "head_ref_restored",
        ];
        let mut latest: Option<HeadMove> = None;
        for page in 1..=TIMELINE_PAGES {
            let route = self.repo_path(&format!(
                "/issues/{number}/timeline?per_page=100&page={page}"
            ));
            let answer = self
                .send(Method::GET, &route, None, HeaderMap::new())
                .await?;
            let batch: Vec<Event> = decode(&format!("GET {route}"), &answer.body)?;
            for event in &batch {
                if !REWRITES.contains(&event.event.as_deref().unwrap_or_default()) {
                    continue;
                }
                // An undated rewrite leaves the time unknown, whatever came before it.
                let at = match (&latest, event.created_at) {
                    (Some(HeadMove { at: None, .. }), _) | (_, None) => None,
                    (Some(HeadMove { at: Some(seen), .. }), Some(at)) => Some(at.max(*seen)),
                    (None, Some(at)) => Some(at),
                };
                latest = Some(HeadMove { at, sha: None });
            }
            if batch.len() < 100 {
                return Ok(latest);
            }
        }
        tracing::warn!(
            pr = number,
            "a timeline longer than the bot reads: when the head last moved is not known"
        );
        Ok(Some(HeadMove {
            at: None,
            sha: None,
        }))
    }

    /// The repository's comments made within `window` before GitHub's own time (the `Date` of
    /// its answer), newest first; empty when GitHub says no time.
    pub async fn recent_comments(
        &self,
        window: chrono::TimeDelta,
    ) -> Result<Vec<ListedComment>, ForgeError> {
        #[derive(Deserialize)]
        struct Listed {
            id: u64,
            #[serde(default)]
            body: Option<String>,
            user: User,
            created_at: DateTime<Utc>,
            #[serde(default)]
            updated_at: Option<DateTime<Utc>>,
            issue_url: String,
            html_url: String,
        }
        let mut all = Vec::new();
        let mut kept = None;
        for page in 1..=RECENT_COMMENT_PAGES {
            let route = self.repo_path(&format!(
                "/issues/comments?sort=created&direction=desc&per_page=100&page={page}"
            ));
            let answer = self
                .send(Method::GET, &route, None, HeaderMap::new())
                .await?;
            let Some(since) = window_start(&mut kept, &answer.headers, window) else {
                tracing::warn!(
                    "GitHub's answer says no time: comments made while the bot was down are not looked for"
                );
                return Ok(Vec::new());
            };
            let batch: Vec<Listed> = decode(&format!("GET {route}"), &answer.body)?;
            let last_page = batch.len() < 100 || batch.iter().any(|c| c.created_at < since);
            all.extend(
                batch
                    .into_iter()
                    .filter(|c| c.created_at >= since)
                    .filter_map(|c| {
                        let number = c.issue_url.rsplit('/').next()?.parse().ok()?;
                        Some(ListedComment {
                            id: c.id,
                            number,
                            on_change: c.html_url.contains("/pull/"),
                            body: c.body.unwrap_or_default(),
                            author: c.user.into(),
                            created_at: c.created_at,
                            internal: false,
                            edited: c.updated_at.is_some_and(|at| at > c.created_at),
                            age: since + window - c.created_at,
                        })
                    }),
            );
            if last_page {
                return Ok(all);
            }
        }
        tracing::warn!(
            pages = RECENT_COMMENT_PAGES,
            "more comments in the catch-up window than are read: older ones are not looked for"
        );
        Ok(all)
    }

    /// An open pull request from `head` into `base`, if there is one (to make PR creation idempotent).
    pub async fn find_open_pull_request(
        &self,
        head: &str,
        base: &str,
    ) -> Result<Option<u64>, ForgeError> {
        let route = self.repo_path(&format!(
            "/pulls?state=open&head={}:{head}&base={base}",
            self.owner
        ));
        let found: Vec<PullRequest> = self.json(Method::GET, &route, None).await?;
        Ok(found
            .into_iter()
            .find(|pr| pr.head.git_ref == head)
            .map(|pr| pr.number))
    }

    /// A pull request's current state.
    pub async fn pull_request(&self, number: u64) -> Result<PullRequestState, ForgeError> {
        let pr: PullRequest = self
            .json(
                Method::GET,
                &self.repo_path(&format!("/pulls/{number}")),
                None,
            )
            .await?;
        Ok(pr.into())
    }

    /// The files that merging commit `head_sha` into branch `base` would change: the
    /// three-dot comparison `base...head_sha`, pinned to the commit.
    pub async fn compare_files(
        &self,
        base: &str,
        head_sha: &str,
    ) -> Result<ChangedFiles, ForgeError> {
        let route = self.repo_path(&format!(
            "/compare/{}...{}",
            in_path(base),
            in_path(head_sha)
        ));
        let compare: Compare = self.json(Method::GET, &route, None).await?;
        Ok(compare.into_changed_files())
    }

    /// Every file a pull request changes (all pages), at whatever head it has when served:
    /// only for a forge without the comparison API (see [`crate::forge::Forge::changed_files_at`]).
    pub async fn pull_request_files(&self, number: u64) -> Result<Vec<ChangedFile>, ForgeError> {
        #[derive(Deserialize)]
        struct File {
            filename: String,
            status: String,
            previous_filename: Option<String>,
            #[serde(default)]
            sha: Option<String>,
        }
        let mut files = Vec::new();
        for page in 1..=30 {
            let route = self.repo_path(&format!("/pulls/{number}/files?per_page=100&page={page}"));
            let batch: Vec<File> = self.json(Method::GET, &route, None).await?;
            let done = batch.len() < 100;
            files.extend(batch.into_iter().map(|f| ChangedFile {
                change: match f.status.as_str() {
                    "added" => FileChange::Added,
                    "modified" | "changed" => FileChange::Modified,
                    "removed" => FileChange::Removed,
                    "renamed" => FileChange::Renamed,
                    _ => FileChange::Other,
                },
                path: f.filename,
                previous_path: f.previous_filename,
                kind: EntryKind::Unknown,
                blob: f.sha,
            }));
            if done {
                break;
            }
        }
        Ok(files)
    }

    /// Posts a comment on an issue or pull request; returns its id.
    /// Posts `note` on issue or PR `number`, once: an attempt whose answer was lost is looked
    /// for on the thread (by its mark) before the note is posted again.
    pub async fn comment(&self, number: u64, note: &Marked) -> Result<u64, ForgeError> {
        #[derive(Deserialize)]
        struct Created {
            id: u64,
        }
        let path = self.repo_path(&format!("/issues/{number}/comments"));
        let call = format!("POST {path}");
        let body = json!({ "body": note.body });
        let post = || async {
            let answer = self
                .attempt(&Method::POST, &path, Some(&body), &HeaderMap::new())
                .await?;
            decode::<Created>(&call, &answer.body).map(|created| created.id)
        };
        let id = perform_checked(self.retry, &call, post, || {
            self.find_note(number, &note.mark)
        })
        .await?;
        self.reaction_etags.commented(number, id);
        Ok(id)
    }

    /// The id of the note on `number` that carries `mark`, if it is there.
    async fn find_note(&self, number: u64, mark: &str) -> Result<Option<u64>, ForgeError> {
        #[derive(Deserialize)]
        struct Raw {
            id: u64,
            #[serde(default)]
            body: String,
        }
        for page in 1..=50 {
            let route = self.repo_path(&format!(
                "/issues/{number}/comments?per_page=100&page={page}"
            ));
            let batch: Vec<Raw> = self.json(Method::GET, &route, None).await?;
            if let Some(found) = batch.iter().find(|c| c.body.contains(mark)) {
                return Ok(Some(found.id));
            }
            if batch.len() < 100 {
                break;
            }
        }
        Ok(None)
    }

    /// Sets the commit status `context` on `sha`.
    pub async fn set_status(
        &self,
        sha: &str,
        context: &str,
        state: StatusState,
        description: &str,
    ) -> Result<(), ForgeError> {
        // GitHub caps descriptions at 140 characters.
        let description: String = description.chars().take(140).collect();
        let body =
            json!({ "state": state.to_string(), "context": context, "description": description });
        self.send(
            Method::POST,
            &self.repo_path(&format!("/statuses/{sha}")),
            Some(body),
            HeaderMap::new(),
        )
        .await
        .map(drop)
    }

    /// Merges with a merge commit (never squash), only if the head is still `head_sha`.
    pub async fn merge(
        &self,
        number: u64,
        head_sha: &str,
        title: &str,
        message: &str,
    ) -> Result<Landed, MergeError> {
        #[derive(Deserialize)]
        struct Merged {
            sha: String,
        }
        let body = json!({ "sha": head_sha, "merge_method": "merge", "commit_title": title, "commit_message": message });
        let path = self.repo_path(&format!("/pulls/{number}/merge"));
        let call = format!("PUT {path}");
        let put = || async {
            let answer = self
                .attempt(&Method::PUT, &path, Some(&body), &HeaderMap::new())
                .await?;
            // GitHub's answer does not say where the merge went.
            decode::<Merged>(&call, &answer.body).map(|merged| Landed {
                sha: merged.sha,
                base: None,
                found_merged_by: None,
            })
        };
        // A merge whose answer was lost may have happened: merged again, it would be refused
        // as "not mergeable", and a merge the bot made taken for one it did not.
        let done = || async {
            let pr = self.pull_request(number).await?;
            let landed = pr.info.merged && pr.info.head_sha == head_sha;
            Ok(pr.merge_sha.filter(|_| landed).map(|sha| Landed {
                sha,
                base: Some(pr.info.base_ref),
                found_merged_by: Some(pr.merged_by),
            }))
        };
        match perform_checked(self.retry, &call, put, done).await {
            Ok(landed) => Ok(landed),
            Err(ForgeError::Refused { status: 409, .. }) => Err(MergeError::HeadChanged),
            Err(ForgeError::Refused {
                status: 405 | 422,
                message,
                ..
            }) => Err(MergeError::NotMergeable(message)),
            Err(err) => Err(MergeError::Forge(err)),
        }
    }

    /// Closes a pull request without merging.
    /// Sets a pull request's title and body.
    pub async fn retitle_pull_request(
        &self,
        number: u64,
        title: &str,
        body: &str,
    ) -> Result<(), ForgeError> {
        self.send(
            Method::PATCH,
            &self.repo_path(&format!("/pulls/{number}")),
            Some(json!({ "title": title, "body": body })),
            HeaderMap::new(),
        )
        .await
        .map(drop)
    }

    pub async fn close_pull_request(&self, number: u64) -> Result<(), ForgeError> {
        self.send(
            Method::PATCH,
            &self.repo_path(&format!("/pulls/{number}")),
            Some(json!({ "state": "closed" })),
            HeaderMap::new(),
        )
        .await
        .map(drop)
    }

    pub async fn add_label(&self, number: u64, label: &str) -> Result<(), ForgeError> {
        self.send(
            Method::POST,
            &self.repo_path(&format!("/issues/{number}/labels")),
            Some(json!({ "labels": [label] })),
            HeaderMap::new(),
        )
        .await
        .map(drop)
    }

    /// Removes a label; a label that is not there is fine.
    pub async fn remove_label(&self, number: u64, label: &str) -> Result<(), ForgeError> {
        let route = self.repo_path(&format!(
            "/issues/{number}/labels/{}",
            url::form_urlencoded::byte_serialize(label.as_bytes()).collect::<String>()
        ));
        match self
            .send(Method::DELETE, &route, None, HeaderMap::new())
            .await
        {
            Ok(_) => Ok(()),
            Err(err) if err.status() == Some(404) => Ok(()),
            Err(err) => Err(err),
        }
    }

    /// Every reaction on a pull request.
    pub async fn reactions(&self, number: u64) -> Result<Vec<Reaction>, ForgeError> {
        let (value, _) = self
            .all_reactions(Listed::Change(number), None, false)
            .await?;
        Ok(value)
    }

    /// The reactions on a pull request if they changed since the last call for it: a
    /// conditional request with the ETag of the last answer, which GitHub answers with a `304`
    /// that costs no rate limit.
    pub async fn reactions_if_changed(
        &self,
        number: u64,
    ) -> Result<Option<Vec<Reaction>>, ForgeError> {
        self.list_if_changed(Listed::Change(number)).await
    }

    /// The reactions on the bot's latest comment on PR `number` if they changed since the last
    /// call for it; `None` also when this replica has not commented there since it started.
    pub async fn latest_comment_reactions_if_changed(
        &self,
        number: u64,
    ) -> Result<Option<Vec<Reaction>>, ForgeError> {
        let Some(comment) = self.reaction_etags.latest_comment(number) else {
            return Ok(None);
        };
        match self.list_if_changed(Listed::Comment(comment)).await {
            // Deleted by someone: there is nothing to poll until the bot comments again.
            Err(err) if err.status() == Some(404) => {
                self.reaction_etags.done_with_comment(number, comment);
                Ok(None)
            }
            answer => answer,
        }
    }

    async fn list_if_changed(&self, list: Listed) -> Result<Option<Vec<Reaction>>, ForgeError> {
        let validator = self.reaction_etags.validator(list);
        let (etag, tail) = match &validator {
            Some(Validator::Own { etag, tail }) => (Some(etag.as_str()), *tail),
            Some(Validator::Empty(etag)) => (Some(etag.as_str()), Tail::FIRST),
            None => (None, Tail::FIRST),
        };
        let first = match self.reaction_page(list, tail, etag).await? {
            Polled::NotModified => {
                let Some(Validator::Empty(etag)) = validator else {
                    return Ok(None);
                };
                self.reaction_etags
                    .answered(list, Some(&etag), Tail::FIRST, true);
                return Ok(Some(Vec::new()));
            }
            // Page one begins the list; a later page changed is read again from the start.
            Polled::Changed { etag, value } => (tail == Tail::FIRST).then_some((etag, value)),
        };
        let (value, kept) = self.all_reactions(list, first, true).await?;
        let (tail, etag) = kept.map_or((Tail::FIRST, None), |(tail, etag)| (tail, Some(etag)));
        self.reaction_etags
            .answered(list, etag.as_deref(), tail, value.is_empty());
        Ok(Some(value))
    }

    /// Forgets the ETag of PR `number`'s reactions: the next poll reads them whole.
    pub fn forget_reactions(&self, number: u64) {
        self.reaction_etags.forget(Listed::Change(number));
    }

    /// PR `number` is polled no more: what its polls kept goes.
    pub fn done_polling(&self, number: u64) {
        self.reaction_etags.done_with(number);
    }

    /// Every reaction of `list`, page by page from `first` (page one, if already read), and,
    /// when `keep_tail`, the page to poll it at with that page's ETag (see [`Tail`]).
    async fn all_reactions(
        &self,
        list: Listed,
        first: Option<(Option<String>, Vec<RawReaction>)>,
        keep_tail: bool,
    ) -> Result<(Vec<Reaction>, Option<(Tail, String)>), ForgeError> {
        let (etag, mut raw) = match first {
            Some(first) => first,
            None => self.reaction_page_in_full(list, Tail::FIRST).await?,
        };
        // Every page: an approval on page two counts as much as one on page one.
        let mut etags = vec![etag];
        let mut read = Tail::FIRST;
        let mut last = raw.len();
        while last == 100 && read.page < 50 {
            read.page += 1;
            let (etag, batch) = self.reaction_page_in_full(list, read).await?;
            last = batch.len();
            etags.push(etag);
            raw.extend(batch);
        }
        let kept = if keep_tail && raw.len() < 5_000 {
            self.tail_to_poll(list, &raw, read, etags).await?
        } else {
            // Not polled, or the 50 pages read may not be all: no end to poll it at.
            None
        };
        let value = raw.into_iter().map(Reaction::from).collect();
        Ok((value, kept))
    }

    /// The page to poll `list` at, with its ETag, once `raw` was read page by page up to
    /// `read` (`etags`, one per page). `None` when the list moved while it was read.
    async fn tail_to_poll(
        &self,
        list: Listed,
        raw: &[RawReaction],
        read: Tail,
        mut etags: Vec<Option<String>>,
    ) -> Result<Option<(Tail, String)>, ForgeError> {
        let tail = Tail::of(raw.len());
        let etag = if tail == read {
            etags.pop().flatten()
        } else {
            // Its last page of 100 is full: polled at its last page of 99 instead, if that
            // still ends the way the pages read did.
            etags.pop();
            let (etag, batch) = self.reaction_page_in_full(list, tail).await?;
            let ids = |list: &[RawReaction]| list.iter().map(|r| r.id).collect::<Vec<_>>();
            let ends_the_same = ids(&batch) == ids(&raw[(tail.page - 1) * tail.per_page..]);
            etag.filter(|_| ends_the_same)
        };
        // A reaction taken back on a page already read shifts the pages after it: the list
        // read would miss one under an up-to-date last page. Each earlier page, asked again
        // with its ETag (free while unchanged), says it did not move.
        for (page, etag) in (1..).zip(etags) {
            let Some(etag) = etag else {
                return Ok(None);
            };
            let at = Tail {
                per_page: 100,
                page,
            };
            if let Polled::Changed { .. } = self.reaction_page(list, at, Some(&etag)).await? {
                return Ok(None);
            }
        }
        Ok(etag.map(|etag| (tail, etag)))
    }

    async fn reaction_page_in_full(
        &self,
        list: Listed,
        tail: Tail,
    ) -> Result<(Option<String>, Vec<RawReaction>), ForgeError> {
        match self.reaction_page(list, tail, None).await? {
            Polled::Changed { etag, value } => Ok((etag, value)),
            Polled::NotModified => Err(ForgeError::Decode {
                call: "reactions".into(),
                detail: "304 to an unconditional request".into(),
            }),
        }
    }

    /// One page of `list`, `tail.per_page` a page; `304` when it still has `etag`.
    async fn reaction_page(
        &self,
        list: Listed,
        tail: Tail,
        etag: Option<&str>,
    ) -> Result<Polled<Vec<RawReaction>>, ForgeError> {
        let mut headers = HeaderMap::new();
        if let Some(etag) = etag.and_then(|e| HeaderValue::from_str(e).ok()) {
            headers.insert(http::header::IF_NONE_MATCH, etag);
        }
        let listed = match list {
            Listed::Change(number) => format!("/issues/{number}/reactions"),
            Listed::Comment(id) => format!("/issues/comments/{id}/reactions"),
        };
        let query = match tail {
            Tail::FIRST => "?per_page=100".to_owned(),
            Tail { per_page, page } => format!("?per_page={per_page}&page={page}"),
        };
        let route = self.repo_path(&format!("{listed}{query}"));
        let answer = self.send(Method::GET, &route, None, headers).await?;
        if answer.status == StatusCode::NOT_MODIFIED {
            return Ok(Polled::NotModified);
        }
        let value = decode(&route, &answer.body)?;
        let etag = answer
            .headers
            .get(http::header::ETAG)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        Ok(Polled::Changed { etag, value })
    }

    /// The submitted reviews of a pull request.
    pub async fn reviews(&self, number: u64) -> Result<Vec<Review>, ForgeError> {
        #[derive(Deserialize)]
        struct Raw {
            id: u64,
            user: User,
            state: String,
            commit_id: Option<String>,
            submitted_at: Option<DateTime<Utc>>,
        }
        let mut raw: Vec<Raw> = Vec::new();
        for page in 1..=50 {
            let route =
                self.repo_path(&format!("/pulls/{number}/reviews?per_page=100&page={page}"));
            let batch: Vec<Raw> = self.json(Method::GET, &route, None).await?;
            let done = batch.len() < 100;
            raw.extend(batch);
            if done {
                break;
            }
        }
        Ok(raw
            .into_iter()
            .filter_map(|r| {
                let state = match r.state.to_ascii_uppercase().as_str() {
                    "APPROVED" => ReviewState::Approved,
                    "CHANGES_REQUESTED" => ReviewState::ChangesRequested,
                    "COMMENTED" => ReviewState::Commented,
                    "DISMISSED" => ReviewState::Dismissed,
                    _ => return None,
                };
                Some(Review {
                    id: r.id,
                    author: r.user.into(),
                    state,
                    commit_id: r.commit_id,
                    submitted_at: r.submitted_at,
                })
            })
            .collect())
    }

    /// Whether `login` is an active member of the team `org/slug`.
    pub async fn is_team_member(
        &self,
        org: &str,
        slug: &str,
        login: &str,
    ) -> Result<bool, ForgeError> {
        #[derive(Deserialize)]
        struct Membership {
            state: String,
        }
        let route = format!("/orgs/{org}/teams/{slug}/memberships/{login}");
        match self.json::<Membership>(Method::GET, &route, None).await {
            Ok(m) => Ok(m.state == "active"),
            Err(err) if err.status() == Some(404) => Ok(false),
            Err(err) => Err(err),
        }
    }

    /// A user by login (for the numeric id of people named in policies).
    pub async fn user(&self, login: &str) -> Result<Option<Actor>, ForgeError> {
        match self
            .json::<User>(Method::GET, &format!("/users/{login}"), None)
            .await
        {
            Ok(user) => Ok(Some(user.into())),
            Err(err) if err.status() == Some(404) => Ok(None),
            Err(err) => Err(err),
        }
    }
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
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    // Clamped as GitLab's: a forge (or a proxy) asking for years must not put work off for
    // years.
    let retry_after = header("retry-after")
        .and_then(|v| v.parse::<u64>().ok())
        .map(|seconds| Duration::from_secs(seconds.clamp(1, 3600)));
    let exhausted = header("x-ratelimit-remaining") == Some("0");
    if status == StatusCode::TOO_MANY_REQUESTS
        || (status == StatusCode::FORBIDDEN && (exhausted || retry_after.is_some()))
    {
        let until_reset = header("x-ratelimit-reset")
            .and_then(|v| v.parse::<i64>().ok())
            .map(|reset| {
                let now = forge_now(headers, Utc::now().timestamp());
                Duration::from_secs(reset.saturating_sub(now).clamp(1, 3600) as u64)
            });
        return Err(ForgeError::RateLimited {
            call: call.to_owned(),
            retry_after: retry_after
                .or(until_reset)
                .unwrap_or(Duration::from_secs(60)),
        });
    }
    if status.is_server_error() {
        return Err(ForgeError::Transient {
            call: call.to_owned(),
            detail: format!("HTTP {}", status.as_u16()),
        });
    }
    #[derive(Deserialize)]
    struct GithubMessage {
        message: String,
    }
    let message = serde_json::from_str::<GithubMessage>(body)
        .map(|m| m.message)
        .unwrap_or_else(|_| body.chars().take(200).collect());
    Err(ForgeError::Refused {
        call: call.to_owned(),
        status: status.as_u16(),
        message: crate::secret::scrub(&message),
    })
}

#[derive(Deserialize)]
struct User {
    id: u64,
    login: String,
    #[serde(rename = "type", default)]
    kind: String,
}

impl From<User> for Actor {
    fn from(user: User) -> Self {
        Actor {
            id: user.id,
            is_bot: user.kind == "Bot" || user.login.ends_with("[bot]"),
            login: user.login,
        }
    }
}

/// A reaction as GitHub lists it.
#[derive(Deserialize)]
struct RawReaction {
    id: u64,
    user: User,
    content: String,
    created_at: DateTime<Utc>,
}

impl From<RawReaction> for Reaction {
    fn from(raw: RawReaction) -> Self {
        Reaction {
            id: raw.id,
            user: raw.user.into(),
            content: raw.content,
            created_at: raw.created_at,
        }
    }
}

/// The contents API's answer for one path.
#[derive(Deserialize)]
struct Content {
    sha: String,
    /// The path served: a followed symbolic link's target.
    #[serde(default)]
    path: Option<String>,
    #[serde(default)]
    content: String,
    #[serde(rename = "type")]
    kind: String,
}

/// One entry of a contents listing.
/// A git tree as the Trees API lists it.
#[derive(Deserialize)]
struct GitTree {
    tree: Vec<TreeEntry>,
    #[serde(default)]
    truncated: bool,
}

#[derive(Deserialize)]
struct TreeEntry {
    path: String,
    #[serde(rename = "type")]
    kind: String,
    /// The blob id, for a file.
    sha: String,
}

#[derive(Deserialize)]
struct DirEntry {
    path: String,
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    sha: Option<String>,
}

/// The answer of a contents write: the commit it made.
#[derive(Deserialize)]
struct Written {
    commit: WrittenCommit,
}

#[derive(Deserialize)]
struct WrittenCommit {
    sha: String,
    #[serde(default)]
    parents: Vec<ShaOnly>,
}

#[derive(Deserialize)]
struct ShaOnly {
    sha: String,
}

/// The commit the contents API made, checked to sit on `parent`: the API names no parent, so a
/// commit someone pushed to the branch since the bot read it would be built on (its changes
/// then carried under the bot's commit). Refused as a transient failure: the caller's retry
/// finds the branch moved and puts it back, as after any push to a bot branch.
fn on_parent(call: &str, written: Written, parent: &str) -> Result<String, ForgeError> {
    if written.commit.parents.iter().any(|p| p.sha == parent) {
        return Ok(written.commit.sha);
    }
    Err(ForgeError::Transient {
        call: call.to_owned(),
        detail: format!(
            "the commit {} was built on another commit than {}: someone pushed to the branch meanwhile",
            written.commit.sha, parent
        ),
    })
}

#[derive(Deserialize)]
struct BranchRef {
    sha: String,
    #[serde(rename = "ref")]
    git_ref: String,
    #[serde(default)]
    repo: Option<RepoRef>,
}

#[derive(Deserialize)]
struct RepoRef {
    full_name: String,
    #[serde(default)]
    default_branch: Option<String>,
}

#[derive(Deserialize)]
struct Label {
    name: String,
}

#[derive(Deserialize)]
struct PullRequest {
    number: u64,
    title: String,
    #[serde(default)]
    body: Option<String>,
    state: String,
    user: User,
    head: BranchRef,
    base: BranchRef,
    #[serde(default)]
    labels: Vec<Label>,
    #[serde(default)]
    merged: Option<bool>,
    #[serde(default)]
    merged_at: Option<DateTime<Utc>>,
    #[serde(default)]
    merge_commit_sha: Option<String>,
    #[serde(default)]
    merged_by: Option<User>,
    #[serde(default)]
    draft: Option<bool>,
    #[serde(default)]
    updated_at: Option<DateTime<Utc>>,
    #[serde(default)]
    changed_files: Option<u64>,
}

impl From<PullRequest> for PullRequestState {
    fn from(pr: PullRequest) -> Self {
        let merged = pr.merged.unwrap_or(pr.merged_at.is_some());
        PullRequestState {
            title: pr.title,
            body: pr.body.unwrap_or_default(),
            open: pr.state == "open",
            merge_sha: if merged { pr.merge_commit_sha } else { None },
            merged_at: pr.merged_at,
            merged_by: pr.merged_by.filter(|_| merged).map(Into::into),
            changed_files: pr.changed_files,
            merge_base: None,
            default_branch: pr.base.repo.as_ref().and_then(|r| r.default_branch.clone()),
            info: PullRequestInfo {
                number: pr.number,
                author: pr.user.into(),
                head_sha: pr.head.sha,
                head_ref: pr.head.git_ref,
                base_ref: pr.base.git_ref,
                head_repo: pr.head.repo.map(|r| r.full_name),
                labels: pr.labels.into_iter().map(|l| l.name).collect(),
                merged,
                draft: pr.draft.unwrap_or(false),
                updated_at: pr.updated_at,
            },
        }
    }
}

/// A value in a URL's query, percent-encoded as a form's.
fn query_value(value: &str) -> String {
    url::form_urlencoded::byte_serialize(value.as_bytes()).collect()
}

/// A branch name or a file path as part of a URL: `/` stays (GitHub reads `release/1.0...main`
/// as two refs, and a path's directories as its segments), everything else outside RFC 3986's
/// unreserved characters is percent-encoded, so that a name holding a space, `#`, `?` or `%`
/// (git allows them all) names that branch or file and nothing else.
fn in_path(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for byte in name.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~/".contains(&byte) {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// GitHub's three-dot comparison, as far as the merge guard reads it.
#[derive(Deserialize)]
struct Compare {
    files: Option<Vec<CompareFile>>,
    #[serde(default)]
    commits: Vec<CompareCommit>,
    #[serde(default)]
    total_commits: usize,
    base_commit: Option<CompareBase>,
}
#[derive(Deserialize)]
struct CompareBase {
    sha: String,
}
#[derive(Deserialize)]
struct CompareCommit {
    #[serde(default)]
    parents: Vec<Value>,
}
#[derive(Deserialize)]
struct CompareFile {
    filename: String,
    status: String,
    previous_filename: Option<String>,
    #[serde(default)]
    sha: Option<String>,
}

impl Compare {
    /// The files the comparison lists, with their blob ids (no modes: GitHub's comparison does
    /// not say them), and whether the listing can be trusted to be whole.
    fn into_changed_files(self) -> ChangedFiles {
        let merge_commits = self.commits.iter().any(|c| c.parents.len() > 1);
        let base_sha = self.base_commit.map(|c| c.sha);
        // GitHub lists at most 250 commits without paging: the others cannot be checked.
        let commits_listed = self.commits.len() >= self.total_commits;
        // GitHub leaves `files` out of a comparison too large to show.
        let Some(listed) = self.files else {
            return ChangedFiles {
                files: Vec::new(),
                complete: false,
                merge_commits,
                base_sha,
            };
        };
        let mut changed = ChangedFiles {
            files: Vec::with_capacity(listed.len()),
            complete: listed.len() < COMPARE_FILES_SHOWN && commits_listed,
            merge_commits,
            base_sha,
        };
        for file in listed {
            let change = match file.status.as_str() {
                "added" => FileChange::Added,
                "modified" | "changed" => FileChange::Modified,
                "removed" => FileChange::Removed,
                "renamed" => FileChange::Renamed,
                _ => FileChange::Other,
            };
            changed.files.push(ChangedFile {
                change,
                path: file.filename,
                previous_path: file.previous_filename,
                kind: EntryKind::Unknown,
                blob: file.sha,
            });
        }
        changed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_branch_name_in_a_path_names_that_branch_only() {
        assert_eq!(in_path("main"), "main");
        assert_eq!(in_path("release/1.0_x-y~z"), "release/1.0_x-y~z");
        assert_eq!(in_path("a#b?c%d e"), "a%23b%3Fc%25d%20e");
        assert_eq!(in_path("zweig-ä"), "zweig-%C3%A4");
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, HeaderValue::from_str(value).unwrap());
        }
        map
    }

    #[test]
    fn statuses_are_classified_for_the_retry_layer() {
        assert!(classify("c", StatusCode::OK, &HeaderMap::new(), "").is_ok());
        assert!(classify("c", StatusCode::NOT_MODIFIED, &HeaderMap::new(), "").is_ok());
        let err = classify("c", StatusCode::BAD_GATEWAY, &HeaderMap::new(), "").unwrap_err();
        assert!(err.is_retryable());
        let err = classify(
            "c",
            StatusCode::TOO_MANY_REQUESTS,
            &headers(&[("retry-after", "7")]),
            "",
        )
        .unwrap_err();
        assert!(
            matches!(err, ForgeError::RateLimited { retry_after, .. } if retry_after == Duration::from_secs(7))
        );
        let err = classify(
            "c",
            StatusCode::TOO_MANY_REQUESTS,
            &headers(&[("retry-after", "9000000000000")]),
            "",
        )
        .unwrap_err();
        assert!(
            matches!(err, ForgeError::RateLimited { retry_after, .. } if retry_after == Duration::from_secs(3600)),
            "an hour at most: {err:?}"
        );
        let err = classify(
            "c",
            StatusCode::FORBIDDEN,
            &headers(&[("x-ratelimit-remaining", "0")]),
            "",
        )
        .unwrap_err();
        assert!(matches!(err, ForgeError::RateLimited { .. }), "{err:?}");
        // The reset is read against the forge's own `Date`, whatever the bot's clock says:
        // this response is from a forge a day behind the machine, and asks for 42 s.
        let behind = Utc::now() - chrono::TimeDelta::days(1);
        let reset = (behind.timestamp() + 42).to_string();
        let date = behind.format("%a, %d %b %Y %H:%M:%S GMT").to_string();
        let err = classify(
            "c",
            StatusCode::FORBIDDEN,
            &headers(&[
                ("x-ratelimit-remaining", "0"),
                ("x-ratelimit-reset", &reset),
                ("date", &date),
            ]),
            "",
        )
        .unwrap_err();
        assert!(
            matches!(err, ForgeError::RateLimited { retry_after, .. } if retry_after == Duration::from_secs(42)),
            "{err:?}"
        );
        // A reset no forge would send is a wait like any other, not an overflow.
        let err = classify(
            "c",
            StatusCode::TOO_MANY_REQUESTS,
            &headers(&[("x-ratelimit-reset", "-9223372036854775808")]),
            "",
        )
        .unwrap_err();
        assert!(
            matches!(err, ForgeError::RateLimited { retry_after, .. } if retry_after == Duration::from_secs(1)),
            "{err:?}"
        );
        let err = classify(
            "c",
            StatusCode::FORBIDDEN,
            &HeaderMap::new(),
            r#"{"message":"Resource not accessible"}"#,
        )
        .unwrap_err();
        assert_eq!(err.to_string(), "c: HTTP 403: Resource not accessible");
        // A forge (or a proxy before it) that echoes the credentials it was sent.
        let err = classify(
            "c",
            StatusCode::UNAUTHORIZED,
            &HeaderMap::new(),
            r#"{"message":"Bad credentials: you sent Bearer ghp_abcdef0123456789"}"#,
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "c: HTTP 401: Bad credentials: you sent Bearer [redacted]"
        );
        let err = classify(
            "c",
            StatusCode::CONFLICT,
            &HeaderMap::new(),
            r#"{"message":"Head branch was modified"}"#,
        )
        .unwrap_err();
        assert_eq!(err.status(), Some(409));
        assert!(!err.is_retryable());
    }
}
