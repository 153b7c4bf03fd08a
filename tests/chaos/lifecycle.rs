//! One access request's life as the people play it: opened by PR (GitLab: MR) or by
//! `/breakglass` comment, approved (comment, reaction, review), by fast path or self-service,
//! then left to expire, revoked early or extended, on the world's forge. Each step waits for what a person would wait for (the bot's
//! record of the request), so a step is never played against a state the bot has not reached.

use breakglass::store::{RequestRecord, RequestState};
use chrono::{DateTime, Utc};

use super::rng::Rng;
use super::world::{REPO, World};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A PR (MR) approved by `/breakglass approve`.
    ApproveComment,
    /// A PR (MR) approved by a 👍 (found by the bot's poll on GitHub, sent as an emoji event
    /// by GitLab).
    ApproveReaction,
    /// A PR approved by an approving review (an MR by GitLab's Approve).
    ApproveReview,
    /// `/breakglass prod …` on an issue; the bot opens the PR (MR); approved by comment.
    CommentRequest,
    /// bob's sev1 PR, merged at once, reviewed after the fact (sometimes).
    FastPath,
    /// A staging request: approvals 0.
    SelfService,
}

const KINDS: [Kind; 6] = [
    Kind::ApproveComment,
    Kind::ApproveReaction,
    Kind::ApproveReview,
    Kind::CommentRequest,
    Kind::FastPath,
    Kind::SelfService,
];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ending {
    Expire,
    Revoke,
    Extend,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    Open,
    Approve,
    AwaitGrant,
    Granted,
    AwaitEnd,
    Done,
}

#[derive(Debug)]
pub struct Lifecycle {
    pub n: usize,
    pub kind: Kind,
    pub ending: Ending,
    pub minutes: i64,
    /// `INC-<n>`: unique per lifecycle, so the bot's record is found by it.
    pub ticket: String,
    pub id: Option<String>,
    pub pr: Option<u64>,
    pub stage: Stage,
    pub extended: bool,
    /// When (forge clock) the driver first saw the request pending: approvals come later.
    pending_seen: Option<DateTime<Utc>>,
}

impl Lifecycle {
    pub fn random(n: usize, rng: &mut Rng) -> Self {
        let kind = *rng.pick(&KINDS);
        let ending = *rng.pick(&[
            Ending::Expire,
            Ending::Expire,
            Ending::Revoke,
            Ending::Extend,
        ]);
        // Fast paths allow at most 1h; the others up to their policy's maximum.
        let minutes = *rng.pick(&[15, 30, 45, 60]);
        Self {
            n,
            kind,
            ending,
            minutes,
            ticket: format!("INC-{}", 1000 + n),
            id: None,
            pr: None,
            stage: Stage::Open,
            extended: false,
            pending_seen: None,
        }
    }

    fn environment(&self) -> &'static str {
        match self.kind {
            Kind::SelfService => "staging",
            _ => "prod",
        }
    }

    fn yaml(&self) -> String {
        format!(
            "environment: {}\nrole: admin\nduration: {}m\nreason: \"incident: {} chaos lifecycle {}\"\nticket: {}\n",
            self.environment(),
            self.minutes,
            self.ticket,
            self.n,
            self.ticket
        )
    }

    /// The bot's record of this request, once it has one.
    pub fn record<'a>(&self, records: &'a [RequestRecord]) -> Option<&'a RequestRecord> {
        records
            .iter()
            .find(|r| r.ticket.as_ref().is_some_and(|t| t.as_str() == self.ticket))
    }

    /// Plays the next step if its time has come; true when something was done on the forge.
    pub fn step(&mut self, world: &World, records: &[RequestRecord], rng: &mut Rng) -> bool {
        let forge_now = world.forge.now();
        let record = self.record(records);
        if let Some(record) = record {
            self.id = Some(record.id.to_string());
            self.pr = Some(record.pr_number);
        }
        match self.stage {
            Stage::Open => {
                self.open(world);
                self.stage = match self.kind {
                    Kind::FastPath | Kind::SelfService => Stage::AwaitGrant,
                    _ => Stage::Approve,
                };
                true
            }
            Stage::Approve => match record {
                // An approval in the push's second cannot be told from one before it: people
                // approve at least a second after they saw the bot's verdict.
                Some(r) if r.state == RequestState::Pending => match self.pending_seen {
                    Some(seen) if forge_now > seen => {
                        self.approve(world, r.pr_number, rng);
                        self.stage = Stage::AwaitGrant;
                        true
                    }
                    Some(_) => false,
                    None => {
                        self.pending_seen = Some(forge_now);
                        false
                    }
                },
                // A sev1 seen pending for a moment (its label came after the PR) that the fast
                // path then granted: nobody needs to approve it.
                Some(r) if r.granted_at.is_some() => {
                    self.stage = Stage::AwaitGrant;
                    false
                }
                _ => false,
            },
            Stage::AwaitGrant => {
                if record.is_some_and(|r| r.granted_at.is_some()) {
                    self.stage = Stage::Granted;
                } else if self.kind == Kind::FastPath
                    && record.is_some_and(|r| r.state == RequestState::Pending)
                {
                    // An overdue after-the-fact review sends the next sev1 through approval
                    // (`block_until_reviewed`): an approver approves it.
                    self.stage = Stage::Approve;
                }
                false
            }
            Stage::Granted => {
                let Some(r) = record else { return false };
                if matches!(r.state, RequestState::Revoking | RequestState::Revoked) {
                    // Expired before the driver came to end it: it ends as an expiry.
                    self.stage = Stage::AwaitEnd;
                    return false;
                }
                self.end(world, r, rng);
                self.stage = Stage::AwaitEnd;
                true
            }
            Stage::AwaitEnd => {
                if record.is_some_and(|r| r.state == RequestState::Revoked) {
                    self.stage = Stage::Done;
                }
                false
            }
            Stage::Done => false,
        }
    }

    fn open(&mut self, world: &World) {
        let p = &world.people;
        let forge = &world.forge;
        let path = format!("requests/{}/chaos-{}.yaml", self.environment(), self.n);
        let branch = format!("chaos-{}", self.n);
        let title = format!("Access request {}", self.n);
        match self.kind {
            Kind::CommentRequest => {
                let issue = world.open_issue(&p.alice, &format!("chaos {}", self.n));
                world.comment_on_issue(
                    issue,
                    &p.alice,
                    &format!(
                        "/breakglass prod {}m admin -- incident: {} chaos lifecycle {}",
                        self.minutes, self.ticket, self.n
                    ),
                );
            }
            Kind::FastPath => {
                forge.push_files(REPO, &branch, &p.bob, &[(&path, &self.yaml())], "sev1");
                let change = world.open_change(&p.bob, &branch, &title);
                world.label_change(change, &p.bob, "sev1");
            }
            _ => {
                forge.push_files(REPO, &branch, &p.alice, &[(&path, &self.yaml())], "request");
                world.open_change(&p.alice, &branch, &title);
            }
        }
    }

    /// Approves change request `number` (the caller moved the clocks a second past the push).
    fn approve(&self, world: &World, number: u64, rng: &mut Rng) {
        let approver = if rng.chance(50) {
            &world.people.carol
        } else {
            &world.people.dan
        };
        match self.kind {
            Kind::ApproveReaction => world.thumbs_up(number, approver),
            Kind::ApproveReview => world.approve_button(number, approver),
            _ => world.comment_on_change(number, approver, "/breakglass approve"),
        }
    }

    fn end(&mut self, world: &World, record: &RequestRecord, rng: &mut Rng) {
        let requester = if self.kind == Kind::FastPath {
            &world.people.bob
        } else {
            &world.people.alice
        };
        if self.kind == Kind::FastPath && rng.chance(50) {
            world.comment_on_change(
                record.pr_number,
                &world.people.carol,
                "/breakglass reviewed",
            );
        }
        match self.ending {
            Ending::Expire => {}
            Ending::Revoke => {
                world.comment_on_change(record.pr_number, requester, "/breakglass revoke");
            }
            Ending::Extend => {
                world.comment_on_change(
                    record.pr_number,
                    &world.people.carol,
                    "/breakglass extend 30m",
                );
                self.extended = true;
            }
        }
    }
}
