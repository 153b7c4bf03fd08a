//! `POST /webhooks/github`: verify the signature over the exact body, parse, store durably,
//! and only then answer 2xx. A redelivery (same `X-GitHub-Delivery`) changes nothing.
//!
//! Answers: 202 stored; 200 duplicate or ignored event; 400 unparseable; 401 bad signature;
//! 413 too large (by the body limit layer); 503 when the database is down (GitHub lets the
//! operator redeliver).

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};

use super::AppState;
use crate::forge::ForgeEvent;
use crate::forge::github::webhook::{parse, verify_signature};
use crate::store::ForgeKind;
use crate::store::{DeliveryId, NewDelivery, Recorded};

type Reply = (StatusCode, String);

pub async fn github(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Reply {
    let result = accept(&state, &headers, &body).await;
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
        format!("forge=\"github\",result=\"{outcome}\""),
    );
    result.unwrap_or_else(|reply| reply)
}

async fn accept(state: &AppState, headers: &HeaderMap, body: &Bytes) -> Result<Reply, Reply> {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    verify_signature(&state.github_secrets, body, header("x-hub-signature-256"))
        .map_err(|err| (StatusCode::UNAUTHORIZED, format!("{err}\n")))?;
    let event = header("x-github-event").ok_or((
        StatusCode::BAD_REQUEST,
        "the X-GitHub-Event header is missing\n".into(),
    ))?;
    let key = header("x-github-delivery").ok_or((
        StatusCode::BAD_REQUEST,
        "the X-GitHub-Delivery header is missing\n".into(),
    ))?;
    let id = DeliveryId::new(ForgeKind::GitHub, key)
        .map_err(|err| (StatusCode::BAD_REQUEST, format!("{err}\n")))?;
    let delivery =
        parse(key, event, body).map_err(|err| (StatusCode::BAD_REQUEST, format!("{err}\n")))?;
    if matches!(delivery.event, ForgeEvent::Ping) {
        return Ok((StatusCode::OK, "pong\n".into()));
    }
    if let ForgeEvent::Ignored { event } = &delivery.event {
        return Ok((
            StatusCode::OK,
            format!("ignored: breakglass does not act on `{event}`\n"),
        ));
    }
    if delivery
        .repository
        .as_deref()
        .is_some_and(|repo| !repo.eq_ignore_ascii_case(&state.repository))
    {
        return Ok((
            StatusCode::OK,
            "ignored: not the requests repository\n".into(),
        ));
    }
    let payload = String::from_utf8(body.to_vec())
        .map_err(|_| (StatusCode::BAD_REQUEST, "the body is not UTF-8\n".into()))?;
    let new = NewDelivery {
        id,
        event: event.to_owned(),
        payload,
        received_at: state.clock.now(),
    };
    match state.store.record_delivery(&new).await {
        Ok(Recorded::New) => {
            state.wake.notify_one();
            Ok((StatusCode::ACCEPTED, "accepted\n".into()))
        }
        Ok(Recorded::Duplicate) => Ok((
            StatusCode::OK,
            "duplicate delivery; nothing changed\n".into(),
        )),
        Err(err) => {
            let correlation = new.id.to_string();
            tracing::error!(%err, delivery = %correlation, "cannot store a webhook delivery");
            Err((
                StatusCode::SERVICE_UNAVAILABLE,
                format!("cannot store the delivery now; redeliver {correlation} later\n"),
            ))
        }
    }
}
