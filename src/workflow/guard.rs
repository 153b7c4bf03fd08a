//! The merge guard: the one way the bot merges anything.
//!
//! Every merge (a request PR, a revert PR, a removal PR) is described as a [`MergePlan`]: the PR,
//! the head commit the bot verified, and exactly what the PR may change. At merge time the PR is
//! read again (its last read before the merge) and merged only if it is open, not a draft, based on the default branch, from a
//! branch of the requests repo itself, still at the verified head, and changes exactly the
//! expected files; the merge is then guarded by that head SHA, so nothing pushed in between can
//! ride along. A refusal says why, so that the caller can decide (back to pending, or rebuild its
//! own branch) — it never retries by itself.

use std::collections::BTreeSet;

use super::Workflow;
use crate::comment;
use crate::forge::{Actor, EntryKind, FileChange, Landed, MergeError, PullRequestState};
use crate::grant::RenderedFile;
use crate::store::ChangeKind;

/// What a PR may change for the bot to merge it.
#[derive(Clone, Debug)]
pub(super) enum Expected {
    /// A request PR: adds the request file and exactly the grant files the bot rendered for it
    /// (byte for byte), nothing else.
    Request {
        request_path: String,
        grant_files: Vec<RenderedFile>,
    },
    /// A revert or removal: deletes exactly these files, nothing else.
    Deletion { paths: BTreeSet<String> },
}

/// One merge the bot intends to make.
#[derive(Clone, Debug)]
pub(super) struct MergePlan {
    pub pr: u64,
    /// The head the bot verified (its own commit, for its own branches).
    pub head_sha: String,
    pub expected: Expected,
    pub title: String,
    pub message: String,
}

impl MergePlan {
    /// The merge of a bot-built revert or removal: exactly its deletions, at its own head.
    pub fn deletion(
        change: &crate::store::Change,
        title: String,
        message: String,
    ) -> anyhow::Result<MergePlan> {
        use anyhow::Context as _;
        Ok(MergePlan {
            pr: change.pr_number.context("a built change has a PR")?,
            head_sha: change
                .head_sha
                .clone()
                .context("a built change has a head")?,
            expected: Expected::Deletion {
                paths: change.paths.iter().cloned().collect(),
            },
            title,
            message,
        })
    }
}

/// Why the guard did not merge.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Refusal {
    Closed,
    /// The PR no longer exists (a GitLab owner deleted the merge request).
    Gone,
    Draft,
    /// Based on another branch than the default branch.
    WrongBase(String),
    /// The head branch lives in another repository (a fork).
    Fork(String),
    /// The head is not the verified one (someone pushed).
    HeadMoved {
        found: String,
    },
    /// The PR changes what it may not (or misses what it must).
    Scope(Vec<String>),
    /// The forge refused the merge (conflict, branch protection, …), with its message.
    Forge(String),
    /// Retargeted to this branch after the check, and merged there by the bot's own call.
    MergedElsewhere(String),
    /// Merged into the default branch by someone else (who, when the forge says).
    MergedByHand(Option<Actor>),
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::Closed => write!(f, "the pull request is closed"),
            Refusal::Gone => write!(f, "the pull request no longer exists"),
            Refusal::Draft => write!(f, "the pull request is a draft"),
            Refusal::WrongBase(base) => {
                write!(
                    f,
                    "the pull request targets `{base}`, not the default branch"
                )
            }
            Refusal::Fork(repo) => {
                write!(f, "the pull request comes from another repository ({repo})")
            }
            Refusal::HeadMoved { found } => write!(
                f,
                "the pull request's head moved to {} after it was checked",
                short(found)
            ),
            Refusal::Scope(problems) => write!(f, "{}", problems.join("; ")),
            Refusal::Forge(message) => write!(f, "the forge refused the merge: {message}"),
            Refusal::MergedElsewhere(base) => write!(
                f,
                "the pull request was retargeted to `{base}` after it was checked, and the merge went there, not into the default branch"
            ),
            Refusal::MergedByHand(_) => write!(f, "the pull request was merged by hand"),
        }
    }
}

impl Refusal {
    /// Whether the forge's answer says branch protection stopped the bot (the README lists
    /// the settings the bot needs).
    pub fn is_protection(&self) -> bool {
        let Refusal::Forge(message) = self else {
            return false;
        };
        let message = message.to_ascii_lowercase();
        ["protect", "review", "status check", "required"]
            .iter()
            .any(|hint| message.contains(hint))
    }
}

/// A merge that happened: its commit. (When is the bot's clock's business: the expiry was fixed
/// before the merge.)
#[derive(Clone, Debug)]
pub(super) struct Merged {
    pub sha: String,
    /// The head that was merged (the bot's commit put back after tampering, on GitLab a new
    /// one).
    pub head: String,
}

fn short(sha: &str) -> &str {
    sha.get(..12).unwrap_or(sha)
}

impl Workflow {
    /// Checks `plan` against the PR as it is now and merges it guarded by the verified head.
    /// A PR that is already merged at the verified head (a crash after the merge) is returned as
    /// merged.
    /// `read` is the PR as the caller read it right before (in one round trip with other calls).
    pub(super) async fn guarded_merge(
        &self,
        plan: &MergePlan,
        read: Option<PullRequestState>,
    ) -> anyhow::Result<Result<Merged, Refusal>> {
        let pr = match read {
            Some(pr) if pr.info.number == plan.pr => pr,
            _ => match self.forge.change_if_any(plan.pr).await? {
                Some(pr) => pr,
                None => return Ok(Err(Refusal::Gone)),
            },
        };
        if !pr.open && !pr.info.merged {
            return Ok(Err(Refusal::Closed));
        }
        // The name the PR's own read carries is the freshest there is (GitHub).
        let default = match &pr.default_branch {
            Some(name) => {
                self.default_branch_named(name);
                name.clone()
            }
            None => self.default_branch().await?,
        };
        if pr.info.base_ref != default {
            return Ok(Err(Refusal::WrongBase(pr.info.base_ref.clone())));
        }
        if pr.info.merged {
            // Merged by the bot at the verified head into the default branch: its own merge,
            // whose answer was lost (a crash). Merged by anyone else (while the bot's merge
            // call failed and was to be tried again, say), it is a hand merge, never the
            // bot's, whatever it merged.
            let by_bot = self.is_own_merge(pr.merged_by.as_ref());
            return Ok(match pr.merge_sha {
                Some(sha) if by_bot && pr.info.head_sha == plan.head_sha => Ok(Merged {
                    sha,
                    head: plan.head_sha.clone(),
                }),
                _ if by_bot => Err(Refusal::Closed),
                _ => Err(Refusal::MergedByHand(pr.merged_by.clone())),
            });
        }
        if pr.info.draft {
            return Ok(Err(Refusal::Draft));
        }
        if let Some(repo) = self.foreign_head(pr.info.head_repo.as_deref()) {
            return Ok(Err(Refusal::Fork(repo.to_owned())));
        }
        if pr.info.head_sha != plan.head_sha {
            return Ok(Err(Refusal::HeadMoved {
                found: pr.info.head_sha.clone(),
            }));
        }
        let problems = self.scope_problems(plan, &pr).await?;
        if !problems.is_empty() {
            // Perhaps built on a head a force push removed: the next change reads a fresh one.
            self.forget_default_head();
            return Ok(Err(Refusal::Scope(problems)));
        }
        // The bot's own branch goes with its merge where the forge can do that; a person's
        // branch is never touched.
        let own_branch = self
            .store
            .change_of_pr(plan.pr)
            .await?
            .is_some_and(|c| c.branch == pr.info.head_ref);
        match self
            .forge
            .merge(
                plan.pr,
                &plan.head_sha,
                &plan.title,
                &plan.message,
                own_branch,
            )
            .await
        {
            Ok(landed) => self.landed(plan, landed, &default).await,
            Err(MergeError::HeadChanged) => Ok(Err(Refusal::HeadMoved {
                found: self.moved_head(plan).await,
            })),
            Err(MergeError::NotMergeable(message)) => self.merged_after_all(plan, message).await,
            Err(MergeError::Forge(err)) => Err(err.into()),
        }
    }

    /// The head a PR was pushed to after the guard checked it (the merge call's `sha` refused
    /// it), read so that the tampering is logged under the commit its push webhook names, and
    /// that webhook is known as handled.
    async fn moved_head(&self, plan: &MergePlan) -> String {
        match self.forge.change(plan.pr).await {
            Ok(now) if now.info.head_sha != plan.head_sha => now.info.head_sha,
            _ => "a newer commit".into(),
        }
    }

    /// What the forge says it merged. A member can retarget the PR between the guard's read
    /// and the merge (no forge guards a merge by its base): where the answer names the branch
    /// (GitLab), a merge that went elsewhere is said loudly and is no merge of the request.
    async fn landed(
        &self,
        plan: &MergePlan,
        landed: Landed,
        default: &str,
    ) -> anyhow::Result<Result<Merged, Refusal>> {
        // Found merged after the call's answer was lost: merged by someone else meanwhile (at
        // the very head the bot checked), it is a hand merge, not the bot's.
        if let Some(by) = landed.found_merged_by
            && !self.is_own_merge(by.as_ref())
        {
            return Ok(Err(Refusal::MergedByHand(by)));
        }
        if let Some(base) = landed.base.filter(|base| base != default) {
            tracing::error!(pr = plan.pr, %base, "the pull request was retargeted after the guard's check and merged into another branch");
            self.metrics
                .inc("breakglass_anomalies_total", "kind=\"merged_elsewhere\"");
            return Ok(Err(Refusal::MergedElsewhere(base)));
        }
        // The merge commit is the default branch's head now.
        self.default_head_moved(&landed.sha).await?;
        Ok(Ok(Merged {
            sha: landed.sha,
            head: plan.head_sha.clone(),
        }))
    }

    /// Whether a merge by `by` (as the forge names who merged) is the bot's own.
    pub(super) fn is_own_merge(&self, by: Option<&Actor>) -> bool {
        by.is_some_and(|by| by.id == self.bot.id)
    }

    /// The repository a PR's head lives in when it is not the requests repo. A head whose
    /// repository the forge no longer names (GitHub's `head.repo` is null once a fork is
    /// deleted) is foreign too: the requests repo itself is always named.
    pub(super) fn foreign_head<'p>(&self, head_repo: Option<&'p str>) -> Option<&'p str> {
        match head_repo {
            Some(repo) if repo.eq_ignore_ascii_case(&self.settings.repository) => None,
            Some(repo) => Some(repo),
            None => Some("a deleted repository"),
        }
    }

    /// A merge the forge refused may be the bot's own, done: when the answer to the merge call
    /// is lost (a timeout, a gateway giving up on a slow forge), the retry layer asks again and
    /// the forge refuses to merge what is merged already. Merged at the head the bot verified
    /// is what the bot asked for (as when the change is found merged before the call); anything
    /// else is the refusal it says.
    async fn merged_after_all(
        &self,
        plan: &MergePlan,
        message: String,
    ) -> anyhow::Result<Result<Merged, Refusal>> {
        let now = self.forge.change(plan.pr).await?;
        let into_default = Some(&now.info.base_ref) == now.default_branch.as_ref()
            || now.info.base_ref == self.default_branch().await?;
        if now.info.merged && !self.is_own_merge(now.merged_by.as_ref()) {
            return Ok(Err(Refusal::MergedByHand(now.merged_by)));
        }
        match now.merge_sha {
            Some(sha) if now.info.merged && now.info.head_sha == plan.head_sha && into_default => {
                // Other merges may have landed after it: the default branch is read afresh.
                self.forget_default_head();
                Ok(Ok(Merged {
                    sha,
                    head: plan.head_sha.clone(),
                }))
            }
            _ => Ok(Err(Refusal::Forge(message))),
        }
    }

    /// Whether the PR's head is the bot's own commit, on the branch it built from a head of the
    /// default branch that is still in the branch's history, writing exactly the plan's paths
    /// (and no grant file to compare): then the PR changes what the bot wrote and nothing
    /// else, and listing its files would only say so again.
    ///
    /// The branch was built on a head the bot saw (perhaps a cached one); a force push to the
    /// default branch may have removed it since, and then the PR would bring those commits
    /// back. The PR as just read says otherwise: its merge base is the bot's base (GitLab), or
    /// it changes exactly as many files as the bot wrote (GitHub). When the forge says
    /// neither, the files are listed.
    async fn is_own_plan(&self, plan: &MergePlan, pr: &PullRequestState) -> anyhow::Result<bool> {
        let Some(change) = self.store.change_of_pr(plan.pr).await? else {
            return Ok(false);
        };
        if change.head_sha.as_deref() != Some(plan.head_sha.as_str()) {
            return Ok(false);
        }
        let on_default = pr.merge_base.as_deref() == Some(change.base_sha.as_str())
            || pr.changed_files == Some(change.paths.len() as u64);
        if !on_default {
            return Ok(false);
        }
        let written: BTreeSet<&str> = change.paths.iter().map(String::as_str).collect();
        Ok(match &plan.expected {
            Expected::Request {
                request_path,
                grant_files,
            } => {
                change.kind == ChangeKind::Request
                    && grant_files.is_empty()
                    && written == BTreeSet::from([request_path.as_str()])
            }
            Expected::Deletion { paths } => {
                matches!(change.kind, ChangeKind::Revert | ChangeKind::Removal)
                    && written == paths.iter().map(String::as_str).collect()
            }
        })
    }

    /// Everything the PR changes beyond (or short of) the plan, one sentence each.
    async fn scope_problems(
        &self,
        plan: &MergePlan,
        pr: &PullRequestState,
    ) -> anyhow::Result<Vec<String>> {
        if self.is_own_plan(plan, pr).await? {
            return Ok(Vec::new());
        }
        // Pinned to the verified head, which is what the merge call names: a listing of the
        // PR as it is when served could show a head pushed there and back in between.
        let listed = self.what_merging_brings(plan.pr, &plan.head_sha).await?;
        let mut problems = Vec::new();
        if !listed.complete {
            problems.push(format!(
                "the forge does not list all that it changes ({} files listed), so it cannot all be checked",
                listed.files.len()
            ));
        }
        if listed.merge_commits {
            problems.push(
                "its branch holds merge commits, so what the merge brings may not be what the comparison shows".to_owned(),
            );
        }
        let files = listed.files;
        let mut seen = BTreeSet::new();
        for file in &files {
            seen.insert(file.path.as_str());
            let allowed = match &plan.expected {
                Expected::Request {
                    request_path,
                    grant_files,
                } => {
                    file.change == FileChange::Added
                        && (file.path == *request_path
                            || grant_files.iter().any(|g| g.path == file.path))
                }
                Expected::Deletion { paths } => {
                    file.change == FileChange::Removed && paths.contains(&file.path)
                }
            };
            if !allowed || file.previous_path.is_some() {
                problems.push(format!("changes `{}` ({:?})", file.path, file.change));
            } else if matches!(file.kind, EntryKind::Symlink | EntryKind::Submodule) {
                // Its text at the head would be a link's target, not what the PR shows.
                problems.push(comment::not_a_file_problem(&file.path, file.kind));
            }
        }
        match &plan.expected {
            Expected::Request {
                request_path,
                grant_files,
            } => {
                if !seen.contains(request_path.as_str()) {
                    problems.push(format!("does not add `{request_path}`"));
                }
                for grant in grant_files {
                    let found = self.forge.read_file(&plan.head_sha, &grant.path).await?;
                    let listed_blob = files
                        .iter()
                        .find(|f| f.path == grant.path)
                        .and_then(|f| f.blob.as_deref());
                    if let (Some(found), Some(blob)) = (&found, listed_blob)
                        && found.blob_sha != blob
                    {
                        // GitHub served the file a symbolic link there points to.
                        problems.push(comment::not_a_file_problem(&grant.path, EntryKind::Symlink));
                    } else if found.map(|f| f.text) != Some(grant.content.clone()) {
                        problems.push(format!(
                            "`{}` is not the grant file breakglass renders",
                            grant.path
                        ));
                    }
                }
            }
            Expected::Deletion { paths } => {
                for path in paths {
                    if !seen.contains(path.as_str()) {
                        problems.push(format!("does not delete `{path}`"));
                    }
                }
            }
        }
        Ok(problems)
    }
}
