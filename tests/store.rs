//! The store against real databases: every test runs on SQLite, and on PostgreSQL too when
//! `BREAKGLASS_TEST_DATABASE_URL` is set (each test in its own fresh database).

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use breakglass::clock::Clock;
use breakglass::database_clock::{DatabaseClock, service_clock};
use breakglass::names::{Login, Name, RequestId, Ticket};
use breakglass::request::Reason;
use breakglass::store::testing::{for_each_backend, sqlite_store, sqlite_url};
use breakglass::store::{
    AppliedGrant, Approval, ApprovalSource, Backend, Change, ChangeKind, DeliveryId, DeliveryState,
    EventActor, EventKind, ForgeKind, GENESIS_HASH, JobKind, Lane, MAX_DELIVERY_ATTEMPTS,
    NewDelivery, NewEvent, PrKey, Recorded, RequestRecord, RequestState, RevokeReason, Store,
    StoreError, StoredDecision,
};
use breakglass::store::{events, jobs, requests};
use chrono::{DateTime, TimeDelta, Utc};
use serde_json::json;

const LEASE: Duration = Duration::from_secs(60);

/// A fixed instant plus `secs` seconds, with a millisecond part that must survive storage.
fn t(secs: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(1_800_000_000_000 + secs * 1000 + 123).unwrap()
}

fn rid(id: &str) -> RequestId {
    RequestId::try_from(id.to_owned()).unwrap()
}

fn login(name: &str) -> Login {
    Login::try_from(name.to_owned()).unwrap()
}

fn name(text: &str) -> Name {
    Name::try_from(text.to_owned()).unwrap()
}

fn delivery(key: &str, received_at: DateTime<Utc>) -> NewDelivery {
    NewDelivery {
        id: DeliveryId::new(ForgeKind::GitHub, key).unwrap(),
        event: "pull_request".into(),
        payload: format!(r#"{{"action":"opened","key":"{key}"}}"#),
        received_at,
    }
}

/// A pending request for pull request `pr`.
fn request(id: &str, pr: u64) -> RequestRecord {
    RequestRecord {
        id: rid(id),
        forge: ForgeKind::GitHub,
        repository: "acme/access-requests".into(),
        pr_number: pr,
        environment: name("prod"),
        role: name("admin"),
        requester_login: login("alice"),
        requester_id: 1001,
        duration_secs: 3600,
        reason: Reason::try_from("INC-1234 checkout DB failover".to_owned()).unwrap(),
        ticket: None,
        state: RequestState::Pending,
        head_sha: "1111111111111111111111111111111111111111".into(),
        decision: None,
        fast_path_rule: None,
        approved_by: None,
        merge_sha: None,
        granted_at: None,
        expires_at: None,
        revert_pr_number: None,
        revoked_at: None,
        revoke_reason: None,
        revoked_by: None,
        review_due_at: None,
        reviewed_by: None,
        reviewed_at: None,
        total_secs: 0,
        created_at: t(0),
        updated_at: t(0),
        version: 1,
    }
}

async fn with_request(store: &Store, id: &str, pr: u64) -> anyhow::Result<RequestId> {
    store.insert_request(&request(id, pr)).await?;
    Ok(rid(id))
}

/// Lets a test rewrite history the way an attacker with schema rights could.
async fn allow_tampering(store: &Store) -> anyhow::Result<()> {
    let statements: &[&'static str] = match store.backend() {
        Backend::Sqlite => &[
            "DROP TRIGGER events_append_only_update",
            "DROP TRIGGER events_append_only_delete",
        ],
        Backend::Postgres => &["DROP TRIGGER events_append_only ON events"],
    };
    for sql in statements {
        sqlx::query(*sql).execute(store.pool()).await?;
    }
    Ok(())
}

async fn append_events(store: &Store, n: i64) -> anyhow::Result<()> {
    for i in 1..=n {
        store
            .append_event(
                &NewEvent {
                    kind: EventKind::Approval,
                    request_id: Some(rid("r1")),
                    actor: Some(EventActor {
                        id: 2000 + i as u64,
                        login: login("carol"),
                    }),
                    delivery_id: None,
                    data: json!({"i": i}),
                },
                t(i),
            )
            .await?;
    }
    Ok(())
}

fn chain_error(result: Result<u64, StoreError>) -> anyhow::Result<(i64, String)> {
    match result {
        Err(StoreError::Chain(err)) => Ok((err.seq, err.reason)),
        other => anyhow::bail!("expected a broken chain, got {other:?}"),
    }
}

// Deliveries

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_deliveries_are_group_committed_each_exactly_once() {
    for_each_backend(|store| async move {
        let recorder = breakglass::server::Recorder::start(store.clone());
        // 150 distinct deliveries, each sent twice, all at once: batches form, and a repeat
        // within one batch is a duplicate like any redelivery.
        let mut sent = Vec::new();
        for _copy in 0..2 {
            for n in 0..150 {
                let recorder = recorder.clone();
                let d = delivery(&format!("d-{n}"), t(n));
                sent.push(tokio::spawn(async move { recorder.record(d).await }));
            }
        }
        let mut new = 0;
        for task in sent {
            match task.await? {
                Ok(Recorded::New) => new += 1,
                Ok(Recorded::Duplicate) => {}
                Err(err) => anyhow::bail!("not stored: {err}"),
            }
        }
        assert_eq!(new, 150, "each delivery stored once");
        let (rows,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM deliveries")
            .fetch_one(store.pool())
            .await?;
        assert_eq!(rows, 150);
        // Answered only once stored: every acknowledged delivery is there to claim.
        let claimed = store
            .claim_deliveries("w", t(1_000), std::time::Duration::from_secs(60), 500)
            .await?;
        assert_eq!(claimed.len(), 150);
        Ok(())
    })
    .await;
}

/// Deliveries of one instant are handled in the order they arrived, within a batch and across
/// batches, although a batch goes in sorted by id (ids here sort against arrival).
#[tokio::test]
async fn a_batch_keeps_arrival_order_whatever_its_ids() {
    for_each_backend(|store| async move {
        let at = t(0);
        let first: Vec<_> = ["z", "m", "a"].map(|k| delivery(k, at)).into();
        let mut second: Vec<_> = ["y", "b", "z"].map(|k| delivery(k, at)).into();
        second[2].payload = "{}".into(); // a redelivery of "z": the stored text stays
        assert_eq!(
            store.record_deliveries(&first).await?,
            vec![Recorded::New; 3]
        );
        assert_eq!(
            store.record_deliveries(&second).await?,
            vec![Recorded::New, Recorded::New, Recorded::Duplicate]
        );
        let claimed = store
            .claim_deliveries("w", t(1), std::time::Duration::from_secs(60), 10)
            .await?;
        let order: Vec<String> = claimed.iter().map(|d| d.id.to_string()).collect();
        let expected: Vec<String> = ["z", "m", "a", "y", "b"]
            .map(|k| DeliveryId::new(ForgeKind::GitHub, k).unwrap().to_string())
            .into();
        assert_eq!(order, expected);
        assert_eq!(claimed[0].payload, first[0].payload);
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn redelivered_webhook_is_recorded_once_and_changes_nothing() {
    for_each_backend(|store| async move {
        let first = delivery("d-1", t(0));
        assert_eq!(store.record_delivery(&first).await?, Recorded::New);
        let mut again = first.clone();
        again.payload = "{}".into();
        again.received_at = t(99);
        assert_eq!(store.record_delivery(&again).await?, Recorded::Duplicate);

        let stored = store.get_delivery(&first.id).await?.context("stored")?;
        assert_eq!(stored.payload, first.payload);
        assert_eq!(stored.received_at, t(0));
        assert_eq!(stored.state, DeliveryState::Pending);
        assert_eq!(stored.attempts, 0);
        let counts = store.count_deliveries_by_state().await?;
        assert_eq!(
            counts,
            vec![
                (DeliveryState::Pending, 1),
                (DeliveryState::Done, 0),
                (DeliveryState::Failed, 0)
            ]
        );
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn claimed_delivery_is_not_claimed_again_until_its_lease_lapses() {
    for_each_backend(|store| async move {
        store.record_delivery(&delivery("d-1", t(0))).await?;
        let claimed = store.claim_deliveries("a", t(1), LEASE, 10).await?;
        assert_eq!(claimed.len(), 1);
        let lease = claimed[0].lease.clone().context("leased")?;
        assert_eq!((lease.worker.as_str(), lease.until), ("a", t(61)));

        assert!(
            store
                .claim_deliveries("b", t(30), LEASE, 10)
                .await?
                .is_empty()
        );
        assert!(
            store
                .claim_deliveries("a", t(30), LEASE, 10)
                .await?
                .is_empty()
        );
        // Worker a died: at the end of its lease the delivery is b's.
        let reclaimed = store.claim_deliveries("b", t(61), LEASE, 10).await?;
        assert_eq!(reclaimed.len(), 1);
        assert_eq!(reclaimed[0].lease.as_ref().unwrap().worker, "b");

        store.finish_delivery(&reclaimed[0].id).await?;
        assert!(
            store
                .claim_deliveries("c", t(999), LEASE, 10)
                .await?
                .is_empty()
        );
        let done = store.get_delivery(&reclaimed[0].id).await?.unwrap();
        assert_eq!((done.state, done.lease), (DeliveryState::Done, None));
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn deliveries_are_claimed_oldest_first_and_limited() {
    for_each_backend(|store| async move {
        for (key, at) in [("d-3", 3), ("d-1", 1), ("d-2", 2)] {
            store.record_delivery(&delivery(key, t(at))).await?;
        }
        let first = store.claim_deliveries("w", t(10), LEASE, 2).await?;
        let keys: Vec<&str> = first.iter().map(|d| d.id.key()).collect();
        assert_eq!(keys, ["d-1", "d-2"]);
        let rest = store.claim_deliveries("w", t(10), LEASE, 2).await?;
        assert_eq!(rest.len(), 1);
        assert_eq!(rest[0].id.key(), "d-3");
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn failing_delivery_is_retried_later_then_parked_as_failed() {
    for_each_backend(|store| async move {
        let id = delivery("d-1", t(0)).id;
        store.record_delivery(&delivery("d-1", t(0))).await?;
        for attempt in 1..=MAX_DELIVERY_ATTEMPTS {
            let now = t(i64::from(attempt) * 100);
            let claimed = store.claim_deliveries("w", now, LEASE, 1).await?;
            assert_eq!(claimed.len(), 1, "attempt {attempt}");
            let next = now + TimeDelta::seconds(10);
            let state = store.retry_delivery(&id, "forge said 502", next).await?;
            let stored = store.get_delivery(&id).await?.unwrap();
            assert_eq!(stored.attempts, attempt);
            assert_eq!(stored.last_error.as_deref(), Some("forge said 502"));
            if attempt < MAX_DELIVERY_ATTEMPTS {
                assert_eq!(state, DeliveryState::Pending);
                // Not due before next_attempt_at.
                assert!(store.claim_deliveries("w", now, LEASE, 1).await?.is_empty());
            } else {
                assert_eq!(state, DeliveryState::Failed);
            }
        }
        assert!(
            store
                .claim_deliveries("w", t(99_999), LEASE, 1)
                .await?
                .is_empty()
        );
        assert!(matches!(
            store.retry_delivery(&id, "again", t(0)).await,
            Err(StoreError::NotFound { .. })
        ));
        let counts = store.count_deliveries_by_state().await?;
        assert!(counts.contains(&(DeliveryState::Failed, 1)));
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn done_deliveries_can_be_pruned() {
    for_each_backend(|store| async move {
        store.record_delivery(&delivery("old", t(0))).await?;
        store.record_delivery(&delivery("new", t(100))).await?;
        store.record_delivery(&delivery("pending", t(0))).await?;
        store.finish_delivery(&delivery("old", t(0)).id).await?;
        store.finish_delivery(&delivery("new", t(0)).id).await?;
        assert_eq!(store.delete_done_deliveries(t(50)).await?, 1);
        assert!(
            store
                .get_delivery(&delivery("old", t(0)).id)
                .await?
                .is_none()
        );
        assert!(
            store
                .get_delivery(&delivery("new", t(0)).id)
                .await?
                .is_some()
        );
        assert!(
            store
                .get_delivery(&delivery("pending", t(0)).id)
                .await?
                .is_some()
        );
        Ok(())
    })
    .await;
}

// Jobs

#[tokio::test]
async fn claimed_job_is_not_claimed_again_until_its_lease_lapses() {
    for_each_backend(|store| async move {
        let r1 = with_request(&store, "r1", 1).await?;
        let id = store
            .schedule_job(JobKind::Revoke, &r1, t(10), t(0))
            .await?;
        assert!(
            store.claim_due_jobs("a", t(9), LEASE, 10).await?.is_empty(),
            "not due yet"
        );
        let claimed = store.claim_due_jobs("a", t(10), LEASE, 10).await?;
        assert_eq!(claimed.len(), 1);
        assert_eq!((claimed[0].id, claimed[0].kind), (id, JobKind::Revoke));
        assert_eq!(claimed[0].request_id, r1);
        assert!(
            store
                .claim_due_jobs("b", t(69), LEASE, 10)
                .await?
                .is_empty()
        );

        // a crashed; b takes over once the lease lapses, and a can no longer complete it.
        let reclaimed = store.claim_due_jobs("b", t(70), LEASE, 10).await?;
        assert_eq!(reclaimed.len(), 1);
        assert!(!store.complete_job(id, "a").await?);
        assert!(store.complete_job(id, "b").await?);
        Ok(())
    })
    .await;
}

/// A host's clock `off` from the true time (this machine's, which is also the test
/// database's: PostgreSQL runs on it).
#[derive(Debug)]
struct HostClock {
    off: TimeDelta,
}

impl Clock for HostClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now() + self.off
    }
}

fn host_off(secs: i64) -> Arc<dyn Clock> {
    Arc::new(HostClock {
        off: TimeDelta::seconds(secs),
    })
}

/// Within `tolerance` of each other.
fn close_to(a: DateTime<Utc>, b: DateTime<Utc>, tolerance: TimeDelta) -> bool {
    (a - b).abs() <= tolerance
}

#[tokio::test]
async fn a_replica_whose_clock_is_an_hour_off_keeps_time_by_the_databases() {
    for_each_backend(|store| async move {
        let clock = DatabaseClock::measure(&store, host_off(3600)).await?;
        let tolerance = TimeDelta::milliseconds(500);
        ensure!(
            (clock.offset() - TimeDelta::seconds(-3600)).abs() <= tolerance,
            "the database's clock is an hour behind this host's: {}",
            clock.offset()
        );
        ensure!(close_to(clock.now(), Utc::now(), tolerance));
        tokio::time::sleep(Duration::from_millis(300)).await;
        ensure!(close_to(clock.now(), Utc::now(), tolerance), "it runs");

        // The service's clock: the database's on PostgreSQL; on SQLite, one host's file,
        // and where it does not follow (tests on their own clocks), the host's as given.
        let (service, measured) = service_clock(&store, host_off(3600), true).await?;
        let on_postgres = store.backend() == Backend::Postgres;
        ensure!(measured.is_some() == on_postgres);
        let expected = if on_postgres {
            Utc::now()
        } else {
            Utc::now() + TimeDelta::seconds(3600)
        };
        ensure!(close_to(service.now(), expected, tolerance));
        let (given, measured) = service_clock(&store, host_off(3600), false).await?;
        ensure!(measured.is_none());
        ensure!(close_to(
            given.now(),
            Utc::now() + TimeDelta::seconds(3600),
            tolerance
        ));

        // A database that does not answer: the measurement fails, the last offset stays.
        store.close().await;
        ensure!(clock.resync(&store).await.is_err());
        ensure!(
            close_to(clock.now(), Utc::now(), tolerance),
            "the last offset is kept"
        );
        Ok(())
    })
    .await;
}

/// Two replicas, one host 3 s ahead of the database and one 4 s behind, leasing for 2 s:
/// on their own clocks, the one ahead takes the other's live lease (and runs its job again);
/// on the database's, neither takes the other's.
#[tokio::test]
async fn replicas_whose_clocks_disagree_do_not_take_each_others_live_leases() {
    for_each_backend(|store| async move {
        let lease = Duration::from_secs(2);
        let r1 = with_request(&store, "r1", 1).await?;
        let id = store
            .schedule_job(
                JobKind::Revoke,
                &r1,
                Utc::now() - TimeDelta::seconds(10),
                t(0),
            )
            .await?;
        let behind = DatabaseClock::measure(&store, host_off(-4)).await?;
        let ahead = DatabaseClock::measure(&store, host_off(3)).await?;

        let claimed = store
            .claim_due_jobs("behind", behind.now(), lease, 10)
            .await?;
        ensure!(claimed.len() == 1 && claimed[0].id == id, "{claimed:?}");
        ensure!(
            store
                .claim_due_jobs("ahead", ahead.now(), lease, 10)
                .await?
                .is_empty(),
            "the lease is live on the database's clock"
        );
        // The same claim on the ahead host's own clock (the mistake this guards against).
        let own = host_off(3).now();
        ensure!(
            store.claim_due_jobs("ahead", own, lease, 10).await?.len() == 1,
            "3 s ahead of a 2 s lease taken 4 s behind, the host's own clock takes it"
        );
        Ok(())
    })
    .await;
}

/// The lock of a PR across replicas: one holder at a time, until it lets go or its lease
/// lapses; a lapsed holder can neither renew nor let go of its successor's.
#[tokio::test]
async fn a_pr_lock_is_held_until_it_is_let_go_or_lapses() {
    for_each_backend(|store| async move {
        let lease = Duration::from_secs(2);
        let pr = |number| PrKey {
            forge: ForgeKind::GitHub,
            repository: "acme/access-requests".into(),
            number,
        };
        ensure!(store.try_lock_pr(&pr(1), "a", t(0), lease).await?);
        ensure!(
            !store.try_lock_pr(&pr(1), "b", t(1), lease).await?,
            "a holds it"
        );
        let elsewhere = PrKey {
            forge: ForgeKind::GitLab,
            ..pr(1)
        };
        ensure!(
            store.try_lock_pr(&pr(2), "b", t(1), lease).await?,
            "another PR"
        );
        ensure!(
            store.try_lock_pr(&elsewhere, "b", t(1), lease).await?,
            "another forge's"
        );
        ensure!(store.renew_pr_lock(&pr(1), "a", t(1), lease).await?);
        ensure!(
            !store.try_lock_pr(&pr(1), "b", t(2), lease).await?,
            "renewed to t(3)"
        );
        ensure!(store.try_lock_pr(&pr(1), "b", t(3), lease).await?, "lapsed");
        ensure!(
            !store.renew_pr_lock(&pr(1), "a", t(3), lease).await?,
            "a lost it"
        );
        store.unlock_pr(&pr(1), "a").await?;
        ensure!(
            !store.try_lock_pr(&pr(1), "c", t(4), lease).await?,
            "still b's"
        );
        store.unlock_pr(&pr(1), "b").await?;
        ensure!(store.try_lock_pr(&pr(1), "c", t(4), lease).await?, "let go");
        Ok(())
    })
    .await;
}

// Several runtime threads, so that the claims really overlap.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_workers_never_claim_the_same_job_twice() {
    for_each_backend(|store| async move {
        const JOBS: usize = 50;
        const WORKERS: usize = 4;
        for i in 0..JOBS {
            let id = with_request(&store, &format!("r{i}"), i as u64 + 1).await?;
            store.schedule_job(JobKind::Revoke, &id, t(i as i64 % 5), t(0)).await?;
        }
        // Every worker opens its connection first, then all start claiming at once and
        // keep at it until all jobs are done (an empty claim only means "all due jobs are
        // leased or locked right now").
        let barrier = Arc::new(tokio::sync::Barrier::new(WORKERS));
        let done = Arc::new(AtomicUsize::new(0));
        let started = Instant::now();
        let mut tasks = Vec::new();
        for w in 0..WORKERS {
            let (store, barrier, done) = (store.clone(), barrier.clone(), done.clone());
            tasks.push(tokio::spawn(async move {
                let worker = format!("worker-{w}");
                let mut mine = Vec::new();
                store.ping().await?;
                barrier.wait().await;
                let deadline = Instant::now() + Duration::from_secs(30);
                while done.load(Ordering::SeqCst) < JOBS {
                    ensure!(Instant::now() < deadline, "jobs left unclaimed");
                    let jobs = store.claim_due_jobs(&worker, t(100), LEASE, 3).await?;
                    if jobs.is_empty() {
                        tokio::time::sleep(Duration::from_millis(1)).await;
                    }
                    for job in jobs {
                        ensure!(store.complete_job(job.id, &worker).await?, "lost {}", job.id);
                        mine.push(job.id);
                        done.fetch_add(1, Ordering::SeqCst);
                    }
                }
                anyhow::Ok(mine)
            }));
        }
        let mut all = Vec::new();
        let mut per_worker = Vec::new();
        for task in tasks {
            let mine = task.await??;
            per_worker.push(mine.len());
            all.extend(mine);
        }
        let unique: HashSet<_> = all.iter().collect();
        assert_eq!(all.len(), JOBS, "every job claimed exactly once: {per_worker:?}");
        assert_eq!(unique.len(), JOBS);
        assert!(store.overdue_jobs(t(100)).await?.is_empty());
        eprintln!(
            "{} jobs claimed and completed by {WORKERS} workers in {:?} (per worker: {per_worker:?})",
            JOBS,
            started.elapsed()
        );
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn completed_jobs_vanish() {
    for_each_backend(|store| async move {
        let r1 = with_request(&store, "r1", 1).await?;
        let id = store.schedule_job(JobKind::Remind, &r1, t(0), t(0)).await?;
        assert!(
            !store.complete_job(id, "w").await?,
            "not leased: not completed"
        );
        store.claim_due_jobs("w", t(0), LEASE, 1).await?;
        assert!(store.complete_job(id, "w").await?);
        assert!(store.jobs_for_request(&r1).await?.is_empty());
        assert!(
            store
                .claim_due_jobs("w", t(999), LEASE, 1)
                .await?
                .is_empty()
        );
        assert_eq!(store.next_job_due().await?, None);
        Ok(())
    })
    .await;
}

/// Polled PRs are counted by what they wait for: a pending request and an active grant whose
/// requester asked for more time on its current expiry wait for an approval; a grant whose ask
/// was of an earlier expiry, or another's ask, waits only for its review. Other forges' and
/// unpolled requests do not count.
#[tokio::test]
async fn polled_prs_are_counted_by_what_they_wait_for() {
    for_each_backend(|store| async move {
        let expires = t(3600); // as `active` has it
        let ask = |id: &str, who: u64, expiry: DateTime<Utc>| Approval {
            request_id: rid(id),
            signal: format!("comment:{who}{}", expiry.timestamp()),
            approver_id: who,
            approver_login: login("someone"),
            source: ApprovalSource::Comment,
            head_sha: format!("extend:{}+1800s", expiry.timestamp_millis()),
            approved_at: t(10),
        };
        let mut asked = Vec::new();
        for (id, pr, state) in [
            ("pending", 1, RequestState::Pending),
            ("asked", 2, RequestState::Active),
            ("asked-before", 3, RequestState::Active),
            ("asked-by-another", 4, RequestState::Active),
            ("gitlab", 5, RequestState::Pending),
            ("unpolled", 6, RequestState::Pending),
        ] {
            let mut record = match state {
                RequestState::Active => active(id, pr),
                _ => request(id, pr),
            };
            if id == "gitlab" {
                record.forge = ForgeKind::GitLab;
            }
            store.insert_request(&record).await?;
            if id != "unpolled" {
                store
                    .schedule_job(JobKind::Poll, &rid(id), t(0), t(0))
                    .await?;
            }
            asked.push(record);
        }
        store.add_approval(&ask("asked", 1001, expires)).await?;
        store
            .add_approval(&ask("asked-before", 1001, t(1800)))
            .await?;
        store
            .add_approval(&ask("asked-by-another", 7, expires))
            .await?;
        let polled = store.count_polled(ForgeKind::GitHub).await?;
        assert_eq!((polled.approvals, polled.reviews), (2, 2), "{asked:?}");
        let polled = store.count_polled(ForgeKind::GitLab).await?;
        assert_eq!((polled.approvals, polled.reviews), (1, 0));
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn retried_job_comes_back_at_next_run_at_with_attempts_incremented() {
    for_each_backend(|store| async move {
        let r1 = with_request(&store, "r1", 1).await?;
        let id = store.schedule_job(JobKind::Revoke, &r1, t(0), t(0)).await?;
        store.claim_due_jobs("w", t(0), LEASE, 1).await?;
        assert!(!store.retry_job(id, "someone-else", "x", t(30)).await?);
        assert!(store.retry_job(id, "w", "AWS throttled", t(30)).await?);

        assert_eq!(store.next_job_due().await?, Some(t(30)));
        assert!(store.claim_due_jobs("w", t(29), LEASE, 1).await?.is_empty());
        let again = store.claim_due_jobs("w", t(30), LEASE, 1).await?;
        assert_eq!(again.len(), 1);
        assert_eq!(again[0].attempts, 1);
        assert_eq!(again[0].last_error.as_deref(), Some("AWS throttled"));
        assert_eq!(again[0].run_at, t(30));
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn scheduling_a_running_job_again_keeps_it_with_its_worker_until_the_run_ends() {
    for_each_backend(|store| async move {
        let r1 = with_request(&store, "r1", 1).await?;
        let first = store
            .schedule_job(JobKind::Revoke, &r1, t(10), t(0))
            .await?;
        store.claim_due_jobs("w", t(10), LEASE, 1).await?;
        // `/breakglass extend 30m` while the revoke runs.
        let second = store
            .schedule_job(JobKind::Revoke, &r1, t(1810), t(10))
            .await?;
        assert_eq!(first, second);
        let jobs = store.jobs_for_request(&r1).await?;
        assert_eq!(jobs.len(), 1);
        assert_eq!(jobs[0].run_at, t(1810));
        assert_eq!(jobs[0].created_at, t(0));
        assert_eq!(
            jobs[0].lease.as_ref().map(|l| l.worker.as_str()),
            Some("w"),
            "still the running worker's"
        );
        // Due now for another worker too: it still may not run it alongside.
        store
            .schedule_job(JobKind::Revoke, &r1, t(10), t(10))
            .await?;
        assert!(
            store
                .claim_due_jobs("other", t(10), LEASE, 1)
                .await?
                .is_empty()
        );
        // The run ends: the job is not deleted but due at its new time, for anyone.
        store
            .schedule_job(JobKind::Revoke, &r1, t(1810), t(10))
            .await?;
        assert!(!store.complete_job(first, "w").await?, "kept, not deleted");
        let jobs = store.jobs_for_request(&r1).await?;
        assert_eq!(
            (jobs.len(), jobs[0].run_at, &jobs[0].lease),
            (1, t(1810), &None)
        );
        let again = store.claim_due_jobs("other", t(1810), LEASE, 1).await?;
        assert_eq!(again.len(), 1);
        // Claimed afresh, it completes as usual.
        assert!(store.complete_job(first, "other").await?);
        assert!(store.jobs_for_request(&r1).await?.is_empty());
        // Another kind for the same request is another job.
        store
            .schedule_job(JobKind::Remind, &r1, t(1210), t(5))
            .await?;
        store
            .schedule_job(JobKind::Revoke, &r1, t(1810), t(5))
            .await?;
        assert_eq!(store.jobs_for_request(&r1).await?.len(), 2);
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn a_run_that_fails_after_its_job_was_scheduled_again_leaves_the_new_time() {
    for_each_backend(|store| async move {
        let r1 = with_request(&store, "r1", 1).await?;
        let id = store.schedule_job(JobKind::Revert, &r1, t(0), t(0)).await?;
        store.claim_due_jobs("w", t(0), LEASE, 1).await?;
        store.schedule_job(JobKind::Revert, &r1, t(1), t(1)).await?;
        assert!(store.retry_job(id, "w", "HTTP 502", t(60)).await?);
        let jobs = store.jobs_for_request(&r1).await?;
        assert_eq!(
            (jobs[0].run_at, &jobs[0].lease),
            (t(1), &None),
            "not its backoff"
        );
        assert_eq!(
            (jobs[0].attempts, jobs[0].last_error.as_deref()),
            (1, Some("HTTP 502"))
        );
        // Claimed again and failing again, it backs off as usual.
        store.claim_due_jobs("w", t(1), LEASE, 1).await?;
        assert!(store.retry_job(id, "w", "HTTP 502", t(61)).await?);
        assert_eq!(store.jobs_for_request(&r1).await?[0].run_at, t(61));
        Ok(())
    })
    .await;
}

/// The forge lane asks before each job of its batch whether the job is still its own (its
/// lease renewed if so): one whose lease lapsed while it waited its turn and that another
/// worker claimed, or ran and finished, is not.
#[tokio::test]
async fn a_job_whose_lease_lapsed_and_was_claimed_elsewhere_is_no_longer_renewed_for_its_first_worker()
 {
    for_each_backend(|store| async move {
        let r1 = with_request(&store, "r1", 1).await?;
        let r2 = with_request(&store, "r2", 2).await?;
        let first = store.schedule_job(JobKind::Remind, &r1, t(0), t(0)).await?;
        let second = store.schedule_job(JobKind::Remind, &r2, t(0), t(0)).await?;
        assert_eq!(store.claim_due_jobs("a", t(0), LEASE, 2).await?.len(), 2);
        assert_eq!(
            store
                .renew_job_leases("a", Some(first), t(1), LEASE)
                .await?,
            1
        );
        // Past both leases: "b" claims both and finishes the second.
        let later = t(0) + LEASE * 3;
        assert_eq!(store.claim_due_jobs("b", later, LEASE, 2).await?.len(), 2);
        assert!(store.complete_job(second, "b").await?);
        assert_eq!(
            store
                .renew_job_leases("a", Some(first), later, LEASE)
                .await?,
            0
        );
        assert_eq!(
            store
                .renew_job_leases("a", Some(second), later, LEASE)
                .await?,
            0
        );
        assert_eq!(
            store
                .renew_job_leases("b", Some(first), later, LEASE)
                .await?,
            1
        );
        Ok(())
    })
    .await;
}

/// A job that schedules itself again (a poll) keeps one row for its whole life: a run that
/// went well ends its failed attempts, so that an outage long over does not set the backoff
/// of the next failure.
#[tokio::test]
async fn a_run_that_went_well_after_its_job_was_scheduled_again_clears_its_failed_attempts() {
    for_each_backend(|store| async move {
        let r1 = with_request(&store, "r1", 1).await?;
        let id = store.schedule_job(JobKind::Poll, &r1, t(0), t(0)).await?;
        for attempt in 0..3 {
            store.claim_due_jobs("w", t(attempt), LEASE, 1).await?;
            assert!(store.retry_job(id, "w", "HTTP 502", t(attempt + 1)).await?);
        }
        assert_eq!(store.jobs_for_request(&r1).await?[0].attempts, 3);
        store.claim_due_jobs("w", t(3), LEASE, 1).await?;
        store.schedule_job(JobKind::Poll, &r1, t(33), t(3)).await?;
        assert!(!store.complete_job(id, "w").await?, "kept, not deleted");
        let jobs = store.jobs_for_request(&r1).await?;
        assert_eq!(
            (
                jobs[0].run_at,
                jobs[0].attempts,
                jobs[0].last_error.as_deref()
            ),
            (t(33), 0, None)
        );
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn a_revoke_is_resumed_only_while_the_request_is_revoking_and_has_none_due() {
    for_each_backend(|store| async move {
        let pending = with_request(&store, "r1", 1).await?;
        assert!(!store.resume_revoke(&pending, t(5)).await?, "not revoking");
        let mut stuck = request("r2", 2);
        stuck.state = RequestState::Revoking;
        stuck.revoke_reason = Some(RevokeReason::Ttl);
        store.insert_request(&stuck).await?;
        let running = store
            .schedule_job(JobKind::Revoke, &stuck.id, t(3), t(0))
            .await?;
        store.claim_due_jobs("w", t(3), LEASE, 1).await?;
        // The revoke is running: a reconciliation pass leaves it alone, lease and all.
        assert!(!store.resume_revoke(&stuck.id, t(5)).await?);
        let jobs = store.jobs_for_request(&stuck.id).await?;
        assert_eq!(
            (jobs.len(), jobs[0].id, jobs[0].lease.is_some()),
            (1, running, true)
        );
        // It finished: the request is revoked and its job gone; a pass that listed it as
        // `Revoking` a moment before creates nothing.
        assert!(store.complete_job(running, "w").await?);
        stuck.state = RequestState::Revoked;
        stuck.revoked_at = Some(t(4));
        store.update_request(&mut stuck, t(4)).await?;
        assert!(!store.resume_revoke(&stuck.id, t(5)).await?);
        assert!(store.jobs_for_request(&stuck.id).await?.is_empty());
        // Stuck with no job (a crash between the two writes): resumed, due now.
        let mut lost = request("r3", 3);
        lost.state = RequestState::Revoking;
        lost.revoke_reason = Some(RevokeReason::Reconcile);
        store.insert_request(&lost).await?;
        assert!(store.resume_revoke(&lost.id, t(5)).await?);
        let jobs = store.jobs_for_request(&lost.id).await?;
        assert_eq!((jobs[0].kind, jobs[0].run_at), (JobKind::Revoke, t(5)));
        // Stuck with its job still at the expiry (the write moving it to now was lost, and a
        // retry found the request `Revoking` already): moved to now, not left for the TTL.
        let mut late = request("r4", 4);
        late.state = RequestState::Revoking;
        late.revoke_reason = Some(RevokeReason::Reconcile);
        store.insert_request(&late).await?;
        let at_expiry = store
            .schedule_job(JobKind::Revoke, &late.id, t(240), t(0))
            .await?;
        assert!(store.resume_revoke(&late.id, t(5)).await?);
        let jobs = store.jobs_for_request(&late.id).await?;
        assert_eq!(
            (jobs.len(), jobs[0].id, jobs[0].run_at),
            (1, at_expiry, t(5))
        );
        // One that ran and failed waits out its backoff (a provider that needs a person is
        // not called again at every pass).
        store.claim_due_jobs("w", t(5), LEASE, 10).await?;
        assert!(
            store
                .retry_job(at_expiry, "w", "AccessDenied", t(300))
                .await?
        );
        assert!(!store.resume_revoke(&late.id, t(6)).await?);
        assert_eq!(store.jobs_for_request(&late.id).await?[0].run_at, t(300));
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn cancelled_job_is_gone_and_queue_metrics_follow_due_jobs() {
    for_each_backend(|store| async move {
        let r1 = with_request(&store, "r1", 1).await?;
        let r2 = with_request(&store, "r2", 2).await?;
        assert_eq!(store.next_job_due().await?, None);
        assert_eq!(store.job_lag(t(0)).await?, Duration::ZERO);
        store
            .schedule_job(JobKind::Revoke, &r1, t(10), t(0))
            .await?;
        store.schedule_job(JobKind::Poll, &r2, t(20), t(0)).await?;
        assert_eq!(store.next_job_due().await?, Some(t(10)));
        // A leased job is next claimable when its lease lapses.
        store.claim_due_jobs("w", t(10), LEASE, 1).await?;
        assert_eq!(store.next_job_due().await?, Some(t(20)));

        assert_eq!(store.overdue_jobs(t(15)).await?.len(), 1);
        assert_eq!(store.job_lag(t(25)).await?, Duration::from_secs(15));
        assert!(store.cancel_job(JobKind::Revoke, &r1).await?);
        assert!(!store.cancel_job(JobKind::Revoke, &r1).await?);
        assert_eq!(store.job_lag(t(25)).await?, Duration::from_secs(5));
        assert!(matches!(
            store
                .schedule_job(JobKind::Revoke, &rid("nope"), t(0), t(0))
                .await,
            Err(StoreError::NotFound { .. })
        ));
        Ok(())
    })
    .await;
}

// Requests

/// A decision as the workflow stores it, every field set (read from JSON: the column's shape).
fn stored_decision() -> StoredDecision {
    serde_json::from_value(json!({
        "decision": {
            "allowed": true, "environment": "prod", "role": "admin", "requester": "alice",
            "duration": "1h", "duration_defaulted": false, "expires_at": "2026-11-26T03:14:00Z",
            "violations": [{"rule": "ticket_pattern", "found": "x", "allowed": "INC-1", "message": "m"}],
            "unchecked": ["requesters"], "approvals_required": 2, "approvers": ["carol"],
            "approval_reactions": ["+1"],
            "fast_path": {"rule": "sev1", "review_within": "24h",
                          "review_due_at": "2026-11-27T02:14:00Z", "block_until_reviewed": true},
            "fast_path_misses": [{"rule": "sev2", "reasons": ["no label"]}]
        },
        "head_since": "2026-11-26T02:13:59Z",
        "scope_problems": [".github/workflows/x.yml"],
        "merge_refused": "conflict",
        "draft": true,
        "unservable": "no provider"
    }))
    .unwrap()
}

#[tokio::test]
async fn the_decision_column_keeps_its_json() {
    for_each_backend(|store| async move {
        let mut record = request("r-json", 3);
        store.insert_request(&record).await?;
        let text = |store: Store| async move {
            let row = sqlx::query("SELECT decision FROM requests WHERE id = 'r-json'")
                .fetch_one(store.pool())
                .await?;
            anyhow::Ok(sqlx::Row::try_get::<String, _>(&row, "decision")?)
        };
        assert_eq!(text(store.clone()).await?, "null", "no decision yet");
        record.decision = Some(stored_decision());
        store.update_request(&mut record, t(1)).await?;
        // The text the workflow wrote when it stored `serde_json::Value`: keys in order.
        let expected = serde_json::to_value(stored_decision())?.to_string();
        assert!(expected.starts_with(r#"{"decision":{"allowed":true,"approval_reactions":"#));
        assert_eq!(text(store.clone()).await?, expected);
        let back = store.get_request(&record.id).await?.context("stored")?;
        assert_eq!(back.decision, Some(stored_decision()));
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn request_round_trips_every_field() {
    for_each_backend(|store| async move {
        let mut record = request("20261126-0214-alice-prod", 7);
        record.ticket = Some(Ticket::try_from("INC-1234".to_owned()).unwrap());
        record.state = RequestState::Revoked;
        record.decision = Some(stored_decision());
        record.fast_path_rule = Some(name("sev1"));
        record.approved_by = Some(vec![login("carol"), login("dave")]);
        record.merge_sha = Some("2222222222222222222222222222222222222222".into());
        record.granted_at = Some(t(60));
        record.expires_at = Some(t(3660));
        record.revert_pr_number = Some(8);
        record.revoked_at = Some(t(3661));
        record.revoke_reason = Some(RevokeReason::Early);
        record.revoked_by = Some(EventActor {
            id: 4_000_000_001,
            login: login("dave"),
        });
        record.review_due_at = Some(t(86_460));
        record.reviewed_by = Some(login("carol"));
        record.reviewed_at = Some(t(7200));
        record.total_secs = 5400;
        record.requester_id = u64::try_from(i64::MAX).unwrap();
        record.updated_at = t(3661);
        record.version = 9;
        store.insert_request(&record).await?;

        let stored = store.get_request(&record.id).await?.context("stored")?;
        assert_eq!(stored, record);
        let by_pr = store
            .find_request_by_pr(ForgeKind::GitHub, "acme/access-requests", 7)
            .await?;
        assert_eq!(by_pr.as_ref(), Some(&record));
        let by_revert = store
            .find_request_by_revert_pr(ForgeKind::GitHub, "acme/access-requests", 8)
            .await?;
        assert_eq!(by_revert.as_ref(), Some(&record));
        assert!(
            store
                .find_request_by_pr(ForgeKind::GitLab, "acme/access-requests", 7)
                .await?
                .is_none()
        );
        assert!(store.get_request(&rid("other")).await?.is_none());
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn a_second_request_for_the_same_id_or_pull_request_is_a_duplicate() {
    for_each_backend(|store| async move {
        store.insert_request(&request("r1", 1)).await?;
        let same_id = store.insert_request(&request("r1", 2)).await;
        assert!(
            matches!(same_id, Err(StoreError::Duplicate { .. })),
            "{same_id:?}"
        );
        let same_pr = store.insert_request(&request("r2", 1)).await;
        assert!(
            matches!(same_pr, Err(StoreError::Duplicate { .. })),
            "{same_pr:?}"
        );
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn concurrent_update_of_a_request_is_a_conflict() {
    for_each_backend(|store| async move {
        store.insert_request(&request("r1", 1)).await?;
        let mut replica_a = store.get_request(&rid("r1")).await?.unwrap();
        let mut replica_b = replica_a.clone();

        replica_a.state = RequestState::Denied;
        store.update_request(&mut replica_a, t(5)).await?;
        assert_eq!((replica_a.version, replica_a.updated_at), (2, t(5)));

        replica_b.state = RequestState::Closed;
        let lost = store.update_request(&mut replica_b, t(6)).await;
        match lost {
            Err(StoreError::Conflict {
                expected, found, ..
            }) => assert_eq!((expected, found), (1, 2)),
            other => anyhow::bail!("expected a conflict, got {other:?}"),
        }
        assert_eq!(
            replica_b.version, 1,
            "a failed update leaves the record as it was"
        );
        let stored = store.get_request(&rid("r1")).await?.unwrap();
        assert_eq!((stored.state, stored.version), (RequestState::Denied, 2));

        // Reload and retry wins.
        let mut reloaded = stored;
        reloaded.state = RequestState::Closed;
        store.update_request(&mut reloaded, t(7)).await?;
        assert_eq!(store.get_request(&rid("r1")).await?.unwrap(), reloaded);

        let mut ghost = request("ghost", 99);
        assert!(matches!(
            store.update_request(&mut ghost, t(8)).await,
            Err(StoreError::NotFound { .. })
        ));
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn illegal_states_are_refused_on_write() {
    for_each_backend(|store| async move {
        let mut active = request("r1", 1);
        active.state = RequestState::Active;
        let err = store.insert_request(&active).await.unwrap_err();
        assert!(matches!(err, StoreError::Invalid { .. }), "{err}");
        assert!(err.to_string().contains("merge_sha"), "{err}");
        assert!(store.get_request(&rid("r1")).await?.is_none());
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn illegal_request_rows_fail_to_decode_with_a_clear_error() {
    for_each_backend(|store| async move {
        // Each case breaks a valid row with raw SQL, as a bug or a hand edit could.
        let cases: &[(&'static str, &str)] = &[
            (
                "UPDATE requests SET state = 'active' WHERE id = 'r1'",
                "a request in state `active` must have `merge_sha`",
            ),
            (
                "UPDATE requests SET state = 'active', merge_sha = 'abc', granted_at = 1 WHERE id = 'r1'",
                "a request in state `active` must have `expires_at`",
            ),
            (
                "UPDATE requests SET state = 'revoked', revoke_reason = 'ttl' WHERE id = 'r1'",
                "a request in state `revoked` must have `revoked_at`",
            ),
            (
                "UPDATE requests SET state = 'revoked', revoked_at = 5 WHERE id = 'r1'",
                "a request in state `revoked` must have `revoke_reason`",
            ),
            (
                "UPDATE requests SET revoke_reason = 'ttl' WHERE id = 'r1'",
                "a request in state `pending` cannot have `revoke_reason`",
            ),
            (
                "UPDATE requests SET state = 'limbo' WHERE id = 'r1'",
                "column `state`: `limbo` is not a RequestState",
            ),
            (
                "UPDATE requests SET revoke_reason = 'bored', state = 'revoking' WHERE id = 'r1'",
                "column `revoke_reason`: `bored` is not a RevokeReason",
            ),
            (
                "UPDATE requests SET requester_login = 'not a login' WHERE id = 'r1'",
                "column `requester_login`",
            ),
            ("UPDATE requests SET pr_number = -1 WHERE id = 'r1'", "column `pr_number`: -1 is negative"),
            ("UPDATE requests SET decision = '{oops' WHERE id = 'r1'", "column `decision`: not valid JSON"),
            (
                "UPDATE requests SET approved_by = '[\"ok\", \"not ok\"]' WHERE id = 'r1'",
                "column `approved_by`",
            ),
            (
                "UPDATE requests SET reviewed_by = 'carol' WHERE id = 'r1'",
                "`reviewed_by` and `reviewed_at` must be set together",
            ),
        ];
        for (sql, expected) in cases {
            store.insert_request(&request("r1", 1)).await?;
            sqlx::query(*sql).execute(store.pool()).await?;
            let err = store.get_request(&rid("r1")).await.unwrap_err();
            let message = err.to_string();
            assert!(matches!(err, StoreError::Decode { table: "requests", .. }), "{message}");
            assert!(message.starts_with("stored requests row `r1` is invalid: "), "{message}");
            assert!(message.contains(expected), "{sql}\n  gave: {message}\n  want: {expected}");
            // Listing does not hide the bad row either.
            assert!(store.list_requests(None).await.is_err());
            sqlx::query("DELETE FROM requests WHERE id = 'r1'")
                .execute(store.pool())
                .await?;
        }
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn unknown_job_kinds_and_half_leases_fail_to_decode() {
    for_each_backend(|store| async move {
        let r1 = with_request(&store, "r1", 1).await?;
        store.schedule_job(JobKind::Revoke, &r1, t(0), t(0)).await?;
        sqlx::query("UPDATE jobs SET kind = 'self_destruct'")
            .execute(store.pool())
            .await?;
        let err = store.jobs_for_request(&r1).await.unwrap_err().to_string();
        assert!(err.contains("`self_destruct` is not a JobKind"), "{err}");

        sqlx::query("UPDATE jobs SET kind = 'revoke', locked_by = 'w'")
            .execute(store.pool())
            .await?;
        let err = store.jobs_for_request(&r1).await.unwrap_err().to_string();
        assert!(
            err.contains("`locked_by` and `locked_until` must be set together"),
            "{err}"
        );
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn requests_are_listed_and_counted_by_state() {
    for_each_backend(|store| async move {
        store.insert_request(&request("r1", 1)).await?;
        let mut denied = request("r2", 2);
        denied.state = RequestState::Denied;
        denied.created_at = t(1);
        store.insert_request(&denied).await?;
        let mut r3 = request("r3", 3);
        r3.created_at = t(2);
        store.insert_request(&r3).await?;

        let pending: Vec<String> = store
            .list_requests(Some(RequestState::Pending))
            .await?
            .into_iter()
            .map(|r| r.id.to_string())
            .collect();
        assert_eq!(pending, ["r1", "r3"]);
        assert_eq!(store.list_requests(None).await?.len(), 3);
        assert!(
            store
                .list_requests(Some(RequestState::Active))
                .await?
                .is_empty()
        );
        let counts = store.count_requests_by_state().await?;
        assert_eq!(counts.len(), RequestState::ALL.len());
        assert!(counts.contains(&(RequestState::Pending, 2)));
        assert!(counts.contains(&(RequestState::Denied, 1)));
        assert!(counts.contains(&(RequestState::Active, 0)));
        Ok(())
    })
    .await;
}

// Approvals

#[tokio::test]
async fn approvals_are_one_per_forge_signal_and_bound_to_their_head() {
    for_each_backend(|store| async move {
        let r1 = with_request(&store, "r1", 1).await?;
        let approval = |signal: &str, id: u64, who: &str, sha: &str, at: i64| Approval {
            request_id: r1.clone(),
            signal: signal.into(),
            approver_id: id,
            approver_login: login(who),
            source: ApprovalSource::Reaction,
            head_sha: sha.into(),
            approved_at: t(at),
        };
        let carol = approval("reaction:1", 7, "carol", "sha-a", 1);
        assert!(store.add_approval(&carol).await?);
        // The same signal again (a replayed webhook, a poll seeing it twice): stored once.
        let mut replay = carol.clone();
        replay.approved_at = t(5);
        assert!(!store.add_approval(&replay).await?);
        // Another signal of the same approver is its own row; the workflow counts people.
        let mut review = approval("review:2", 7, "carol", "sha-a", 3);
        review.source = ApprovalSource::Review;
        assert!(store.add_approval(&review).await?);
        let dave = approval("comment:3", 8, "dave", "sha-a", 2);
        assert!(store.add_approval(&dave).await?);

        let on_a = store.approvals_for(&r1, "sha-a").await?;
        assert_eq!(on_a, vec![carol.clone(), dave.clone(), review.clone()]);
        // A push: approvals given on sha-a are stale for sha-b.
        assert!(store.approvals_for(&r1, "sha-b").await?.is_empty());
        // A withdrawn signal (reaction removed) is gone; withdrawing it again changes nothing.
        assert!(store.withdraw_approval(&r1, "reaction:1").await?);
        assert!(!store.withdraw_approval(&r1, "reaction:1").await?);
        assert_eq!(store.approvals_for(&r1, "sha-a").await?, vec![dave, review]);

        assert_eq!(store.delete_approvals(&r1).await?, 2);
        assert!(store.approvals_for(&r1, "sha-a").await?.is_empty());
        let mut orphan = carol;
        orphan.request_id = rid("nope");
        assert!(matches!(
            store.add_approval(&orphan).await,
            Err(StoreError::NotFound { .. })
        ));
        Ok(())
    })
    .await;
}

// Events

#[tokio::test]
async fn event_chain_appends_and_verifies() {
    for_each_backend(|store| async move {
        assert_eq!(store.verify_chain().await?, 0);
        let delivery_id = DeliveryId::new(ForgeKind::GitLab, "abc:1").unwrap();
        let first = store
            .append_event(
                &NewEvent {
                    kind: EventKind::Grant,
                    request_id: Some(rid("r1")),
                    actor: Some(EventActor {
                        id: 1001,
                        login: login("alice"),
                    }),
                    delivery_id: Some(delivery_id.clone()),
                    data: json!({"until": "2027-01-01T00:00:00Z", "b": 1, "a": "é\n"}),
                },
                t(1),
            )
            .await?;
        assert_eq!((first.seq, first.prev_hash.as_str()), (1, GENESIS_HASH));
        let second = store
            .append_event(
                &NewEvent {
                    kind: EventKind::Revoke,
                    request_id: None,
                    actor: None,
                    delivery_id: None,
                    data: json!(null),
                },
                t(2),
            )
            .await?;
        assert_eq!(second.seq, 2);
        assert_eq!(second.prev_hash, first.hash);
        assert_eq!(store.verify_chain().await?, 2);

        let stored = store.events(0, 10).await?;
        assert_eq!(stored, vec![first.clone(), second.clone()]);
        assert_eq!(store.events(1, 10).await?, vec![second]);
        assert_eq!(store.events_for_request(&rid("r1")).await?, vec![first]);
        Ok(())
    })
    .await;
}

// Several runtime threads, so that the claims really overlap.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_appends_keep_one_unbroken_chain() {
    for_each_backend(|store| async move {
        let mut tasks = Vec::new();
        for w in 0..4u64 {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                for i in 0..10 {
                    let event = NewEvent {
                        kind: EventKind::Decision,
                        request_id: None,
                        actor: Some(EventActor {
                            id: w,
                            login: login("bot"),
                        }),
                        delivery_id: None,
                        data: json!({"worker": w, "i": i}),
                    };
                    store.append_event(&event, t(i)).await?;
                }
                anyhow::Ok(())
            }));
        }
        for task in tasks {
            task.await??;
        }
        assert_eq!(store.verify_chain().await?, 40);
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn events_table_refuses_update_and_delete() {
    for_each_backend(|store| async move {
        append_events(&store, 2).await?;
        assert!(
            sqlx::query("UPDATE events SET data = '{}' WHERE seq = 1")
                .execute(store.pool())
                .await
                .is_err()
        );
        assert!(
            sqlx::query("DELETE FROM events WHERE seq = 2")
                .execute(store.pool())
                .await
                .is_err()
        );
        assert_eq!(store.verify_chain().await?, 2);
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn edited_event_breaks_the_chain_at_that_row() {
    for_each_backend(|store| async move {
        append_events(&store, 5).await?;
        allow_tampering(&store).await?;
        sqlx::query("UPDATE events SET data = '{\"i\":99}' WHERE seq = 3")
            .execute(store.pool())
            .await?;
        let (seq, reason) = chain_error(store.verify_chain().await)?;
        assert_eq!(seq, 3, "{reason}");
        assert!(reason.contains("edited"), "{reason}");
        Ok(())
    })
    .await;
}

/// The documented canonical form, computed independently of the store's code.
fn documented_hash(row: &sqlx::any::AnyRow, data: &str) -> anyhow::Result<String> {
    use sha2::{Digest, Sha256};
    use sqlx::Row;
    let canonical = serde_json::to_string(&json!([
        row.try_get::<i64, _>("seq")?,
        row.try_get::<i64, _>("at")?,
        row.try_get::<String, _>("kind")?,
        row.try_get::<Option<String>, _>("request_id")?,
        row.try_get::<Option<i64>, _>("actor_id")?,
        row.try_get::<Option<String>, _>("actor_login")?,
        row.try_get::<Option<String>, _>("delivery_id")?,
        data,
        row.try_get::<String, _>("prev_hash")?,
    ]))?;
    Ok(hex::encode(Sha256::digest(canonical.as_bytes())))
}

#[tokio::test]
async fn edited_event_with_a_recomputed_hash_breaks_the_chain_at_the_next_row() {
    for_each_backend(|store| async move {
        use sqlx::Row;
        append_events(&store, 5).await?;
        let row = sqlx::query("SELECT * FROM events WHERE seq = 3")
            .fetch_one(store.pool())
            .await?;
        let stored: String = row.try_get("hash")?;
        assert_eq!(
            documented_hash(&row, &row.try_get::<String, _>("data")?)?,
            stored
        );

        // A careful attacker fixes the edited row's own hash; the next row still points
        // at the old one.
        allow_tampering(&store).await?;
        let forged = documented_hash(&row, r#"{"i":99}"#)?;
        sqlx::query("UPDATE events SET data = '{\"i\":99}', hash = $1 WHERE seq = 3")
            .bind(forged)
            .execute(store.pool())
            .await?;
        let (seq, reason) = chain_error(store.verify_chain().await)?;
        assert_eq!(seq, 4, "{reason}");
        assert!(
            reason.contains("prev_hash does not match the hash of seq 3"),
            "{reason}"
        );
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn deleted_event_breaks_the_chain_at_the_gap() {
    for_each_backend(|store| async move {
        append_events(&store, 5).await?;
        allow_tampering(&store).await?;
        sqlx::query("DELETE FROM events WHERE seq = 3")
            .execute(store.pool())
            .await?;
        let (seq, reason) = chain_error(store.verify_chain().await)?;
        assert_eq!(seq, 4, "{reason}");
        assert!(reason.contains("expected seq 3"), "{reason}");
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn deleted_event_with_renumbered_successors_breaks_the_chain() {
    for_each_backend(|store| async move {
        append_events(&store, 4).await?;
        allow_tampering(&store).await?;
        for sql in [
            "DELETE FROM events WHERE seq = 2",
            "UPDATE events SET seq = 2 WHERE seq = 3",
            "UPDATE events SET seq = 3 WHERE seq = 4",
        ] {
            sqlx::query(sql).execute(store.pool()).await?;
        }
        let (seq, reason) = chain_error(store.verify_chain().await)?;
        assert_eq!(seq, 2, "{reason}");
        assert!(reason.contains("prev_hash"), "{reason}");
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn swapped_events_break_the_chain() {
    for_each_backend(|store| async move {
        append_events(&store, 5).await?;
        allow_tampering(&store).await?;
        for sql in [
            "UPDATE events SET seq = -1 WHERE seq = 2",
            "UPDATE events SET seq = 2 WHERE seq = 4",
            "UPDATE events SET seq = 4 WHERE seq = -1",
        ] {
            sqlx::query(sql).execute(store.pool()).await?;
        }
        let (seq, reason) = chain_error(store.verify_chain().await)?;
        assert_eq!(seq, 2, "{reason}");
        Ok(())
    })
    .await;
}

/// Not a correctness test: `cargo test --test store claim_throughput -- --ignored --nocapture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "a measurement, run by hand"]
async fn claim_throughput() {
    for_each_backend(|store| async move {
        const JOBS: usize = 2000;
        for i in 0..JOBS {
            let id = with_request(&store, &format!("r{i}"), i as u64 + 1).await?;
            store.schedule_job(JobKind::Revoke, &id, t(0), t(0)).await?;
        }
        for (workers, batch) in [(1, 1), (4, 1), (4, 10)] {
            // Re-arm every job.
            sqlx::query("UPDATE jobs SET locked_by = NULL, locked_until = NULL")
                .execute(store.pool())
                .await?;
            let started = Instant::now();
            let round = t(workers as i64 * 1000 + batch);
            let mut tasks = Vec::new();
            for w in 0..workers {
                let store = store.clone();
                tasks.push(tokio::spawn(async move {
                    let mut n = 0;
                    loop {
                        let jobs = store
                            .claim_due_jobs(&format!("w{w}"), round, LEASE, batch as u32)
                            .await?;
                        if jobs.is_empty() {
                            break anyhow::Ok(n);
                        }
                        n += jobs.len();
                    }
                }));
            }
            let mut total = 0;
            for task in tasks {
                total += task.await??;
            }
            ensure!(total == JOBS, "claimed {total}");
            let elapsed = started.elapsed();
            eprintln!(
                "{:?}: {JOBS} claims, {workers} workers, batch {batch}: {elapsed:?} ({:.0} jobs/s)",
                store.backend(),
                JOBS as f64 / elapsed.as_secs_f64()
            );
        }
        Ok(())
    })
    .await;
}

// Transactions

#[tokio::test]
async fn free_query_functions_compose_in_one_transaction() {
    for_each_backend(|store| async move {
        let r1 = rid("r1");
        let mut tx = store.pool().begin().await?;
        requests::insert_request(&mut tx, &request("r1", 1)).await?;
        jobs::schedule_job(&mut tx, JobKind::Grant, &r1, t(0), t(0)).await?;
        tx.rollback().await?;
        assert!(store.get_request(&r1).await?.is_none());
        assert!(store.claim_due_jobs("w", t(0), LEASE, 10).await?.is_empty());

        let mut tx = store.pool().begin().await?;
        requests::insert_request(&mut tx, &request("r1", 1)).await?;
        jobs::schedule_job(&mut tx, JobKind::Grant, &r1, t(0), t(0)).await?;
        let event = NewEvent {
            kind: EventKind::Merge,
            request_id: Some(r1.clone()),
            actor: None,
            delivery_id: None,
            data: json!({}),
        };
        events::append_event(&mut tx, &event, t(0)).await?;
        tx.commit().await?;
        assert!(store.get_request(&r1).await?.is_some());
        assert_eq!(store.jobs_for_request(&r1).await?.len(), 1);
        assert_eq!(store.verify_chain().await?, 1);
        Ok(())
    })
    .await;
}

// Schema and durability

#[tokio::test]
async fn migrations_run_twice_are_a_no_op() {
    for_each_backend(|store| async move {
        store.insert_request(&request("r1", 1)).await?;
        store.migrate().await?;
        store.migrate().await?;
        let row = sqlx::query("SELECT COUNT(*) AS n FROM _sqlx_migrations")
            .fetch_one(store.pool())
            .await?;
        let applied: i64 = sqlx::Row::try_get(&row, "n")?;
        assert_eq!(applied, 15, "0001 to 0015, once each");
        assert!(store.get_request(&rid("r1")).await?.is_some());
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn reopened_sqlite_store_sees_earlier_data() {
    let (store, dir) = sqlite_store().await;
    let r1 = with_request(&store, "r1", 1).await.unwrap();
    store.record_delivery(&delivery("d-1", t(0))).await.unwrap();
    store
        .schedule_job(JobKind::Revoke, &r1, t(3600), t(0))
        .await
        .unwrap();
    store
        .claim_due_jobs("crashed", t(3600), LEASE, 1)
        .await
        .unwrap();
    append_events(&store, 3).await.unwrap();
    // The process dies: the pool goes away without a clean shutdown of the workers.
    store.close().await;
    drop(store);

    let store = Store::connect(&sqlite_url(dir.path())).await.unwrap();
    store.migrate().await.unwrap();
    assert!(store.get_request(&r1).await.unwrap().is_some());
    assert!(
        store
            .get_delivery(&delivery("d-1", t(0)).id)
            .await
            .unwrap()
            .is_some()
    );
    assert_eq!(store.verify_chain().await.unwrap(), 3);
    // The crashed worker's revoke is picked up when its lease lapses.
    let jobs = store
        .claim_due_jobs("restarted", t(3660), LEASE, 1)
        .await
        .unwrap();
    assert_eq!(jobs.len(), 1);
    assert_eq!(jobs[0].kind, JobKind::Revoke);
}

#[tokio::test]
async fn sqlite_files_use_wal_and_foreign_keys() {
    let (store, _dir) = sqlite_store().await;
    let mode = sqlx::query("PRAGMA journal_mode")
        .fetch_one(store.pool())
        .await
        .unwrap();
    assert_eq!(
        sqlx::Row::try_get::<String, _>(&mode, 0)
            .unwrap()
            .to_lowercase(),
        "wal"
    );
    let timeout = sqlx::query("PRAGMA busy_timeout")
        .fetch_one(store.pool())
        .await
        .unwrap();
    assert!(sqlx::Row::try_get::<i64, _>(&timeout, 0).unwrap() >= 5000);
    let fk = sqlx::query("PRAGMA foreign_keys")
        .fetch_one(store.pool())
        .await
        .unwrap();
    assert_eq!(sqlx::Row::try_get::<i64, _>(&fk, 0).unwrap(), 1);
}

// Revocation at scale

/// `r` as an active grant: merged at t(0), expiring at t(3600).
fn active(id: &str, pr: u64) -> RequestRecord {
    RequestRecord {
        state: RequestState::Active,
        merge_sha: Some("2222222222222222222222222222222222222222".into()),
        granted_at: Some(t(0)),
        expires_at: Some(t(3600)),
        total_secs: 3600,
        ..request(id, pr)
    }
}

fn revoke_event(id: &str) -> NewEvent {
    NewEvent {
        kind: EventKind::Revoke,
        request_id: Some(rid(id)),
        actor: None,
        delivery_id: None,
        data: json!({"reason": "ttl"}),
    }
}

#[tokio::test]
async fn a_revoke_is_recorded_whole_or_not_at_all() {
    for_each_backend(|store| async move {
        store.insert_request(&active("r1", 1)).await?;
        store
            .schedule_job(JobKind::Remind, &rid("r1"), t(3000), t(0))
            .await?;
        let read = store.get_request(&rid("r1")).await?.context("stored")?;
        let revoked = |mut record: RequestRecord| {
            record.state = RequestState::Revoked;
            record.revoke_reason = Some(RevokeReason::Ttl);
            record.revoked_at = Some(t(3600));
            record
        };
        let mut first = revoked(read.clone());
        store
            .record_revoked(&mut first, &revoke_event("r1"), t(3600))
            .await?;
        ensure!(first.version == read.version + 1);
        // A second run from the same read (a crash, another replica) loses the lock: nothing
        // of it is stored, no second event and no second revert.
        let mut second = revoked(read);
        let err = store
            .record_revoked(&mut second, &revoke_event("r1"), t(3601))
            .await
            .unwrap_err();
        ensure!(matches!(err, StoreError::Conflict { .. }), "{err}");
        let events = store.events_for_request(&rid("r1")).await?;
        ensure!(events.len() == 1 && events[0].kind == EventKind::Revoke);
        let jobs = store.jobs_for_request(&rid("r1")).await?;
        let kinds: Vec<JobKind> = jobs.iter().map(|j| j.kind).collect();
        ensure!(kinds == [JobKind::Revert], "{kinds:?}");
        ensure!(jobs[0].run_at == t(3600));
        let stored = store.get_request(&rid("r1")).await?.context("stored")?;
        ensure!(stored.state == RequestState::Revoked && stored.revoked_at == Some(t(3600)));
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn each_lane_claims_only_its_own_jobs() {
    for_each_backend(|store| async move {
        let r1 = with_request(&store, "r1", 1).await?;
        let r2 = with_request(&store, "r2", 2).await?;
        store.schedule_job(JobKind::Revert, &r1, t(0), t(0)).await?;
        store.schedule_job(JobKind::Grant, &r2, t(1), t(0)).await?;
        store.schedule_job(JobKind::Revoke, &r1, t(5), t(0)).await?;
        store
            .schedule_job(JobKind::Revoke, &r2, t(20), t(0))
            .await?;
        ensure!(store.next_lane_job_due(Lane::Revocation).await? == Some(t(5)));
        ensure!(store.next_lane_job_due(Lane::Forge).await? == Some(t(0)));
        let revokes = store
            .claim_lane_jobs(Lane::Revocation, "w", t(10), LEASE, 10)
            .await?;
        let kinds: Vec<(JobKind, String)> = revokes
            .iter()
            .map(|j| (j.kind, j.request_id.to_string()))
            .collect();
        ensure!(kinds == [(JobKind::Revoke, "r1".into())], "{kinds:?}");
        let rest = store
            .claim_lane_jobs(Lane::Forge, "w", t(10), LEASE, 10)
            .await?;
        let kinds: Vec<JobKind> = rest.iter().map(|j| j.kind).collect();
        ensure!(kinds == [JobKind::Revert, JobKind::Grant], "{kinds:?}");
        for kind in JobKind::ALL {
            let lane = kind.lane();
            ensure!((lane == Lane::Revocation) == (*kind == JobKind::Revoke));
        }
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn active_grants_are_read_a_page_at_a_time_with_what_they_applied() {
    for_each_backend(|store| async move {
        for i in 0..25u64 {
            store
                .insert_request(&active(&format!("r{i:02}"), i + 1))
                .await?;
        }
        store.insert_request(&request("r-pending", 100)).await?;
        for i in (0..25u64).step_by(2) {
            store
                .plan_grant(&AppliedGrant {
                    request_id: rid(&format!("r{i:02}")),
                    provider: "noop".into(),
                    role: serde_json::from_value(json!({"provider": "noop"}))?,
                    files: Vec::new(),
                    request_blob: Some(format!("blob-{i}")),
                    applied_at: t(0),
                })
                .await?;
        }
        let mut seen = Vec::new();
        let mut after: Option<RequestId> = None;
        loop {
            let page = store.active_page(after.as_ref(), 10).await?;
            let Some(last) = page.last() else { break };
            ensure!(page.len() <= 10);
            after = Some(last.record.id.clone());
            for granted in page {
                let index: usize = granted.record.id.as_str()[1..].parse()?;
                ensure!(
                    granted.applied.is_some() == index.is_multiple_of(2),
                    "{index}"
                );
                if let Some(applied) = &granted.applied {
                    let blob = format!("blob-{index}");
                    ensure!(applied.request_blob.as_ref() == Some(&blob), "{index}");
                }
                seen.push(granted.record.id.to_string());
            }
        }
        let expected: Vec<String> = (0..25).map(|i| format!("r{i:02}")).collect();
        ensure!(seen == expected, "{seen:?}");
        let noop = store
            .grants_of_provider("noop", Some(RequestState::Active))
            .await?;
        ensure!(noop.len() == 13 && noop.iter().all(|g| g.applied.is_some()));
        ensure!(store.grants_of_provider("aws-iam", None).await?.is_empty());
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn overdue_reviews_are_found_by_requester() {
    for_each_backend(|store| async move {
        let fast = |id: &str, pr: u64, requester_id: u64, due: i64| RequestRecord {
            fast_path_rule: Some(name("sev1")),
            review_due_at: Some(t(due)),
            requester_id,
            ..active(id, pr)
        };
        store.insert_request(&fast("r-due", 1, 7, 100)).await?;
        store.insert_request(&fast("r-later", 2, 7, 900)).await?;
        store.insert_request(&fast("r-other", 3, 8, 100)).await?;
        let mut reviewed = fast("r-reviewed", 4, 7, 100);
        reviewed.reviewed_by = Some(login("carol"));
        reviewed.reviewed_at = Some(t(50));
        store.insert_request(&reviewed).await?;
        store.insert_request(&active("r-slow-path", 5)).await?;
        let ids = |records: Vec<RequestRecord>| -> Vec<String> {
            records.iter().map(|r| r.id.to_string()).collect()
        };
        ensure!(ids(store.overdue_reviews(7, t(500)).await?) == ["r-due"]);
        ensure!(ids(store.overdue_reviews(7, t(1000)).await?) == ["r-due", "r-later"]);
        ensure!(
            store.overdue_reviews(7, t(100)).await?.is_empty(),
            "due, not overdue"
        );
        ensure!(ids(store.overdue_reviews(8, t(500)).await?) == ["r-other"]);
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn a_comment_reserves_one_request_id_and_an_id_serves_one_comment() {
    use breakglass::store::{CommentKey, Effect};
    for_each_backend(|store| async move {
        let comment = |comment_id| CommentKey {
            forge: ForgeKind::GitHub,
            repository: "acme/access-requests",
            comment_id,
        };
        let (first, second) = (rid("20261126-0214-alice-staging"), rid("other"));
        ensure!(
            store
                .add_comment_effect(comment(7), Effect::Request, &first, t(0))
                .await?
        );
        // The same comment again (its delivery handled twice) reserves nothing more…
        ensure!(
            !store
                .add_comment_effect(comment(7), Effect::Request, &second, t(1))
                .await?
        );
        // …and another comment cannot take the reserved id.
        ensure!(
            !store
                .add_comment_effect(comment(8), Effect::Request, &first, t(1))
                .await?
        );
        ensure!(store.request_id_reserved(&first).await?);
        ensure!(!store.request_id_reserved(&second).await?);
        let found = store.comment_effect(comment(7), Effect::Request).await?;
        ensure!(found == Some(first.clone()), "{found:?}");
        ensure!(
            store
                .comment_effect(comment(7), Effect::Extend)
                .await?
                .is_none()
        );
        // Extensions of one request by several comments are all kept.
        for id in [9, 10] {
            ensure!(
                store
                    .add_comment_effect(comment(id), Effect::Extend, &first, t(2))
                    .await?
            );
        }
        Ok(())
    })
    .await;
}

/// A change built on `branch`, at `head` once its commit is made.
fn change(branch: &str, head: Option<&str>) -> Change {
    Change {
        subject: "20261202-0200-alice-prod".into(),
        kind: ChangeKind::Request,
        branch: branch.into(),
        base_sha: "base".into(),
        head_sha: head.map(str::to_owned),
        pr_number: head.map(|_| 7),
        paths: vec!["requests/prod/20261202-0200-alice-prod.yaml".into()],
        blobs: Default::default(),
        created_at: t(0),
        updated_at: t(1),
    }
}

/// Two runs of one delivery at once (two replicas): the one whose build another run took
/// over learns it at its next write, and cannot write over the build that replaced it; and a
/// run cannot take over a build that went on after it read it.
#[tokio::test]
async fn a_change_build_taken_over_by_another_run_cannot_write_over_it() {
    for_each_backend(|store| async move {
        let first = change("breakglass/request/a", None);
        assert!(store.claim_change(&first, None).await?);
        // A second run that read no build before cannot claim the subject now.
        assert!(
            !store
                .claim_change(&change("breakglass/request/x", None), None)
                .await?
        );
        // A run that read the first build takes it over…
        let second = change("breakglass/request/b", None);
        assert!(store.claim_change(&second, Some(&first)).await?);
        // …and a third that read the first one too is told it is gone.
        let third = change("breakglass/request/c", None);
        assert!(!store.claim_change(&third, Some(&first)).await?);
        // The first run's next write changes nothing; the second's is kept.
        assert!(
            !store
                .update_change(&change(&first.branch, Some("aaa")))
                .await?
        );
        let progressed = change(&second.branch, Some("bbb"));
        assert!(store.update_change(&progressed).await?);
        // A run that read the second build before its commit and PR cannot take it over now.
        assert!(!store.claim_change(&third, Some(&second)).await?);
        let kept = store
            .get_change(&first.subject, ChangeKind::Request)
            .await?
            .context("recorded")?;
        assert_eq!(kept.branch, second.branch);
        assert_eq!(kept.head_sha.as_deref(), Some("bbb"));
        assert_eq!(kept.pr_number, Some(7));
        // One that read it as it is now can.
        assert!(store.claim_change(&third, Some(&kept)).await?);
        Ok(())
    })
    .await;
}

/// Replicas on one PostgreSQL take turns at what a process lock orders within one of them:
/// while one session holds the advisory lock, another waits, and gets it once the first lets
/// go (a review found two replicas removing the same files, the second merge empty). SQLite
/// serves one process and takes none.
#[tokio::test]
async fn a_lock_across_replicas_holds_off_every_other_session_until_it_goes() {
    for_each_backend(|store| async move {
        const KEY: i64 = 42;
        let Some(held) = store.lock_across_replicas(KEY).await? else {
            assert_eq!(store.backend(), breakglass::store::Backend::Sqlite);
            return Ok(());
        };
        let waited =
            tokio::time::timeout(Duration::from_millis(300), store.lock_across_replicas(KEY)).await;
        assert!(
            waited.is_err(),
            "another session got the lock while it was held"
        );
        drop(held);
        let next = tokio::time::timeout(Duration::from_secs(10), store.lock_across_replicas(KEY))
            .await
            .expect("the lock is free once its holder goes")?;
        assert!(next.is_some());
        Ok(())
    })
    .await;
}

/// The lock's transaction sits idle while its holder works with the forge: a server that ends
/// sessions idle in a transaction (`idle_in_transaction_session_timeout`) must not end it and
/// let another replica in (a review found it would). PostgreSQL only.
#[tokio::test]
async fn a_lock_across_replicas_outlasts_the_servers_idle_transaction_timeout() {
    let Some((store, database)) = breakglass::store::testing::postgres_store().await else {
        eprintln!("SKIPPED: BREAKGLASS_TEST_DATABASE_URL not set");
        return;
    };
    store.close().await;
    let mut url = url::Url::parse(database.url()).unwrap();
    url.query_pairs_mut()
        .append_pair("options", "-c idle_in_transaction_session_timeout=100");
    let store = breakglass::store::Store::connect(url.as_str())
        .await
        .unwrap();
    let held = store.lock_across_replicas(7).await.unwrap();
    assert!(held.is_some());
    tokio::time::sleep(Duration::from_millis(600)).await; // six times the server's patience
    let waited =
        tokio::time::timeout(Duration::from_millis(300), store.lock_across_replicas(7)).await;
    assert!(
        waited.is_err(),
        "the server ended the holder's session and its lock"
    );
    drop(held);
    store.close().await;
}
