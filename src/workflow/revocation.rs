//! Revocation, in two jobs. `revoke` (the revocation lane, due at the expiry) ends the access
//! on time: the provider revoke first, then the request's end (`Revoked`, its `Revoke` event
//! and the revert job) in one transaction; no forge call. `revert` (the forge lane) follows:
//! it merges the revert PR through the guard, deletes the bot's branches and tells the
//! requester. Forge work may be slow, rate-limited or refused and is retried forever, but it
//! never holds a revoke back, its own or anyone else's.

use std::collections::HashMap;
use std::sync::Arc;

use anyhow::Context as _;
use chrono::{DateTime, Utc};

use super::events::new_event;
use super::guard::{MergePlan, Refusal};
use super::trailers;
use super::{Workflow, Workflows};
use crate::comment;
use crate::forge::Thread;
use crate::grant::{GrantSpec, Providers};
use crate::names::RequestId;
use crate::policy::ProviderKind;
use crate::store::{
    AppliedGrant, Change, ChangeKind, EventKind, Granted, JobKind, NewEvent, Store,
};
use crate::store::{RequestRecord, RequestState, RevokeReason, StoreError};

/// How one due revoke ended, for the lane to settle its job.
#[derive(Debug)]
pub enum RevokeOutcome {
    /// The grant was revoked; its job went with the revoke's transaction.
    Revoked,
    /// Nothing to do (revoked already, never granted, or extended meanwhile): the job is done.
    Nothing,
    /// It failed, and is retried on its own (the request stays `Revoking` if it got that far).
    Failed(anyhow::Error),
    /// Other work on its PR is in progress here (a forge job, a webhook): run it on its own,
    /// once that is done, as any job of that PR.
    Busy,
}

/// Whether the caller holds the PR locks of the grants of a batch already.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Locks {
    /// One grant, run as a job under its PR's lock.
    Held,
    /// A batch takes each PR's lock if it is free, and leaves the grants of busy ones out.
    Take,
}

/// Provider revokes in flight at once within a batch.
const PROVIDER_CALLS: usize = 32;

/// A grant of the batch on its way to the end, with the workflow that owns it.
struct Due {
    index: usize,
    workflow: Workflow,
    granted: Granted,
}

impl Workflows {
    /// Revokes the due grants `ids` as one batch (see [`revoke_batch`]); one outcome per id,
    /// in order. A failure of the batch itself (the database) fails each of them; a record
    /// of the batch that cannot be read (stored by an older version under other rules, or
    /// damaged) must not keep the others live: then each is revoked on its own.
    pub async fn revoke_due(&self, ids: &[RequestId]) -> Vec<RevokeOutcome> {
        let workflows: Vec<&Workflow> = self.iter().collect();
        match revoke_batch(&workflows, ids, Locks::Take).await {
            Ok(outcomes) => outcomes,
            Err(err) if ids.len() > 1 && StoreError::is_unreadable_record(&err) => {
                tracing::error!(error = %format!("{err:#}"), batch = ids.len(), "a revocation batch holds a record that cannot be read; revoking each grant on its own");
                let mut outcomes = Vec::with_capacity(ids.len());
                for id in ids {
                    let alone = revoke_batch(&workflows, std::slice::from_ref(id), Locks::Take);
                    outcomes.push(match alone.await {
                        Ok(mut one) => one.pop().unwrap_or(RevokeOutcome::Nothing),
                        Err(err) => RevokeOutcome::Failed(err),
                    });
                }
                outcomes
            }
            // Alone, its error as it is (a record that cannot be read is told apart).
            Err(err) if ids.len() == 1 => vec![RevokeOutcome::Failed(err)],
            Err(err) => ids
                .iter()
                .map(|_| RevokeOutcome::Failed(anyhow::anyhow!("{err:#}")))
                .collect(),
        }
    }
}

impl Workflow {
    /// Revokes one due grant, under its PR's lock: a batch of one.
    pub(super) async fn job_revoke(&self, id: &RequestId) -> anyhow::Result<()> {
        let outcome = revoke_batch(&[self], std::slice::from_ref(id), Locks::Held).await?;
        match outcome.into_iter().next() {
            Some(RevokeOutcome::Failed(err)) => Err(err),
            _ => Ok(()),
        }
    }
}

/// Ends the due grants `ids` in three steps whatever their number: one read of the requests and
/// what each applied; one transaction marking them `Revoking` (so that an extension racing
/// the revoke, here or on another replica, loses its lock instead of keeping a grant the
/// provider no longer holds); the provider revokes, concurrently; one transaction recording
/// the end of those that went through. A revoke interrupted anywhere is run again from the
/// `Revoking` state, and the optimistic lock keeps a second run from recording anything.
///
/// Within the process, a revoke holds its PR's lock like any work on that PR (across replicas
/// the optimistic lock orders them). A batch never waits for one: a grant whose PR lock is
/// taken (a forge job in progress, slow maybe) is left out as [`RevokeOutcome::Busy`] and
/// waits on its own, so that no forge call holds back the rest of the batch.
async fn revoke_batch(
    workflows: &[&Workflow],
    ids: &[RequestId],
    locks: Locks,
) -> anyhow::Result<Vec<RevokeOutcome>> {
    let Some(first) = workflows.first() else {
        anyhow::bail!("no workflow to revoke with");
    };
    let store = &first.store;
    let mut outcomes: Vec<Option<RevokeOutcome>> = ids.iter().map(|_| None).collect();
    let loaded: HashMap<RequestId, Granted> = store
        .granted_by_ids(ids)
        .await?
        .into_iter()
        .map(|g| (g.record.id.clone(), g))
        .collect();
    let now = first.now();
    let Sorted {
        held,
        marking,
        mut due,
        not_yet,
    } = sort_batch(workflows, ids, loaded, locks, now, &mut outcomes);
    // Claimed as due, yet not due by the clock read now (it stepped back): the job stays, at
    // the expiry, instead of being done with the grant still held. After an extension it is
    // at that time already; after an early revoke since the read, it stays as that set it.
    for (id, expires_at) in not_yet {
        store.keep_revoke_at(&id, expires_at, now).await?;
    }
    due.extend(mark_revoking(store, marking, now, &mut outcomes).await?);
    let ends = revoke_at_providers(due, &mut outcomes).await;
    record_ends(store, ends, &mut outcomes).await?;
    drop(held);
    Ok(outcomes
        .into_iter()
        .map(|o| o.unwrap_or(RevokeOutcome::Nothing))
        .collect())
}

/// The grants of a batch sorted by what each needs next, with the PR locks the batch took.
struct Sorted<'w> {
    held: HeldLocks<'w>,
    /// Active grants past their expiry: stored as `Revoking` first.
    marking: Vec<Due>,
    /// Grants `Revoking` already: straight to their provider revoke.
    due: Vec<Due>,
    /// Active grants whose expiry is still ahead, with it.
    not_yet: Vec<(RequestId, DateTime<Utc>)>,
}

/// Sorts the grants `loaded` of `ids` into those to mark `Revoking` and those due at their
/// provider; the others get their outcome here (nothing to do, served by no workflow of this
/// service, or their PR busy).
fn sort_batch<'w>(
    workflows: &[&'w Workflow],
    ids: &[RequestId],
    mut loaded: HashMap<RequestId, Granted>,
    locks: Locks,
    now: DateTime<Utc>,
    outcomes: &mut [Option<RevokeOutcome>],
) -> Sorted<'w> {
    let mut held = HashMap::new();
    let (mut marking, mut due, mut not_yet) = (Vec::new(), Vec::new(), Vec::new());
    for (index, id) in ids.iter().enumerate() {
        let Some(mut granted) = loaded.remove(id) else {
            outcomes[index] = Some(RevokeOutcome::Nothing);
            continue;
        };
        let owner = workflows.iter().position(|w| w.owns(&granted.record));
        let Some((owner, workflow)) = owner.map(|at| (at, workflows[at])) else {
            outcomes[index] = Some(RevokeOutcome::Failed(not_served(&granted.record)));
            continue;
        };
        if locks == Locks::Take && !workflow.try_lock_pr(owner, granted.record.pr_number, &mut held)
        {
            outcomes[index] = Some(RevokeOutcome::Busy);
            continue;
        }
        let target = match next_step(&mut granted.record, now) {
            Some(Step::Mark) => &mut marking,
            Some(Step::Revoke) => &mut due,
            Some(Step::NotYet(at)) => {
                not_yet.push((id.clone(), at));
                outcomes[index] = Some(RevokeOutcome::Nothing);
                continue;
            }
            None => {
                outcomes[index] = Some(RevokeOutcome::Nothing);
                continue;
            }
        };
        target.push(Due {
            index,
            workflow: workflow.clone(),
            granted,
        });
    }
    Sorted {
        held,
        marking,
        due,
        not_yet,
    }
}

/// The error of a grant whose forge and repository no workflow of this service serves.
fn not_served(record: &RequestRecord) -> anyhow::Error {
    anyhow::anyhow!(
        "request {} is on {} {}, which this service does not serve",
        record.id,
        record.forge,
        record.repository
    )
}

/// What a due grant needs next.
enum Step {
    /// Marking `Revoking`, then its provider revoke.
    Mark,
    /// Its provider revoke (it is `Revoking` already).
    Revoke,
    /// Nothing yet: it expires at this time.
    NotYet(DateTime<Utc>),
}

/// What the due grant `record` needs next at `now`; `None` when nothing. An active grant past
/// its expiry is set `Revoking` (reason TTL) here, to be stored so.
fn next_step(record: &mut RequestRecord, now: DateTime<Utc>) -> Option<Step> {
    match record.state {
        RequestState::Active => match record.expires_at.filter(|at| *at > now) {
            // An extension moved the expiry, or the clock stepped back since the claim.
            Some(at) => Some(Step::NotYet(at)),
            None => {
                record.state = RequestState::Revoking;
                record.revoke_reason = Some(RevokeReason::Ttl);
                Some(Step::Mark)
            }
        },
        RequestState::Revoking => Some(Step::Revoke),
        _ => None,
    }
}

/// The provider revokes of `due`: returns the grants whose revoke went through; the others
/// fail.
async fn revoke_at_providers(due: Vec<Due>, outcomes: &mut [Option<RevokeOutcome>]) -> Vec<Due> {
    for due in &due {
        // Until its provider revoke answers: a task that panicked leaves this, so the job
        // fails and is retried instead of being completed with the grant still held.
        outcomes[due.index] = Some(RevokeOutcome::Failed(anyhow::anyhow!(
            "the provider revoke of {} ended without an answer",
            due.granted.record.id
        )));
    }
    let revoked = provider_revokes(due).await;
    let mut ends = Vec::new();
    for (due, result) in revoked {
        match result {
            Ok(()) => ends.push(due),
            Err(err) => {
                count_revocation(&due.workflow, "failed");
                outcomes[due.index] = Some(RevokeOutcome::Failed(err));
            }
        }
    }
    ends
}

/// Stores the grants of `marking` as `Revoking` in one transaction; those that lost their lock
/// fail (and are retried at once, reading the new state); the rest are returned.
async fn mark_revoking(
    store: &Store,
    marking: Vec<Due>,
    now: DateTime<Utc>,
    outcomes: &mut [Option<RevokeOutcome>],
) -> anyhow::Result<Vec<Due>> {
    if marking.is_empty() {
        return Ok(marking);
    }
    let mut records: Vec<RequestRecord> =
        marking.iter().map(|d| d.granted.record.clone()).collect();
    let stored = store.begin_revokes(&mut records, now).await?;
    let mut marked = Vec::new();
    for ((mut due, record), result) in marking.into_iter().zip(records).zip(stored) {
        match result {
            Ok(()) => {
                due.granted.record = record;
                marked.push(due);
            }
            Err(err) => outcomes[due.index] = Some(RevokeOutcome::Failed(err.into())),
        }
    }
    Ok(marked)
}

/// The provider revokes of a batch, up to [`PROVIDER_CALLS`] at once. Grants placed on one
/// AWS principal go one after the other: whether a shared attachment stays is decided from
/// the grants still active when each of them runs.
async fn provider_revokes(batch: Vec<Due>) -> Vec<(Due, anyhow::Result<()>)> {
    let mut groups: HashMap<String, Vec<Due>> = HashMap::new();
    let mut alone = Vec::new();
    for due in batch {
        match aws_principal(&due.granted) {
            Some(principal) => groups.entry(principal).or_default().push(due),
            None => alone.push(vec![due]),
        }
    }
    let calls = Arc::new(tokio::sync::Semaphore::new(PROVIDER_CALLS));
    let mut running = tokio::task::JoinSet::new();
    for group in groups.into_values().chain(alone) {
        let calls = calls.clone();
        running.spawn(async move {
            let _call = calls.acquire_owned().await;
            let mut done = Vec::new();
            for mut due in group {
                let result = due.workflow.provider_revoke(&mut due.granted).await;
                done.push((due, result));
            }
            done
        });
    }
    let mut revoked = Vec::new();
    while let Some(done) = running.join_next().await {
        match done {
            Ok(done) => revoked.extend(done),
            // A revoke that panicked keeps its failed outcome (set above): its job is retried.
            Err(err) => tracing::error!(%err, "a provider revoke task failed"),
        }
    }
    revoked
}

fn aws_principal(granted: &Granted) -> Option<String> {
    let applied = granted.applied.as_ref()?;
    Providers::aws_principal(&applied.role, &Workflow::spec(&granted.record))
}

/// Records the end of each grant whose provider revoke went through, in one transaction. One
/// that lost its lock (revoked meanwhile by another run) fails and is retried at once, to find
/// nothing left to do.
async fn record_ends(
    store: &Store,
    ends: Vec<Due>,
    outcomes: &mut [Option<RevokeOutcome>],
) -> anyhow::Result<()> {
    if ends.is_empty() {
        return Ok(());
    }
    let now = ends[0].workflow.now();
    let mut rows: Vec<(RequestRecord, NewEvent)> = ends.iter().map(|d| d.end(now)).collect();
    let stored = store.record_revokes(&mut rows, now).await?;
    for (due, result) in ends.iter().zip(stored) {
        outcomes[due.index] = Some(match result {
            Ok(()) => {
                count_revocation(&due.workflow, "ok");
                RevokeOutcome::Revoked
            }
            Err(err) => RevokeOutcome::Failed(err.into()),
        });
    }
    if let Some(due) = ends.first() {
        due.workflow.wake_jobs.wake(JobKind::Revert.lane());
    }
    Ok(())
}

fn count_revocation(workflow: &Workflow, result: &str) {
    workflow.metrics.inc(
        "breakglass_revocations_total",
        format!("result=\"{result}\""),
    );
}

impl Due {
    /// The request `Revoked` at `now`, with its `Revoke` event.
    fn end(&self, now: DateTime<Utc>) -> (RequestRecord, NewEvent) {
        let record = &self.granted.record;
        let reason = record.revoke_reason.unwrap_or(RevokeReason::Ttl);
        let event = new_event(
            EventKind::Revoke,
            Some(&record.id),
            record.revoked_by.clone(),
            serde_json::json!({
                "reason": reason.to_string(),
                "provider": self.granted.applied.as_ref().map(|a| a.provider.clone()),
                "revert_pr": record.revert_pr_number,
            }),
            self.workflow.forge_kind(),
        );
        let mut revoked = record.clone();
        revoked.state = RequestState::Revoked;
        revoked.revoked_at = Some(now);
        (revoked, event)
    }
}

/// The request ids of `grants`.
pub(super) fn ids(grants: &[Granted]) -> Vec<String> {
    grants.iter().map(|g| g.record.id.to_string()).collect()
}

/// The PR locks a batch holds, by workflow (each has its own) and stripe.
type HeldLocks<'w> = HashMap<(usize, usize), tokio::sync::MutexGuard<'w, ()>>;

impl Workflow {
    /// Takes the lock of PR `number` into `held` unless someone else holds it; `true` when
    /// the batch holds it (it may have taken it for another PR of the same stripe). `owner`
    /// tells this workflow's locks from those of the other forge's.
    fn try_lock_pr<'w>(&'w self, owner: usize, number: u64, held: &mut HeldLocks<'w>) -> bool {
        let stripe = (number % self.stripes.len() as u64) as usize;
        let key = (owner, stripe);
        if held.contains_key(&key) {
            return true;
        }
        match self.stripes[stripe].try_lock() {
            Ok(guard) => {
                held.insert(key, guard);
                true
            }
            Err(_) => false,
        }
    }

    /// Takes the access of a `Revoking` grant back at its provider. A grant without a record of
    /// what it applied (merged before that record existed) is revoked as its role is defined
    /// now, and `granted.applied` says so afterwards.
    pub(super) async fn provider_revoke(&self, granted: &mut Granted) -> anyhow::Result<()> {
        let record = &granted.record;
        if granted.applied.is_none() {
            granted.applied = self.applied(record).await?;
        }
        let Some(applied) = &granted.applied else {
            tracing::warn!(request = %record.id, "no record of what was applied; nothing to revoke at a provider");
            return Ok(());
        };
        let spec = Self::spec(record);
        let others = ids(&self
            .sharing_grants(record.id.as_str(), applied, &spec)
            .await?);
        self.providers
            .revoke_with(&applied.role, &spec, &others)
            .await?;
        self.restore_shared(record.id.as_str(), applied, &spec)
            .await
    }

    /// Puts back what the grants sharing this one's managed-policy attachment hold, once it
    /// was taken back. The revoke decided on what the principal held when it looked, and its
    /// detach can reach IAM after another grant's apply attached the (still attached) policy
    /// again: that grant would be left without its access, and reconciliation would then end
    /// it as drift. Each grant still active gets the attachment back where its expiry Deny is
    /// in place, and nothing else is written: its record was read before, and an extension of
    /// it meanwhile writes a newer expiry that a full apply from this read would undo. One
    /// that ended meanwhile is taken back, as after its own grant step, so nothing is left
    /// attached.
    pub(super) async fn restore_shared(
        &self,
        except: &str,
        applied: &AppliedGrant,
        spec: &GrantSpec,
    ) -> anyhow::Result<()> {
        for other in self.sharing_grants(except, applied, spec).await? {
            let Some(theirs) = &other.applied else {
                continue;
            };
            let id = &other.record.id;
            if let Err(err) = self
                .providers
                .reattach(&theirs.role, &Self::spec(&other.record))
                .await
            {
                if err.is_retryable() {
                    return Err(err.into());
                }
                // Its own check (reconciliation's drift) says what is wrong with it.
                tracing::warn!(request = %id, error = %err, "a grant sharing a revoked attachment could not be applied again");
                continue;
            }
            tracing::info!(request = %id, revoked = %except, "attachment put back after a revoke of the one it shares");
            Box::pin(self.taken_back_if_ended(id)).await?;
        }
        Ok(())
    }

    /// The other active grants that share this grant's managed-policy attachment (aws-iam):
    /// revoking this one must leave theirs in place. One query over the active aws-iam grants.
    pub(super) async fn sharing_grants(
        &self,
        except: &str,
        applied: &AppliedGrant,
        spec: &GrantSpec,
    ) -> anyhow::Result<Vec<Granted>> {
        let Some(mine) = Providers::aws_attachment(&applied.role, spec) else {
            return Ok(Vec::new());
        };
        let aws = ProviderKind::AwsIam.to_string();
        let active = self
            .store
            .grants_of_provider(&aws, Some(RequestState::Active))
            .await?;
        Ok(active
            .into_iter()
            .filter(|other| other.record.id.as_str() != except && self.owns(&other.record))
            .filter(|other| {
                other.applied.as_ref().is_some_and(|theirs| {
                    Providers::aws_attachment(&theirs.role, &Self::spec(&other.record)).as_ref()
                        == Some(&mine)
                })
            })
            .collect())
    }

    /// After the revoke: lands the removal of the request's files, deletes the bot's branches,
    /// logs the revert and then tells the requester. Each step is re-runnable; a revert that
    /// was logged already is done, except for its note when the step was cut off before it.
    pub(super) async fn job_revert(&self, id: &RequestId) -> anyhow::Result<()> {
        let Some(mut record) = self.store.get_request(id).await? else {
            return Ok(());
        };
        if record.state != RequestState::Revoked {
            return Ok(());
        }
        let reason = record.revoke_reason.unwrap_or(RevokeReason::Ttl);
        if let Some(merged) = self.reverted(id).await? {
            // Logged by an earlier run, which may have been cut off before its note.
            return self.tell_revoked(&record, reason, false, merged).await;
        }
        let applied = self.applied(&record).await?;
        let revert_sha = if record.expires_at.is_some() {
            self.merge_revert(&mut record, applied.as_ref(), reason)
                .await?
        } else {
            None
        };
        for kind in [ChangeKind::Revert, ChangeKind::Request] {
            // A branch the bot merged is gone already where the forge drops merged branches.
            let merged = match kind {
                ChangeKind::Request => record.merge_sha.is_some(),
                _ => revert_sha.is_some(),
            };
            if merged && self.forge_drops_merged_branches().await? {
                continue;
            }
            if let Some(change) = self.store.get_change(record.id.as_str(), kind).await? {
                self.forge.delete_branch(&change.branch).await?;
            }
        }
        // Logged before the note: this run is the one that logged it, so nobody said it yet;
        // a run cut off in between runs again and reads the thread (above).
        let first = self
            .record_event_once(
                EventKind::Revert,
                &record.id,
                None,
                serde_json::json!({
                    "reason": reason.to_string(),
                    "revert_pr": record.revert_pr_number,
                    "revert_sha": revert_sha,
                }),
            )
            .await?;
        self.tell_revoked(&record, reason, first, revert_sha.is_some())
            .await
    }

    /// The revoked note on the request PR, said once (after the granted note, if that one is
    /// still due). `unsaid`: the revert was logged by this very run, so the revoked note was
    /// not said; the thread is read only when that is not known, or when the grant step
    /// (which says "granted" after its own log) has not finished.
    async fn tell_revoked(
        &self,
        record: &RequestRecord,
        reason: RevokeReason,
        unsaid: bool,
        reverted: bool,
    ) -> anyhow::Result<()> {
        let said = self.say_revoked(record, reason, unsaid, reverted).await;
        super::lifecycle::gone_is_said(record, said)
    }

    /// [`Self::tell_revoked`] on the request's PR.
    async fn say_revoked(
        &self,
        record: &RequestRecord,
        reason: RevokeReason,
        unsaid: bool,
        reverted: bool,
    ) -> anyhow::Result<()> {
        let revert_pr = record.revert_pr_number.map(|n| self.forge.change_label(n));
        let revert = match (reverted, &revert_pr) {
            (true, Some(pr)) => comment::RevertNote::Merged(pr),
            _ if record.expires_at.is_some() => comment::RevertNote::FilesGone,
            _ => comment::RevertNote::Nothing,
        };
        let text = comment::revoked_comment(
            record.requester_login.as_str(),
            record.environment.as_str(),
            record.role.as_str(),
            record.revoked_at.unwrap_or_else(|| self.now()),
            &reason.to_string(),
            record.revoked_by.as_ref().map(|by| by.login.as_str()),
            revert,
        );
        let thread = Thread::Change(record.pr_number);
        if unsaid && !self.grant_note_pending(&record.id).await? {
            self.forge.note(thread, &text).await?;
            return Ok(());
        }
        let [granted_said, revoked_said] = self
            .said(thread, [super::once::GRANTED, super::once::REVOKED])
            .await?;
        // A grant logged but never announced (its step cut off, then revoked early) is
        // announced first: "granted" never comes after "revoked".
        if !granted_said && !revoked_said {
            let logged = self.store.events_for_request(&record.id).await?;
            if logged.iter().any(|e| e.kind == EventKind::Grant) {
                self.forge.note(thread, &self.granted_text(record)?).await?;
            }
        }
        if !revoked_said {
            self.forge.note(thread, &text).await?;
        }
        Ok(())
    }

    /// Whether the granted note of `id` may still be unsaid: its grant step, which says it
    /// after logging the grant and is done only once it said it, is still queued.
    async fn grant_note_pending(&self, id: &RequestId) -> anyhow::Result<bool> {
        let jobs = self.store.jobs_for_request(id).await?;
        Ok(jobs.iter().any(|job| job.kind == JobKind::Grant))
    }

    /// Whether the revert of `id` was logged already.
    /// `Some(merged)` once logged: whether that revert merged a change (a revert with nothing
    /// left to remove on the default branch merges none).
    pub(super) async fn reverted(&self, id: &RequestId) -> anyhow::Result<Option<bool>> {
        let events = self.store.events_for_request(id).await?;
        Ok(events
            .iter()
            .find(|e| e.kind == EventKind::Revert)
            .map(|e| !e.data["revert_sha"].is_null()))
    }

    /// Lands the removal of the request's files. The existing revert PR is merged through the
    /// guard; if anyone made it unmergeable (closed, draft, pushed to, conflicting) a fresh
    /// change of the bot's own is built and merged instead; if that is refused too, the bot
    /// says so loudly and the job fails, to be retried. Nobody can hold the revocation back.
    async fn merge_revert(
        &self,
        record: &mut RequestRecord,
        applied: Option<&AppliedGrant>,
        reason: RevokeReason,
    ) -> anyhow::Result<Option<String>> {
        let (title, message) = trailers::revoke_message(record, &reason.to_string());
        let first_pr = record.revert_pr_number;
        let mut refusal = None;
        for attempt in 0..2 {
            // A revert built again (the first went elsewhere, GitLab's answer says so) is not
            // built beside the removal its PR's merge webhook asks for: one after the other,
            // the second finds nothing left to remove (see `remove_again`).
            let _one_at_a_time = match attempt {
                0 => None,
                _ => Some(self.store.removal_lock().await?),
            };
            let Some(change) = self
                .revert_change(record, applied, reason, attempt == 0)
                .await?
            else {
                return Ok(None);
            };
            let plan = MergePlan::deletion(&change, title.clone(), message.clone())?;
            match self.merge_own_or_theirs(&plan, None).await? {
                Ok(merged) => {
                    if let Some(why) = &refusal {
                        self.say_revert_replaced(record, why, first_pr, plan.pr)
                            .await?;
                    }
                    return Ok(Some(merged.sha));
                }
                Err(Refusal::Closed) if self.forge.change(plan.pr).await?.info.merged => {
                    // Merged by hand at another head: the files may still be there; rebuild.
                    refusal = Some(Refusal::Closed);
                }
                Err(why) if attempt == 0 && self.rebuilt_in_vain(record, &change, &why).await? => {
                    tracing::warn!(request = %record.id, pr = plan.pr, %why, "the forge still refuses the rebuilt revert PR; not rebuilding it again");
                    refusal = Some(why);
                    break;
                }
                Err(why) => {
                    tracing::warn!(request = %record.id, pr = plan.pr, %why, "the revert PR cannot be merged; rebuilding it");
                    refusal = Some(why);
                }
            }
        }
        let refusal = refusal.context("two attempts failed")?;
        self.revert_blocked(record, &refusal).await?;
        anyhow::bail!("the revert of {} cannot be merged: {refusal}", record.id)
    }

    /// Whether rebuilding `change` once more would only open another PR the forge refuses
    /// the same way: the forge (not a person) refused it, a rebuild was refused before (the
    /// blocked revert was said), and the default branch has not moved since it was built.
    /// Branch protection the bot cannot satisfy would otherwise get a new revert PR at every
    /// retry, for as long as it lasts.
    async fn rebuilt_in_vain(
        &self,
        record: &RequestRecord,
        change: &Change,
        why: &Refusal,
    ) -> anyhow::Result<bool> {
        if !matches!(why, Refusal::Forge(_)) {
            return Ok(false);
        }
        if !self.revert_blocked_said(record).await? {
            return Ok(false);
        }
        let default = self.default_branch().await?;
        Ok(self.fresh_default_head(&default).await? == change.base_sha)
    }

    /// The revert change to merge: on the `first_attempt`, the stored revert PR when it is
    /// complete; else one built afresh. `None` when nothing of the request is left on the
    /// default branch to remove.
    async fn revert_change(
        &self,
        record: &mut RequestRecord,
        applied: Option<&AppliedGrant>,
        reason: RevokeReason,
        first_attempt: bool,
    ) -> anyhow::Result<Option<Change>> {
        match self
            .store
            .get_change(record.id.as_str(), ChangeKind::Revert)
            .await?
        {
            // A grant ended by reconciliation may have lost its files on the default branch
            // already (removed by hand): its revert is built again from a fresh read, so
            // that a merge never claims a removal it does not make.
            Some(change)
                if first_attempt
                    && reason != RevokeReason::Reconcile
                    && change.head_sha.is_some()
                    && change.pr_number.is_some() =>
            {
                // Built by an `open_revert` that lost its race with the revoke (another
                // replica) before it could store the PR's number: the request names it now.
                if record.revert_pr_number.is_none() {
                    record.revert_pr_number = change.pr_number;
                    self.store.update_request(record, self.now()).await?;
                }
                Ok(Some(change))
            }
            _ => {
                if self.build_revert(record, applied).await?.is_none() {
                    return Ok(None); // nothing of it is left on the default branch
                }
                let built = self
                    .store
                    .get_change(record.id.as_str(), ChangeKind::Revert)
                    .await?
                    .context("the revert change was just built")?;
                Ok(Some(built))
            }
        }
    }

    /// The revert PR could not be merged and a fresh change of the bot's landed instead: said
    /// on the request PR, with why (SPEC: the bot removes the files itself "and says why").
    async fn say_revert_replaced(
        &self,
        record: &RequestRecord,
        why: &Refusal,
        first_pr: Option<u64>,
        merged_pr: u64,
    ) -> anyhow::Result<()> {
        let replaced = first_pr
            .filter(|n| *n != merged_pr)
            .map(|n| self.forge.change_label(n));
        let text = comment::revert_replaced_comment(
            replaced.as_deref(),
            &why.to_string(),
            &self.forge.change_label(merged_pr),
            self.forge.kind(),
        );
        self.forge
            .note(Thread::Change(record.pr_number), &text)
            .await?;
        Ok(())
    }

    /// Whether the blocked revert of `record` was said already (its event is in the log).
    async fn revert_blocked_said(&self, record: &RequestRecord) -> anyhow::Result<bool> {
        let logged = self.store.events_for_request(&record.id).await?;
        Ok(logged.iter().any(|e| e.kind == EventKind::RevertBlocked))
    }

    /// A revert that cannot land: an error in the logs and metrics every time, a comment once.
    async fn revert_blocked(&self, record: &RequestRecord, why: &Refusal) -> anyhow::Result<()> {
        tracing::error!(request = %record.id, %why, "REVOCATION BLOCKED: the revert cannot be merged; the provider revoke is done, the request file stays on the default branch");
        self.metrics
            .inc("breakglass_anomalies_total", "kind=\"revert_blocked\"");
        if self.revert_blocked_said(record).await? {
            return Ok(());
        }
        let default = self.default_branch().await?;
        self.forge
            .note(
                Thread::Change(record.pr_number),
                &comment::revert_blocked_comment(&why.to_string(), &default, why.is_protection()),
            )
            .await?;
        self.record_event(
            EventKind::RevertBlocked,
            Some(&record.id),
            None,
            serde_json::json!({ "why": why.to_string() }),
        )
        .await
    }
}
