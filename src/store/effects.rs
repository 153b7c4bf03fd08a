//! What a comment's command did, once (`comment_effects`). A webhook delivery can be handled
//! twice: killed after its work and before it was marked done, or its lease taken over by a
//! second replica. A command that must not happen twice (open a request, extend a grant)
//! writes its effect here, keyed by the comment, so that the second run finds it.

use chrono::{DateTime, Utc};
use sqlx::AnyConnection;

use super::events::{NewEvent, append_event};
use super::requests::{RequestRecord, update_request};
use super::row::{Fields, string_enum};
use super::{ForgeKind, Store, StoreError, to_i64, to_millis};
use crate::names::RequestId;

/// What a comment did.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Effect {
    /// Opened a request (`/breakglass <env> <duration>`); its id is reserved before the PR.
    Request,
    /// Extended a grant (`/breakglass extend`, or an approver's `/breakglass approve`).
    Extend,
    /// Extended a grant by an approver's approval emoji on its PR; keyed by the emoji's id,
    /// which is not a comment's (the forges number them apart).
    ExtendByReaction,
}

string_enum!(Effect {
    Request => "request",
    Extend => "extend",
    ExtendByReaction => "extend_reaction",
});

/// Which comment: its forge, repository and the forge's id of it.
#[derive(Clone, Copy, Debug)]
pub struct CommentKey<'a> {
    pub forge: ForgeKind,
    pub repository: &'a str,
    pub comment_id: u64,
}

/// The request named by `effect` of the comment, if the comment had that effect.
pub async fn comment_effect(
    conn: &mut AnyConnection,
    comment: CommentKey<'_>,
    effect: Effect,
) -> Result<Option<RequestId>, StoreError> {
    let key = comment.comment_id.to_string();
    let row = sqlx::query(
        "SELECT request_id FROM comment_effects \
         WHERE forge = $1 AND repository = $2 AND comment_id = $3 AND effect = $4",
    )
    .bind(comment.forge.as_str())
    .bind(comment.repository)
    .bind(to_i64(comment.comment_id, "comment", &key)?)
    .bind(effect.as_str())
    .fetch_optional(&mut *conn)
    .await?;
    let Some(row) = row else {
        return Ok(None);
    };
    let f = Fields::new(&row, "comment_effects", "request_id");
    let id = f.text("request_id")?;
    RequestId::try_from(id)
        .map(Some)
        .map_err(|reason| f.error(reason))
}

/// Records `effect` of the comment on `request`; `false` when nothing was written (the comment
/// had that effect already, or another comment reserved that request id).
pub async fn add_comment_effect(
    conn: &mut AnyConnection,
    comment: CommentKey<'_>,
    effect: Effect,
    request: &RequestId,
    now: DateTime<Utc>,
) -> Result<bool, StoreError> {
    insert_effect(conn, comment, effect, request, None, now).await
}

/// Reserves `request` as the id of the request the comment opens, asked for on `thread`
/// (`issue:<n>` or `change:<n>`); `false` as for [`add_comment_effect`].
pub async fn add_request_effect(
    conn: &mut AnyConnection,
    comment: CommentKey<'_>,
    thread: &str,
    request: &RequestId,
    now: DateTime<Utc>,
) -> Result<bool, StoreError> {
    insert_effect(conn, comment, Effect::Request, request, Some(thread), now).await
}

async fn insert_effect(
    conn: &mut AnyConnection,
    comment: CommentKey<'_>,
    effect: Effect,
    request: &RequestId,
    thread: Option<&str>,
    now: DateTime<Utc>,
) -> Result<bool, StoreError> {
    let key = comment.comment_id.to_string();
    let written = sqlx::query(
        "INSERT INTO comment_effects \
         (forge, repository, comment_id, effect, request_id, at, thread) \
         VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING",
    )
    .bind(comment.forge.as_str())
    .bind(comment.repository)
    .bind(to_i64(comment.comment_id, "comment", &key)?)
    .bind(effect.as_str())
    .bind(request.as_str())
    .bind(to_millis(now))
    .bind(thread)
    .execute(&mut *conn)
    .await?;
    Ok(written.rows_affected() == 1)
}

/// The thread (its [`crate::forge::Thread::key`]) where a comment asked for request `id`;
/// `None` for a request opened as a PR.
pub async fn thread_asked_on(
    conn: &mut AnyConnection,
    forge: ForgeKind,
    repository: &str,
    id: &RequestId,
) -> Result<Option<String>, StoreError> {
    let row = sqlx::query(
        "SELECT thread FROM comment_effects \
         WHERE forge = $1 AND repository = $2 AND request_id = $3 AND effect = 'request' \
         LIMIT 1",
    )
    .bind(forge.as_str())
    .bind(repository)
    .bind(id.as_str())
    .fetch_optional(&mut *conn)
    .await?;
    row.map(|row| Fields::new(&row, "comment_effects", "thread").text("thread"))
        .transpose()
}

/// The requests that comments on `thread` opened, oldest first, at most `limit` of them (the
/// newest).
pub async fn requests_asked_on(
    conn: &mut AnyConnection,
    forge: ForgeKind,
    repository: &str,
    thread: &str,
    limit: u32,
) -> Result<Vec<RequestId>, StoreError> {
    let rows = sqlx::query(
        "SELECT request_id FROM comment_effects \
         WHERE forge = $1 AND repository = $2 AND thread = $3 AND effect = 'request' \
         ORDER BY at DESC, comment_id DESC LIMIT $4",
    )
    .bind(forge.as_str())
    .bind(repository)
    .bind(thread)
    .bind(i64::from(limit))
    .fetch_all(&mut *conn)
    .await?;
    let mut ids = rows
        .iter()
        .map(|row| {
            let f = Fields::new(row, "comment_effects", "request_id");
            RequestId::try_from(f.text("request_id")?).map_err(|reason| f.error(reason))
        })
        .collect::<Result<Vec<_>, _>>()?;
    ids.reverse();
    Ok(ids)
}

/// Whether some comment reserved `request` as the id of the request it opens.
pub async fn request_id_reserved(
    conn: &mut AnyConnection,
    request: &RequestId,
) -> Result<bool, StoreError> {
    let row = sqlx::query(
        "SELECT 1 AS one FROM comment_effects WHERE request_id = $1 AND effect = 'request'",
    )
    .bind(request.as_str())
    .fetch_optional(&mut *conn)
    .await?;
    Ok(row.is_some())
}

/// Whether the comment was answered in full: all its commands handled and its reply said.
pub async fn comment_answered(
    conn: &mut AnyConnection,
    comment: CommentKey<'_>,
) -> Result<bool, StoreError> {
    let key = comment.comment_id.to_string();
    let row = sqlx::query(
        "SELECT 1 AS one FROM comment_answered \
         WHERE forge = $1 AND repository = $2 AND comment_id = $3",
    )
    .bind(comment.forge.as_str())
    .bind(comment.repository)
    .bind(to_i64(comment.comment_id, "comment", &key)?)
    .fetch_optional(&mut *conn)
    .await?;
    Ok(row.is_some())
}

/// Notes that the comment was answered in full (see [`comment_answered`]); once.
pub async fn mark_comment_answered(
    conn: &mut AnyConnection,
    comment: CommentKey<'_>,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    let key = comment.comment_id.to_string();
    sqlx::query(
        "INSERT INTO comment_answered (forge, repository, comment_id, at) \
         VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
    )
    .bind(comment.forge.as_str())
    .bind(comment.repository)
    .bind(to_i64(comment.comment_id, "comment", &key)?)
    .bind(to_millis(now))
    .execute(&mut *conn)
    .await?;
    Ok(())
}

impl Store {
    /// See [`comment_effect`].
    pub async fn comment_effect(
        &self,
        comment: CommentKey<'_>,
        effect: Effect,
    ) -> Result<Option<RequestId>, StoreError> {
        comment_effect(&mut *self.conn().await?, comment, effect).await
    }

    /// See [`add_comment_effect`].
    pub async fn add_comment_effect(
        &self,
        comment: CommentKey<'_>,
        effect: Effect,
        request: &RequestId,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        add_comment_effect(&mut *self.conn().await?, comment, effect, request, now).await
    }

    /// See [`add_request_effect`].
    pub async fn add_request_effect(
        &self,
        comment: CommentKey<'_>,
        thread: &str,
        request: &RequestId,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        add_request_effect(&mut *self.conn().await?, comment, thread, request, now).await
    }

    /// See [`comment_answered`].
    pub async fn comment_answered(&self, comment: CommentKey<'_>) -> Result<bool, StoreError> {
        comment_answered(&mut *self.conn().await?, comment).await
    }

    /// See [`mark_comment_answered`].
    pub async fn mark_comment_answered(
        &self,
        comment: CommentKey<'_>,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        mark_comment_answered(&mut *self.conn().await?, comment, now).await
    }

    /// See [`requests_asked_on`].
    pub async fn requests_asked_on(
        &self,
        forge: ForgeKind,
        repository: &str,
        thread: &str,
        limit: u32,
    ) -> Result<Vec<RequestId>, StoreError> {
        requests_asked_on(&mut *self.conn().await?, forge, repository, thread, limit).await
    }

    /// See [`thread_asked_on`].
    pub async fn thread_asked_on(
        &self,
        forge: ForgeKind,
        repository: &str,
        id: &RequestId,
    ) -> Result<Option<String>, StoreError> {
        thread_asked_on(&mut *self.conn().await?, forge, repository, id).await
    }

    /// See [`request_id_reserved`].
    pub async fn request_id_reserved(&self, request: &RequestId) -> Result<bool, StoreError> {
        request_id_reserved(&mut *self.conn().await?, request).await
    }

    /// Stores `record` (its new expiry) with its `extend` event, once per comment (or emoji,
    /// by `effect`), in one transaction: `false` (nothing written, `record` unchanged) when it
    /// extended the grant already. On [`StoreError::Conflict`] nothing was written either.
    pub async fn record_extension(
        &self,
        comment: CommentKey<'_>,
        effect: Effect,
        record: &mut RequestRecord,
        event: &NewEvent,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let mut conn = self.conn().await?;
        let mut tx = self.begin_writing(&mut conn).await?;
        if !add_comment_effect(&mut tx, comment, effect, &record.id, now).await? {
            tx.rollback().await?;
            return Ok(false);
        }
        let mut stored = record.clone();
        update_request(&mut tx, &mut stored, now).await?;
        append_event(&mut tx, event, now).await?;
        tx.commit().await?;
        *record = stored;
        Ok(true)
    }
}
