//! GitLab's webhook extractor: the secret token (`X-Gitlab-Token`, echoed verbatim by GitLab,
//! compared in constant time against each configured token), the delivery id
//! (`Idempotency-Key` from GitLab 17.4, else a stable hash of the event's own ids) and the
//! event (`X-Gitlab-Event`), parsed once into a forge-independent [`crate::forge::Delivery`].

use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;

use super::AppState;
use super::webhook::{Reply, Verified, json_content_type, read_body, take_headers};
use crate::forge::gitlab::webhook::{delivery_id, parse, verify_token};
use crate::store::{DeliveryId, ForgeKind};

/// A verified, parsed GitLab delivery.
pub struct FromGitlab(pub Verified);

impl FromRequest<AppState> for FromGitlab {
    type Rejection = Reply;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Reply> {
        let Some(intake) = state.gitlab.as_ref() else {
            return Err((
                StatusCode::NOT_FOUND,
                "this service has no [gitlab] section\n".into(),
            ));
        };
        let (headers, req) = take_headers(req);
        let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
        // The token does not depend on the body: a caller without it is refused unread.
        verify_token(&intake.secrets, header("x-gitlab-token"))
            .map_err(|err| (StatusCode::UNAUTHORIZED, format!("{err}\n")))?;
        let body = read_body(req, state).await?;
        let event = header("x-gitlab-event").ok_or((
            StatusCode::BAD_REQUEST,
            "the X-Gitlab-Event header is missing\n".into(),
        ))?;
        let key = delivery_id(header("idempotency-key"), &body);
        let id = DeliveryId::new(ForgeKind::GitLab, &key)
            .map_err(|err| (StatusCode::BAD_REQUEST, format!("{err}\n")))?;
        json_content_type(&headers)?;
        let delivery = parse(&key, event, &body)
            .map_err(|err| (StatusCode::BAD_REQUEST, format!("{err}\n")))?;
        Ok(Self(Verified {
            id,
            event: event.to_owned(),
            delivery,
        }))
    }
}
