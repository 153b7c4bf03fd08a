//! A push by someone else than the bot that changes the files of an active grant on the
//! default branch: the request file (what `requests/` says is granted) or a grant file (for
//! `iac`, the grant itself, which the repo's pipeline applies). Nothing on the default branch
//! changes a grant but the bot's own merges, so such a grant is revoked now, with reason
//! `reconcile`: its revert removes the changed files in full, and the comment names the pusher.

use std::collections::{BTreeMap, BTreeSet};

use super::Workflow;
use crate::comment;
use crate::forge::{Actor, PushedCommit, Thread};
use crate::names::RequestId;
use crate::request::RequestPath;
use crate::store::{EventKind, JobKind, RequestRecord, RequestState, RevokeReason};

impl Workflow {
    /// Revokes every active grant whose request or grant files `commits` modified.
    pub(super) async fn revoke_tampered_grants(
        &self,
        commits: &[PushedCommit],
        pusher: &Actor,
    ) -> anyhow::Result<()> {
        let roots = self.grant_roots().await?;
        let modified: BTreeSet<&String> = commits
            .iter()
            .flat_map(|c| c.modified.iter())
            .filter(|p| {
                p.starts_with("requests/") || roots.iter().any(|r| p.starts_with(r.as_str()))
            })
            .collect();
        if modified.is_empty() {
            return Ok(());
        }
        for (mut record, paths) in self.grants_of(&modified).await? {
            tracing::warn!(request = %record.id, ?paths, pusher = %pusher.login, "an active grant's files were changed on the default branch without breakglass; revoking it");
            self.metrics
                .inc("breakglass_anomalies_total", "kind=\"grant_files_changed\"");
            self.record_event(
                EventKind::Tampering,
                Some(&record.id),
                super::events::actor(pusher),
                serde_json::json!({ "changed_on_default_branch": paths }),
            )
            .await?;
            if record.state == RequestState::Active {
                record.state = RequestState::Revoking;
                record.revoke_reason = Some(RevokeReason::Reconcile);
                self.store.update_request(&mut record, self.now()).await?;
            }
            self.schedule(JobKind::Revoke, &record.id, self.now())
                .await?;
            self.forge
                .note(
                    Thread::Change(record.pr_number),
                    &comment::grant_files_changed_comment(&pusher.login, &paths),
                )
                .await?;
        }
        Ok(())
    }

    /// The active grants that own any of `paths`, each with the paths of its own among them:
    /// its request file, or a grant file rendered for it.
    async fn grants_of(
        &self,
        paths: &BTreeSet<&String>,
    ) -> anyhow::Result<Vec<(RequestRecord, Vec<String>)>> {
        let (request_files, grant_files): (Vec<&String>, Vec<&String>) =
            paths.iter().partition(|p| p.starts_with("requests/"));
        let mut owned: BTreeMap<String, (RequestRecord, Vec<String>)> = BTreeMap::new();
        let mut own = |record: &RequestRecord, path: &String| {
            owned
                .entry(record.id.to_string())
                .or_insert_with(|| (record.clone(), Vec::new()))
                .1
                .push(path.clone());
        };
        // A request file names its grant: looked up by its id, not among every grant.
        for path in request_files {
            let Some(parsed) = RequestPath::parse(path) else {
                continue;
            };
            if let Some(record) = self.store.get_request(&parsed.id).await?
                && self.active_here(&record)
                && Self::request_path(&record) == *path
            {
                own(&record, path);
            }
        }
        if grant_files.is_empty() {
            return Ok(owned.into_values().collect());
        }
        // A grant file may be at any path its role's `output` renders (it need not name its
        // request): matched against what each active grant applied, a page at a time.
        let mut after: Option<RequestId> = None;
        loop {
            let page = self.store.active_page(after.as_ref(), PAGE).await?;
            let Some(last) = page.last() else { break };
            after = Some(last.record.id.clone());
            for granted in page.iter().filter(|g| self.active_here(&g.record)) {
                let applied = granted.applied.iter().flat_map(|a| a.files.iter());
                for file in applied {
                    if let Some(path) = grant_files.iter().find(|p| ***p == file.path) {
                        own(&granted.record, path);
                    }
                }
            }
        }
        Ok(owned.into_values().collect())
    }

    /// Whether `record` is an active grant of this repository (ids are the store's keys across
    /// forges: another repository's grant owns nothing here).
    fn active_here(&self, record: &RequestRecord) -> bool {
        record.state == RequestState::Active && self.owns(record)
    }
}

/// Active grants read per query when grant files are matched.
const PAGE: u32 = 1_000;
