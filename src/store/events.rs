//! The append-only, tamper-evident event log: every decision, approval, merge, grant, revoke
//! and review, linked to a person where there is one.
//!
//! Events form a hash chain. Each row stores `prev_hash` (the previous row's `hash`; 64 zeros
//! for the first row) and `hash = sha256_hex(canonical)`, where `canonical` is the compact
//! JSON array (serde_json, no whitespace) of the stored column values
//!
//! ```text
//! [seq, at, kind, request_id, actor_id, actor_login, delivery_id, data, prev_hash]
//! ```
//!
//! with `seq`, `at` (unix milliseconds) and `actor_id` as JSON numbers, the nullable columns
//! as `null` when absent, and `data` as a JSON **string** holding the stored JSON text byte
//! for byte (so the hash does not depend on how a JSON library orders object keys).
//! For example the first event hashes
//! `[1,1700000000000,"grant","r1",42,"alice",null,"{\"k\":1}","000…000"]`. Python's
//! `json.dumps(row, separators=(",", ":"), ensure_ascii=False)` produces the same bytes, so
//! the log can be checked without this code.
//!
//! `seq` is assigned by the appender as last + 1 while holding a lock that serializes appends
//! across replicas (`pg_advisory_xact_lock` on PostgreSQL, `BEGIN IMMEDIATE` on SQLite), so
//! the sequence has no gaps. [`verify_chain`] recomputes every hash and names the first row
//! that was edited, deleted (a gap), reordered or inserted. The code never updates or deletes
//! an event, and triggers make the database refuse to.
//!
//! What a chain alone cannot show is a truncated tail or a chain rewritten wholesale from
//! some row on; comparing the latest hash with a copy kept elsewhere (a commit trailer, a
//! log line) catches those.

use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};
use sqlx::AnyConnection;
use sqlx::any::AnyRow;
use sqlx::{Connection, Row};

use super::deliveries::DeliveryId;
use super::row::Fields;
use super::{Backend, Store, StoreError, to_i64, to_millis};
use crate::names::{Login, RequestId};

/// The `prev_hash` of the first event.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// The key of the PostgreSQL advisory lock that serializes appends (arbitrary, fixed:
/// "brkglass" in ASCII).
const APPEND_LOCK: i64 = 0x6272_6b67_6c61_7373;

/// Rows read per round trip by [`verify_chain`].
const VERIFY_BATCH: i64 = 1000;

/// What happened: one closed list, shared by the workflow that writes the log, the store that
/// chains it and the audit that checks it, so that no kind is misspelled in one of them. The
/// stored spelling is the snake_case name (`grant`, `approval_withdrawn`).
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Hash,
    strum::Display,
    strum::EnumString,
    strum::IntoStaticStr,
    strum::VariantArray,
)]
#[strum(serialize_all = "snake_case")]
pub enum EventKind {
    /// A webhook was received.
    Delivery,
    /// The policy was evaluated.
    Decision,
    /// Someone approved.
    Approval,
    /// An approval's signal was taken back (an emoji removed, a review dismissed, a comment
    /// deleted).
    ApprovalWithdrawn,
    /// An approval in the same second as a push: the approver was asked to approve again.
    ApprovalAmbiguous,
    /// An approver's emoji that cannot approve what it answers (an extension that can no
    /// longer be given): the approver was told why, once.
    ApprovalRefused,
    /// The bot merged the request PR.
    Merge,
    /// Access was granted.
    Grant,
    /// Access was extended.
    Extend,
    /// Access was revoked (the provider revoke, at the expiry or earlier).
    Revoke,
    /// The revert PR that removes a revoked request's files was merged (`revert_sha`), or
    /// nothing of it was left on the default branch. Follows its `revoke`.
    Revert,
    /// A request or grant file that reached the default branch without the bot was removed.
    Remove,
    /// A fast-path grant was reviewed after the fact.
    Review,
    /// A fast-path review passed its deadline.
    ReviewOverdue,
    /// The request was closed without a grant.
    Close,
    /// Someone else pushed to a branch of the bot's.
    Tampering,
    /// A revert could not be merged; people were told.
    RevertBlocked,
}

impl EventKind {
    /// The stored spelling.
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

/// The person (or bot) an event is attributed to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EventActor {
    /// The forge's numeric user id.
    pub id: u64,
    /// The login at the time.
    pub login: Login,
}

/// An event to append.
#[derive(Clone, Debug, PartialEq)]
pub struct NewEvent {
    /// What happened.
    pub kind: EventKind,
    /// The request it is about, if any.
    pub request_id: Option<RequestId>,
    /// Who caused it; `None` for the bot's own timed actions (e.g. a revoke at expiry).
    pub actor: Option<EventActor>,
    /// The webhook delivery that caused it, if one did.
    pub delivery_id: Option<DeliveryId>,
    /// Details, free-form. Never put secrets here: the log is kept forever.
    pub data: serde_json::Value,
}

/// A stored event.
#[derive(Clone, Debug, PartialEq)]
pub struct EventRecord {
    /// 1, 2, 3… without gaps.
    pub seq: u64,
    /// When it was appended.
    pub at: DateTime<Utc>,
    /// What happened.
    pub kind: EventKind,
    /// The request it is about, if any.
    pub request_id: Option<RequestId>,
    /// Who caused it, if a person did.
    pub actor: Option<EventActor>,
    /// The webhook delivery that caused it, if one did.
    pub delivery_id: Option<DeliveryId>,
    /// Details.
    pub data: serde_json::Value,
    /// The previous event's `hash` ([`GENESIS_HASH`] for the first).
    pub prev_hash: String,
    /// `sha256_hex` of this event's canonical form (see the module docs).
    pub hash: String,
}

/// Why the event log does not verify: the first bad row and what is wrong with it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("event log broken at seq {seq}: {reason}")]
pub struct ChainError {
    /// The `seq` stored in the first row that does not verify.
    pub seq: i64,
    /// What is wrong with it.
    pub reason: String,
}

/// The hashed columns, as stored.
#[derive(Debug)]
struct Raw {
    seq: i64,
    at: i64,
    kind: String,
    request_id: Option<String>,
    actor_id: Option<i64>,
    actor_login: Option<String>,
    delivery_id: Option<String>,
    data: String,
    prev_hash: String,
}

impl Raw {
    /// `sha256_hex` of the canonical JSON array (see the module docs).
    fn hash(&self) -> String {
        let canonical = serde_json::to_string(&(
            self.seq,
            self.at,
            &self.kind,
            &self.request_id,
            self.actor_id,
            &self.actor_login,
            &self.delivery_id,
            &self.data,
            &self.prev_hash,
        ))
        .unwrap_or_default(); // a tuple of numbers, strings and nulls always serializes
        hex::encode(Sha256::digest(canonical.as_bytes()))
    }

    fn read(row: &AnyRow) -> Result<(Self, String), sqlx::Error> {
        Ok((
            Self {
                seq: row.try_get("seq")?,
                at: row.try_get("at")?,
                kind: row.try_get("kind")?,
                request_id: row.try_get("request_id")?,
                actor_id: row.try_get("actor_id")?,
                actor_login: row.try_get("actor_login")?,
                delivery_id: row.try_get("delivery_id")?,
                data: row.try_get("data")?,
                prev_hash: row.try_get("prev_hash")?,
            },
            row.try_get("hash")?,
        ))
    }
}

macro_rules! columns {
    () => {
        "seq, at, kind, request_id, actor_id, actor_login, delivery_id, data, prev_hash, hash"
    };
}

impl TryFrom<&AnyRow> for EventRecord {
    type Error = StoreError;

    fn try_from(row: &AnyRow) -> Result<Self, StoreError> {
        let f = Fields::new(row, "events", "seq");
        let actor = match (f.opt_uint("actor_id")?, f.opt_text("actor_login")?) {
            (Some(id), Some(login)) => Some(EventActor {
                id,
                login: Login::try_from(login)
                    .map_err(|err| f.error(format!("column `actor_login`: {err}")))?,
            }),
            (None, None) => None,
            _ => return Err(f.error("`actor_id` and `actor_login` must be set together")),
        };
        let seq = f.uint("seq")?;
        if seq == 0 {
            return Err(f.error("`seq` starts at 1"));
        }
        Ok(Self {
            seq,
            at: f.time("at")?,
            kind: f.parsed("kind", |text| {
                text.parse::<EventKind>()
                    .map_err(|_| format!("`{}` is not an event kind", crate::names::shorten(&text)))
            })?,
            request_id: f.opt_parsed("request_id", RequestId::try_from)?,
            actor,
            delivery_id: f.opt_parsed("delivery_id", |text| text.parse())?,
            data: f.json("data")?,
            prev_hash: f.text("prev_hash")?,
            hash: f.text("hash")?,
        })
    }
}

/// Appends an event at `now`, chained to the last one. Appends are serialized across
/// connections and replicas; on SQLite, call this outside a transaction (or inside one that
/// began with `BEGIN IMMEDIATE`), or a concurrent writer may make it fail as busy.
pub async fn append_event(
    conn: &mut AnyConnection,
    event: &NewEvent,
    now: DateTime<Utc>,
) -> Result<EventRecord, StoreError> {
    let appended = append(conn, event, now, false).await?;
    // Only a conditional append can skip; this one never does.
    appended.ok_or_else(|| StoreError::Invalid {
        what: "event",
        key: event.kind.to_string(),
        reason: "an unconditional append appended nothing".into(),
    })
}

/// Appends the event unless its request already has an event of its kind: the steps that
/// happen once in a request's life (merge, grant, revoke) are logged once, even when a step
/// runs again after a crash or on two replicas at once. `None` when it was there already.
/// The check runs under the append lock, so two concurrent appends cannot both pass it.
pub async fn append_event_once(
    conn: &mut AnyConnection,
    event: &NewEvent,
    now: DateTime<Utc>,
) -> Result<Option<EventRecord>, StoreError> {
    append(conn, event, now, event.request_id.is_some()).await
}

async fn append(
    conn: &mut AnyConnection,
    event: &NewEvent,
    now: DateTime<Utc>,
    once: bool,
) -> Result<Option<EventRecord>, StoreError> {
    let key = event.kind.to_string();
    let actor_id = event
        .actor
        .as_ref()
        .map(|actor| to_i64(actor.id, "event", &key))
        .transpose()?;
    let mut tx = begin_append(conn).await?;
    if once && logged_already(&mut tx, event).await? {
        tx.rollback().await?;
        return Ok(None);
    }
    let (seq, prev_hash) = next_link(&mut tx).await?;
    let raw = Raw {
        seq,
        at: to_millis(now),
        kind: key,
        request_id: event.request_id.as_ref().map(RequestId::to_string),
        actor_id,
        actor_login: event.actor.as_ref().map(|actor| actor.login.to_string()),
        delivery_id: event.delivery_id.as_ref().map(DeliveryId::to_string),
        data: event.data.to_string(),
        prev_hash,
    };
    let hash = raw.hash();
    insert(&mut tx, &raw, &hash).await?;
    tx.commit().await?;
    Ok(Some(EventRecord {
        seq: u64::try_from(raw.seq).unwrap_or_default(), // at least 1: last + 1 or 1
        at: DateTime::from_timestamp_millis(raw.at).unwrap_or(now),
        kind: event.kind,
        request_id: event.request_id.clone(),
        actor: event.actor.clone(),
        delivery_id: event.delivery_id.clone(),
        data: event.data.clone(),
        prev_hash: raw.prev_hash,
        hash,
    }))
}

/// A transaction that holds the append lock: one appender at a time reads the chain's tip.
async fn begin_append(
    conn: &mut AnyConnection,
) -> Result<sqlx::Transaction<'_, sqlx::Any>, StoreError> {
    let backend = Backend::of(conn)?;
    // BEGIN IMMEDIATE takes SQLite's write lock before we read the last hash; a plain BEGIN
    // would read first and could then fail to upgrade to a writer.
    let mut tx = if backend == Backend::Sqlite && !conn.is_in_transaction() {
        conn.begin_with("BEGIN IMMEDIATE").await?
    } else {
        conn.begin().await?
    };
    if backend == Backend::Postgres {
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(APPEND_LOCK)
            .execute(&mut *tx)
            .await?;
    }
    Ok(tx)
}

/// Whether the event's request already has an event of its kind.
async fn logged_already(conn: &mut AnyConnection, event: &NewEvent) -> Result<bool, StoreError> {
    let seen = sqlx::query("SELECT seq FROM events WHERE request_id = $1 AND kind = $2 LIMIT 1")
        .bind(event.request_id.as_ref().map(RequestId::to_string))
        .bind(event.kind.to_string())
        .fetch_optional(conn)
        .await?;
    Ok(seen.is_some())
}

/// The next event's `seq` and the hash it chains to: the last event's, or the genesis hash.
async fn next_link(conn: &mut AnyConnection) -> Result<(i64, String), StoreError> {
    let last = sqlx::query("SELECT seq, hash FROM events ORDER BY seq DESC LIMIT 1")
        .fetch_optional(conn)
        .await?;
    match &last {
        Some(row) => {
            let f = Fields::new(row, "events", "seq");
            let seq = f
                .int("seq")?
                .checked_add(1)
                .ok_or_else(|| f.error("`seq` cannot be incremented any further"))?;
            Ok((seq, f.text("hash")?))
        }
        None => Ok((1, GENESIS_HASH.to_owned())),
    }
}

async fn insert(conn: &mut AnyConnection, raw: &Raw, hash: &str) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO events (seq, at, kind, request_id, actor_id, actor_login, delivery_id, \
         data, prev_hash, hash) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
    )
    .bind(raw.seq)
    .bind(raw.at)
    .bind(&raw.kind)
    .bind(&raw.request_id)
    .bind(raw.actor_id)
    .bind(&raw.actor_login)
    .bind(&raw.delivery_id)
    .bind(&raw.data)
    .bind(&raw.prev_hash)
    .bind(hash)
    .execute(conn)
    .await?;
    Ok(())
}

/// Up to `limit` events with `seq > after_seq`, in order (`after_seq = 0` from the start).
pub async fn events(
    conn: &mut AnyConnection,
    after_seq: u64,
    limit: u32,
) -> Result<Vec<EventRecord>, StoreError> {
    sqlx::query(concat!(
        "SELECT ",
        columns!(),
        " FROM events WHERE seq > $1 ORDER BY seq LIMIT $2"
    ))
    .bind(i64::try_from(after_seq).unwrap_or(i64::MAX))
    .bind(i64::from(limit))
    .fetch_all(&mut *conn)
    .await?
    .iter()
    .map(EventRecord::try_from)
    .collect()
}

/// The events about one request, in order.
pub async fn events_for_request(
    conn: &mut AnyConnection,
    request_id: &RequestId,
) -> Result<Vec<EventRecord>, StoreError> {
    sqlx::query(concat!(
        "SELECT ",
        columns!(),
        " FROM events WHERE request_id = $1 ORDER BY seq"
    ))
    .bind(request_id.as_str())
    .fetch_all(&mut *conn)
    .await?
    .iter()
    .map(EventRecord::try_from)
    .collect()
}

/// Recomputes the whole chain. Returns the number of events, or [`StoreError::Chain`] naming
/// the first row whose `seq` is not the previous one + 1 (a deleted or reordered row), whose
/// `prev_hash` is not the previous row's `hash`, or whose `hash` does not match its contents
/// (an edited row).
pub async fn verify_chain(conn: &mut AnyConnection) -> Result<u64, StoreError> {
    let mut expected_seq: i64 = 1;
    let mut prev_hash = GENESIS_HASH.to_owned();
    // Start below any value, so that rows moved to zero or negative seqs are seen too.
    let mut cursor = i64::MIN;
    loop {
        let rows = sqlx::query(concat!(
            "SELECT ",
            columns!(),
            " FROM events WHERE seq > $1 ORDER BY seq LIMIT $2"
        ))
        .bind(cursor)
        .bind(VERIFY_BATCH)
        .fetch_all(&mut *conn)
        .await?;
        let Some(last) = rows.last() else {
            return Ok(u64::try_from(expected_seq - 1).unwrap_or_default());
        };
        cursor = last.try_get("seq")?;
        for row in &rows {
            let seq: i64 = row.try_get("seq")?;
            let broken = |reason: String| StoreError::Chain(ChainError { seq, reason });
            if seq != expected_seq {
                return Err(broken(if seq > expected_seq {
                    format!("expected seq {expected_seq}: rows are missing (deleted?)")
                } else {
                    format!("expected seq {expected_seq}: rows are out of order")
                }));
            }
            let (raw, hash) =
                Raw::read(row).map_err(|err| broken(format!("unreadable row: {err}")))?;
            if raw.prev_hash != prev_hash {
                return Err(broken(format!(
                    "prev_hash does not match the hash of seq {} (a row before it was \
                     replaced, removed or reordered)",
                    seq - 1
                )));
            }
            if raw.hash() != hash {
                return Err(broken(
                    "hash does not match the row's contents (the row was edited)".to_owned(),
                ));
            }
            prev_hash = hash;
            expected_seq += 1;
        }
    }
}

impl Store {
    /// See [`append_event`].
    pub async fn append_event(
        &self,
        event: &NewEvent,
        now: DateTime<Utc>,
    ) -> Result<EventRecord, StoreError> {
        append_event(&mut *self.conn().await?, event, now).await
    }

    /// See [`append_event_once`].
    pub async fn append_event_once(
        &self,
        event: &NewEvent,
        now: DateTime<Utc>,
    ) -> Result<Option<EventRecord>, StoreError> {
        append_event_once(&mut *self.conn().await?, event, now).await
    }

    /// Up to `limit` events after `after_seq`, in order.
    pub async fn events(&self, after_seq: u64, limit: u32) -> Result<Vec<EventRecord>, StoreError> {
        events(&mut *self.conn().await?, after_seq, limit).await
    }

    /// The events about one request, in order.
    pub async fn events_for_request(
        &self,
        request_id: &RequestId,
    ) -> Result<Vec<EventRecord>, StoreError> {
        events_for_request(&mut *self.conn().await?, request_id).await
    }

    /// See [`verify_chain`]: the number of events, or the first row that does not verify.
    pub async fn verify_chain(&self) -> Result<u64, StoreError> {
        verify_chain(&mut *self.conn().await?).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_form_is_the_documented_json_array() {
        let raw = Raw {
            seq: 1,
            at: 1_700_000_000_000,
            kind: "grant".into(),
            request_id: Some("r1".into()),
            actor_id: Some(42),
            actor_login: Some("alice".into()),
            delivery_id: None,
            data: r#"{"k":1}"#.into(),
            prev_hash: GENESIS_HASH.into(),
        };
        let canonical = format!(
            r#"[1,1700000000000,"grant","r1",42,"alice",null,"{{\"k\":1}}","{GENESIS_HASH}"]"#
        );
        assert_eq!(
            raw.hash(),
            hex::encode(Sha256::digest(canonical.as_bytes()))
        );
        // Pinned (and cross-checked with Python's `json.dumps(..., separators=(",", ":"),
        // ensure_ascii=False)`), so that a change of the canonical form cannot go unnoticed:
        // old logs would stop verifying.
        assert_eq!(
            raw.hash(),
            "9c91a730861d2b3b38a5a06cb71ba6a6ccb8215d53637b5b17760cf273a1d300"
        );
    }

    #[test]
    fn event_kinds_read_back_as_stored_and_nothing_else_reads() {
        use strum::VariantArray as _;
        for kind in EventKind::VARIANTS {
            assert_eq!(kind.as_str().parse::<EventKind>(), Ok(*kind));
            assert!(
                kind.as_str()
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c == '_')
            );
        }
        assert_eq!(
            EventKind::ApprovalWithdrawn.to_string(),
            "approval_withdrawn"
        );
        for bad in ["Grant", "", "a b", "job.failed", "grants"] {
            assert!(bad.parse::<EventKind>().is_err(), "{bad}");
        }
    }
}
