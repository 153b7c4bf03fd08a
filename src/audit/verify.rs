//! `breakglass audit verify`: the event log is intact (every row's hash chains to the one
//! before) and agrees with git: every merge and revocation the log records is a commit on the
//! default branch's first-parent history, and every grant and revocation merge in that history
//! is in the log. A rewritten history or an edited log shows up as a named mismatch.

use std::collections::HashMap;
use std::fmt;

use super::history::{EventKind as Fact, History};
use crate::store::{EventRecord, Store, StoreError};

/// What `verify` found.
#[derive(Debug, Default)]
pub struct Verification {
    /// Events in the log (when the chain verified).
    pub events: u64,
    /// Grant merges found both in git and in the log.
    pub grants: usize,
    /// Revocation (and removal) merges found both in git and in the log.
    pub revocations: usize,
    /// Every mismatch, each naming the event row or the commit.
    pub problems: Vec<String>,
}

impl Verification {
    pub fn ok(&self) -> bool {
        self.problems.is_empty()
    }
}

impl fmt::Display for Verification {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.ok() {
            return writeln!(
                f,
                "ok: {} events in an intact hash chain; {} grant merge(s) and {} revocation merge(s) match git",
                self.events, self.grants, self.revocations
            );
        }
        writeln!(f, "audit verify found {} problem(s):", self.problems.len())?;
        for problem in &self.problems {
            writeln!(f, "- {problem}")?;
        }
        Ok(())
    }
}

/// Checks the log's chain, then the log against `history`.
pub async fn verify(store: &Store, history: &History) -> Result<Verification, StoreError> {
    let mut result = Verification::default();
    match store.verify_chain().await {
        Ok(count) => result.events = count,
        Err(StoreError::Chain(err)) => result
            .problems
            .push(format!("event log row {}: {}", err.seq, err.reason)),
        Err(err) => return Err(err),
    }
    let events = all_events(store).await?;
    let short = |sha: &str| sha.chars().take(12).collect::<String>();

    // What git says, by merge commit.
    let mut grants: HashMap<String, &str> = HashMap::new();
    let mut revokes: HashMap<String, &str> = HashMap::new();
    for event in &history.events {
        match &event.kind {
            Fact::Grant(grant) => {
                grants.insert(event.commit.to_string(), grant.request_id.as_str());
            }
            Fact::Revoke(revoke) => {
                revokes.insert(event.commit.to_string(), revoke.request_id.as_str());
            }
            // A forged claim is neither: git does not record it as a merge of the bot.
            Fact::Landed(_) | Fact::Forged(_) => {}
        }
    }

    // The log against git.
    let mut logged_grants: HashMap<String, u64> = HashMap::new();
    let mut logged_revokes: HashMap<String, u64> = HashMap::new();
    for event in &events {
        let (sha_key, git, logged) = match event.kind.as_str() {
            "merge" => ("merge_sha", &grants, &mut logged_grants),
            "revoke" | "remove" => ("revert_sha", &revokes, &mut logged_revokes),
            _ => continue,
        };
        let request = event
            .request_id
            .as_ref()
            .map(ToString::to_string)
            .unwrap_or_default();
        let Some(sha) = event.data.get(sha_key).and_then(|v| v.as_str()) else {
            // A grant whose request file someone removed by hand was revoked without a revert
            // merge: the log says so, and git has nothing to match.
            if event.data.get("reason").and_then(|v| v.as_str()) != Some("reconcile") {
                result.problems.push(format!(
                    "event log row {}: {} of `{request}` names no commit",
                    event.seq, event.kind
                ));
            }
            continue;
        };
        logged.insert(sha.to_owned(), event.seq);
        match git.get(sha) {
            Some(id) if *id == request => {}
            Some(id) => result.problems.push(format!(
                "event log row {}: {} of `{request}` is commit {}, which git records for `{id}`",
                event.seq,
                event.kind,
                short(sha)
            )),
            None => result.problems.push(format!(
                "event log row {}: {} commit {} of `{request}` is not on {}'s first-parent history (history rewritten?)",
                event.seq,
                event.kind,
                short(sha),
                history.branch
            )),
        }
    }

    // Git against the log.
    for (sha, id) in &grants {
        if logged_grants.contains_key(sha) {
            result.grants += 1;
        } else {
            result.problems.push(format!(
                "commit {} grants `{id}` but the event log has no merge for it",
                short(sha)
            ));
        }
    }
    for (sha, id) in &revokes {
        if logged_revokes.contains_key(sha) {
            result.revocations += 1;
        } else {
            result.problems.push(format!(
                "commit {} revokes `{id}` but the event log has no revocation for it",
                short(sha)
            ));
        }
    }
    result.problems.sort();
    Ok(result)
}

async fn all_events(store: &Store) -> Result<Vec<EventRecord>, StoreError> {
    let mut events = Vec::new();
    let mut after = 0;
    loop {
        let batch = store.events(after, 1000).await?;
        let Some(last) = batch.last() else { break };
        after = last.seq;
        events.extend(batch);
    }
    Ok(events)
}
