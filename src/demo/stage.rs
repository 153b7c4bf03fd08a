//! The demo's forge, as the people of the story use it: the same actions on GitHub (pull
//! requests, reactions, `#n`) or on GitLab (merge requests, award emoji, `!n`), against the
//! one test forge, so that the story is told once for both.

use breakglass_test_forge::{Noteable, PullRequest, TestForge, User};
use serde_json::Value;

use super::REPO;

/// Which forge the story plays on.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum DemoForge {
    #[default]
    Github,
    Gitlab,
}

impl DemoForge {
    /// The forge's name in the timeline.
    pub fn name(self) -> &'static str {
        match self {
            DemoForge::Github => "GitHub",
            DemoForge::Gitlab => "GitLab",
        }
    }

    /// What the forge calls a change request.
    pub fn change(self) -> &'static str {
        match self {
            DemoForge::Github => "PR",
            DemoForge::Gitlab => "MR",
        }
    }

    /// How the forge links change request `n`.
    pub fn change_ref(self, n: u64) -> String {
        match self {
            DemoForge::Github => format!("#{n}"),
            DemoForge::Gitlab => format!("!{n}"),
        }
    }
}

/// The test forge, spoken to in one forge's dialect. Numbers are the forge's own (a GitLab
/// issue and merge request may share one).
pub struct Stage {
    pub forge: TestForge,
    pub dialect: DemoForge,
}

impl Stage {
    pub fn open_issue(&self, user: &User, title: &str) -> u64 {
        match self.dialect {
            DemoForge::Github => self.forge.open_issue(REPO, user, title, ""),
            DemoForge::Gitlab => self.forge.gl_open_issue(REPO, user, title, ""),
        }
    }

    pub fn comment_on_issue(&self, issue: u64, user: &User, body: &str) {
        match self.dialect {
            DemoForge::Github => drop(self.forge.comment(REPO, issue, user, body)),
            DemoForge::Gitlab => drop(self.forge.gl_comment_issue(REPO, issue, user, body)),
        }
    }

    pub fn comment_on_change(&self, number: u64, user: &User, body: &str) {
        match self.dialect {
            DemoForge::Github => drop(self.forge.comment(REPO, number, user, body)),
            DemoForge::Gitlab => drop(self.forge.gl_comment_mr(REPO, number, user, body)),
        }
    }

    /// A 👍 on a change request.
    pub fn thumbs_up(&self, number: u64, user: &User) {
        match self.dialect {
            DemoForge::Github => drop(self.forge.react(REPO, number, user, "+1")),
            DemoForge::Gitlab => drop(self.forge.gl_award_mr(REPO, number, user, "thumbsup")),
        }
    }

    pub fn open_change(&self, user: &User, branch: &str, title: &str) -> u64 {
        match self.dialect {
            DemoForge::Github => self.forge.open_pr(REPO, user, branch, title, ""),
            DemoForge::Gitlab => self.forge.gl_open_mr(REPO, user, branch, title, ""),
        }
    }

    /// The model's number of change request `number` (the shared helpers take it).
    fn internal(&self, number: u64) -> u64 {
        match self.dialect {
            DemoForge::Github => number,
            DemoForge::Gitlab => self.forge.gl_number(REPO, Noteable::MergeRequest(number)),
        }
    }

    pub fn label(&self, number: u64, user: &User, label: &str) {
        self.forge.label(REPO, self.internal(number), user, label);
    }

    pub fn labels(&self, number: u64) -> Vec<String> {
        self.forge.labels(REPO, self.internal(number))
    }

    pub fn change(&self, number: u64) -> PullRequest {
        match self.dialect {
            DemoForge::Github => self.forge.pr(REPO, number),
            DemoForge::Gitlab => self.forge.gl_mr(REPO, number),
        }
    }

    /// The comments on a change request, as `(author, body)`.
    pub fn change_comments(&self, number: u64) -> Vec<(String, String)> {
        let list = match self.dialect {
            DemoForge::Github => self.forge.comments(REPO, number),
            DemoForge::Gitlab => self.forge.gl_notes(REPO, Noteable::MergeRequest(number)),
        };
        // As a reader sees them rendered: without the bot's invisible mark.
        list.into_iter()
            .map(|c| (c.user, crate::forge::unmarked(&c.body).to_owned()))
            .collect()
    }

    /// The comments on an issue, as `(author, body)`.
    pub fn issue_comments(&self, number: u64) -> Vec<(String, String)> {
        let list = match self.dialect {
            DemoForge::Github => self.forge.comments(REPO, number),
            DemoForge::Gitlab => self.forge.gl_notes(REPO, Noteable::Issue(number)),
        };
        // As a reader sees them rendered: without the bot's invisible mark.
        list.into_iter()
            .map(|c| (c.user, crate::forge::unmarked(&c.body).to_owned()))
            .collect()
    }

    /// Who caused a webhook delivery, by login.
    pub fn sender(&self, payload: &Value) -> Option<String> {
        let login = match self.dialect {
            DemoForge::Github => payload["sender"]["login"].as_str(),
            DemoForge::Gitlab => payload["user"]["username"]
                .as_str()
                .or(payload["user_username"].as_str()),
        };
        login.map(str::to_owned)
    }
}

/// One timeline line for a GitLab webhook event the bot caused; `None` for noise.
pub fn describe_gitlab(event: &str, payload: &Value) -> Option<String> {
    let attributes = &payload["object_attributes"];
    match event {
        "Merge Request Hook" => {
            let iid = attributes["iid"].as_u64()?;
            match attributes["action"].as_str().unwrap_or_default() {
                "open" => Some(format!(
                    "opened MR !{iid} \"{}\"",
                    attributes["title"].as_str().unwrap_or_default()
                )),
                "merge" => Some(format!(
                    "merged MR !{iid} with merge commit {}",
                    super::short(attributes["merge_commit_sha"].as_str().unwrap_or_default())
                )),
                "close" => Some(format!("closed MR !{iid}")),
                _ => None,
            }
        }
        "Note Hook" => {
            let body = attributes["note"].as_str().unwrap_or_default();
            let on = match attributes["noteable_type"].as_str() {
                Some("MergeRequest") => format!("!{}", payload["merge_request"]["iid"].as_u64()?),
                _ => format!("#{}", payload["issue"]["iid"].as_u64()?),
            };
            Some(format!("on {on}: {}", super::gist(body)))
        }
        _ => None,
    }
}
