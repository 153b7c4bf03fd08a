//! A push by someone else than the bot that changes the files of an active grant on the
//! default branch: the request file (what `requests/` says is granted) or a grant file (for
//! `iac`, the grant itself, which the repo's pipeline applies). Nothing on the default branch
//! changes a grant but the bot's own merges, so such a grant is revoked now, with reason
//! `reconcile`: its revert removes the changed files in full, and the comment names the pusher.

use std::collections::{BTreeMap, BTreeSet};

use super::Workflow;
use crate::comment;
use crate::forge::{Actor, PushedCommit, Thread};
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
        let mut owned: BTreeMap<String, (RequestRecord, Vec<String>)> = BTreeMap::new();
        let active = self.store.list_requests(Some(RequestState::Active)).await?;
        // Ids are the store's keys across forges: another repository's grant owns nothing here.
        for record in active.into_iter().filter(|r| self.owns(r)) {
            let request_path = RequestPath {
                environment: record.environment.clone(),
                id: record.id.clone(),
            }
            .to_repo_path();
            let grant_files = match self.store.applied_grant(&record.id).await? {
                Some(applied) => applied.files.into_iter().map(|f| f.path).collect(),
                None => Vec::new(),
            };
            let mine: Vec<String> = paths
                .iter()
                .filter(|p| ***p == request_path || grant_files.contains(**p))
                .map(|p| (*p).clone())
                .collect();
            if !mine.is_empty() {
                owned.insert(record.id.to_string(), (record, mine));
            }
        }
        Ok(owned.into_values().collect())
    }
}
