//! Webhook deliveries: recorded, signed like GitHub's (or carrying GitLab's token), sent in order
//! by one background task.
//!
//! Each delivery is recorded before it is queued so that a test can inspect or redeliver it, and a
//! counter of unsent jobs lets `settle()` wait until the queue is drained. A hook speaks one
//! dialect: GitHub hooks get GitHub's events and headers, GitLab hooks GitLab's; the model renders
//! each change once per dialect that has a hook.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use tokio::sync::{mpsc, watch};

use crate::model::Delivery;
use crate::timeline::{SpanKind, Timeline};

/// Which forge a hook believes it is talking to.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Dialect {
    /// `X-GitHub-Event`, `X-Hub-Signature-256` (HMAC with the secret).
    GitHub,
    /// `X-Gitlab-Event`, `X-Gitlab-Token` (the token verbatim), and the hook's own UUID.
    GitLab { webhook_uuid: String },
}

/// A registered webhook.
#[derive(Clone)]
struct Hook {
    url: String,
    /// The HMAC secret (GitHub) or the token sent verbatim (GitLab).
    secret: String,
    dialect: Dialect,
}

/// How a recorded delivery is sent, parallel to `deliveries`.
#[derive(Clone)]
struct SendAs {
    secret: String,
    dialect: Dialect,
    /// GitLab's `X-Gitlab-Event-UUID`, fixed when the event happened.
    event_uuid: String,
}

#[derive(Default)]
struct HubInner {
    hooks: Vec<Hook>,
    deliveries: Vec<Delivery>,
    send_as: Vec<SendAs>,
    paused: bool,
}

struct Job {
    index: usize,
}

/// State shared with the sender task.
struct HubShared {
    inner: Mutex<HubInner>,
    pending: watch::Sender<usize>,
    queued: std::sync::atomic::AtomicUsize,
}

/// The webhook registry and delivery log.
pub(crate) struct WebhookHub {
    shared: Arc<HubShared>,
    tx: mpsc::UnboundedSender<Job>,
}

/// `sha256=<hex>` of the body keyed with the secret, as in `X-Hub-Signature-256`.
pub fn sign(secret: &str, body: &[u8]) -> String {
    // HMAC accepts keys of any length, so this cannot fail; fall back to an empty signature
    // rather than panic if that ever changed.
    match <Hmac<Sha256> as KeyInit>::new_from_slice(secret.as_bytes()) {
        Ok(mut mac) => {
            mac.update(body);
            format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
        }
        Err(_) => String::new(),
    }
}

/// A GitHub-like delivery GUID.
fn new_guid() -> String {
    uuid::Uuid::new_v4().to_string()
}

fn lock(shared: &HubShared) -> std::sync::MutexGuard<'_, HubInner> {
    // A panic while holding this lock can only come from a bug in a test; keep going.
    shared.inner.lock().unwrap_or_else(|e| e.into_inner())
}

impl WebhookHub {
    /// Creates the hub and spawns its sender task on the current tokio runtime.
    pub fn start(timeline: Arc<Timeline>) -> Arc<WebhookHub> {
        let (tx, rx) = mpsc::unbounded_channel();
        let (pending, _) = watch::channel(0usize);
        let shared = Arc::new(HubShared {
            inner: Mutex::new(HubInner::default()),
            pending,
            queued: Default::default(),
        });
        tokio::spawn(sender(shared.clone(), rx, timeline));
        Arc::new(WebhookHub { shared, tx })
    }

    pub fn add_hook(&self, url: &str, secret: &str) {
        lock(&self.shared).hooks.push(Hook {
            url: url.to_owned(),
            secret: secret.to_owned(),
            dialect: Dialect::GitHub,
        });
    }

    /// Registers a GitLab-dialect hook that sends `token` in `X-Gitlab-Token`.
    pub fn add_gitlab_hook(&self, url: &str, token: &str) {
        lock(&self.shared).hooks.push(Hook {
            url: url.to_owned(),
            secret: token.to_owned(),
            dialect: Dialect::GitLab {
                webhook_uuid: new_guid(),
            },
        });
    }

    /// Whether any GitLab hook is registered: GitLab payloads are only rendered then.
    pub fn has_gitlab_hooks(&self) -> bool {
        lock(&self.shared)
            .hooks
            .iter()
            .any(|h| h.dialect != Dialect::GitHub)
    }

    pub fn set_paused(&self, paused: bool) {
        lock(&self.shared).paused = paused;
    }

    /// How many deliveries were ever queued for sending (the paused ones not yet).
    pub fn queued_so_far(&self) -> usize {
        self.shared
            .queued
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Records one delivery per GitHub hook and queues it unless deliveries are paused.
    pub fn enqueue(&self, event: &str, payload: &serde_json::Value) {
        let action = payload
            .get("action")
            .and_then(|a| a.as_str())
            .map(str::to_owned);
        self.enqueue_for(false, event, action, payload);
    }

    /// Records one delivery per GitLab hook (`event` is the `X-Gitlab-Event` value, e.g.
    /// `Merge Request Hook`) and queues it unless deliveries are paused. The recorded `action`
    /// is `object_attributes.action`, when the payload has one.
    pub fn enqueue_gitlab(&self, event: &str, payload: &serde_json::Value) {
        let action = payload
            .pointer("/object_attributes/action")
            .and_then(|a| a.as_str())
            .map(str::to_owned);
        self.enqueue_for(true, event, action, payload);
    }

    fn enqueue_for(
        &self,
        gitlab: bool,
        event: &str,
        action: Option<String>,
        payload: &serde_json::Value,
    ) {
        let body = serde_json::to_vec(payload).unwrap_or_default();
        let event_uuid = new_guid();
        let mut inner = lock(&self.shared);
        let hooks: Vec<Hook> = inner
            .hooks
            .iter()
            .filter(|h| (h.dialect != Dialect::GitHub) == gitlab)
            .cloned()
            .collect();
        for hook in hooks {
            let index = inner.deliveries.len();
            inner.deliveries.push(Delivery {
                id: new_guid(),
                event: event.to_owned(),
                action: action.clone(),
                url: hook.url.clone(),
                body: body.clone(),
                status: None,
                attempts: 0,
            });
            inner.send_as.push(SendAs {
                secret: hook.secret.clone(),
                dialect: hook.dialect.clone(),
                event_uuid: event_uuid.clone(),
            });
            if !inner.paused {
                self.queue(index);
            }
        }
    }

    fn queue(&self, index: usize) {
        self.shared.pending.send_modify(|n| *n += 1);
        self.shared
            .queued
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if self.tx.send(Job { index }).is_err() {
            self.shared
                .pending
                .send_modify(|n| *n = n.saturating_sub(1));
        }
    }

    /// Sends a recorded delivery again: same GUID (GitLab: same `Idempotency-Key` and event
    /// UUID), same body. False if the id is unknown.
    pub fn redeliver(&self, id: &str) -> bool {
        let index = lock(&self.shared)
            .deliveries
            .iter()
            .position(|d| d.id == id);
        match index {
            Some(i) => {
                self.queue(i);
                true
            }
            None => false,
        }
    }

    /// Queues every recorded delivery that was never sent (e.g. while paused).
    pub fn flush_unsent(&self) -> usize {
        let unsent: Vec<usize> = lock(&self.shared)
            .deliveries
            .iter()
            .enumerate()
            .filter(|(_, d)| d.attempts == 0)
            .map(|(i, _)| i)
            .collect();
        for &i in &unsent {
            self.queue(i);
        }
        unsent.len()
    }

    pub fn deliveries(&self) -> Vec<Delivery> {
        lock(&self.shared).deliveries.clone()
    }

    /// Waits until every queued delivery has been attempted.
    pub async fn settle(&self) {
        let mut rx = self.shared.pending.subscribe();
        // The sender lives as long as the hub, so this only ends when the count reaches zero.
        let _ = rx.wait_for(|n| *n == 0).await;
    }
}

/// Sends a GitLab delivery: `X-Gitlab-Token` verbatim (omitted when empty), the event and hook
/// UUIDs, and `Idempotency-Key` (the delivery id, kept by a redelivery, as GitLab 17.4+ does).
async fn post_gitlab(
    client: &reqwest::Client,
    delivery: &Delivery,
    send_as: &SendAs,
    webhook_uuid: &str,
) -> Option<u16> {
    let mut req = client
        .post(&delivery.url)
        .header("X-Gitlab-Event", &delivery.event)
        .header("X-Gitlab-Event-UUID", &send_as.event_uuid)
        .header("X-Gitlab-Webhook-UUID", webhook_uuid)
        .header("X-Gitlab-Instance", "http://test-forge.invalid")
        .header("Idempotency-Key", &delivery.id)
        .header("User-Agent", "GitLab/18.6.0-test-forge")
        .header("Content-Type", "application/json");
    if !send_as.secret.is_empty() {
        req = req.header("X-Gitlab-Token", &send_as.secret);
    }
    match req.body(delivery.body.clone()).send().await {
        Ok(resp) => Some(resp.status().as_u16()),
        Err(err) => {
            tracing::debug!(url = %delivery.url, %err, "test-forge: GitLab webhook delivery failed");
            None
        }
    }
}

/// Sends a delivery and returns the receiver's status, or `None` when the connection failed.
pub(crate) async fn post(
    client: &reqwest::Client,
    url: &str,
    event: &str,
    guid: &str,
    secret: &str,
    body: Vec<u8>,
) -> Option<u16> {
    let mut req = client
        .post(url)
        .header("X-GitHub-Event", event)
        .header("X-GitHub-Delivery", guid)
        .header("X-GitHub-Hook-ID", "1")
        .header("User-Agent", "GitHub-Hookshot/test-forge")
        .header("Content-Type", "application/json");
    if !secret.is_empty() {
        req = req.header("X-Hub-Signature-256", sign(secret, &body));
    }
    match req.body(body).send().await {
        Ok(resp) => Some(resp.status().as_u16()),
        Err(err) => {
            tracing::debug!(%url, %err, "test-forge: webhook delivery failed");
            None
        }
    }
}

pub(crate) fn client() -> reqwest::Client {
    // GitHub gives a receiver 10 seconds.
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap_or_default()
}

async fn sender(
    shared: Arc<HubShared>,
    mut rx: mpsc::UnboundedReceiver<Job>,
    timeline: Arc<Timeline>,
) {
    let client = client();
    while let Some(job) = rx.recv().await {
        let found = {
            let inner = lock(&shared);
            inner
                .deliveries
                .get(job.index)
                .cloned()
                .zip(inner.send_as.get(job.index).cloned())
        };
        if let Some((d, send_as)) = found {
            if let Some(delay) = knob("BREAKGLASS_TEST_FORGE_DELIVERY_DELAY_MS") {
                tokio::time::sleep(delay).await;
            }
            let started = std::time::Instant::now();
            let event = d.event.clone();
            let status = match &send_as.dialect {
                Dialect::GitHub => {
                    post(&client, &d.url, &d.event, &d.id, &send_as.secret, d.body).await
                }
                Dialect::GitLab { webhook_uuid } => {
                    post_gitlab(&client, &d, &send_as, webhook_uuid).await
                }
            };
            timeline.record(SpanKind::Webhook { event }, started, status.unwrap_or(0));
            let mut inner = lock(&shared);
            if let Some(d) = inner.deliveries.get_mut(job.index) {
                d.status = status;
                d.attempts += 1;
            }
        }
        shared.pending.send_modify(|n| *n = n.saturating_sub(1));
    }
}

/// A race-hunting knob: a duration in milliseconds from the environment, unset or 0 for none
/// (see the crate doc's "Hunting races").
pub(crate) fn knob(name: &str) -> Option<Duration> {
    let ms: u64 = std::env::var(name).ok()?.parse().ok()?;
    (ms > 0).then(|| Duration::from_millis(ms))
}
