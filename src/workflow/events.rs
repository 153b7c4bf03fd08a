//! The append-only event log: every decision, approval, merge, grant, extension, revoke,
//! review and closing, with who caused it and through which webhook delivery. The store chains
//! the entries by hash; `breakglass audit verify` checks the chain and matches it with git.

use serde_json::Value;

use super::Workflow;
use crate::forge::Actor;
use crate::names::{Login, RequestId};
use crate::store::{DeliveryId, EventActor, EventKind, ForgeKind, NewEvent};

tokio::task_local! {
    /// The webhook delivery being handled, so that events name it without every handler
    /// passing it along.
    pub(super) static DELIVERY: String;
}

impl Workflow {
    /// Appends one event. An error fails the step, which is then retried: the log must not
    /// miss what happened.
    pub(super) async fn record_event(
        &self,
        kind: EventKind,
        request: Option<&RequestId>,
        actor: Option<EventActor>,
        data: Value,
    ) -> anyhow::Result<()> {
        let event = new_event(kind, request, actor, data, self.forge_kind());
        self.store.append_event(&event, self.now()).await?;
        Ok(())
    }

    /// Appends the event unless the request has one of its kind already (a step that happens
    /// once in a request's life, run again after a crash or by two replicas). True when it
    /// was appended now.
    pub(super) async fn record_event_once(
        &self,
        kind: EventKind,
        request: &RequestId,
        actor: Option<EventActor>,
        data: Value,
    ) -> anyhow::Result<bool> {
        let event = new_event(kind, Some(request), actor, data, self.forge_kind());
        let appended = self.store.append_event_once(&event, self.now()).await?;
        Ok(appended.is_some())
    }
}

/// An event about `request`, naming the webhook delivery of `forge` being handled, if any.
pub(super) fn new_event(
    kind: EventKind,
    request: Option<&RequestId>,
    actor: Option<EventActor>,
    data: Value,
    forge: ForgeKind,
) -> NewEvent {
    let delivery_id = DELIVERY
        .try_with(Clone::clone)
        .ok()
        .and_then(|key| DeliveryId::new(forge, &key).ok());
    NewEvent {
        kind,
        request_id: request.cloned(),
        actor,
        delivery_id,
        data,
    }
}

/// The event actor of a forge account (`None` for logins the store would refuse).
pub(super) fn actor(who: &Actor) -> Option<EventActor> {
    Some(EventActor {
        id: who.id,
        login: Login::try_from(who.login.clone()).ok()?,
    })
}

/// The event actor of a request's requester.
pub(super) fn requester(record: &crate::store::RequestRecord) -> Option<EventActor> {
    Some(EventActor {
        id: record.requester_id,
        login: record.requester_login.clone(),
    })
}
