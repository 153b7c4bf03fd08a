//! One service may serve a GitHub requests repo and a GitLab project at once: one [`Workflow`]
//! per configured forge over one store. Deliveries go to the workflow of the forge that sent
//! them, jobs to the workflow of their request's forge.

use std::sync::Arc;

use anyhow::Context as _;

use super::Workflow;
use crate::forge::Delivery;
use crate::store::{DeliveryId, ForgeKind, Job};

/// The workflows of one service. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Workflows(Arc<[Workflow]>);

impl Workflows {
    /// The workflows, sharing one job wake-up (one job worker serves them all). At least one.
    pub fn new(mut list: Vec<Workflow>) -> anyhow::Result<Self> {
        let first = list
            .first()
            .context("no forge is configured: add a [github] or [gitlab] section")?;
        let wake = first.wake_jobs.clone();
        for workflow in &mut list {
            workflow.wake_jobs = wake.clone();
        }
        Ok(Self(list.into()))
    }

    /// Any of them, for what they share (store, clock, metrics, the job wake-up).
    pub fn shared(&self) -> &Workflow {
        &self.0[0]
    }

    pub fn iter(&self) -> impl Iterator<Item = &Workflow> {
        self.0.iter()
    }

    /// The workflow of `kind`, if that forge is configured.
    pub fn of(&self, kind: ForgeKind) -> Option<&Workflow> {
        self.0.iter().find(|w| w.forge.kind() == kind)
    }

    /// Hands a stored delivery to its forge's workflow.
    pub async fn handle_delivery(
        &self,
        id: &DeliveryId,
        delivery: &Delivery,
    ) -> anyhow::Result<()> {
        let workflow = self.of(id.forge()).with_context(|| {
            format!(
                "a {} delivery, but that forge is not configured",
                id.forge()
            )
        })?;
        workflow.handle_delivery(delivery).await
    }

    /// Runs a due job in the workflow that owns its request (a job whose request is gone is
    /// done).
    pub async fn run_job(&self, job: &Job) -> anyhow::Result<()> {
        let Some(record) = self.shared().store.get_request(&job.request_id).await? else {
            return Ok(());
        };
        let workflow = self.iter().find(|w| w.owns(&record)).with_context(|| {
            format!(
                "request {} is on {} {}, which this service does not serve",
                record.id, record.forge, record.repository
            )
        })?;
        workflow.run_job(job).await
    }
}
