//! GitHub's webhook extractor: the signature (`X-Hub-Signature-256`, HMAC-SHA256 over the exact
//! body, compared in constant time against each configured secret), the delivery id
//! (`X-GitHub-Delivery`) and the event (`X-GitHub-Event`), parsed once into a forge-independent
//! [`crate::forge::Delivery`].

use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;

use super::AppState;
use super::webhook::{Reply, Verified, json_content_type, read_body, take_headers};
use crate::forge::github::webhook::{parse, verify_signature};
use crate::store::{DeliveryId, ForgeKind};

/// A verified, parsed GitHub delivery.
pub struct FromGithub(pub Verified);

impl FromRequest<AppState> for FromGithub {
    type Rejection = Reply;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Reply> {
        let Some(intake) = state.github.as_ref() else {
            return Err((
                StatusCode::NOT_FOUND,
                "this service has no [github] section\n".into(),
            ));
        };
        let (headers, req) = take_headers(req);
        let body = read_body(req, state).await?;
        let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
        verify_signature(&intake.secrets, &body, header("x-hub-signature-256"))
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
        // GitHub can send a webhook form-encoded (`payload=…`); breakglass reads JSON only.
        json_content_type(&headers)?;
        let delivery = parse(key, event, &body)
            .map_err(|err| (StatusCode::BAD_REQUEST, format!("{err}\n")))?;
        Ok(Self(Verified {
            id,
            event: event.to_owned(),
            delivery,
        }))
    }
}
