//! Gauges read from the database at scrape time: requests by state (active grants among them)
//! and how late the oldest due job is (the revocation lag).

use chrono::{DateTime, Utc};

use crate::metrics::render_gauge;
use crate::store::{Store, StoreError};

/// Appends the database gauges to a metrics page.
pub async fn render(store: &Store, now: DateTime<Utc>, out: &mut String) -> Result<(), StoreError> {
    let by_state = store.count_requests_by_state().await?;
    let samples: Vec<(String, f64)> = by_state
        .iter()
        .map(|(state, n)| (format!("state=\"{state}\""), *n as f64))
        .collect();
    render_gauge(
        out,
        "breakglass_requests",
        "Requests by lifecycle state.",
        &samples,
    );
    let active = by_state
        .iter()
        .filter(|(s, _)| s.to_string() == "active")
        .map(|(_, n)| *n as f64)
        .sum();
    render_gauge(
        out,
        "breakglass_grants_active",
        "Grants active now.",
        &[(String::new(), active)],
    );
    let lag = store.job_lag(now).await?.as_secs_f64();
    render_gauge(
        out,
        "breakglass_timer_lag_seconds",
        "How late the oldest due job is.",
        &[(String::new(), lag)],
    );
    Ok(())
}
