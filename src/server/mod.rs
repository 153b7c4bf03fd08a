//! The HTTP face of the service: webhook intake, health, readiness and metrics. It knows no
//! business rules: a webhook is verified, parsed, stored, and answered; workers do the rest.

mod github;
mod gitlab;
pub mod listen;
mod recorder;
mod webhook;

pub use recorder::Recorder;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use tokio::sync::Notify;

use crate::clock::Clock;
use crate::forge::github::webhook::MAX_BODY_BYTES;
use crate::metrics::Metrics;
use crate::secret::Secret;
use crate::store::Store;

/// What the handlers share.
#[derive(Clone, Debug)]
pub struct AppState {
    pub store: Store,
    /// Stores verified deliveries, several per transaction under load.
    pub recorder: Recorder,
    /// GitHub's intake, when the service serves a GitHub requests repo.
    pub github: Option<Intake>,
    /// GitLab's intake, when it serves a GitLab requests project.
    pub gitlab: Option<Intake>,
    pub metrics: Arc<Metrics>,
    pub clock: Arc<dyn Clock>,
    /// On PostgreSQL, the clock the service keeps (the database's): `/metrics` shows how far
    /// it is from this host's.
    pub database_clock: Option<Arc<crate::database_clock::DatabaseClock>>,
    /// Wakes the delivery worker as soon as something was stored.
    pub wake: Arc<Notify>,
    /// Where deliveries may have been lost: intake opens one for every delivery it refuses.
    pub gaps: Arc<Gaps>,
}

/// Where the service may have lost webhook deliveries, which no forge sends again on its own:
/// one gap at start (what came while it was down) and one for every delivery intake refused
/// for want of the database. The start-up catch-up (`Workflow::catch_up`) closes the gaps
/// opened before it looked.
#[derive(Debug, Default)]
pub struct Gaps {
    opened: AtomicU64,
    closed: AtomicU64,
}

impl Gaps {
    /// The gaps of a service starting: the time it was down.
    pub fn at_start() -> Self {
        Self {
            opened: AtomicU64::new(1),
            closed: AtomicU64::new(0),
        }
    }

    /// A delivery was refused.
    pub fn open(&self) {
        self.opened.fetch_add(1, Ordering::SeqCst);
    }

    /// How many gaps were opened so far: a look started now closes them ([`Self::close`]).
    pub fn opened(&self) -> u64 {
        self.opened.load(Ordering::SeqCst)
    }

    /// A look that started when `opened` gaps were open has queued what it found.
    pub fn close(&self, opened: u64) {
        self.closed.fetch_max(opened, Ordering::SeqCst);
    }

    /// Whether every gap opened so far was looked at.
    pub fn all_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst) >= self.opened.load(Ordering::SeqCst)
    }
}

/// What one forge's webhook route checks a delivery against.
#[derive(Clone, Debug)]
pub struct Intake {
    /// Webhook secrets (GitHub) or tokens (GitLab); several during a rotation.
    pub secrets: Arc<Vec<Secret>>,
    /// The configured requests repo or project; deliveries for others are ignored.
    pub repository: Arc<str>,
}

/// The service's routes.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/webhooks/github", post(webhook::github))
        .route("/webhooks/gitlab", post(webhook::gitlab))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(axum::middleware::from_fn(listen::request_timeout))
        .with_state(state)
}

/// Ready when the database answers within 2 s.
async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    let answered = tokio::time::timeout(std::time::Duration::from_secs(2), state.store.ping());
    match answered.await {
        Ok(Ok(())) => (StatusCode::OK, "ready\n"),
        Ok(Err(err)) => {
            tracing::warn!(%err, "not ready: database unavailable");
            (StatusCode::SERVICE_UNAVAILABLE, "database unavailable\n")
        }
        Err(_) => {
            tracing::warn!("not ready: the database did not answer within 2 s");
            (StatusCode::SERVICE_UNAVAILABLE, "database unavailable\n")
        }
    }
}

async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    let mut text = state.metrics.render_counters();
    if let Err(err) =
        crate::workflow::gauges::render(&state.store, state.clock.now(), &mut text).await
    {
        tracing::warn!(%err, "metrics: cannot read gauges from the database");
    }
    if let Some(clock) = &state.database_clock {
        let offset = clock.offset().num_milliseconds() as f64 / 1000.0;
        crate::metrics::render_gauge(
            &mut text,
            "breakglass_database_clock_offset_seconds",
            "How far the database server's clock, which replicas keep time by, is ahead of this host's (negative: behind).",
            &[(String::new(), offset)],
        );
    }
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
}
