//! GitLab's REST v4 under `/api/v4`, over the same model as the GitHub routes. Projects are
//! addressed by URL-encoded path (`acme%2Faccess-requests`) or numeric id; merge requests and
//! issues by their own iids.

mod accounts;
mod merge_requests;

pub(crate) use merge_requests::split_draft as split_draft_title;
mod notes;
mod repository;

use axum::Router;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::routing::any;
use serde::de::DeserializeOwned;

use super::http::{GlError, GlResult, observe};
use crate::routes::App;
use crate::state::{ForgeState, RepoRec};

/// The `/api/v4` routes with their own middleware (GitLab's auth, errors and headers).
pub(crate) fn router(app: App) -> Router<App> {
    Router::new()
        .merge(accounts::routes())
        .merge(repository::routes())
        .merge(merge_requests::routes())
        .merge(notes::routes())
        .route(
            "/api/v4/{*rest}",
            any(|| async { GlError::message(axum::http::StatusCode::NOT_FOUND, "404 Not Found") }),
        )
        .layer(axum::middleware::from_fn_with_state(app, observe))
}

/// Path parameters, percent-decoded; ones that do not parse are GitLab's 404.
pub(crate) struct GlPath<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for GlPath<T> {
    type Rejection = GlError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|p| GlPath(p.0))
            .map_err(|_| GlError::message(axum::http::StatusCode::NOT_FOUND, "404 Not Found"))
    }
}

/// The project `id` names: a numeric id or a `namespace/path`.
pub(crate) fn project<'a>(st: &'a ForgeState, id: &str) -> GlResult<&'a RepoRec> {
    let found = match id.parse::<u64>() {
        Ok(n) => st.repos.values().find(|r| r.id == n),
        Err(_) => st.repos.get(id),
    };
    found.ok_or_else(|| GlError::not_found("Project"))
}

/// The model's name (`owner/name`) of the project `id` names.
pub(crate) fn project_name(st: &ForgeState, id: &str) -> GlResult<String> {
    project(st, id).map(RepoRec::full_name)
}
