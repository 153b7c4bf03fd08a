//! The scenario API in GitLab's terms: helpers that take and return GitLab iids (separate for
//! issues and merge requests) so a test can play the humans of a GitLab project. They panic on a
//! mistake of the test itself (unknown repo or iid), like the GitHub helpers.

use super::{Noteable, award_name, by_iid, hooks};
use crate::TestForge;
use crate::model::{Comment, PullRequest, Reaction, User};
use crate::ops::{MergeRequest, NewPull, ReactionTarget};
use crate::state::ForgeState;

#[track_caller]
fn ok<T, E: std::fmt::Debug>(what: &str, r: Result<T, E>) -> T {
    match r {
        Ok(v) => v,
        Err(e) => panic!("test-forge: {what} failed: {e:?}"),
    }
}

impl TestForge {
    fn gl_state<T>(&self, f: impl FnOnce(&mut ForgeState) -> T) -> T {
        self.shared.test_side(f)
    }

    /// The GitLab API base URL to give a GitLab client, e.g. `http://127.0.0.1:41234/api/v4`.
    pub fn gitlab_api_url(&self) -> String {
        format!("http://{}/api/v4", self.addr)
    }

    /// The numeric project id of `repo` (GitLab also accepts the URL-encoded path).
    #[track_caller]
    pub fn gl_project_id(&self, repo: &str) -> u64 {
        self.gl_state(|st| ok("project", st.repo(repo)).id)
    }

    /// The forge's internal number of a GitLab issue or merge request, for the shared helpers
    /// that take one ([`TestForge::set_draft`], [`TestForge::label`], [`TestForge::push_files`]
    /// moves MRs by branch anyway, …).
    #[track_caller]
    pub fn gl_number(&self, repo: &str, of: Noteable) -> u64 {
        self.gl_state(|st| ok("iid", by_iid(ok("project", st.repo(repo)), of)).number)
    }

    /// The GitLab iid of the issue or pull request with internal `number`.
    #[track_caller]
    pub fn gl_iid(&self, repo: &str, number: u64) -> Noteable {
        self.gl_state(|st| {
            super::noteable_of(ok("issue", ok("project", st.repo(repo)).issue(number)))
        })
    }

    /// Opens a merge request from `source_branch` into the default branch; returns its iid.
    /// A title starting with `Draft:` opens a draft, as on GitLab.
    #[track_caller]
    pub fn gl_open_mr(
        &self,
        repo: &str,
        user: &User,
        source_branch: &str,
        title: &str,
        description: &str,
    ) -> u64 {
        let (draft, bare) = super::routes::split_draft_title(title);
        let number = self.gl_state(|st| {
            ok(
                "gl_open_mr",
                st.open_pull(
                    repo,
                    &user.login,
                    NewPull {
                        head: source_branch,
                        base: None,
                        title: bare,
                        body: description,
                        draft,
                    },
                ),
            )
        });
        self.gl_iid(repo, number).iid()
    }

    /// Opens an issue; returns its iid (issues count apart from merge requests).
    #[track_caller]
    pub fn gl_open_issue(&self, repo: &str, user: &User, title: &str, description: &str) -> u64 {
        let number = self.gl_state(|st| {
            ok(
                "gl_open_issue",
                st.open_issue(repo, &user.login, title, description),
            )
        });
        self.gl_iid(repo, number).iid()
    }

    /// Adds a note to an issue or merge request (`Note Hook`, action `create`); returns its id.
    #[track_caller]
    pub fn gl_comment(&self, repo: &str, of: Noteable, user: &User, body: &str) -> u64 {
        let number = self.gl_number(repo, of);
        self.gl_state(|st| {
            ok(
                "gl_comment",
                st.add_comment(repo, number, &user.login, body),
            )
        })
    }

    /// [`TestForge::gl_comment`] on merge request `!iid`.
    #[track_caller]
    pub fn gl_comment_mr(&self, repo: &str, iid: u64, user: &User, body: &str) -> u64 {
        self.gl_comment(repo, Noteable::MergeRequest(iid), user, body)
    }

    /// [`TestForge::gl_comment`] on issue `#iid`.
    #[track_caller]
    pub fn gl_comment_issue(&self, repo: &str, iid: u64, user: &User, body: &str) -> u64 {
        self.gl_comment(repo, Noteable::Issue(iid), user, body)
    }

    /// Awards emoji `name` (GitLab's name: `thumbsup`, `thumbsdown`, `tada`, …) on an issue or
    /// merge request (`Emoji Hook`, `award`); returns the award id. GitHub's reactions API shows
    /// the same award under GitHub's name (`+1`, `-1`, `hooray`, …).
    #[track_caller]
    pub fn gl_award(&self, repo: &str, of: Noteable, user: &User, name: &str) -> u64 {
        let number = self.gl_number(repo, of);
        self.gl_state(|st| {
            ok(
                "gl_award",
                st.gl_award(repo, ReactionTarget::Issue(number), &user.login, name),
            )
            .id
        })
    }

    /// [`TestForge::gl_award`] on merge request `!iid`.
    #[track_caller]
    pub fn gl_award_mr(&self, repo: &str, iid: u64, user: &User, name: &str) -> u64 {
        self.gl_award(repo, Noteable::MergeRequest(iid), user, name)
    }

    /// Awards emoji `name` on note `note_id` (`Emoji Hook` with `awardable_type: Note`).
    #[track_caller]
    pub fn gl_award_note(&self, repo: &str, note_id: u64, user: &User, name: &str) -> u64 {
        self.gl_state(|st| {
            ok(
                "gl_award_note",
                st.gl_award(repo, ReactionTarget::Comment(note_id), &user.login, name),
            )
            .id
        })
    }

    /// Removes award `award_id` from an issue or merge request (`Emoji Hook`, `revoke`, sent
    /// as the user who awarded it).
    #[track_caller]
    pub fn gl_revoke_award(&self, repo: &str, of: Noteable, award_id: u64) {
        let number = self.gl_number(repo, of);
        self.gl_state(|st| {
            ok(
                "gl_revoke_award",
                st.gl_revoke(repo, ReactionTarget::Issue(number), award_id, None),
            )
        });
    }

    /// Approves merge request `!iid` as `user` (`Merge Request Hook` `approved` or
    /// `approval`). The author may not, nor may anyone twice.
    #[track_caller]
    pub fn gl_approve(&self, repo: &str, iid: u64, user: &User) {
        self.gl_state(|st| ok("gl_approve", st.gl_approve(repo, iid, &user.login, None)));
    }

    /// Builds GitLab's approval hooks late (`later`), as GitLab does: its approval service only
    /// records the approval, and a Sidekiq worker (`MergeRequests::ExecuteApprovalHooksWorker`)
    /// builds and sends the hook when it runs, from the merge request as it is then. The hooks
    /// wait for [`Self::gl_run_approval_hook_worker`]; with `later` false they are sent at once
    /// again (those still waiting stay until the worker runs).
    pub fn gl_build_approval_hooks_later(&self, later: bool) {
        self.gl_state(|st| match (later, st.gl_approval_hooks_waiting.is_some()) {
            (true, false) => st.gl_approval_hooks_waiting = Some(Vec::new()),
            (false, true) => {
                hooks::run_approval_hook_worker(st);
                st.gl_approval_hooks_waiting = None;
            }
            _ => {}
        });
    }

    /// Makes `GET …/approvals` leave out each approval's `approved_at` (`untimed`), as GitLab
    /// did before the field was added.
    pub fn gl_set_approvals_untimed(&self, untimed: bool) {
        self.gl_state(|st| st.gl_approvals_untimed = untimed);
    }

    /// Makes GitLab refuse the next `merges` merge calls with 405 as if the merge request's
    /// pipeline were not linked yet (it reads `ci_still_running` meanwhile).
    pub fn gl_link_pipelines_late(&self, merges: u32) {
        self.gl_state(|st| st.gl_pipeline_unlinked_merges = merges);
    }

    /// Runs GitLab's approval hook worker: every waiting approval hook is built from its merge
    /// request as it is now and sent. Returns how many.
    pub fn gl_run_approval_hook_worker(&self) -> usize {
        self.gl_state(hooks::run_approval_hook_worker)
    }

    /// Withdraws `user`'s approval of `!iid` (`unapproved` or `unapproval`).
    #[track_caller]
    pub fn gl_unapprove(&self, repo: &str, iid: u64, user: &User) {
        self.gl_state(|st| ok("gl_unapprove", st.gl_unapprove(repo, iid, &user.login)));
    }

    /// Merges `!iid` as `user` with GitLab's default merge commit message; returns its sha.
    #[track_caller]
    pub fn gl_merge_mr(&self, repo: &str, iid: u64, user: &User) -> String {
        let number = self.gl_number(repo, Noteable::MergeRequest(iid));
        self.gl_state(|st| {
            let message = {
                let (i, pr) = ok("merge request", ok("project", st.repo(repo)).pull(number));
                format!(
                    "Merge branch '{}' into '{}'\n\n{}\n\nSee merge request {repo}!{iid}",
                    pr.head_ref, pr.base_ref, i.title
                )
            };
            ok(
                "gl_merge_mr",
                st.merge_pull(
                    repo,
                    number,
                    &user.login,
                    MergeRequest {
                        sha: None,
                        method: "merge",
                        title: Some(&message),
                        message: Some(""),
                    },
                ),
            )
        })
    }

    // ---- inspection ----

    /// The notes of an issue or merge request, oldest first.
    #[track_caller]
    pub fn gl_notes(&self, repo: &str, of: Noteable) -> Vec<Comment> {
        let number = self.gl_number(repo, of);
        self.comments(repo, number)
    }

    /// The awards on an issue or merge request, oldest first, with GitLab's names in `content`.
    #[track_caller]
    pub fn gl_awards(&self, repo: &str, of: Noteable) -> Vec<Reaction> {
        let number = self.gl_number(repo, of);
        self.reactions(repo, number)
            .into_iter()
            .map(|mut x| {
                x.content = award_name(&x.content).to_owned();
                x
            })
            .collect()
    }

    /// Who approves `!iid` now, in the order they approved.
    #[track_caller]
    pub fn gl_approvers(&self, repo: &str, iid: u64) -> Vec<String> {
        let number = self.gl_number(repo, Noteable::MergeRequest(iid));
        self.gl_state(|st| {
            let (_, pr) = ok("merge request", ok("project", st.repo(repo)).pull(number));
            hooks::approvers(pr).into_iter().map(|(u, _)| u).collect()
        })
    }

    /// A snapshot of merge request `!iid` (its `number` is the forge's internal number).
    #[track_caller]
    pub fn gl_mr(&self, repo: &str, iid: u64) -> PullRequest {
        self.pr(repo, self.gl_number(repo, Noteable::MergeRequest(iid)))
    }
}
