//! Commit statuses and check runs.

use git2::Oid;

use crate::error::{ApiError, ApiResult};
use crate::git;
use crate::state::{CheckRunRec, ForgeState, StatusRec};

/// The fields of a check run create or update.
#[derive(Default)]
pub(crate) struct CheckRunInput {
    pub name: Option<String>,
    pub head_sha: Option<String>,
    pub status: Option<String>,
    pub conclusion: Option<String>,
    pub title: Option<String>,
    pub summary: Option<String>,
    pub text: Option<String>,
    pub details_url: Option<String>,
    pub external_id: Option<String>,
}

const CONCLUSIONS: &[&str] = &[
    "action_required",
    "cancelled",
    "failure",
    "neutral",
    "success",
    "skipped",
    "stale",
    "timed_out",
];

impl ForgeState {
    fn commit_sha(&self, full: &str, sha: &str) -> ApiResult<String> {
        let r = self.repo(full)?;
        let oid = git::resolve(&r.git, sha)
            .or_else(|| {
                Oid::from_str(sha)
                    .ok()
                    .filter(|o| git::commit_exists(&r.git, *o))
            })
            .ok_or_else(|| ApiError::unprocessable(format!("No commit found for SHA: {sha}")))?;
        Ok(oid.to_string())
    }

    /// Creates a commit status.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn create_status(
        &mut self,
        full: &str,
        sha: &str,
        actor: &str,
        state: &str,
        context: Option<&str>,
        description: Option<&str>,
        target_url: Option<&str>,
    ) -> ApiResult<u64> {
        if !["error", "failure", "pending", "success"].contains(&state) {
            return Err(ApiError::unprocessable(format!(
                "Validation Failed: state {state:?} is not one of error, failure, pending, success"
            )));
        }
        let sha = self.commit_sha(full, sha)?;
        let id = self.next_id();
        let now = self.now();
        let r = self.repo_mut(full)?;
        r.statuses.push(StatusRec {
            id,
            sha,
            state: state.to_owned(),
            context: context.unwrap_or("default").to_owned(),
            description: description.map(str::to_owned),
            target_url: target_url.map(str::to_owned),
            creator: actor.to_owned(),
            created_at: now,
            gl_state: None,
        });
        Ok(id)
    }

    /// Creates a check run.
    pub(crate) fn create_check_run(&mut self, full: &str, input: CheckRunInput) -> ApiResult<u64> {
        let name = input
            .name
            .filter(|n| !n.trim().is_empty())
            .ok_or_else(|| ApiError::unprocessable("Validation Failed: name is missing"))?;
        let head = input
            .head_sha
            .ok_or_else(|| ApiError::unprocessable("Validation Failed: head_sha is missing"))?;
        let head_sha = self.commit_sha(full, &head)?;
        let id = self.next_id();
        let now = self.now();
        let mut rec = CheckRunRec {
            id,
            name,
            head_sha,
            status: "queued".into(),
            conclusion: None,
            title: None,
            summary: None,
            text: None,
            details_url: None,
            external_id: None,
            started_at: now,
            completed_at: None,
        };
        apply_check_input(
            now,
            &mut rec,
            CheckRunInput {
                name: None,
                head_sha: None,
                ..input
            },
        )?;
        self.repo_mut(full)?.check_runs.push(rec);
        Ok(id)
    }

    /// Updates a check run.
    pub(crate) fn update_check_run(
        &mut self,
        full: &str,
        id: u64,
        input: CheckRunInput,
    ) -> ApiResult<()> {
        let now = self.now();
        let r = self.repo_mut(full)?;
        let rec = r
            .check_runs
            .iter_mut()
            .find(|c| c.id == id)
            .ok_or_else(ApiError::not_found)?;
        apply_check_input(now, rec, input)
    }
}

fn apply_check_input(
    now: chrono::DateTime<chrono::Utc>,
    rec: &mut CheckRunRec,
    input: CheckRunInput,
) -> ApiResult<()> {
    if let Some(name) = input.name {
        rec.name = name;
    }
    if let Some(status) = input.status {
        if !["queued", "in_progress", "completed"].contains(&status.as_str()) {
            return Err(ApiError::unprocessable(format!(
                "Validation Failed: status {status:?} is invalid"
            )));
        }
        rec.status = status;
    }
    if let Some(c) = input.conclusion {
        if !CONCLUSIONS.contains(&c.as_str()) {
            return Err(ApiError::unprocessable(format!(
                "Validation Failed: conclusion {c:?} is invalid"
            )));
        }
        // GitHub marks a run completed as soon as it has a conclusion.
        rec.status = "completed".into();
        rec.conclusion = Some(c);
    }
    if rec.status == "completed" {
        if rec.conclusion.is_none() {
            return Err(ApiError::unprocessable(
                "Validation Failed: conclusion is required when status is completed",
            ));
        }
        rec.completed_at.get_or_insert(now);
    }
    for (slot, value) in [
        (&mut rec.title, input.title),
        (&mut rec.summary, input.summary),
        (&mut rec.text, input.text),
        (&mut rec.details_url, input.details_url),
        (&mut rec.external_id, input.external_id),
    ] {
        if value.is_some() {
            *slot = value;
        }
    }
    Ok(())
}
