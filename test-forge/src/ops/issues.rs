//! Issue comments, reactions and labels.

use serde_json::{Map, json};

use crate::error::{ApiError, ApiResult};
use crate::json;
use crate::routes::REACTIONS;
use crate::state::{CommentRec, ForgeState, LabelRec, ReactionRec};

/// What a reaction is on.
#[derive(Clone, Copy, Debug)]
pub(crate) enum ReactionTarget {
    Issue(u64),
    Comment(u64),
}

/// Label colours GitHub would pick for new labels, in turn.
const COLORS: &[&str] = &[
    "d73a4a", "0075ca", "cfd3d7", "a2eeef", "7057ff", "008672", "e4e669",
];

impl ForgeState {
    fn emit_comment(
        &self,
        full: &str,
        comment_id: u64,
        action: &str,
        sender: &str,
        changes: Option<serde_json::Value>,
        gone: Option<&CommentRec>,
    ) {
        let Ok(r) = self.repo(full) else {
            return;
        };
        let Some(c) = gone.or_else(|| r.comments.get(&comment_id)) else {
            return;
        };
        let Ok(i) = r.issue(c.issue_number) else {
            return;
        };
        let mut p = Map::new();
        p.insert("action".into(), json!(action));
        p.insert("issue".into(), json::issue(self, r, i));
        p.insert("comment".into(), json::comment(self, r, c));
        if let Some(ch) = changes {
            p.insert("changes".into(), ch);
        }
        self.emit(full, "issue_comment", p, sender);
        crate::gitlab::hooks::on_comment(self, full, c, action, sender);
    }

    /// Adds a comment to an issue or pull request.
    pub(crate) fn add_comment(
        &mut self,
        full: &str,
        number: u64,
        actor: &str,
        body: &str,
    ) -> ApiResult<u64> {
        let now = self.now();
        let id = self.next_id();
        if body.is_empty() {
            return Err(ApiError::unprocessable(
                "Validation Failed: body is missing",
            ));
        }
        let r = self.repo_mut(full)?;
        r.issue_mut(number)?.updated_at = now;
        r.comments.insert(
            id,
            CommentRec {
                id,
                issue_number: number,
                user: actor.to_owned(),
                body: body.to_owned(),
                created_at: now,
                updated_at: now,
                reactions: Vec::new(),
            },
        );
        self.emit_comment(full, id, "created", actor, None, None);
        Ok(id)
    }

    /// Edits a comment. GitHub lets the author (or a maintainer) do it; the forge lets anyone
    /// with a token, since the bot only ever edits its own.
    pub(crate) fn edit_comment(
        &mut self,
        full: &str,
        id: u64,
        actor: &str,
        body: &str,
    ) -> ApiResult<()> {
        let now = self.now();
        let r = self.repo_mut(full)?;
        let c = r.comments.get_mut(&id).ok_or_else(ApiError::not_found)?;
        if body.is_empty() {
            return Err(ApiError::unprocessable(
                "Validation Failed: body is missing",
            ));
        }
        let from = std::mem::replace(&mut c.body, body.to_owned());
        c.updated_at = now;
        self.emit_comment(
            full,
            id,
            "edited",
            actor,
            Some(json!({"body": {"from": from}})),
            None,
        );
        Ok(())
    }

    /// Deletes a comment.
    pub(crate) fn delete_comment(&mut self, full: &str, id: u64, actor: &str) -> ApiResult<()> {
        let r = self.repo_mut(full)?;
        let c = r.comments.remove(&id).ok_or_else(ApiError::not_found)?;
        self.emit_comment(full, id, "deleted", actor, None, Some(&c));
        Ok(())
    }

    fn reactions_mut(
        &mut self,
        full: &str,
        target: ReactionTarget,
    ) -> ApiResult<&mut Vec<ReactionRec>> {
        let r = self.repo_mut(full)?;
        match target {
            ReactionTarget::Issue(n) => Ok(&mut r.issue_mut(n)?.reactions),
            ReactionTarget::Comment(id) => Ok(&mut r
                .comments
                .get_mut(&id)
                .ok_or_else(ApiError::not_found)?
                .reactions),
        }
    }

    /// The reactions on an issue/PR or a comment, oldest first.
    pub(crate) fn reactions(
        &self,
        full: &str,
        target: ReactionTarget,
    ) -> ApiResult<&[ReactionRec]> {
        let r = self.repo(full)?;
        match target {
            ReactionTarget::Issue(n) => Ok(&r.issue(n)?.reactions),
            ReactionTarget::Comment(id) => Ok(&r
                .comments
                .get(&id)
                .ok_or_else(ApiError::not_found)?
                .reactions),
        }
    }

    /// Adds a reaction (no GitHub webhook, as on GitHub; GitLab hooks get an Emoji Hook).
    /// Returns the reaction and whether it is new; the same user reacting with the same
    /// content again gets the existing one back.
    pub(crate) fn add_reaction(
        &mut self,
        full: &str,
        target: ReactionTarget,
        actor: &str,
        content: &str,
    ) -> ApiResult<(ReactionRec, bool)> {
        if !REACTIONS.contains(&content) {
            return Err(ApiError::unprocessable(format!(
                "Validation Failed: content {content:?} is not one of {}",
                REACTIONS.join(", ")
            )));
        }
        self.insert_reaction(full, target, actor, content)
    }

    /// Adds a reaction of any name (GitLab awards any emoji; the ones GitHub knows are stored
    /// under GitHub's content). Returns the reaction and whether it is new.
    pub(crate) fn insert_reaction(
        &mut self,
        full: &str,
        target: ReactionTarget,
        actor: &str,
        content: &str,
    ) -> ApiResult<(ReactionRec, bool)> {
        let now = self.now();
        let id = self.next_id();
        let list = self.reactions_mut(full, target)?;
        if let Some(existing) = list
            .iter()
            .find(|x| x.user == actor && x.content == content)
        {
            return Ok((existing.clone(), false));
        }
        let rec = ReactionRec {
            id,
            user: actor.to_owned(),
            content: content.to_owned(),
            created_at: now,
        };
        list.push(rec.clone());
        crate::gitlab::hooks::on_reaction(self, full, target, &rec, true);
        Ok((rec, true))
    }

    /// Removes a reaction by id (GitLab hooks get an Emoji Hook `revoke`).
    pub(crate) fn delete_reaction(
        &mut self,
        full: &str,
        target: ReactionTarget,
        id: u64,
    ) -> ApiResult<()> {
        let list = self.reactions_mut(full, target)?;
        let Some(pos) = list.iter().position(|x| x.id == id) else {
            return Err(ApiError::not_found());
        };
        let rec = list.remove(pos);
        crate::gitlab::hooks::on_reaction(self, full, target, &rec, false);
        Ok(())
    }

    fn ensure_label(&mut self, full: &str, name: &str) -> ApiResult<()> {
        let id = self.next_id();
        let r = self.repo_mut(full)?;
        if !r.labels.contains_key(name) {
            let color = COLORS[r.labels.len() % COLORS.len()].to_owned();
            r.labels.insert(
                name.to_owned(),
                LabelRec {
                    id,
                    color,
                    description: None,
                },
            );
        }
        Ok(())
    }

    fn emit_labeled(&self, full: &str, number: u64, action: &str, name: &str, sender: &str) {
        let Ok(r) = self.repo(full) else {
            return;
        };
        let label = json::label(self, r, name);
        let is_pr = r.issues.get(&number).is_some_and(|i| i.pr.is_some());
        if is_pr {
            self.emit_pull(full, number, action, sender, vec![("label", label)]);
        } else {
            self.emit_issue(full, number, action, sender, vec![("label", label)]);
        }
    }

    /// Adds labels (creating unknown ones, as GitHub does) and emits `labeled` per new label.
    pub(crate) fn add_labels(
        &mut self,
        full: &str,
        number: u64,
        actor: &str,
        names: &[String],
    ) -> ApiResult<()> {
        let now = self.now();
        self.repo(full)?.issue(number)?;
        let mut added = Vec::new();
        for name in names {
            if name.trim().is_empty() {
                return Err(ApiError::unprocessable(
                    "Validation Failed: label name is empty",
                ));
            }
            self.ensure_label(full, name)?;
            let i = self.repo_mut(full)?.issue_mut(number)?;
            if !i.labels.contains(name) {
                i.labels.push(name.clone());
                i.updated_at = now;
                added.push(name.clone());
            }
        }
        for name in added {
            self.emit_labeled(full, number, "labeled", &name, actor);
        }
        Ok(())
    }

    /// Removes one label; 404 "Label does not exist" when it is not on the issue.
    pub(crate) fn remove_label(
        &mut self,
        full: &str,
        number: u64,
        actor: &str,
        name: &str,
    ) -> ApiResult<()> {
        let now = self.now();
        let i = self.repo_mut(full)?.issue_mut(number)?;
        let before = i.labels.len();
        i.labels.retain(|l| l != name);
        if i.labels.len() == before {
            return Err(ApiError::not_found_msg("Label does not exist"));
        }
        i.updated_at = now;
        self.emit_labeled(full, number, "unlabeled", name, actor);
        Ok(())
    }

    /// Replaces all labels.
    pub(crate) fn set_labels(
        &mut self,
        full: &str,
        number: u64,
        actor: &str,
        names: &[String],
    ) -> ApiResult<()> {
        let current = self.repo(full)?.issue(number)?.labels.clone();
        for old in current.iter().filter(|l| !names.contains(l)) {
            self.remove_label(full, number, actor, old)?;
        }
        self.add_labels(full, number, actor, names)
    }
}
