//! Catching up at start with the change requests the bot may not have heard of.
//!
//! A forge does not send a webhook again after a failed delivery, so a request PR opened, or
//! pushed to, while the service was down would wait for its next event. At start the bot
//! lists the open change requests once and queues a [`ForgeEvent::MissedChange`] delivery for
//! each one whose head it has no record of; the delivery worker decides it as it is then,
//! like any webhook, with its locks, retries and order. A comment (a `/breakglass` command)
//! made while the bot was down is not caught up.

use super::Workflow;
use super::pull_request::decides_again;
use crate::forge::{Delivery, ForgeEvent, OpenChange, PullRequestAction};
use crate::store::{DeliveryId, NewDelivery, Recorded};

impl Workflow {
    /// Queues a [`ForgeEvent::MissedChange`] delivery for every open change request of the
    /// repository that is not the bot's own and whose head has no request record: one listing
    /// of the open change requests. Returns how many it queued. Keyed by change and head, so
    /// that a second start (or a second replica) queues nothing new for a head already queued.
    pub async fn catch_up(&self) -> anyhow::Result<usize> {
        let mut queued = 0;
        for change in self.forge.open_changes().await? {
            if !self.may_have_missed(&change).await? {
                continue;
            }
            let key = format!("missed:{}:{}", change.number, change.head_sha);
            let id = DeliveryId::new(self.forge_kind(), &key).map_err(anyhow::Error::msg)?;
            let delivery = Delivery {
                id: key,
                repository: Some(self.settings.repository.clone()),
                event: ForgeEvent::MissedChange {
                    number: change.number,
                },
            };
            let new = NewDelivery {
                id,
                event: "missed_change".into(),
                payload: serde_json::to_string(&delivery)?,
                received_at: self.now(),
            };
            if self.store.record_delivery(&new).await? == Recorded::New {
                queued += 1;
            }
        }
        if queued > 0 {
            tracing::info!(forge = %self.forge_kind(), queued, "change requests opened or pushed while the bot was down are decided now");
        }
        Ok(queued)
    }

    /// Whether the bot may not have heard of `change`'s head: not its own change, and no
    /// request record at that head.
    async fn may_have_missed(&self, change: &OpenChange) -> anyhow::Result<bool> {
        if change.author_id == self.bot.id {
            // Its request, revert and removal changes: their own jobs and guards watch them.
            return Ok(false);
        }
        let repo = &self.settings.repository;
        let record = self
            .store
            .find_request_by_pr(self.forge_kind(), repo, change.number)
            .await?;
        Ok(record.is_none_or(|r| r.head_sha != change.head_sha))
    }

    /// A change request the start-up found without a record at its head: decided as it is now,
    /// like a PR just opened or pushed to, except that the push's time is not known (the
    /// PR's `updated_at` bounds it, so an approval given before it is asked for again). A
    /// refusal that leaves no record is said only when the bot has set no check on this head,
    /// so that a restart does not repeat what it said before.
    pub(super) async fn handle_missed_change(&self, number: u64) -> anyhow::Result<()> {
        let current = self.forge.change(number).await?;
        if !current.open || current.info.author.id == self.bot.id {
            return Ok(());
        }
        let repo = &self.settings.repository;
        let existing = self
            .store
            .find_request_by_pr(self.forge_kind(), repo, number)
            .await?;
        let announce = match &existing {
            // Heard since the listing, or a request past deciding (a push to an approved
            // request voids its approvals, as the push's webhook would).
            Some(record)
                if record.head_sha == current.info.head_sha
                    || !decides_again(record.state, PullRequestAction::Synchronized) =>
            {
                return Ok(());
            }
            Some(_) => true,
            None => {
                let head = &current.info.head_sha;
                let context = super::STATUS_CONTEXT;
                !self
                    .forge
                    .has_status_from(head, context, self.bot.id)
                    .await?
            }
        };
        self.evaluate_current(current, existing, None, None, announce)
            .await
    }
}
