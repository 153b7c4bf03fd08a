//! A wall-clock record of the forge's API calls and webhook sends, and an added latency per
//! API call: what a benchmark of the bot's critical path needs to count its sequential round
//! trips and to play a forge as slow as the real one. Off (and free) unless a test turns it on.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// What one recorded span was.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SpanKind {
    /// An API call: its method, route template (`/repos/{owner}/{repo}/pulls`) and path.
    Api {
        /// `GET`, `POST`, …
        method: String,
        /// The route template.
        route: String,
        /// The request's path.
        path: String,
    },
    /// A webhook POST to a receiver: the event name (`issue_comment`, `Note Hook`, …).
    Webhook {
        /// The event name.
        event: String,
    },
}

/// One API call or webhook send, from its start to its answer.
#[derive(Clone, Debug)]
pub struct Span {
    /// What was called or sent.
    pub kind: SpanKind,
    /// When the forge received the call (before the added latency), or started the send.
    pub started: Instant,
    /// When it answered, or got the receiver's answer.
    pub finished: Instant,
    /// The HTTP status answered (API) or received (webhook; 0 when the connection failed).
    pub status: u16,
}

impl Span {
    /// Whether this is an API call of `method` on `route`.
    pub fn is_call(&self, method: &str, route: &str) -> bool {
        matches!(&self.kind, SpanKind::Api { method: m, route: r, .. } if m == method && r == route)
    }
}

/// The shared recorder; one per forge.
#[derive(Default)]
pub(crate) struct Timeline {
    recording: AtomicBool,
    spans: Mutex<Vec<Span>>,
    latency: Mutex<Duration>,
}

impl Timeline {
    pub fn set_recording(&self, on: bool) {
        self.recording.store(on, Ordering::SeqCst);
    }

    pub fn record(&self, kind: SpanKind, started: Instant, status: u16) {
        if self.recording.load(Ordering::SeqCst) {
            let span = Span {
                kind,
                started,
                finished: Instant::now(),
                status,
            };
            self.spans
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(span);
        }
    }

    pub fn take(&self) -> Vec<Span> {
        std::mem::take(&mut *self.spans.lock().unwrap_or_else(|e| e.into_inner()))
    }

    pub fn set_latency(&self, latency: Duration) {
        *self.latency.lock().unwrap_or_else(|e| e.into_inner()) = latency;
    }

    /// Waits the added latency, if any, as a far-away forge would.
    pub async fn delay(&self) {
        let latency = *self.latency.lock().unwrap_or_else(|e| e.into_inner());
        if !latency.is_zero() {
            tokio::time::sleep(latency).await;
        }
    }
}

/// How many round trips of `spans` follow one another: the length of the longest chain of
/// spans each starting after the previous one finished. Calls made concurrently count once.
pub fn sequential_round_trips(spans: &[Span]) -> usize {
    let mut sorted: Vec<&Span> = spans.iter().collect();
    sorted.sort_by_key(|s| s.finished);
    // Interval scheduling: greedily take the span that finishes first among those that start
    // after the last taken one finished; that gives the longest chain of disjoint spans.
    let mut chain = 0;
    let mut last_end: Option<Instant> = None;
    for span in sorted {
        if last_end.is_none_or(|end| span.started >= end) {
            chain += 1;
            last_end = Some(span.finished);
        }
    }
    chain
}

#[cfg(test)]
mod tests {
    use super::*;

    fn span(start_ms: u64, end_ms: u64, base: Instant) -> Span {
        Span {
            kind: SpanKind::Webhook {
                event: "ping".into(),
            },
            started: base + Duration::from_millis(start_ms),
            finished: base + Duration::from_millis(end_ms),
            status: 200,
        }
    }

    #[test]
    fn concurrent_calls_count_once_and_sequential_ones_each() {
        let t = Instant::now();
        // 0-10, then 12-20 and 12-25 together, then 26-30: three steps.
        let spans = [
            span(0, 10, t),
            span(12, 20, t),
            span(12, 25, t),
            span(26, 30, t),
        ];
        assert_eq!(sequential_round_trips(&spans), 3);
        assert_eq!(sequential_round_trips(&spans[..1]), 1);
        assert_eq!(sequential_round_trips(&[]), 0);
    }
}
