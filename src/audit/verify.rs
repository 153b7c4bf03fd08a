//! `breakglass audit verify`: the event log is intact (every row's hash chains to the one
//! before) and agrees with git: every merge and revocation the log records is a commit on the
//! default branch's first-parent history, and every grant and revocation merge in that history
//! is in the log. A rewritten history or an edited log shows up as a named mismatch, and so
//! does a commit whose `Breakglass-*` trailers its files do not bear out (`forged_trailers`).

use std::collections::HashMap;
use std::fmt;

use super::history::{EventKind as Fact, History};
use crate::store::{EventKind, EventRecord, Store, StoreError};

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
    let mut forged: HashMap<String, &str> = HashMap::new();
    for event in &history.events {
        match &event.kind {
            Fact::Grant(grant) => {
                grants.insert(event.commit.to_string(), grant.request_id.as_str());
            }
            Fact::Revoke(revoke) => {
                revokes.insert(event.commit.to_string(), revoke.request_id.as_str());
            }
            // Neither a grant nor a revoke, and never the bot's: named whatever the log says.
            Fact::Forged(fact) => {
                let sha = event.commit.to_string();
                result.problems.push(format!(
                    "commit {} has forged trailers: {}",
                    short(&sha),
                    fact.detail
                ));
                forged.insert(sha, fact.request_id.as_str());
            }
            Fact::Landed(_) => {}
        }
    }

    // The log against git.
    let mut logged_grants: HashMap<String, u64> = HashMap::new();
    let mut logged_revokes: HashMap<String, u64> = HashMap::new();
    for event in &events {
        let (sha_key, git, logged) = match event.kind {
            EventKind::Merge => ("merge_sha", &grants, &mut logged_grants),
            EventKind::Revert | EventKind::Remove => ("revert_sha", &revokes, &mut logged_revokes),
            // Since revokes and reverts are logged apart (the revert follows as forge work),
            // a revoke names no commit; one logged before that names its revert's.
            EventKind::Revoke if event.data.get("revert_sha").is_some() => {
                ("revert_sha", &revokes, &mut logged_revokes)
            }
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
            None if forged.contains_key(sha) => result.problems.push(format!(
                "event log row {}: {} of `{request}` is commit {}, whose files do not bear out its trailers",
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

#[cfg(test)]
mod tests {
    use chrono::{TimeZone, Utc};
    use git2::Oid;

    use super::*;
    use crate::audit::history::{Claim, Event, ForgedFact};
    use crate::store::{EventKind, NewEvent};

    #[tokio::test]
    async fn a_forged_commit_is_named_even_when_the_log_records_it() {
        let store = Store::connect("sqlite::memory:").await.unwrap();
        store.migrate().await.unwrap();
        let commit = Oid::from_str("abcdef0123456789abcdef0123456789abcdef01").unwrap();
        let at = Utc.with_ymd_and_hms(2026, 11, 26, 0, 0, 0).unwrap();
        store
            .append_event(
                &NewEvent {
                    kind: EventKind::Merge,
                    request_id: Some("r-1".to_owned().try_into().unwrap()),
                    actor: None,
                    delivery_id: None,
                    data: serde_json::json!({ "merge_sha": commit.to_string() }),
                },
                at,
            )
            .await
            .unwrap();
        let history = History {
            branch: "main".into(),
            head: Some(commit),
            events: vec![Event {
                position: 0,
                commit,
                at,
                kind: Fact::Forged(ForgedFact {
                    request_id: "r-1".into(),
                    claim: Claim::Grant,
                    detail:
                        "Breakglass-Request: r-1 but the commit does not add requests/prod/r-1.yaml"
                            .into(),
                }),
            }],
        };
        let verification = verify(&store, &history).await.unwrap();
        assert_eq!(
            verification.problems,
            [
                "commit abcdef012345 has forged trailers: Breakglass-Request: r-1 but the commit does not add requests/prod/r-1.yaml",
                "event log row 1: merge of `r-1` is commit abcdef012345, whose files do not bear out its trailers",
            ]
        );
        assert_eq!(verification.grants, 0);
    }
}
