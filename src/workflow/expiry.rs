//! Grant files that carry their own expiry. Before the merge a grant file is rendered with an
//! expiry long past ([`crate::grant::NOT_YET_GRANTED`]): merged by anyone but breakglass it
//! grants nothing. Right before the merge, once the grant's expiry is fixed, breakglass writes
//! the real expiry into the files on its own branch and merges that commit, so the cloud ends
//! the access on time even if the revert never lands.

use super::lifecycle::Ready;
use super::{Workflow, stored_decision};
use crate::forge::StatusState;
use crate::grant::{GrantSpec, RenderedFile};
use crate::policy::Role;
use crate::store::{Change, ChangeKind, RequestRecord, Stamp};

impl Workflow {
    /// Writes the grant files rendered with `spec`'s expiry over the `staged` ones (rendered
    /// before the merge) on the request's bot branch, and moves the request's head to that
    /// commit. The branch must still hold exactly the staged files, so that nothing but the
    /// expiry changes after the approvals. `Ok(files)` as they will be merged, or `Err(why)`
    /// the merge must not happen.
    pub(super) async fn stamp_expiry(
        &self,
        record: &mut RequestRecord,
        role: &Role,
        spec: &GrantSpec,
        staged: &[RenderedFile],
    ) -> anyhow::Result<Result<Vec<RenderedFile>, String>> {
        let stamped = self.providers.rendered_files(role, spec)?;
        if stamped == staged {
            return Ok(Ok(stamped)); // no file, or a template that does not show the expiry
        }
        let paths =
            |files: &[RenderedFile]| files.iter().map(|f| f.path.clone()).collect::<Vec<_>>();
        if paths(&stamped) != paths(staged) {
            return Ok(Err("the grant file's path depends on its expiry".into()));
        }
        let restamp = match stored_decision(record)?.stamp_at(&record.head_sha) {
            // Written in this merge step before its merge call failed (the expiry is kept
            // while the step lasts); the guard checks the files at the head against these.
            Some(stamp) if stamp.expires_at == spec.expires_at => return Ok(Ok(stamped)),
            // Decided again on the stamp (the step was stopped) and approved again: a new
            // grant time. The files at the head carry the stamp's expiry, written over.
            Some(stamp) => {
                let mut old = spec.clone();
                old.expires_at = stamp.expires_at.clone();
                Some((
                    self.providers.rendered_files(role, &old)?,
                    stamp.from.clone(),
                ))
            }
            None => None,
        };
        let at_head: Vec<RenderedFile> = restamp
            .as_ref()
            .map_or_else(|| staged.to_vec(), |(files, _)| files.clone());
        let Some(mut change) = self.change_at_head(record).await? else {
            return Ok(Err(
                "its grant files are not on a branch breakglass built for it".into(),
            ));
        };
        // Anyone else's commit on the branch is put back first. (A crash between this
        // function's push and its record looks the same, and is repaired the same way.)
        let branch_head = self.forge.branch_head(&change.branch).await?;
        if branch_head != record.head_sha {
            let restored = self.tampered(&change, None, &branch_head).await?;
            if restored.as_deref() != Some(record.head_sha.as_str()) {
                // Put back as a new commit (GitLab): that commit's content is checked below.
                *record = self
                    .store
                    .get_request(&record.id)
                    .await?
                    .ok_or_else(|| anyhow::anyhow!("request {} vanished", record.id))?;
                change = self
                    .store
                    .change_of_pr(record.pr_number)
                    .await?
                    .ok_or_else(|| anyhow::anyhow!("the change of {} vanished", record.id))?;
            }
        }
        let mut head = record.head_sha.clone();
        for (before, after) in at_head.iter().zip(&stamped) {
            let current = self.forge.read_file(&record.head_sha, &before.path).await?;
            let Some(current) = current.filter(|f| f.text == before.content) else {
                return Ok(Err(format!(
                    "`{}` is not the grant file breakglass renders",
                    before.path
                )));
            };
            let message = format!(
                "breakglass: request {}: expires at {}",
                record.id, spec.expires_at
            );
            head = self
                .write_over(&change.branch, &head, after, &current.blob_sha, &message)
                .await?;
        }
        self.own_head(&mut change, record, &head).await?;
        let mut stored = stored_decision(record)?.clone();
        stored.stamp = Some(Stamp {
            head: head.clone(),
            from: match restamp {
                Some((_, from)) => {
                    record.head_sha = head;
                    from
                }
                None => std::mem::replace(&mut record.head_sha, head),
            },
            expires_at: spec.expires_at.clone(),
        });
        record.decision = Some(stored);
        self.store.update_request(record, self.now()).await?;
        self.set_status_on(
            &record.head_sha,
            StatusState::Success,
            "approved; expiry written by breakglass",
        )
        .await?;
        Ok(Ok(stamped))
    }

    /// Takes the expiry back out of a stamped head whose merge is refused: the grant files as
    /// rendered before the merge are written over the stamp, as a commit of the bot's, so that
    /// what is decided from now on is the request as it was approved, never files carrying an
    /// expiry that will not be. That commit is a head of its own: the request waits for an
    /// approval of it, as after any refused merge. Nothing to do on a head that is no stamp, or
    /// on a branch someone else moved (the merge guard has that in hand).
    pub(super) async fn take_back_stamp(&self, record: &mut RequestRecord) -> anyhow::Result<()> {
        if stored_decision(record)?
            .stamp_at(&record.head_sha)
            .is_none()
        {
            return Ok(());
        }
        let Some(Ready::Checked { staged, .. }) = self.grant_plan(record).await? else {
            return Ok(()); // the role is gone: refused for good
        };
        let Some(mut change) = self.change_at_head(record).await? else {
            return Ok(());
        };
        let mut head = record.head_sha.clone();
        for file in &staged {
            let Some(current) = self.forge.read_file(&head, &file.path).await? else {
                continue;
            };
            if current.text == file.content {
                continue;
            }
            let message = format!(
                "breakglass: request {}: not merged, expiry taken back",
                record.id
            );
            head = self
                .write_over(&change.branch, &head, file, &current.blob_sha, &message)
                .await?;
        }
        self.own_head(&mut change, record, &head).await?;
        let mut stored = stored_decision(record)?.clone();
        stored.stamp = None;
        record.decision = Some(stored);
        record.head_sha = head;
        Ok(())
    }

    /// The branch breakglass built for `record`, when its head is the request's.
    async fn change_at_head(&self, record: &RequestRecord) -> anyhow::Result<Option<Change>> {
        Ok(self
            .store
            .change_of_pr(record.pr_number)
            .await?
            .filter(|c| c.kind == ChangeKind::Request)
            .filter(|c| c.head_sha.as_deref() == Some(record.head_sha.as_str())))
    }

    /// Writes `file` over the copy of blob `blob` on the bot's `branch` at `head`, as one
    /// commit of its own; the new head.
    async fn write_over(
        &self,
        branch: &str,
        head: &str,
        file: &RenderedFile,
        blob: &str,
        message: &str,
    ) -> anyhow::Result<String> {
        let written = self
            .forge
            .put_file(branch, head, &file.path, &file.content, message, Some(blob))
            .await?;
        Ok(written)
    }

    /// Records `head` as the bot's own last commit on the request's branch.
    async fn own_head(
        &self,
        change: &mut Change,
        record: &RequestRecord,
        head: &str,
    ) -> anyhow::Result<()> {
        change.head_sha = Some(head.to_owned());
        change.updated_at = self.now();
        if !self.store.update_change(change).await? {
            anyhow::bail!("the request change of {} was rebuilt meanwhile", record.id);
        }
        Ok(())
    }
}
