//! Reading the policies from the default branch and resolving who is who: the inputs of the
//! decision engine, fetched from the forge. [`Workflow::gather`] reads everything the decision
//! on a request PR depends on, for the pure [`super::verdict::decide`].

use std::collections::BTreeSet;
use std::path::PathBuf;

use anyhow::Context as _;
use chrono::{DateTime, TimeDelta, Utc};

use super::pull_request::grant_spec;
use super::verdict::{GrantFacts, Inputs, Staged, needs};
use super::{Workflow, cache};
use crate::comment;
use crate::forge::{
    Actor, ChangedFile, ChangedFiles, EntryKind, FileChange, FileContent, PullRequestInfo, Served,
    StatusState,
};
use crate::grant::GrantSpec;
use crate::names::{Login, Name, Principal, RequestId, Team};
use crate::policy::decision::{HeldGrant, Membership, membership};
use crate::policy::{Policy, PolicyFile, PolicySet, Problem, Requester, Role};
use crate::request::{AccessRequest, RequestPath};
use crate::store::{ChangeKind, RequestRecord};

/// What the bot knows of a PR it has just opened from its own branch, without reading it
/// back: the files its one commit wrote and the request file's text. Used only while the PR's
/// head is that commit.
pub(super) struct Written {
    pub head_sha: String,
    pub files: Vec<ChangedFile>,
    pub text: String,
}

/// The request file's text at a PR's head, or why there is none to take.
enum TextAtHead {
    Text(String),
    /// No file at the path.
    Missing,
    /// Not a regular file: what the forge served is not the file the PR lists.
    NotAFile(EntryKind),
}

/// Whether `served` is the file `listed` names: at its path and, where the listing gives a
/// blob id, that blob. A listing without one (GitLab) must have said that the entry is a file.
fn is_the_listed_file(listed: &ChangedFile, served: &FileContent) -> bool {
    served.path == listed.path
        && match &listed.blob {
            Some(blob) => *blob == served.blob_sha,
            None => listed.kind == EntryKind::File,
        }
}

/// A PR's request file as its head holds it.
struct RequestAtHead {
    file_path: String,
    path: RequestPath,
    text: String,
    request: AccessRequest,
}

/// What a PR's head was read for: what merging it brings, its request file and the
/// policies of the default branch.
struct HeadRead {
    files: Vec<ChangedFile>,
    at_head: RequestAtHead,
    policies: PolicySet,
}

/// Who asks on `pr`, by login and forge id.
fn requester_of(
    pr: &PullRequestInfo,
    existing: Option<&RequestRecord>,
) -> anyhow::Result<(Login, u64)> {
    // A PR the bot opened for a commenter is that commenter's request.
    Ok(match existing {
        Some(record) => (record.requester_login.clone(), record.requester_id),
        None => (
            Login::try_from(pr.author.login.clone()).map_err(anyhow::Error::msg)?,
            pr.author.id,
        ),
    })
}

/// The default branch and a head of it.
pub(super) struct DefaultHead {
    pub branch: String,
    pub sha: String,
    /// Served from memory (possibly older than the branch's head now), not read just now.
    pub cached: bool,
}

impl Workflow {
    /// Reads what the decision on request PR `pr` depends on, in the order the checks need
    /// it: nothing from a fork, nothing past a tampered bot branch, a file that is not a
    /// request or policies that do not load. `None` when there is nothing to decide (after
    /// saying why, where there is something to say).
    ///
    /// Refusals that leave no record are said when a head arrives (`announce`), not at every
    /// label.
    pub(super) async fn gather(
        &self,
        pr: PullRequestInfo,
        existing: Option<RequestRecord>,
        pushed: Option<(String, DateTime<Utc>)>,
        written: Option<Written>,
        announce: bool,
    ) -> anyhow::Result<Option<Inputs>> {
        let say_invalid = announce || existing.is_some();
        let Some(HeadRead {
            files,
            at_head:
                RequestAtHead {
                    file_path,
                    path,
                    text,
                    request,
                },
            policies,
        }) = self
            .read_head(&pr, written, (announce, say_invalid))
            .await?
        else {
            return Ok(None);
        };
        let policy = policies.get(request.environment.as_str());
        let (login, requester_id) = requester_of(&pr, existing.as_ref())?;
        let requester = self.resolve_requester(policy, &login).await?;
        let mut inputs = Inputs {
            forge: self.forge_kind(),
            bot_id: self.bot.id,
            existing,
            pushed,
            files,
            file_path,
            text,
            path,
            request,
            policies,
            requester,
            requester_id,
            now: self.now(),
            overdue_review: None,
            held: Vec::new(),
            grant: None,
            pr,
        };
        self.look_up_needs(&mut inputs, &login).await?;
        Ok(Some(inputs))
    }

    /// What `pr`'s head brings, its request file and the policies that decide it; `None`
    /// when any of them cannot be taken (after saying why, where there is something to say).
    async fn read_head(
        &self,
        pr: &PullRequestInfo,
        written: Option<Written>,
        (announce, say_invalid): (bool, bool),
    ) -> anyhow::Result<Option<HeadRead>> {
        let written = written.filter(|w| w.head_sha == pr.head_sha);
        if self.refuse_untrusted_head(pr, announce).await? {
            return Ok(None);
        }
        let Some((files, written_text)) = self.what_it_changes(pr, written, announce).await? else {
            return Ok(None);
        };
        let Some(at_head) = self
            .request_at_head(pr, &files, written_text, (announce, say_invalid))
            .await?
        else {
            return Ok(None);
        };
        let Some(policies) = self.policies_for(pr).await? else {
            return Ok(None);
        };
        Ok(Some(HeadRead {
            files,
            at_head,
            policies,
        }))
    }

    /// Refuses a head from a fork, or on the bot's own request branch after someone else
    /// pushed to it; `true` when it did.
    async fn refuse_untrusted_head(
        &self,
        pr: &PullRequestInfo,
        announce: bool,
    ) -> anyhow::Result<bool> {
        if let Some(repo) = self.foreign_head(pr.head_repo.as_deref()) {
            // Nothing from another repository is written to, decided or merged.
            self.refuse_fork(pr, repo, announce).await?;
            return Ok(true);
        }
        if let Some(change) = self.store.change_of_pr(pr.number).await?
            && change.kind == ChangeKind::Request
            && change.head_sha.as_deref() != Some(pr.head_sha.as_str())
        {
            // Someone pushed to the branch the bot built for this request.
            self.tampered(&change, None, &pr.head_sha).await?;
            return Ok(true);
        }
        Ok(false)
    }

    /// Reads into `inputs` what its decision needs beyond the request, the policies and the
    /// requester's teams (see [`needs`]), each only when the decision depends on it: the
    /// requester's overdue review, the grants they hold, and what the role's provider says.
    async fn look_up_needs(&self, inputs: &mut Inputs, login: &Login) -> anyhow::Result<()> {
        let needs = needs(
            &inputs.policies,
            &inputs.request,
            &inputs.requester,
            &inputs.pr.labels,
            inputs.now,
            &inputs.path,
        );
        if needs.overdue_review {
            inputs.overdue_review = self.overdue_review_of(inputs.requester_id).await?;
        }
        if needs.held {
            let own = inputs.existing.as_ref().map_or(&inputs.path.id, |r| &r.id);
            inputs.held = self
                .held_grants(inputs.requester_id, &inputs.request.environment, own)
                .await?;
        }
        let policy = inputs.policies.get(inputs.request.environment.as_str());
        if let Some(policy) = policy
            && let Some(role) = policy.roles.get(&inputs.request.role)
            && needs.grant
        {
            let default = policy.effective_default_duration();
            let mut spec = grant_spec(&inputs.request, &inputs.path, login, default);
            // A head whose expiry the bot wrote before its merge holds the files with it.
            if let Some(stamp) = inputs
                .existing
                .as_ref()
                .and_then(|r| r.decision.as_ref())
                .and_then(|d| d.stamp_at(&inputs.pr.head_sha))
            {
                spec.expires_at = stamp.expires_at.clone();
            }
            inputs.grant = Some(self.grant_facts(role, &spec, &inputs.pr.head_sha).await?);
        }
        Ok(())
    }

    /// The request file of `pr` as its head holds it, parsed; `None` when there is none or it
    /// does not parse, after saying so where there is something to say (`announce` for a
    /// missing or extra file, `say_invalid` for one that does not parse).
    async fn request_at_head(
        &self,
        pr: &PullRequestInfo,
        files: &[ChangedFile],
        written_text: Option<String>,
        (announce, say_invalid): (bool, bool),
    ) -> anyhow::Result<Option<RequestAtHead>> {
        let Some((file, path)) = self.the_request_file(pr, files, announce).await? else {
            return Ok(None);
        };
        let file_path = file.path.clone();
        let text = match self.request_text_at_head(pr, file, written_text).await? {
            TextAtHead::Text(text) => text,
            // Decided as an empty file: it does not parse.
            TextAtHead::Missing => String::new(),
            TextAtHead::NotAFile(kind) => {
                self.refuse_not_a_file(pr, &file_path, kind, say_invalid)
                    .await?;
                return Ok(None);
            }
        };
        match AccessRequest::from_yaml(&text) {
            Ok(request) => Ok(Some(RequestAtHead {
                file_path,
                path,
                text,
                request,
            })),
            Err(err) => {
                self.refuse_invalid_request(pr, &file_path, &err.to_string(), say_invalid)
                    .await?;
                Ok(None)
            }
        }
    }

    /// The policies a request based on `pr`'s base is decided by: the default branch's, read
    /// again when the branch changed since its kept name; `None` for a PR based on another
    /// branch, or after saying that the policies do not load.
    async fn policies_for(&self, pr: &PullRequestInfo) -> anyhow::Result<Option<PolicySet>> {
        let (mut default_branch, mut policies) = self.load_policies().await?;
        if pr.base_ref != default_branch {
            if !self.is_default_branch(&pr.base_ref).await? {
                return Ok(None);
            }
            // The default branch changed since the kept name: its policies are read again.
            (default_branch, policies) = self.refresh_policies().await?;
        }
        match policies {
            Ok(policies) => Ok(Some(policies)),
            Err(problems) => {
                self.refuse_invalid_policies(pr, &default_branch, &problems)
                    .await?;
                Ok(None)
            }
        }
    }

    /// Whether the role's provider can serve the request, and the grant files it renders with
    /// the head's copies of them: read only when it can, and only up to the first that differs
    /// (the decision looks no further).
    async fn grant_facts(
        &self,
        role: &Role,
        spec: &GrantSpec,
        head_sha: &str,
    ) -> anyhow::Result<GrantFacts> {
        if let Err(err) = self.providers.check(role, spec) {
            return Ok(GrantFacts {
                unservable: Some(err.to_string()),
                staged: Vec::new(),
            });
        }
        let mut staged = Vec::new();
        for rendered in self
            .providers
            .rendered_files(role, spec)
            .context("rendering grant files")?
        {
            let at_head = self
                .forge
                .read_file(head_sha, &rendered.path)
                .await?
                .map(|f| f.text);
            let differs = at_head.as_deref() != Some(rendered.content.as_str());
            staged.push(Staged { rendered, at_head });
            if differs {
                break;
            }
        }
        Ok(GrantFacts {
            unservable: None,
            staged,
        })
    }

    /// What the PR changes at the head just read (what the merge of that head would bring),
    /// and the request file's text where the bot wrote it. `None` when the forge does not list
    /// it all (after saying so where there is something to say).
    async fn what_it_changes(
        &self,
        pr: &PullRequestInfo,
        written: Option<Written>,
        announce: bool,
    ) -> anyhow::Result<Option<(Vec<ChangedFile>, Option<String>)>> {
        if let Some(Written { files, text, .. }) = written {
            return Ok(Some((files, Some(text))));
        }
        let listed = self.what_merging_brings(pr.number, &pr.head_sha).await?;
        if !listed.complete || listed.merge_commits {
            self.refuse_unchecked(pr, &listed, announce).await?;
            return Ok(None);
        }
        Ok(Some((listed.files, None)))
    }

    /// What merging commit `head_sha` of change request `number` into the default branch would
    /// change. The branch is named by its name, so that the forge compares with its head as it
    /// is when the comparison is served. A tag of the same name would shadow it (git resolves a
    /// tag before a branch), so the commit the forge says it compared with (GitHub's
    /// `base_commit`) must be the branch's head: the kept one, or else one read just now.
    pub(super) async fn what_merging_brings(
        &self,
        number: u64,
        head_sha: &str,
    ) -> anyhow::Result<ChangedFiles> {
        let branch = self.default_branch().await?;
        let listed = self
            .forge
            .changed_files_at(number, &branch, head_sha)
            .await?;
        let Some(compared) = listed.base_sha.as_deref() else {
            return Ok(listed);
        };
        let epoch = self.store.cache_epoch(&self.policies_epoch()).await?;
        if self.caches.default_head(epoch, self.now()).as_deref() == Some(compared) {
            return Ok(listed);
        }
        let head = self.fresh_default_head(&branch).await?;
        if head != compared {
            let compared = compared.to_owned();
            return Err(DefaultBranchMoved {
                compared,
                branch,
                head,
            }
            .into());
        }
        Ok(listed)
    }

    /// The text of request file `file` at the PR's head: as the bot wrote it, else as this
    /// replica kept it for that commit, else read. Kept for the merge's own check of the same
    /// commit (a commit's file never changes).
    async fn request_text_at_head(
        &self,
        pr: &PullRequestInfo,
        file: &ChangedFile,
        written: Option<String>,
    ) -> anyhow::Result<TextAtHead> {
        let path = file.path.as_str();
        let kept = written.or_else(|| self.caches.request_text(&pr.head_sha, path));
        let found = match kept {
            Some(text) => TextAtHead::Text(text),
            None => self.read_request_text(&pr.head_sha, file).await?,
        };
        if let TextAtHead::Text(text) = &found {
            self.caches.keep_request_text(&pr.head_sha, path, text);
        }
        Ok(found)
    }

    /// The text of request file `file` read at commit `head`, taken only when the forge served
    /// the file that the listing shows. GitHub's comparison gives no modes: for a symbolic
    /// link its contents API serves the file the link points to (another path and blob than
    /// listed) or no text at all, never the link's own text as a file.
    async fn read_request_text(
        &self,
        head: &str,
        file: &ChangedFile,
    ) -> anyhow::Result<TextAtHead> {
        Ok(match self.forge.read_served(head, &file.path).await? {
            None => TextAtHead::Missing,
            Some(Served::Other(kind)) => TextAtHead::NotAFile(kind),
            Some(Served::File(served)) if is_the_listed_file(file, &served) => {
                TextAtHead::Text(served.text)
            }
            // Another blob than listed: the file a symbolic link points to.
            Some(Served::File(_)) if file.blob.is_some() => {
                TextAtHead::NotAFile(EntryKind::Symlink)
            }
            Some(Served::File(_)) => TextAtHead::NotAFile(EntryKind::Unknown),
        })
    }

    /// A PR whose changes cannot be checked from the listing (cut short, no common history,
    /// merge commits on its branch): nothing is decided. One whose head could not be compared
    /// at all, or that shows a request file among what is listed, is told why (a failure
    /// status, and a comment when `announce`); any other is not a request the bot could tell.
    async fn refuse_unchecked(
        &self,
        pr: &PullRequestInfo,
        listed: &ChangedFiles,
        announce: bool,
    ) -> anyhow::Result<()> {
        // As `the_request_file` counts them: a removal is no request.
        let shows_a_request = listed.files.iter().any(|f| {
            f.path.starts_with("requests/")
                && matches!(
                    f.change,
                    FileChange::Added | FileChange::Modified | FileChange::Renamed
                )
        });
        let (says, status) = if !listed.complete && listed.files.is_empty() {
            (
                comment::uncomparable_comment(self.forge.kind()),
                "cannot compare with the default branch",
            )
        } else if !shows_a_request {
            return Ok(());
        } else if !listed.complete {
            (
                comment::too_many_files_comment(listed.files.len(), self.forge.kind()),
                "too many files to check",
            )
        } else {
            (
                comment::merge_commits_comment(self.forge.kind()),
                "merge commits on the branch",
            )
        };
        if announce {
            self.say_refusal(pr.number, &says).await?;
        }
        self.set_status(pr, StatusState::Failure, status).await?;
        Ok(())
    }

    /// A request file that does not parse: a failure status and, when `say`, a comment.
    async fn refuse_invalid_request(
        &self,
        pr: &PullRequestInfo,
        file_path: &str,
        error: &str,
        say: bool,
    ) -> anyhow::Result<()> {
        if say {
            let says = comment::invalid_request_comment(file_path, error);
            self.say_refusal(pr.number, &says).await?;
        }
        self.set_status(pr, StatusState::Failure, "invalid request file")
            .await?;
        self.metrics
            .inc("breakglass_decisions_total", "outcome=\"invalid\"");
        Ok(())
    }

    /// Policies on the default branch that do not load: nothing is decided, and the PR says
    /// why.
    async fn refuse_invalid_policies(
        &self,
        pr: &PullRequestInfo,
        default_branch: &str,
        problems: &[Problem],
    ) -> anyhow::Result<()> {
        let list: Vec<String> = problems.iter().map(ToString::to_string).collect();
        self.caches.await_valid_policies(pr.number);
        let says = comment::invalid_policies_comment(default_branch, &list, self.forge.kind());
        self.say_refusal(pr.number, &says).await?;
        self.set_status(
            pr,
            StatusState::Error,
            "the policies on the default branch are invalid",
        )
        .await?;
        Ok(())
    }

    /// The default branch and its policies. Policies are never read from a PR head: a PR
    /// cannot loosen the policy that judges it. Served from memory while no push changed them
    /// (see [`super::cache`]).
    pub(super) async fn load_policies(
        &self,
    ) -> anyhow::Result<(String, Result<PolicySet, Vec<Problem>>)> {
        let epoch = self.store.cache_epoch(&self.policies_epoch()).await?;
        let now = self.now();
        if let Some(cached) = self.caches.policies(epoch, now) {
            return Ok(cached);
        }
        let read = self.read_policies().await?;
        self.caches.keep_policies(&read, epoch, now);
        Ok(read)
    }

    /// [`Self::load_policies`] read from the forge whatever the cache holds, and kept: the
    /// periodic reconciliation is the safety net for pushes whose webhook never came.
    pub(super) async fn refresh_policies(
        &self,
    ) -> anyhow::Result<(String, Result<PolicySet, Vec<Problem>>)> {
        let epoch = self.store.cache_epoch(&self.policies_epoch()).await?;
        let now = self.now();
        let read = self.read_policies().await?;
        self.caches.keep_policies(&read, epoch, now);
        Ok(read)
    }

    /// The name of this workflow's policy-cache epoch in the store (one store may serve
    /// several repositories).
    fn policies_epoch(&self) -> String {
        format!(
            "{} {} {}",
            crate::store::epochs::POLICIES,
            self.forge_kind(),
            self.settings.repository.to_ascii_lowercase()
        )
    }

    /// Every copy of the policies is stale from now on, on every replica.
    pub(super) async fn policies_changed(&self) -> anyhow::Result<()> {
        self.store.bump_cache_epoch(&self.policies_epoch()).await?;
        self.caches.forget_policies();
        Ok(())
    }

    /// Decides the PRs left undecided while the policies were invalid, once they are valid
    /// again: their requesters need not push again. (This replica's memory: after a restart,
    /// or on another replica, the push that the comment asks for does it.)
    pub(super) async fn decide_awaiting_policies(&self) -> anyhow::Result<()> {
        let (_, policies) = self.load_policies().await?;
        if policies.is_err() {
            return Ok(());
        }
        let mut failed = None;
        for number in self.caches.take_awaiting_policies() {
            let decided = async {
                let guard = self.lock_pr(number).await?;
                // Emoji the poll saw while nobody could be judged are read again.
                self.forge.forget_reactions(number);
                super::pr_lock::while_held(Some(&guard), self.decide_again(number)).await
            };
            if let Err(err) = decided.await {
                // Kept for the push's next try; the others are decided all the same.
                tracing::warn!(pr = number, error = %err, "a PR waiting for valid policies could not be decided");
                self.caches.await_valid_policies(number);
                failed.get_or_insert(err);
            }
        }
        failed.map_or(Ok(()), Err)
    }

    async fn decide_again(&self, number: u64) -> anyhow::Result<()> {
        let existing = self
            .store
            .find_request_by_pr(self.forge_kind(), &self.settings.repository, number)
            .await?;
        self.evaluate_pr(number, existing, None).await
    }

    /// The default branch's name: as the forge last said it (a read of it or of a PR, a push
    /// webhook), for at most [`cache::BRANCH_NAME_MAX_AGE`] on GitHub and
    /// [`cache::POLICIES_MAX_AGE`] on GitLab (see [`super::cache`]).
    pub(super) async fn default_branch(&self) -> anyhow::Result<String> {
        let max_age = if self.forge.reads_default_branch_by_name() {
            cache::POLICIES_MAX_AGE
        } else {
            cache::BRANCH_NAME_MAX_AGE
        };
        if let Some(name) = self.caches.branch_name(self.now(), max_age) {
            return Ok(name);
        }
        self.read_default_branch().await
    }

    /// The default branch's name read from the forge, and kept.
    async fn read_default_branch(&self) -> anyhow::Result<String> {
        let now = self.now();
        let name = self
            .forge
            .default_branch()
            .await
            .context("reading the default branch")?;
        self.caches.keep_branch_name(&name, now);
        self.caches.keep_repository_read(now);
        Ok(name)
    }

    /// Whether the forge deletes the bot's branches when it merges them: always on GitLab
    /// (asked with each merge); on GitHub when the repository has "Automatically delete head
    /// branches" on, as read with the default branch at most
    /// [`cache::REPOSITORY_SETTINGS_MAX_AGE`] ago (PR reads and pushes say the branch's name,
    /// never the setting).
    pub(super) async fn forge_drops_merged_branches(&self) -> anyhow::Result<bool> {
        if !self.forge.reads_default_branch_by_name()
            && !self.caches.repository_settings_fresh(self.now())
        {
            self.read_default_branch().await?;
        }
        Ok(self.forge.drops_merged_branches())
    }

    /// The forge said the default branch is `name` (with a PR it read, or a push).
    pub(super) fn default_branch_named(&self, name: &str) {
        self.caches.keep_branch_name(name, self.now());
    }

    /// Whether `branch` is the default branch. A name other than the one kept is checked with
    /// the forge before it is believed: an admin may have switched the default branch.
    pub(super) async fn is_default_branch(&self, branch: &str) -> anyhow::Result<bool> {
        if self.default_branch().await? == branch {
            return Ok(true);
        }
        Ok(self.read_default_branch().await? == branch)
    }

    /// The default branch and a recent head of it: the last one a push webhook or the bot's
    /// own merge showed (see [`super::cache`]), else read from the forge and kept.
    pub(super) async fn default_head(&self) -> anyhow::Result<DefaultHead> {
        let branch = self.default_branch().await?;
        let epoch = self.store.cache_epoch(&self.policies_epoch()).await?;
        if let Some(sha) = self.caches.default_head(epoch, self.now()) {
            return Ok(DefaultHead {
                branch,
                sha,
                cached: true,
            });
        }
        let sha = self.read_default_head(&branch, epoch).await?;
        Ok(DefaultHead {
            branch,
            sha,
            cached: false,
        })
    }

    /// The head of `default` as the forge says it now (and kept).
    pub(super) async fn fresh_default_head(&self, default: &str) -> anyhow::Result<String> {
        let epoch = self.store.cache_epoch(&self.policies_epoch()).await?;
        self.read_default_head(default, epoch).await
    }

    async fn read_default_head(&self, default: &str, epoch: i64) -> anyhow::Result<String> {
        let now = self.now();
        let sha = self.forge.branch_head(default).await?;
        self.caches.keep_default_head(&sha, epoch, now);
        Ok(sha)
    }

    /// The default branch's head is `sha` now (a push webhook said so, or the bot merged).
    pub(super) async fn default_head_moved(&self, sha: &str) -> anyhow::Result<()> {
        let epoch = self.store.cache_epoch(&self.policies_epoch()).await?;
        self.caches.keep_default_head(sha, epoch, self.now());
        Ok(())
    }

    /// Forgets the cached head of the default branch: the next change is built on a fresh one.
    pub(super) fn forget_default_head(&self) {
        self.caches.forget_default_head();
    }

    /// [`Self::load_policies`] from the forge.
    /// On GitHub the files are read without naming the branch (its contents API then reads the
    /// default branch), so a kept name cannot point the read elsewhere; GitLab reads by name,
    /// read afresh.
    async fn read_policies(&self) -> anyhow::Result<(String, Result<PolicySet, Vec<Problem>>)> {
        let branch = if self.forge.reads_default_branch_by_name() {
            self.read_default_branch().await?
        } else {
            self.default_branch().await?
        };
        let dir = self.settings.policies_path.trim_end_matches('/');
        let mut files = Vec::new();
        for path in self
            .forge
            .list_default_dir(&branch, dir)
            .await
            .context("listing policies")?
            .into_keys()
        {
            if !(path.ends_with(".yaml") || path.ends_with(".yml")) {
                continue;
            }
            if let Some(file) = self
                .forge
                .read_default_file(&branch, &path)
                .await
                .context("reading a policy")?
            {
                files.push(PolicyFile {
                    path: PathBuf::from(file.path),
                    text: file.text,
                });
            }
        }
        if files.is_empty() {
            return Ok((
                branch,
                Err(vec![Problem {
                    file: PathBuf::from(dir),
                    line: None,
                    column: None,
                    message: "no policy files on the default branch".into(),
                }]),
            ));
        }
        Ok((branch, PolicySet::from_files(&files)))
    }

    /// `login` with their membership in every team `principals` name (fail closed: a team we
    /// cannot check is a team they are not in... unless the forge is down, which is an error).
    pub(super) async fn resolve(
        &self,
        login: &Login,
        principals: &[&Principal],
    ) -> anyhow::Result<Requester> {
        self.resolve_as_of(login, principals, Asked::WithinAMinute)
            .await
    }

    /// [`Self::resolve`], with team memberships as recent as `asked`.
    async fn resolve_as_of(
        &self,
        login: &Login,
        principals: &[&Principal],
        asked: Asked,
    ) -> anyhow::Result<Requester> {
        let mut teams = BTreeSet::new();
        for principal in principals {
            if let Principal::Team(team) = principal
                && !teams.contains(team)
                && self
                    .is_member(&format!("{}/{}", team.org, team.slug), login, asked)
                    .await?
            {
                teams.insert(Team {
                    org: team.org.clone(),
                    slug: team.slug.clone(),
                });
            }
        }
        Ok(Requester::new(login.clone(), Some(teams)))
    }

    /// Whether `login` is in `group`, from the forge or (`Asked::WithinAMinute`) its answer of
    /// the last minute.
    async fn is_member(&self, group: &str, login: &Login, asked: Asked) -> anyhow::Result<bool> {
        let now = self.now();
        if asked == Asked::WithinAMinute
            && let Some(member) = self.caches.membership(group, login.as_str(), now)
        {
            return Ok(member);
        }
        let member = self
            .forge
            .is_member(group, login.as_str())
            .await
            .context("checking team membership")?;
        self.caches
            .keep_membership(group, login.as_str(), member, now);
        Ok(member)
    }

    /// The requester, with the teams of the policy's requesters and fast-path rules resolved.
    pub(super) async fn resolve_requester(
        &self,
        policy: Option<&Policy>,
        login: &Login,
    ) -> anyhow::Result<Requester> {
        self.resolve_requester_as_of(policy, login, Asked::WithinAMinute)
            .await
    }

    /// [`Self::resolve_requester`] with the fast-path rules' teams asked of the forge now (a
    /// conditional read, free when nothing changed): the merge's last check of a fast path, so
    /// that someone who went off call a moment ago no longer takes it.
    pub(super) async fn resolve_requester_for_fast_path_now(
        &self,
        policy: Option<&Policy>,
        login: &Login,
    ) -> anyhow::Result<Requester> {
        self.resolve_requester_as_of(policy, login, Asked::Now)
            .await
    }

    /// [`Self::resolve_requester`], with the fast-path rules' teams as recent as `fast_path`
    /// (the policy's requesters within a minute).
    async fn resolve_requester_as_of(
        &self,
        policy: Option<&Policy>,
        login: &Login,
        fast_path: Asked,
    ) -> anyhow::Result<Requester> {
        let Some(policy) = policy else {
            return Ok(Requester::new(login.clone(), Some(BTreeSet::new())));
        };
        let rules: Vec<&Principal> = policy
            .fast_path
            .iter()
            .flat_map(|rule| rule.requesters.iter())
            .collect();
        if fast_path == Asked::WithinAMinute {
            let principals: Vec<&Principal> = policy.requesters.iter().chain(rules).collect();
            return self.resolve(login, &principals).await;
        }
        let now = self.resolve_as_of(login, &rules, Asked::Now).await?;
        // Teams of the requesters' list that no rule names, within a minute.
        let others: Vec<&Principal> = policy
            .requesters
            .iter()
            .filter(|p| !rules.contains(p))
            .collect();
        let within = self.resolve(login, &others).await?;
        let teams = now
            .teams
            .into_iter()
            .chain(within.teams)
            .flatten()
            .collect();
        Ok(Requester::new(login.clone(), Some(teams)))
    }

    /// The grants `requester_id` holds in `environment` by the bot's own records (merging,
    /// active or being revoked), other than request `own`: what a fast path is held to its
    /// `max_duration` with. A grant not yet merged counts for its whole duration from now; one
    /// whose extension is being judged (its hold written first, see
    /// [`crate::store::StoredDecision::extension_hold`]) counts with that extension.
    pub(super) async fn held_grants(
        &self,
        requester_id: u64,
        environment: &Name,
        own: &RequestId,
    ) -> anyhow::Result<Vec<HeldGrant>> {
        let now = self.now();
        let place = (self.forge_kind(), self.settings.repository.as_str());
        let records = self
            .store
            .held_by(place, requester_id, environment.as_str())
            .await?;
        Ok(records
            .into_iter()
            .filter(|record| record.id != *own)
            .map(|record| {
                let until = record
                    .expires_at
                    .unwrap_or_else(|| now + TimeDelta::seconds(record.duration_secs as i64));
                let held = held_extension(&record, now);
                HeldGrant {
                    id: record.id.to_string(),
                    until: until + TimeDelta::seconds(held as i64),
                }
            })
            .collect())
    }

    /// Whether `actor` may approve (or review) requests under `policy`.
    pub(super) async fn is_approver(&self, policy: &Policy, actor: &Actor) -> anyhow::Result<bool> {
        self.is_approver_as_of(policy, actor, Asked::WithinAMinute)
            .await
    }

    /// [`Self::is_approver`] on the forge's word of now (a conditional read, free when nothing
    /// changed), so that an approver taken off a team a moment ago no longer counts: the
    /// merge's last check of who approved, and any approval that extends a grant or review
    /// that closes one at once.
    pub(super) async fn is_approver_now(
        &self,
        policy: &Policy,
        actor: &Actor,
    ) -> anyhow::Result<bool> {
        self.is_approver_as_of(policy, actor, Asked::Now).await
    }

    async fn is_approver_as_of(
        &self,
        policy: &Policy,
        actor: &Actor,
        asked: Asked,
    ) -> anyhow::Result<bool> {
        self.is_among(&policy.approvers, actor, asked).await
    }

    /// Whether `actor` is one of `approvers` (users and teams), and no bot.
    pub(super) async fn is_among(
        &self,
        approvers: &[Principal],
        actor: &Actor,
        asked: Asked,
    ) -> anyhow::Result<bool> {
        let login = Login::try_from(actor.login.clone()).map_err(anyhow::Error::msg)?;
        let principals: Vec<&Principal> = approvers.iter().collect();
        let who = self.resolve_as_of(&login, &principals, asked).await?;
        if membership(approvers, &who) != Membership::Yes {
            return Ok(false);
        }
        // Bots never approve, by any channel: a bot account among the approvers is a token
        // someone holds, not a person who looked. Asked last, of approvers only.
        Ok(!self.forge.is_bot(actor).await?)
    }
}

/// How recent a team membership must be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Asked {
    /// The forge's answer of the last minute will do (see `cache::MEMBERSHIP_MAX_AGE`).
    WithinAMinute,
    /// Asked now.
    Now,
}

/// The extension being judged for `record` (its hold, while fresh on the bot's clock), in
/// seconds; 0 without one.
fn held_extension(record: &crate::store::RequestRecord, now: DateTime<Utc>) -> u64 {
    let hold = record
        .decision
        .as_ref()
        .and_then(|d| d.extension_hold)
        .filter(|hold| now - hold.at < crate::store::EXTENSION_HOLD_FOR);
    hold.map_or(0, |hold| hold.secs)
}

/// The forge compared a PR with another commit than the default branch's head: the branch moved
/// between the comparison and the read of its head (another replica's merge, a push), or a tag
/// of the same name shadows it. The first is a lost race, tried again at once; the second
/// persists, and is then retried with the usual backoff.
#[derive(Debug, thiserror::Error)]
#[error(
    "the forge compared with {compared} as `{branch}`, whose head is {head}: the branch moved in between, or a tag named `{branch}` shadows it"
)]
pub struct DefaultBranchMoved {
    compared: String,
    branch: String,
    head: String,
}

#[cfg(test)]
impl DefaultBranchMoved {
    /// One as a merge racing another replica's meets it.
    pub(crate) fn for_tests() -> Self {
        Self {
            compared: "a".repeat(40),
            branch: "main".into(),
            head: "b".repeat(40),
        }
    }
}
