//! The bot's own branches: built from the default branch's head under a name nobody can guess
//! (so nobody can squat it before the bot needs it), recorded with the bot's own head commit,
//! and never adopted when they hold anyone else's commits. A push by someone else to a bot
//! branch is tampering: it is logged, named in a comment, counted, and the branch is put back.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::Context as _;
use rand::Rng as _;

use super::Workflow;
use crate::comment;
use crate::forge::Actor;
use crate::forge::{PullRequestState, Thread};
use crate::names::RequestId;
use crate::store::{Change, ChangeKind, EventKind};

/// One file operation of a bot change.
#[derive(Clone, Debug)]
pub(super) enum Write {
    Put {
        path: String,
        content: String,
    },
    /// `blob`: the file's blob as the bot wrote it, when it did (no read before the delete).
    Delete {
        path: String,
        blob: Option<String>,
    },
}

impl Write {
    pub(super) fn path(&self) -> &str {
        match self {
            Write::Put { path, .. } | Write::Delete { path, .. } => path,
        }
    }

    /// Whether this deletion relies on a blob known without reading the file.
    fn hinted(&self) -> bool {
        matches!(self, Write::Delete { blob: Some(_), .. })
    }

    /// The same write, to be planned from a fresh read of the file.
    fn unhinted(&self) -> Write {
        match self {
            Write::Delete { path, .. } => Write::Delete {
                path: path.clone(),
                blob: None,
            },
            put => put.clone(),
        }
    }
}

/// The git blob id of `content`: what the forge names the file by once it is written.
pub(super) fn blob_id(content: &str) -> anyhow::Result<String> {
    let oid = git2::Oid::hash_object(git2::ObjectType::Blob, content.as_bytes())?;
    Ok(oid.to_string())
}

/// One attempt at building a change.
enum Attempt {
    Built(Option<Box<Built>>),
    /// A deletion by a known blob was refused (the file changed or went away meanwhile).
    StaleBlob,
}

/// A bot change just built, with its PR as the forge answered the opening (no second read).
pub(super) struct Built {
    pub change: Change,
    pub pr: crate::forge::PullRequestState,
    /// Built by an earlier run and kept (see [`Earlier::KeepOpen`]): its files are what that
    /// run wrote, not necessarily this run's.
    pub kept: bool,
}

/// What a build does with an earlier change of its subject and kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Earlier {
    /// Abandons it (closes its PR, deletes its branch) and builds anew: a rebuild.
    Replace,
    /// Keeps it when its PR is open at the bot's own commit: the request PR an earlier run of
    /// the same comment opened, which that run (killed, or still going on another replica)
    /// did not record yet. Closing it under a run that goes on to decide and merge it leaves
    /// that run's request on a closed PR.
    KeepOpen,
}

/// The error of a build that another run took over (see [`Workflow::keep_building`]).
fn superseded(change: &Change) -> anyhow::Error {
    anyhow::anyhow!(
        "another run is building the {} change of {}; this one stopped",
        change.kind,
        change.subject
    )
}

/// The prefix of every branch the bot creates.
pub(super) const BOT_BRANCH_PREFIX: &str = "breakglass/";

impl Workflow {
    /// Builds a fresh bot change: abandons an earlier one of the same subject and kind (closing
    /// its PR, deleting its branch), creates a new branch from a recent head of the default
    /// branch (see [`super::cache`]; the merge guard checks what the PR brings in),
    /// writes the files as the bot, opens the PR and records the bot's head commit. Deletions
    /// of files that are not on the default branch are skipped; `None` when nothing is left to
    /// write.
    ///
    /// A deletion whose blob the bot knows (it wrote the file) is made without reading the
    /// file: the forge deleting it proves it was there. When the forge refuses it, the file
    /// changed or went away since: the change is built again from a fresh read of each file.
    pub(super) async fn build_change(
        &self,
        subject: &str,
        kind: ChangeKind,
        writes: &[Write],
        title: &str,
        body: &str,
    ) -> anyhow::Result<Option<Built>> {
        let pr = (title, body, &[][..]);
        self.build_labelled_change(subject, kind, writes, pr, Earlier::Replace)
            .await
    }

    /// [`Self::build_change`], with the PR opened labelled; `(title, body, labels)` are the
    /// PR's, and `earlier` says what becomes of an earlier change of the subject.
    pub(super) async fn build_labelled_change(
        &self,
        subject: &str,
        kind: ChangeKind,
        writes: &[Write],
        pr: (&str, &str, &[String]),
        earlier: Earlier,
    ) -> anyhow::Result<Option<Built>> {
        match self
            .try_build_change(subject, kind, writes, pr, earlier)
            .await?
        {
            Attempt::Built(built) => Ok(built.map(|b| *b)),
            Attempt::StaleBlob => {
                let writes: Vec<Write> = writes.iter().map(Write::unhinted).collect();
                // Its own half-built change is the earlier one now: replaced.
                let again = self.try_build_change(subject, kind, &writes, pr, Earlier::Replace);
                match again.await? {
                    Attempt::Built(built) => Ok(built.map(|b| *b)),
                    Attempt::StaleBlob => anyhow::bail!("a deletion read just now was refused"),
                }
            }
        }
    }

    /// One attempt of [`Self::build_labelled_change`]; `(title, body, labels)` are the PR's.
    async fn try_build_change(
        &self,
        subject: &str,
        kind: ChangeKind,
        writes: &[Write],
        (title, body, labels): (&str, &str, &[String]),
        earlier: Earlier,
    ) -> anyhow::Result<Attempt> {
        let old = self.store.get_change(subject, kind).await?;
        if earlier == Earlier::KeepOpen
            && let Some(old) = &old
            && let Some(pr) = self.still_open(old).await?
        {
            let change = old.clone();
            let kept = Built {
                change,
                pr,
                kept: true,
            };
            return Ok(Attempt::Built(Some(Box::new(kept))));
        }
        let head = self.default_head().await?;
        let default = head.branch;
        let mut base_sha = head.sha;
        let mut todo = self.planned_writes(&base_sha, writes).await?;
        if head.cached && todo.len() < writes.len() {
            // A cached head may be older than a file to delete: that a file is gone is
            // concluded on the branch's head as the forge says it now.
            base_sha = self.fresh_default_head(&default).await?;
            todo = self.planned_writes(&base_sha, writes).await?;
        }
        if todo.is_empty() {
            return Ok(Attempt::Built(None));
        }
        let nonce: u64 = rand::rng().random();
        let now = self.now();
        let mut change = Change {
            subject: subject.to_owned(),
            kind,
            branch: format!(
                "{BOT_BRANCH_PREFIX}{kind}/{}-{nonce:016x}",
                crate::names::plain_name(subject, 60)
            ),
            base_sha: base_sha.clone(),
            head_sha: None,
            pr_number: None,
            paths: todo.iter().map(|(w, _)| w.path().to_owned()).collect(),
            blobs: Default::default(),
            created_at: now,
            updated_at: now,
        };
        // Recorded before the branch exists: a crash from here on leaves a trace to clean up.
        // Claimed in place of the earlier change exactly as read: a run that wrote to it since
        // (another run of the same delivery) keeps it, and this one stops.
        if !self.store.claim_change(&change, old.as_ref()).await? {
            return Err(superseded(&change));
        }
        if let Some(old) = &old {
            self.abandon_change(old).await?;
        }
        self.forge.create_branch(&change.branch, &base_sha).await?;
        let Some(head) = self.commit_writes(&mut change, &todo).await? else {
            return Ok(Attempt::StaleBlob);
        };
        change.head_sha = Some(head);
        self.keep_building(&change).await?;
        let pr = self
            .forge
            .open_change(&change.branch, &default, title, body, labels)
            .await?;
        // An opening whose answer was lost is found by its branch: found opened by someone
        // else (from the bot's branch, in the moment before), it is not the bot's.
        if pr.info.author.id != self.bot.id {
            self.abandon_change(&change).await?;
            anyhow::bail!(
                "change {} from breakglass's branch {} was opened by {}, not by breakglass",
                pr.info.number,
                change.branch,
                pr.info.author.login
            );
        }
        change.pr_number = Some(pr.info.number);
        change.updated_at = self.now();
        self.keep_building(&change).await?;
        let built = Built {
            change,
            pr,
            kept: false,
        };
        Ok(Attempt::Built(Some(Box::new(built))))
    }

    /// The PR of `change` when it is open at the bot's own commit (one read); `None` when the
    /// change has no PR or commit recorded yet.
    async fn still_open(&self, change: &Change) -> anyhow::Result<Option<PullRequestState>> {
        let (Some(number), Some(head)) = (change.pr_number, change.head_sha.as_deref()) else {
            return Ok(None);
        };
        let pr = self.forge.change(number).await?;
        Ok((pr.open && pr.info.head_sha == head).then_some(pr))
    }

    /// Records what the build of `change` got to. When another run took the subject over
    /// meanwhile (one delivery handled by two replicas at once: the other run abandoned this
    /// build and started its own), this run takes back what it made (its PR, its branch) and
    /// stops with an error, so that exactly one build goes on.
    async fn keep_building(&self, change: &Change) -> anyhow::Result<()> {
        if self.store.update_change(change).await? {
            return Ok(());
        }
        tracing::warn!(subject = %change.subject, kind = %change.kind, branch = %change.branch, "another run took this change over; this build stops");
        self.abandon_change(change).await?;
        Err(superseded(change))
    }

    /// Commits `todo` on the change's new branch, one write after another, noting the blob of
    /// each file it puts: the branch's head, or `None` when the forge refused a deletion by a
    /// known blob (the file is then read, and the change built again).
    async fn commit_writes(
        &self,
        change: &mut Change,
        todo: &[(Write, Option<String>)],
    ) -> anyhow::Result<Option<String>> {
        let (kind, subject) = (change.kind, change.subject.clone());
        let mut head = change.base_sha.clone();
        for (write, blob) in todo {
            head = match write {
                Write::Put { path, content } => {
                    let written = self
                        .forge
                        .put_file(
                            &change.branch,
                            &head,
                            path,
                            content,
                            &format!(
                                "breakglass: {kind} {subject}: add {}",
                                path.escape_default()
                            ),
                            None,
                        )
                        .await?;
                    change.blobs.insert(path.clone(), blob_id(content)?);
                    written
                }
                Write::Delete { path, .. } => {
                    let blob = blob.as_deref().context("a deletion has its blob")?;
                    let deleted = self
                        .forge
                        .delete_file(
                            &change.branch,
                            &head,
                            path,
                            &format!(
                                "breakglass: {kind} {subject}: remove {}",
                                path.escape_default()
                            ),
                            blob,
                        )
                        .await;
                    match deleted {
                        Ok(commit) => commit,
                        // Not there, or not as the bot wrote it: a read is the truth.
                        Err(err) if write.hinted() && err.status().is_some() => {
                            tracing::info!(%path, error = %err, "a deletion by a known blob was refused; reading the file");
                            return Ok(None);
                        }
                        Err(err) => return Err(err.into()),
                    }
                }
            };
        }
        Ok(Some(head))
    }

    /// `writes` as they apply on `base_sha`, each deletion with the blob it deletes; deletions of
    /// files that are not there are left out. A deletion whose blob is known is kept unread:
    /// the forge refuses it if the file is not that blob on the branch.
    async fn planned_writes(
        &self,
        base_sha: &str,
        writes: &[Write],
    ) -> anyhow::Result<Vec<(Write, Option<String>)>> {
        let unknown: Vec<&str> = writes
            .iter()
            .filter_map(|w| match w {
                Write::Delete { path, blob: None } => Some(path.as_str()),
                _ => None,
            })
            .collect();
        let blobs = self.entry_blobs(base_sha, &unknown).await?;
        let mut todo = Vec::new();
        for write in writes {
            match write {
                Write::Delete {
                    blob: Some(blob), ..
                } => todo.push((write.clone(), Some(blob.clone()))),
                Write::Delete { path, blob: None } => {
                    if let Some(blob) = blobs.get(path) {
                        todo.push((write.clone(), Some(blob.clone())));
                    }
                }
                Write::Put { .. } => todo.push((write.clone(), None)),
            }
        }
        Ok(todo)
    }

    /// The blob ids of `paths`' own tree entries at `base_sha` (absent: not there), from one
    /// listing of their folders. Never from a read of the file: for a symbolic link to a file
    /// of the repository, GitHub's contents API serves the target, whose blob a deletion of
    /// the link is refused with (for ever: a link a member pushed into `grants/` would stay).
    /// Paths a listing cut short leaves out are read one by one.
    async fn entry_blobs(
        &self,
        base_sha: &str,
        paths: &[&str],
    ) -> anyhow::Result<BTreeMap<String, String>> {
        if paths.is_empty() {
            return Ok(BTreeMap::new());
        }
        let folders: BTreeSet<String> = paths
            .iter()
            .map(|p| p.rsplit_once('/').map_or("", |(dir, _)| dir).to_owned())
            .collect();
        let folders: Vec<String> = folders.into_iter().collect();
        let (listed, whole) = self.forge.list_default_tree(base_sha, &folders).await?;
        let mut blobs = BTreeMap::new();
        for path in paths {
            if let Some(blob) = listed.get(*path) {
                blobs.insert((*path).to_owned(), blob.clone());
            } else if !whole && let Some(file) = self.forge.read_file(base_sha, path).await? {
                blobs.insert((*path).to_owned(), file.blob_sha);
            }
        }
        Ok(blobs)
    }

    /// Closes an earlier change's PR and deletes its branch (both may be gone already).
    pub(super) async fn abandon_change(&self, change: &Change) -> anyhow::Result<()> {
        if let Some(number) = change.pr_number
            && self
                .forge
                .change_if_any(number)
                .await?
                .is_some_and(|pr| pr.open)
        {
            self.forge.close_change(number).await?;
        }
        self.forge.delete_branch(&change.branch).await?;
        Ok(())
    }

    /// A push to a bot branch. The bot's own pushes are fine; anyone else's is tampering.
    pub(super) async fn handle_bot_branch_push(
        &self,
        branch: &str,
        after: &str,
        pusher: &Actor,
    ) -> anyhow::Result<()> {
        if pusher.id == self.bot.id {
            return Ok(());
        }
        let Some(change) = self.store.change_on_branch(branch).await? else {
            return Ok(()); // a branch under our prefix that we never built: never merged either
        };
        if change.head_sha.as_deref() == Some(after) {
            return Ok(());
        }
        // Serialized with the request's jobs (a revoke may be merging this very PR).
        let request = match change.subject.clone().try_into() {
            Ok(id) => self.store.get_request(&id).await?,
            Err(_) => None,
        };
        let guard = match &request {
            Some(record) => Some(self.lock_pr(record.pr_number).await?),
            None => None,
        };
        let handled = self.handle_tampering(&change, after, pusher);
        super::pr_lock::while_held(guard.as_ref(), handled).await
    }

    /// A push of `after` by `pusher` (not the bot) to `change`'s branch: tampering, unless
    /// found and handled already.
    async fn handle_tampering(
        &self,
        change: &Change,
        after: &str,
        pusher: &Actor,
    ) -> anyhow::Result<()> {
        let known = self.tampering_known(change, after).await?;
        // A commit found before may be pushed again after the bot put the branch back: that
        // is a new push, not the late webhook of the first (which finds the branch put back).
        let pushed_again = !matches!(known, Known::No)
            && self.forge.branch_head(&change.branch).await.ok().as_deref() == Some(after);
        match known {
            Known::No => self.tampered(change, Some(pusher), after).await.map(drop),
            _ if pushed_again => self.tampered(change, Some(pusher), after).await.map(drop),
            // Found at merge time, before this webhook arrived: handled, but by "someone".
            Known::Unnamed => self.name_pusher(change, pusher, after).await,
            Known::Named => Ok(()),
        }
    }

    /// Whether the push of `found` to `change`'s branch was already found and handled (a merge
    /// sees a moved head before the push's webhook may arrive), and whether its pusher is named.
    async fn tampering_known(&self, change: &Change, found: &str) -> anyhow::Result<Known> {
        let Ok(id) = change.subject.clone().try_into() else {
            return Ok(Known::No);
        };
        let events = self.store.events_for_request(&id).await?;
        let mut known = events.iter().filter(|event| {
            event.kind == EventKind::Tampering
                && event.data["found_head"] == found
                && event.data["branch"] == change.branch.as_str()
        });
        Ok(match known.next() {
            None => Known::No,
            Some(first) if first.actor.is_none() && known.all(|e| e.actor.is_none()) => {
                Known::Unnamed
            }
            Some(_) => Known::Named,
        })
    }

    /// The pusher of a tampering found at merge time, named once its push's webhook says who it
    /// was: logged with the person (the audit links every action to one) and said where the
    /// tampering was. The branch was put back then; nothing else is done again.
    async fn name_pusher(
        &self,
        change: &Change,
        pusher: &Actor,
        found: &str,
    ) -> anyhow::Result<()> {
        let request_id = change.subject.clone().try_into().ok();
        self.record_event(
            EventKind::Tampering,
            request_id.as_ref(),
            super::events::actor(pusher),
            serde_json::json!({ "branch": change.branch, "kind": change.kind.to_string(), "found_head": found, "bot_head": change.head_sha, "pusher_named_late": true }),
        )
        .await?;
        let text = comment::tampering_pusher_comment(&pusher.login, &change.branch, found);
        self.note_on_change_and_request(change, request_id.as_ref(), &text)
            .await
    }

    /// `text` on `change`'s PR and, when it is another one, on its request's PR.
    async fn note_on_change_and_request(
        &self,
        change: &Change,
        request_id: Option<&RequestId>,
        text: &str,
    ) -> anyhow::Result<()> {
        if let Some(number) = change.pr_number {
            self.forge.note(Thread::Change(number), text).await?;
        }
        if let Some(record) = match request_id {
            Some(id) => self.store.get_request(id).await?,
            None => None,
        } && Some(record.pr_number) != change.pr_number
        {
            self.forge
                .note(Thread::Change(record.pr_number), text)
                .await?;
        }
        Ok(())
    }

    /// Someone else's commits on a bot branch: logged, named, counted, and the branch put back to
    /// the bot's own content, so that the PR holds only what the bot wrote. Returns the
    /// branch's head after that (`None` when it could not be put back).
    pub(super) async fn tampered(
        &self,
        change: &Change,
        pusher: Option<&Actor>,
        found: &str,
    ) -> anyhow::Result<Option<String>> {
        tracing::warn!(branch = %change.branch, pusher = ?pusher.map(|p| &p.login), found, "someone else pushed to a breakglass branch");
        self.metrics.inc(
            "breakglass_tampering_total",
            format!("kind=\"{}\"", change.kind),
        );
        let request_id = change.subject.clone().try_into().ok();
        self.record_event(
            EventKind::Tampering,
            request_id.as_ref(),
            pusher.and_then(super::events::actor),
            serde_json::json!({ "branch": change.branch, "kind": change.kind.to_string(), "found_head": found, "bot_head": change.head_sha }),
        )
        .await?;
        let text =
            comment::tampering_comment(pusher.map(|p| p.login.as_str()), &change.branch, found);
        self.note_on_change_and_request(change, request_id.as_ref(), &text)
            .await?;
        let Some(head) = change.head_sha.clone() else {
            return Ok(None);
        };
        match self
            .forge
            .restore_branch(&change.branch, &head, &change.paths)
            .await
        {
            Ok(restored) if restored != head => {
                self.adopt_restored_head(change, &head, &restored).await?;
                Ok(Some(restored))
            }
            Ok(_) => Ok(Some(head)),
            Err(err) => {
                // The branch is gone (deleted by the pusher): the next merge attempt rebuilds.
                tracing::warn!(branch = %change.branch, error = %err, "could not restore the bot's branch");
                Ok(None)
            }
        }
    }

    /// A restore that made a new commit (GitLab) holds the bot's own content under a new id:
    /// it becomes the change's head, and the request's. Approvals of the old head do not carry
    /// over: tampering voids them like any push. An expiry commit put back so is still the
    /// merge step's (see `StoredDecision::stamp`), as it is on GitHub, where the branch goes
    /// back to the very commit: its stamp follows it, or the head would be judged as a grant
    /// file with an expiry nobody wrote, and the request denied for good.
    async fn adopt_restored_head(
        &self,
        change: &Change,
        old: &str,
        restored: &str,
    ) -> anyhow::Result<()> {
        let mut change = change.clone();
        change.head_sha = Some(restored.to_owned());
        change.updated_at = self.now();
        if !self.store.update_change(&change).await? {
            return Err(superseded(&change));
        }
        if change.kind != ChangeKind::Request {
            return Ok(());
        }
        let Ok(id) = change.subject.clone().try_into() else {
            return Ok(());
        };
        if let Some(mut record) = self.store.get_request(&id).await?
            && record.head_sha == old
        {
            record.head_sha = restored.to_owned();
            if let Some(stamp) = record
                .decision
                .as_mut()
                .and_then(|d| d.stamp.as_mut())
                .filter(|stamp| stamp.head == old)
            {
                stamp.head = restored.to_owned();
            }
            self.store.update_request(&mut record, self.now()).await?;
        }
        Ok(())
    }
}

/// What the event log knows of a push to a bot branch.
enum Known {
    /// Nothing: the push is news.
    No,
    /// Found and handled at merge time, with nobody named (the merge sees only the head).
    Unnamed,
    /// Found and its pusher named.
    Named,
}
