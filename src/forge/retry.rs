//! The one retry layer for forge calls (octocrab's own retries are switched off: two layers of
//! retries hide bugs and multiply load). Each attempt has a timeout; transient errors and rate
//! limits are retried a few times with backoff, honouring the forge's `retry-after`. Longer
//! outages are the job queue's business: it retries the whole step later, forever if needed.

use std::future::Future;
use std::time::Duration;

use super::error::ForgeError;

/// How long one attempt of a call may take by default (`serve`'s
/// `Options::forge_timeout`): GitHub answers almost every call within a second; ten leaves
/// room for a slow merge without letting a hung connection hold the work for long.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// How long the first retry of a failed call waits (each next one waits twice as long):
/// production's, and `serve`'s `Options::forge_backoff` by default.
pub const FIRST_BACKOFF: Duration = Duration::from_millis(200);

/// How hard to try one call.
#[derive(Clone, Copy, Debug)]
pub struct RetryPolicy {
    pub attempts: u32,
    pub timeout: Duration,
    pub first_backoff: Duration,
    /// A rate limit asking to wait longer than this is returned to the caller instead.
    pub max_wait: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            attempts: 4,
            timeout: DEFAULT_TIMEOUT,
            first_backoff: FIRST_BACKOFF,
            max_wait: Duration::from_secs(30),
        }
    }
}

/// The forge's own time of a response (its `Date` header, whole seconds, Unix time), to
/// subtract a rate limit's reset time from: both are the forge's clock, so a bot whose clock
/// runs ahead or behind still waits as long as the forge asked. Only without a readable `Date`
/// is `fallback` (the bot's clock) used.
pub fn forge_now(headers: &http::HeaderMap, fallback: i64) -> i64 {
    forge_date(headers).map_or(fallback, |at| at.timestamp())
}

/// Where a listing of what was made within `window` starts: `kept` once a first page fixed
/// it, else `window` before the forge's own time of this answer (`None` when it says none:
/// the bot's clock is never put in its place).
pub fn window_start(
    kept: &mut Option<chrono::DateTime<chrono::Utc>>,
    headers: &http::HeaderMap,
    window: chrono::TimeDelta,
) -> Option<chrono::DateTime<chrono::Utc>> {
    if kept.is_none() {
        *kept = forge_date(headers).map(|now| now - window);
    }
    *kept
}

/// The forge's own time of a response (its `Date` header), if it says one.
pub fn forge_date(headers: &http::HeaderMap) -> Option<chrono::DateTime<chrono::Utc>> {
    headers
        .get(http::header::DATE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| chrono::DateTime::parse_from_rfc2822(v).ok())
        .map(|at| at.with_timezone(&chrono::Utc))
}

/// The look of a branch creation whose answer was lost: done when the branch (its head read
/// as `head`) is at `sha`, not done when it is elsewhere or missing (`404`).
pub fn branch_at(head: Result<String, ForgeError>, sha: &str) -> Result<Option<()>, ForgeError> {
    match head {
        Ok(head) => Ok((head == sha).then_some(())),
        Err(err) if err.status() == Some(404) => Ok(None),
        Err(err) => Err(err),
    }
}

/// Runs `call` until it succeeds, fails for good, or the attempts are used up.
pub async fn perform_retryable<T, F, Fut>(
    policy: RetryPolicy,
    name: &str,
    call: F,
) -> Result<T, ForgeError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, ForgeError>>,
{
    perform_checked(policy, name, call, || async { Ok(None) }).await
}

/// [`perform_retryable`] for a call that must not be made twice (a note): after a failure
/// that leaves open whether the forge did the work (no answer, a 5xx, a dropped connection)
/// `done` looks before the call is made again, and its answer is the call's.
pub async fn perform_checked<T, F, Fut, D, DFut>(
    policy: RetryPolicy,
    name: &str,
    mut call: F,
    mut done: D,
) -> Result<T, ForgeError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, ForgeError>>,
    D: FnMut() -> DFut,
    DFut: Future<Output = Result<Option<T>, ForgeError>>,
{
    let mut backoff = policy.first_backoff;
    let mut attempt = 1;
    // A call may have been done without its answer reaching us: look before calling again,
    // and while the look itself fails, look again rather than call (a note said twice).
    let mut unsure = false;
    loop {
        let mut look_failed = false;
        let result = if unsure {
            match answered(policy, name, Box::pin(done())).await {
                Ok(Some(value)) => {
                    tracing::info!(call = name, "the forge did the call whose answer was lost");
                    return Ok(value);
                }
                Ok(None) => answered(policy, name, Box::pin(call())).await,
                Err(err) => {
                    look_failed = true;
                    Err(err)
                }
            }
        } else {
            answered(policy, name, Box::pin(call())).await
        };
        let err = match result {
            Ok(value) => return Ok(value),
            Err(err) if !err.is_retryable() || attempt >= policy.attempts => return Err(err),
            Err(err) => err,
        };
        let wait = match &err {
            ForgeError::RateLimited { retry_after, .. } if *retry_after > policy.max_wait => {
                return Err(err);
            }
            ForgeError::RateLimited { retry_after, .. } => (*retry_after).max(backoff),
            _ => backoff,
        };
        tracing::warn!(call = name, attempt, ?wait, error = %err, "forge call failed; retrying");
        tokio::time::sleep(wait).await;
        // Still unsure while the look fails; a rate limit says the forge did nothing.
        unsure = look_failed || matches!(err, ForgeError::Transient { .. });
        backoff = backoff.saturating_mul(2);
        attempt += 1;
    }
}

/// `future`'s answer, or a transient error when none came within the policy's timeout. The
/// callers box the call: its future lives on the heap, so that this retry loop does not
/// multiply the size of every forge call's future (a debug build's stack overflowed).
async fn answered<T>(
    policy: RetryPolicy,
    name: &str,
    future: impl Future<Output = Result<T, ForgeError>>,
) -> Result<T, ForgeError> {
    tokio::time::timeout(policy.timeout, future)
        .await
        .unwrap_or_else(|_| {
            Err(ForgeError::Transient {
                call: name.to_owned(),
                detail: format!("no answer within {:?}", policy.timeout),
            })
        })
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    fn fast() -> RetryPolicy {
        RetryPolicy {
            attempts: 3,
            timeout: Duration::from_millis(200),
            first_backoff: Duration::from_millis(1),
            max_wait: Duration::from_secs(1),
        }
    }

    fn transient() -> ForgeError {
        ForgeError::Transient {
            call: "GET x".into(),
            detail: "HTTP 502".into(),
        }
    }

    #[test]
    fn the_forge_time_is_its_date_header_else_the_fallback() {
        let mut headers = http::HeaderMap::new();
        assert_eq!(forge_now(&headers, 7), 7);
        headers.insert(
            http::header::DATE,
            "Wed, 02 Dec 2026 11:00:00 GMT".parse().unwrap(),
        );
        assert_eq!(forge_now(&headers, 7), 1_796_209_200);
        headers.insert(http::header::DATE, "yesterday".parse().unwrap());
        assert_eq!(forge_now(&headers, 7), 7, "unreadable: the fallback");
    }

    #[tokio::test]
    async fn transient_errors_are_retried_until_success() {
        let calls = AtomicU32::new(0);
        let result = perform_retryable(fast(), "x", || async {
            if calls.fetch_add(1, Ordering::SeqCst) < 2 {
                Err(transient())
            } else {
                Ok(7)
            }
        })
        .await;
        assert_eq!(result.unwrap(), 7);
        assert_eq!(calls.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn refusals_are_not_retried_and_attempts_are_bounded() {
        let calls = AtomicU32::new(0);
        let result: Result<(), _> = perform_retryable(fast(), "x", || async {
            calls.fetch_add(1, Ordering::SeqCst);
            Err(ForgeError::Refused {
                call: "x".into(),
                status: 409,
                message: "conflict".into(),
            })
        })
        .await;
        assert_eq!(result.unwrap_err().status(), Some(409));
        assert_eq!(calls.load(Ordering::SeqCst), 1);

        let calls = AtomicU32::new(0);
        let result: Result<(), _> = perform_retryable(fast(), "x", || async {
            calls.fetch_add(1, Ordering::SeqCst);
            Err(transient())
        })
        .await;
        assert!(result.unwrap_err().is_retryable());
        assert_eq!(calls.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn a_call_whose_answer_was_lost_is_looked_for_before_it_is_made_again() {
        let calls = AtomicU32::new(0);
        let looks = AtomicU32::new(0);
        let result = perform_checked(
            fast(),
            "POST note",
            || async {
                calls.fetch_add(1, Ordering::SeqCst);
                Err(transient())
            },
            || async { Ok(Some(looks.fetch_add(1, Ordering::SeqCst) + 40)) },
        )
        .await;
        assert_eq!(result.unwrap(), 40, "found by the first look");
        assert_eq!(calls.load(Ordering::SeqCst), 1, "never made twice");

        let calls = AtomicU32::new(0);
        let looks = AtomicU32::new(0);
        let result: Result<u32, _> = perform_checked(
            fast(),
            "POST note",
            || async {
                calls.fetch_add(1, Ordering::SeqCst);
                Err(ForgeError::RateLimited {
                    call: "x".into(),
                    retry_after: Duration::from_millis(1),
                })
            },
            || async {
                looks.fetch_add(1, Ordering::SeqCst);
                Ok(None)
            },
        )
        .await;
        assert!(result.is_err());
        assert_eq!(calls.load(Ordering::SeqCst), 3);
        assert_eq!(
            looks.load(Ordering::SeqCst),
            0,
            "a rate limit says the forge did nothing: no look"
        );
    }

    #[tokio::test]
    async fn a_look_that_fails_is_made_again_never_the_call() {
        let calls = AtomicU32::new(0);
        let looks = AtomicU32::new(0);
        let result = perform_checked(
            fast(),
            "POST note",
            || async {
                calls.fetch_add(1, Ordering::SeqCst);
                Err(transient())
            },
            || async {
                match looks.fetch_add(1, Ordering::SeqCst) {
                    0 => Err(transient()),
                    n => Ok(Some(n + 40)),
                }
            },
        )
        .await;
        assert_eq!(result.unwrap(), 41, "found by the second look");
        assert_eq!(calls.load(Ordering::SeqCst), 1, "never made twice");

        // Looks that fail to the end: the error, still one call.
        let calls = AtomicU32::new(0);
        let result: Result<u32, _> = perform_checked(
            fast(),
            "POST note",
            || async {
                calls.fetch_add(1, Ordering::SeqCst);
                Err(transient())
            },
            || async { Err(transient()) },
        )
        .await;
        assert!(result.is_err());
        assert_eq!(calls.load(Ordering::SeqCst), 1, "never made twice");

        // A look that says "not done" lets the call be made again.
        let calls = AtomicU32::new(0);
        let result = perform_checked(
            fast(),
            "POST note",
            || async {
                match calls.fetch_add(1, Ordering::SeqCst) {
                    0 => Err(transient()),
                    n => Ok(n),
                }
            },
            || async { Ok(None) },
        )
        .await;
        assert_eq!(result.unwrap(), 1);
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn hanging_calls_time_out_and_long_rate_limits_are_returned() {
        let result: Result<(), _> = perform_retryable(fast(), "x", || async {
            tokio::time::sleep(Duration::from_secs(5)).await;
            Ok(())
        })
        .await;
        assert!(result.unwrap_err().to_string().contains("no answer within"));
        let result: Result<(), _> = perform_retryable(fast(), "x", || async {
            Err(ForgeError::RateLimited {
                call: "x".into(),
                retry_after: Duration::from_secs(3600),
            })
        })
        .await;
        assert!(matches!(result, Err(ForgeError::RateLimited { .. })));
    }
}
