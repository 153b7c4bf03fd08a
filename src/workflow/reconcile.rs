//! Reconciliation: every active grant checked against git and its provider, at start, every
//! `reconcile_interval`, and when a push removes a request file or changes a policy. A grant
//! that is no longer held is revoked at once with reason `reconcile`.
//!
//! A pass reads what it compares with once (the default branch's policies, and, when a listing
//! is due, every file under `requests/` and the grant roots in one recursive listing), then
//! pages through the active grants and what each applied, a page per query, and compares in
//! memory. Only a grant that looks no longer held is looked at again on its own, under its
//! PR's lock, before it is ended. What the listing shows that no request holds (a request or
//! grant file pushed while its webhook was lost) is removed, and an `iac` grant whose files on
//! the branch are not what it applied is revoked, as a delivered push would have done.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use chrono::{DateTime, Utc};

use super::Workflow;
use super::revocation::ids;
use crate::comment;
use crate::forge::{Actor, PushedCommit, Thread};
use crate::grant::{GrantSpec, Providers};
use crate::names::RequestId;
use crate::policy::{PolicySet, ProviderKind, Role};
use crate::store::{AppliedGrant, Granted, JobKind, RequestRecord};
use crate::store::{RequestState, RevokeReason};

/// Active grants read per query during a pass.
const PAGE: u32 = 1000;

/// What a reconciliation compares grants with, read once: the default branch and its policies.
pub(super) struct Baseline {
    pub(super) default: String,
    /// `None` when the policies do not load: a broken policy says nothing about any grant.
    policies: Option<PolicySet>,
}

impl Baseline {
    /// The role of `record` as the policy defines it now (`None` when it is gone, or when the
    /// policies do not load).
    fn role_of(&self, record: &RequestRecord) -> Option<&Role> {
        self.policies
            .as_ref()?
            .get(record.environment.as_str())?
            .roles
            .get(&record.role)
    }

    /// Whether a valid policy no longer has the role of `record`.
    fn role_removed(&self, record: &RequestRecord) -> bool {
        self.policies.as_ref().is_some_and(|p| {
            p.get(record.environment.as_str())
                .is_none_or(|policy| !policy.roles.contains_key(&record.role))
        })
    }
}

/// The files under `requests/` and the grant roots on the default branch, listed once a pass;
/// or, while the push webhooks since the last listing say everything that left the branch
/// (see [`super::cache`]), not read at all.
#[derive(Default)]
struct Listings {
    /// Each listed file's blob id, by path.
    files: BTreeMap<String, String>,
    /// The listing shows every file (GitHub's one tree can be cut short).
    whole: bool,
    /// Request directories listed on their own, for a listing cut short (path to blob id).
    dirs: HashMap<String, BTreeMap<String, String>>,
    /// The pushes were handled without a gap: every grant still active is still listed.
    pushes_suffice: bool,
    /// The listed files that active grants hold (their request files and applied files).
    held: HashSet<String>,
    /// Request and grant files of active grants that differ on the branch from what was merged.
    changed: Vec<String>,
}

/// Who a change found by a listing is said to be by: the push that made it was never seen.
fn unknown_pusher() -> Actor {
    Actor {
        id: 0,
        login: "ghost".to_owned(),
        is_bot: false,
    }
}

impl Workflow {
    /// Reads the default branch and its policies (once per pass or push).
    pub(super) async fn baseline(&self) -> anyhow::Result<Baseline> {
        let (default, policies) = self.load_policies().await?;
        Ok(Baseline {
            default,
            policies: policies.ok(),
        })
    }

    /// Every active grant checked against git (at start and then periodically): a missed
    /// webhook cannot leave a grant whose request file is gone. Approved requests without a
    /// merge job get one, active grants without a revoke job one at their expiry, and requests
    /// stuck in `Revoking` their revoke job back, due now.
    pub async fn reconcile_all(&self) -> anyhow::Result<()> {
        // First what needs only the database: a forge that is down, or one grant that cannot
        // be checked, must not keep a revoke from being resumed.
        for record in self.own_requests(Some(RequestState::Revoking)).await? {
            if self.store.resume_revoke(&record.id, self.now()).await? {
                self.wake_jobs.wake(JobKind::Revoke.lane());
            }
        }
        self.repair_missing_jobs().await?;
        // Read afresh: this pass is what catches a policy pushed while no webhook came.
        let (default, policies) = self.refresh_policies().await?;
        let baseline = Baseline {
            default,
            policies: policies.ok(),
        };
        self.reconcile_active(&baseline).await?;
        self.remove_orphaned_grants().await
    }

    /// What a crash (or a forge error) between two writes of a step can leave: an approved
    /// request whose merge job was never written is approved again (idempotent), an active
    /// grant without a revoke job gets one at its expiry. One query each finds them; only those
    /// are looked at on their own.
    async fn repair_missing_jobs(&self) -> anyhow::Result<()> {
        // A page at a time until a page is not full: a backlog larger than a page (a long
        // outage, a restore) is repaired in this pass, not a page per `reconcile_interval`.
        // A page that repaired nothing stops the pass: what is left is another workflow's, or
        // cannot be repaired (and is not read again and again).
        loop {
            let (found, repaired) = self.repair_missing_merge_jobs().await?;
            if found < PAGE as usize || repaired == 0 {
                break;
            }
        }
        loop {
            let (found, repaired) = self.repair_missing_revoke_jobs().await?;
            if found < PAGE as usize || repaired == 0 {
                break;
            }
        }
        Ok(())
    }

    /// One page of approved requests without a merge job, approved again: (found, repaired).
    async fn repair_missing_merge_jobs(&self) -> anyhow::Result<(usize, usize)> {
        let approved = (RequestState::Approved, JobKind::Merge);
        let page = self
            .store
            .requests_without_job(approved.0, approved.1, PAGE)
            .await?;
        let mut repaired = 0;
        for found in &page {
            if !self.owns(found) {
                continue;
            }
            // Read again under the PR's lock: the approval step may be between its writes.
            let guard = self.lock_pr(found.pr_number).await?;
            let again = self.approve_again_without_merge_job(&found.id);
            repaired += usize::from(super::pr_lock::while_held(Some(&guard), again).await?);
        }
        Ok((page.len(), repaired))
    }

    /// Approves request `id` again if it is approved and has no merge job; `true` if so.
    async fn approve_again_without_merge_job(&self, id: &RequestId) -> anyhow::Result<bool> {
        let Some(record) = self.store.get_request(id).await? else {
            return Ok(false);
        };
        let jobs = self.store.jobs_for_request(&record.id).await?;
        if record.state != RequestState::Approved || jobs.iter().any(|j| j.kind == JobKind::Merge) {
            return Ok(false);
        }
        tracing::warn!(request = %record.id, "approved without a merge job; approving again");
        let approved_by = record.approved_by.clone();
        self.approve(record, approved_by).await?;
        Ok(true)
    }

    /// One page of active grants without a revoke job, each given one at its expiry:
    /// (found, repaired).
    async fn repair_missing_revoke_jobs(&self) -> anyhow::Result<(usize, usize)> {
        let page = self
            .store
            .requests_without_job(RequestState::Active, JobKind::Revoke, PAGE)
            .await?;
        let mut repaired = 0;
        for record in page.iter().filter(|r| self.owns(r)) {
            if let Some(expires_at) = record.expires_at {
                tracing::warn!(request = %record.id, "an active grant without a revoke job; scheduling it");
                // Only while it is still active: an early revoke since the page was read
                // moved its job to now, and must not be put back to the expiry.
                let now = self.now();
                if self
                    .store
                    .keep_revoke_at(&record.id, expires_at, now)
                    .await?
                {
                    repaired += 1;
                    if expires_at <= now {
                        self.wake_jobs.wake(JobKind::Revoke.lane());
                    }
                }
            }
        }
        Ok((page.len(), repaired))
    }

    /// Every active grant checked against git and the policies, a page at a time.
    pub(super) async fn reconcile_active(&self, baseline: &Baseline) -> anyhow::Result<()> {
        let (started, now) = (self.caches.listing_started(), self.now());
        let mut listings = match self.caches.listing_needed(now) {
            true => self.list_watched(baseline).await?,
            false => Listings {
                pushes_suffice: true,
                ..Listings::default()
            },
        };
        let mut failed = 0;
        let mut after: Option<RequestId> = None;
        loop {
            let page = self.store.active_page(after.as_ref(), PAGE).await?;
            let Some(last) = page.last() else { break };
            after = Some(last.record.id.clone());
            for granted in page.iter().filter(|g| self.owns(&g.record)) {
                // One grant that cannot be checked (a cloud call failing) must not stop the rest.
                if let Err(err) = self.screen(granted, baseline, &mut listings).await {
                    tracing::warn!(request = %granted.record.id, error = %format!("{err:#}"), "cannot reconcile this grant now");
                    failed += 1;
                }
            }
        }
        anyhow::ensure!(failed == 0, "{failed} grant(s) could not be reconciled");
        if !listings.pushes_suffice {
            self.remove_unheld_listed(&listings, now).await?;
            let changed = PushedCommit {
                id: String::new(),
                message: String::new(),
                added: Vec::new(),
                removed: Vec::new(),
                modified: std::mem::take(&mut listings.changed),
            };
            self.revoke_tampered_grants(&[changed], &unknown_pusher())
                .await?;
            // Every grant was compared with a listing (or there was none to compare).
            self.caches.listing_done(started, now);
        }
        Ok(())
    }

    /// Every file under `requests/` and the grant roots on the default branch: one recursive
    /// listing a pass, whatever is active (a file in a directory no grant uses counts too).
    async fn list_watched(&self, baseline: &Baseline) -> anyhow::Result<Listings> {
        let mut roots = self.grant_roots().await?;
        roots.insert("requests/".to_owned());
        let roots: Vec<String> = roots.into_iter().collect();
        let (files, whole) = self
            .forge
            .list_default_tree(&baseline.default, &roots)
            .await?;
        Ok(Listings {
            files,
            whole,
            ..Listings::default()
        })
    }

    /// Request and grant files that a pass's listing shows and no request of the bot holds on
    /// the default branch: pushed there by someone whose push webhook never came. Removed as
    /// any file that lands without the bot, at no cost in forge calls beyond the listing.
    /// A file whose removal was built since the listing (`listed_at`) is left to that removal.
    async fn remove_unheld_listed(
        &self,
        listings: &Listings,
        listed_at: DateTime<Utc>,
    ) -> anyhow::Result<()> {
        let mut unheld = Vec::new();
        for path in listings.files.keys() {
            if !listings.held.contains(path) && !self.held_on_main(path).await? {
                unheld.push(path);
            }
        }
        let pusher = "someone whose push webhook never came";
        self.remove_in_groups(&unheld, pusher, Some(listed_at))
            .await
    }

    /// Whether `path` may be on the default branch: the request file itself, or a grant file
    /// applied for it (planned right before its merge), of a request that is merging, granted,
    /// being revoked, or revoked with its revert still to land. Any other file that names a
    /// merging request is not its: the merge brings only what was planned.
    async fn held_on_main(&self, path: &str) -> anyhow::Result<bool> {
        for id in super::lifecycle::named_ids(path) {
            // Ids are the store's keys across forges: another repository's request holds
            // nothing on this one.
            let Some(record) = self.store.get_request(&id).await? else {
                continue;
            };
            if !self.owns(&record) {
                continue;
            }
            let own = Self::request_path(&record) == path
                || (!path.starts_with("requests/") && self.applied_file(&id, path).await?);
            if own && self.may_stay(&record).await? {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Whether `path` is among the grant files request `id` applied.
    async fn applied_file(&self, id: &RequestId, path: &str) -> anyhow::Result<bool> {
        let applied = self.store.applied_grant(id).await?;
        Ok(applied.is_some_and(|a| a.files.iter().any(|f| f.path == path)))
    }

    /// Whether `record`'s files may be on the default branch: merging, granted, being
    /// revoked, or revoked with its revert still to land.
    async fn may_stay(&self, record: &RequestRecord) -> anyhow::Result<bool> {
        let id = &record.id;
        Ok(match record.state {
            RequestState::Approved | RequestState::Active | RequestState::Revoking => true,
            RequestState::Revoked => self.reverted(id).await?.is_none(),
            RequestState::Pending | RequestState::Denied | RequestState::Closed => false,
        })
    }

    /// Compares one grant with the baseline in memory (and its provider, for providers with
    /// state of their own); one that looks no longer held is checked again on its own.
    async fn screen(
        &self,
        granted: &Granted,
        baseline: &Baseline,
        listings: &mut Listings,
    ) -> anyhow::Result<()> {
        let record = &granted.record;
        let listed = self.listed(record, baseline, listings).await?;
        if let Some(applied) = &granted.applied {
            self.note_held(record, applied, baseline, listings).await?;
        }
        let held = match &granted.applied {
            Some(applied) if !baseline.role_removed(record) => {
                self.providers
                    .verify(&applied.role, &Self::spec(record), listed)
                    .await?
            }
            _ => false,
        };
        if held {
            return Ok(());
        }
        // Pushes and the periodic pass hold no PR lock, so taking one here cannot deadlock.
        // A grant no longer held is ended with the lock or without it, as a revoke is.
        let _guard = self.lock_pr(record.pr_number).await.ok();
        self.reconcile(&record.id, baseline, listed).await
    }

    /// Whether the directory listing of the default branch shows the request file of `record`.
    async fn listed(
        &self,
        record: &RequestRecord,
        baseline: &Baseline,
        listings: &mut Listings,
    ) -> anyhow::Result<bool> {
        let path = Self::request_path(record);
        if listings.pushes_suffice || listings.files.contains_key(&path) {
            return Ok(true);
        }
        if listings.whole {
            return Ok(false);
        }
        let Some((dir, _)) = path.rsplit_once('/') else {
            return Ok(false);
        };
        if !listings.dirs.contains_key(dir) {
            let files = self.forge.list_default_dir(&baseline.default, dir).await?;
            listings.dirs.insert(dir.to_owned(), files);
        }
        Ok(listings
            .dirs
            .get(dir)
            .is_some_and(|files| files.contains_key(&path)))
    }

    /// Notes the files an active grant holds on the default branch, when a listing was made:
    /// its request file and the grant files it applied, each compared by blob id with what its
    /// merge brought (an `iac` grant is its files; a request file rewritten there says a grant
    /// that is not the one given): one that differs is noted as changed.
    async fn note_held(
        &self,
        record: &RequestRecord,
        applied: &AppliedGrant,
        baseline: &Baseline,
        listings: &mut Listings,
    ) -> anyhow::Result<()> {
        if listings.pushes_suffice {
            return Ok(());
        }
        let request_path = Self::request_path(record);
        listings.held.insert(request_path.clone());
        let mut merged = Vec::new();
        if let Some(blob) = &applied.request_blob {
            merged.push((request_path, blob.clone()));
        }
        for file in &applied.files {
            listings.held.insert(file.path.clone());
            merged.push((file.path.clone(), super::change::blob_id(&file.content)?));
        }
        for (path, blob) in merged {
            if self.differs(&path, &blob, baseline, listings).await? {
                listings.changed.push(path);
            }
        }
        Ok(())
    }

    /// Whether the file at `path` on the default branch is not blob `merged`. A file the
    /// listing shows is compared without a read; one a listing cut short may have left out is
    /// read; one that is gone is not "changed" (its grant's own check sees it gone).
    async fn differs(
        &self,
        path: &str,
        merged: &str,
        baseline: &Baseline,
        listings: &Listings,
    ) -> anyhow::Result<bool> {
        let in_dir = || {
            let (dir, _) = path.rsplit_once('/')?;
            listings.dirs.get(dir)?.get(path)
        };
        if let Some(listed) = listings.files.get(path).or_else(in_dir) {
            // A symbolic link is listed with the blob of its target's name: it differs too.
            return Ok(listed != merged);
        }
        if listings.whole {
            return Ok(false);
        }
        let on_main = self
            .forge
            .read_default_file(&baseline.default, path)
            .await?;
        Ok(on_main.is_some_and(|file| file.blob_sha != merged))
    }

    /// Whether an active grant is still what git says: its request file on the default branch,
    /// its role in the policy, and (for providers with state) present where it was applied. When
    /// it is not, the grant is revoked at once with reason `reconcile`. `listed` is what a
    /// directory listing said; `false` means "not seen", and the file itself is read.
    pub(super) async fn reconcile(
        &self,
        id: &RequestId,
        baseline: &Baseline,
        listed: bool,
    ) -> anyhow::Result<()> {
        let Some(mut record) = self.store.get_request(id).await? else {
            return Ok(());
        };
        if record.state != RequestState::Active || !self.owns(&record) {
            return Ok(());
        }
        // A listing may be cut short (GitHub's contents API lists at most 1,000 files of a
        // directory): a file it does not show is read before a grant is ended over it.
        let listed = listed
            || self
                .forge
                .read_default_file(&baseline.default, &Self::request_path(&record))
                .await?
                .is_some();
        let role_removed = baseline.role_removed(&record);
        let applied = match self.store.applied_grant(id).await? {
            Some(applied) => Some(applied),
            // Merged before the applied record existed: the role as the policy defines it now.
            None => baseline.role_of(&record).map(|role| AppliedGrant {
                request_id: record.id.clone(),
                provider: role.provider.clone(),
                role: role.clone(),
                files: Vec::new(),
                request_blob: None,
                applied_at: self.now(),
            }),
        };
        let held = match &applied {
            Some(applied) if !role_removed => {
                self.providers
                    .verify(&applied.role, &Self::spec(&record), listed)
                    .await?
            }
            _ => false,
        };
        if held {
            return Ok(());
        }
        let why = match &applied {
            Some(applied) if listed && !role_removed => {
                // The provider no longer holds it as applied: say what differs, then end it.
                let drift = self
                    .providers
                    .drift(&applied.role, &Self::spec(&record))
                    .await?;
                self.forge
                    .note(
                        Thread::Change(record.pr_number),
                        &comment::drift_comment(&drift),
                    )
                    .await?;
                "grant_drift"
            }
            _ if role_removed => "role_removed",
            _ => "request_removed_by_hand",
        };
        tracing::warn!(request = %id, why, "an active grant is no longer held; revoking");
        self.metrics
            .inc("breakglass_anomalies_total", format!("kind=\"{why}\""));
        record.state = RequestState::Revoking;
        record.revoke_reason = Some(RevokeReason::Reconcile);
        self.store.update_request(&mut record, self.now()).await?;
        self.schedule(JobKind::Revoke, id, self.now()).await
    }

    /// Grants a provider still holds although no request is active for them (placed by hand,
    /// or left by a bug): found on every principal breakglass has granted to, and revoked. Only
    /// providers with state of their own can hold one (`aws-iam`): their grants are read in one
    /// query, never every request ever made.
    async fn remove_orphaned_grants(&self) -> anyhow::Result<()> {
        let mut principals = BTreeSet::new();
        let aws = ProviderKind::AwsIam.to_string();
        for granted in self.store.grants_of_provider(&aws, None).await? {
            let (Some(applied), true) = (&granted.applied, self.owns(&granted.record)) else {
                continue;
            };
            let spec = Self::spec(&granted.record);
            match Providers::aws_principal(&applied.role, &spec) {
                Some(principal) if principals.insert(principal.clone()) => {}
                _ => continue,
            }
            self.revoke_orphans_on(applied, &spec).await?;
        }
        Ok(())
    }

    /// Revokes the grants on the principal of `applied` that no live request holds.
    async fn revoke_orphans_on(
        &self,
        applied: &AppliedGrant,
        spec: &GrantSpec,
    ) -> anyhow::Result<()> {
        for id in self.providers.placed(&applied.role, spec).await? {
            let known = RequestId::try_from(id.clone()).ok();
            let holder = match &known {
                Some(id) => self.store.get_request(id).await?,
                None => None,
            };
            if holder.is_some_and(|r| {
                matches!(
                    r.state,
                    RequestState::Approved | RequestState::Active | RequestState::Revoking
                )
            }) {
                continue;
            }
            tracing::warn!(request = %id, "a grant no active request holds; revoking it");
            self.metrics
                .inc("breakglass_anomalies_total", "kind=\"orphaned_grant\"");
            let orphan = GrantSpec {
                id: id.clone(),
                expires_at: String::new(),
                ..spec.clone()
            };
            // A grant the bot recorded is taken back as it was applied (a managed policy it
            // attached, say), not as the principal's other grant that led here was.
            let own = match &known {
                Some(id) => self.store.applied_grant(id).await?,
                None => None,
            };
            let applied = own.as_ref().unwrap_or(applied);
            let others = ids(&self.sharing_grants(&id, applied, &orphan).await?);
            self.providers
                .revoke_orphan(&applied.role, &orphan, &others)
                .await?;
            self.restore_shared(&id, applied, &orphan).await?;
        }
        Ok(())
    }
}
