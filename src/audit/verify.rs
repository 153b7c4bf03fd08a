//! `breakglass audit verify`: the event log is intact (every row's hash chains to the one
//! before) and agrees with git: every merge and revocation the log records is a commit on the
//! default branch's first-parent history, and every grant and revocation merge in that history
//! is in the log. A rewritten history or an edited log shows up as a named mismatch, and so
//! does a commit whose `Breakglass-*` trailers its files do not bear out (`forged_trailers`).

use std::collections::{HashMap, HashSet};
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
    let git = GitMerges::read(history, &mut result.problems);
    let logged = log_against_git(&events, &git, &history.branch, &mut result.problems);
    git_against_log(&git, &logged, &mut result);
    result.problems.sort();
    Ok(result)
}

fn short(sha: &str) -> String {
    sha.chars().take(12).collect()
}

/// What git says, by merge commit: the request each grant and revoke merge names, and the
/// commits whose trailers their files do not bear out.
struct GitMerges<'h> {
    grants: HashMap<String, &'h str>,
    revokes: HashMap<String, &'h str>,
    forged: HashMap<String, &'h str>,
    /// The bot's reconcile removals of grant files alone, which carry no trailers.
    removals: HashSet<String>,
}

impl<'h> GitMerges<'h> {
    /// Reads `history`; each forged commit is a problem, whatever the log says.
    fn read(history: &'h History, problems: &mut Vec<String>) -> Self {
        let mut git = Self {
            grants: HashMap::new(),
            revokes: HashMap::new(),
            forged: HashMap::new(),
            removals: HashSet::new(),
        };
        for event in &history.events {
            let sha = event.commit.to_string();
            match &event.kind {
                Fact::Grant(grant) => {
                    git.grants.insert(sha, grant.request_id.as_str());
                }
                Fact::Revoke(revoke) => {
                    git.revokes.insert(sha, revoke.request_id.as_str());
                }
                // Neither a grant nor a revoke, and never the bot's.
                Fact::Forged(fact) => {
                    problems.push(format!(
                        "commit {} has forged trailers: {}",
                        short(&sha),
                        fact.detail
                    ));
                    git.forged.insert(sha, fact.request_id.as_str());
                }
                Fact::Removal(_) => {
                    git.removals.insert(sha);
                }
                // A logged merge off the line is told by `log_against_git`; an unlogged one
                // was never the bot's.
                Fact::Landed(_) | Fact::OffLine(_) => {}
            }
        }
        git
    }
}

/// The merge commits the log names: grants' and revocations', each with its row.
#[derive(Default)]
struct Logged {
    grants: HashMap<String, u64>,
    revokes: HashMap<String, u64>,
}

/// Each merge and revert the log names against the commit git has for it.
fn log_against_git(
    events: &[EventRecord],
    git: &GitMerges<'_>,
    branch: &str,
    problems: &mut Vec<String>,
) -> Logged {
    let mut logged = Logged::default();
    for event in events {
        let (sha_key, merges, seen) = match event.kind {
            EventKind::Merge => ("merge_sha", &git.grants, &mut logged.grants),
            EventKind::Revert | EventKind::Remove => {
                ("revert_sha", &git.revokes, &mut logged.revokes)
            }
            // Since revokes and reverts are logged apart (the revert follows as forge work),
            // a revoke names no commit; one logged before that names its revert's.
            EventKind::Revoke if event.data.get("revert_sha").is_some() => {
                ("revert_sha", &git.revokes, &mut logged.revokes)
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
                problems.push(format!(
                    "event log row {}: {} of `{request}` names no commit",
                    event.seq, event.kind
                ));
            }
            continue;
        };
        let trailerless_removal = !git.revokes.contains_key(sha) && git.removals.contains(sha);
        if event.kind == EventKind::Remove && trailerless_removal {
            continue; // grant files alone: no request to name, no trailer to match
        }
        seen.insert(sha.to_owned(), event.seq);
        let (row, kind, commit) = (event.seq, event.kind, short(sha));
        match merges.get(sha) {
            Some(id) if *id == request => {}
            Some(id) => problems.push(format!(
                "event log row {row}: {kind} of `{request}` is commit {commit}, which git records for `{id}`"
            )),
            None if git.forged.contains_key(sha) => problems.push(format!(
                "event log row {row}: {kind} of `{request}` is commit {commit}, whose files do not bear out its trailers"
            )),
            None => problems.push(format!(
                "event log row {row}: {kind} commit {commit} of `{request}` is not on {branch}'s first-parent history (history rewritten?)"
            )),
        }
    }
    logged
}

/// Each grant and revoke merge in git against the log: counted when logged, a problem when not.
fn git_against_log(git: &GitMerges<'_>, logged: &Logged, result: &mut Verification) {
    for (sha, id) in &git.grants {
        if logged.grants.contains_key(sha) {
            result.grants += 1;
        } else {
            result.problems.push(format!(
                "commit {} grants `{id}` but the event log has no merge for it",
                short(sha)
            ));
        }
    }
    for (sha, id) in &git.revokes {
        if logged.revokes.contains_key(sha) {
            result.revocations += 1;
        } else {
            result.problems.push(format!(
                "commit {} revokes `{id}` but the event log has no revocation for it",
                short(sha)
            ));
        }
    }
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
