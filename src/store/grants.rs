//! Bulk reads of granted requests with what each grant applied, for the passes that look at
//! many grants at once (reconciliation, shared attachments, orphaned grants): one query per
//! page or per provider, never one per request.

use std::collections::HashMap;

use sqlx::AnyConnection;
use sqlx::any::AnyRow;

use super::applied::AppliedGrant;
use super::requests::{RequestRecord, RequestState, request_columns};
use super::{Store, StoreError};
use crate::names::RequestId;

/// A request with what its grant applied (`None`: nothing recorded, e.g. a grant merged before
/// the record existed).
#[derive(Clone, Debug, PartialEq)]
pub struct Granted {
    pub record: RequestRecord,
    pub applied: Option<AppliedGrant>,
}

/// Up to `limit` active requests whose ids sort after `after` (from the first when `None`),
/// by id, each with what it applied. Page on with the last id returned.
pub async fn active_page(
    conn: &mut AnyConnection,
    after: Option<&RequestId>,
    limit: u32,
) -> Result<Vec<Granted>, StoreError> {
    let rows = sqlx::query(concat!(
        "SELECT ",
        request_columns!(),
        " FROM requests WHERE state = 'active' AND id > $1 ORDER BY id LIMIT $2"
    ))
    .bind(after.map_or("", RequestId::as_str))
    .bind(i64::from(limit))
    .fetch_all(&mut *conn)
    .await?;
    let records = decode_records(&rows)?;
    let (Some(first), Some(last)) = (records.first(), records.last()) else {
        return Ok(Vec::new());
    };
    let applied = sqlx::query(
        "SELECT a.request_id, a.provider, a.role, a.files, a.request_blob, a.applied_at \
         FROM applied_grants a JOIN requests r ON r.id = a.request_id \
         WHERE r.state = 'active' AND r.id >= $1 AND r.id <= $2",
    )
    .bind(first.id.as_str())
    .bind(last.id.as_str())
    .fetch_all(&mut *conn)
    .await?;
    join(records, &applied)
}

/// Every request whose grant `provider` applied, in `state` (any state when `None`), oldest
/// first, each with what it applied.
pub async fn grants_of_provider(
    conn: &mut AnyConnection,
    provider: &str,
    state: Option<RequestState>,
) -> Result<Vec<Granted>, StoreError> {
    const OF_PROVIDER: &str = "id IN (SELECT request_id FROM applied_grants WHERE provider = $1)";
    let (records, applied) = match state {
        Some(state) => {
            let records = sqlx::query(concat!(
                "SELECT ",
                request_columns!(),
                " FROM requests WHERE state = $2 AND id IN \
                 (SELECT request_id FROM applied_grants WHERE provider = $1) \
                 ORDER BY created_at, id"
            ))
            .bind(provider)
            .bind(state.as_str())
            .fetch_all(&mut *conn)
            .await?;
            let applied = sqlx::query(
                "SELECT request_id, provider, role, files, request_blob, applied_at \
                 FROM applied_grants WHERE provider = $1 \
                 AND request_id IN (SELECT id FROM requests WHERE state = $2)",
            )
            .bind(provider)
            .bind(state.as_str())
            .fetch_all(&mut *conn)
            .await?;
            (records, applied)
        }
        None => {
            let records = sqlx::query(sqlx::AssertSqlSafe(format!(
                "SELECT {} FROM requests WHERE {OF_PROVIDER} ORDER BY created_at, id",
                request_columns!()
            )))
            .bind(provider)
            .fetch_all(&mut *conn)
            .await?;
            let applied = sqlx::query(
                "SELECT request_id, provider, role, files, request_blob, applied_at \
                 FROM applied_grants WHERE provider = $1",
            )
            .bind(provider)
            .fetch_all(&mut *conn)
            .await?;
            (records, applied)
        }
    };
    join(decode_records(&records)?, &applied)
}

/// The requests `ids` (those that exist, in no particular order), each with what it applied:
/// two queries for a whole batch of due revokes, whatever its size.
pub async fn granted_by_ids(
    conn: &mut AnyConnection,
    ids: &[RequestId],
) -> Result<Vec<Granted>, StoreError> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let list = placeholders(ids.len());
    let records = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {} FROM requests WHERE id IN ({list})",
        request_columns!()
    )));
    // Not kept prepared: each batch size is another statement.
    let records = ids
        .iter()
        .fold(records.persistent(false), |q, id| q.bind(id.as_str()))
        .fetch_all(&mut *conn)
        .await?;
    let applied = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT request_id, provider, role, files, request_blob, applied_at \
         FROM applied_grants WHERE request_id IN ({list})"
    )));
    let applied = ids
        .iter()
        .fold(applied.persistent(false), |q, id| q.bind(id.as_str()))
        .fetch_all(&mut *conn)
        .await?;
    join(decode_records(&records)?, &applied)
}

/// `$1, $2, … $n`.
fn placeholders(n: usize) -> String {
    (1..=n)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn decode_records(rows: &[AnyRow]) -> Result<Vec<RequestRecord>, StoreError> {
    rows.iter().map(RequestRecord::try_from).collect()
}

/// Pairs each record with its applied grant, in the records' order.
fn join(records: Vec<RequestRecord>, applied: &[AnyRow]) -> Result<Vec<Granted>, StoreError> {
    let mut by_id: HashMap<RequestId, AppliedGrant> = applied
        .iter()
        .map(|row| AppliedGrant::try_from(row).map(|a| (a.request_id.clone(), a)))
        .collect::<Result<_, _>>()?;
    Ok(records
        .into_iter()
        .map(|record| Granted {
            applied: by_id.remove(&record.id),
            record,
        })
        .collect())
}

impl Store {
    /// See [`active_page`].
    pub async fn active_page(
        &self,
        after: Option<&RequestId>,
        limit: u32,
    ) -> Result<Vec<Granted>, StoreError> {
        active_page(&mut *self.conn().await?, after, limit).await
    }

    /// See [`granted_by_ids`].
    pub async fn granted_by_ids(&self, ids: &[RequestId]) -> Result<Vec<Granted>, StoreError> {
        granted_by_ids(&mut *self.conn().await?, ids).await
    }

    /// See [`grants_of_provider`].
    pub async fn grants_of_provider(
        &self,
        provider: &str,
        state: Option<RequestState>,
    ) -> Result<Vec<Granted>, StoreError> {
        grants_of_provider(&mut *self.conn().await?, provider, state).await
    }
}
