//! `POST /webhooks/<forge>`: each forge's extractor ([`super::github`], [`super::gitlab`]) verifies the delivery
//! over the exact body and parses it once; here it is stored durably, and only then answered
//! 2xx. A redelivery (same delivery id) changes nothing. The worker reads the stored event
//! back as it was parsed; it never parses a forge payload again.
//!
//! Answers: 202 stored; 200 duplicate or ignored event; 400 unparseable; 401 bad signature or
//! token; 413 too large (by the body limit layer); 503 when the database is down (the forge
//! lets the operator redeliver).

use std::sync::atomic::{AtomicU64, Ordering};

use axum::body::Bytes;
use axum::extract::{FromRequest, Request, State};
use axum::http::{HeaderMap, StatusCode};

use super::AppState;
use super::github::FromGithub;
use super::gitlab::FromGitlab;
use crate::forge::{Delivery, ForgeEvent};
use crate::store::{DeliveryId, NewDelivery, Recorded};

pub(super) type Reply = (StatusCode, String);

/// A delivery whose authenticity was checked and whose payload was parsed.
pub struct Verified {
    pub id: DeliveryId,
    /// The forge's event name, as sent.
    pub event: String,
    pub delivery: Delivery,
}

/// The request's headers, taken out of it rather than copied.
/// A delivery's body is JSON: a `Content-Type` that says otherwise (GitHub's form encoding,
/// `payload=…`, is a webhook setting) is refused with `415` and what to change. A missing one
/// is taken as JSON, which the parse then checks.
pub(super) fn json_content_type(headers: &HeaderMap) -> Result<(), Reply> {
    let Some(given) = headers.get(axum::http::header::CONTENT_TYPE) else {
        return Ok(());
    };
    let media = given
        .to_str()
        .unwrap_or_default()
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    if media == "application/json" {
        return Ok(());
    }
    let shown: String = media.chars().take(80).collect();
    Err((
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        format!(
            "breakglass reads webhooks as JSON, not `{shown}`: set the webhook's content type to application/json\n"
        ),
    ))
}

pub(super) fn take_headers(req: Request) -> (HeaderMap, Request) {
    let (mut parts, body) = req.into_parts();
    let headers = std::mem::take(&mut parts.headers);
    (headers, Request::from_parts(parts, body))
}

/// The request's body, read whole up to the body limit layer's size.
pub(super) async fn read_body(req: Request, state: &AppState) -> Result<Bytes, Reply> {
    Bytes::from_request(req, state)
        .await
        .map_err(|err| (err.status(), format!("{}\n", err.body_text())))
}

pub async fn github(State(state): State<AppState>, verified: Result<FromGithub, Reply>) -> Reply {
    intake(&state, "github", verified.map(|FromGithub(v)| v)).await
}

pub async fn gitlab(State(state): State<AppState>, verified: Result<FromGitlab, Reply>) -> Reply {
    intake(&state, "gitlab", verified.map(|FromGitlab(v)| v)).await
}

/// Stores a verified delivery (or answers the extractor's refusal), counting the outcome.
async fn intake(state: &AppState, forge: &str, verified: Result<Verified, Reply>) -> Reply {
    let result = match verified {
        Ok(verified) => store(state, verified).await,
        Err(refused) => Err(refused),
    };
    let outcome = match &result {
        Ok((StatusCode::ACCEPTED, _)) => "accepted",
        Ok((_, text)) if text.starts_with("duplicate") => "duplicate",
        Ok(_) => "ignored",
        Err((StatusCode::UNAUTHORIZED, _)) => "bad_signature",
        Err((StatusCode::SERVICE_UNAVAILABLE, _)) => "unavailable",
        Err(_) => "bad_request",
    };
    state.metrics.inc(
        "breakglass_webhooks_total",
        format!("forge=\"{forge}\",result=\"{outcome}\""),
    );
    if let Err((status, why)) = &result {
        log_refusal(forge, *status, why);
    }
    result.unwrap_or_else(|reply| reply)
}

/// Says why a delivery was refused (a wrong secret, a missing header), so that an operator can
/// see it; the reasons are our own words and never carry a secret. At most one line every
/// 10 s, with how many refusals it stands for, so that a flood of bad requests cannot flood
/// the log.
fn log_refusal(forge: &str, status: StatusCode, why: &str) {
    static REFUSED: AtomicU64 = AtomicU64::new(0);
    static LAST_LOGGED: AtomicU64 = AtomicU64::new(0);
    let refused = REFUSED.fetch_add(1, Ordering::Relaxed) + 1;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let last = LAST_LOGGED.load(Ordering::Relaxed);
    if now >= last + 10
        && LAST_LOGGED
            .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
    {
        REFUSED.store(0, Ordering::Relaxed);
        tracing::warn!(
            forge,
            status = status.as_u16(),
            reason = why.trim_end(),
            refused,
            "webhook delivery refused"
        );
    }
}

async fn store(state: &AppState, verified: Verified) -> Result<Reply, Reply> {
    let Verified {
        id,
        event,
        delivery,
    } = verified;
    if matches!(delivery.event, ForgeEvent::Ping) {
        return Ok((StatusCode::OK, "pong\n".into()));
    }
    if let ForgeEvent::Ignored { event } = &delivery.event {
        return Ok((
            StatusCode::OK,
            format!("ignored: breakglass does not act on `{event}`\n"),
        ));
    }
    let intake = match id.forge() {
        crate::store::ForgeKind::GitHub => state.github.as_ref(),
        crate::store::ForgeKind::GitLab => state.gitlab.as_ref(),
    };
    let configured = intake.map(|i| &*i.repository).unwrap_or_default();
    if delivery
        .repository
        .as_deref()
        .is_some_and(|repo| !repo.eq_ignore_ascii_case(configured))
    {
        return Ok((
            StatusCode::OK,
            "ignored: not the requests repository\n".into(),
        ));
    }
    let payload = serde_json::to_string(&delivery).map_err(|err| {
        (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("cannot encode the event: {err}\n"),
        )
    })?;
    let new = NewDelivery {
        id,
        event,
        payload,
        received_at: state.clock.now(),
    };
    let correlation = new.id.to_string();
    match state.recorder.record(new).await {
        Ok(Recorded::New) => {
            state.wake.notify_one();
            Ok((StatusCode::ACCEPTED, "accepted\n".into()))
        }
        Ok(Recorded::Duplicate) => Ok((
            StatusCode::OK,
            "duplicate delivery; nothing changed\n".into(),
        )),
        Err(err) => {
            tracing::error!(%err, delivery = %correlation, "cannot store a webhook delivery");
            state.gaps.open();
            Err((
                StatusCode::SERVICE_UNAVAILABLE,
                format!("cannot store the delivery now; redeliver {correlation} later\n"),
            ))
        }
    }
}
