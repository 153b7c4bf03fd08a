//! Notes that are said once in a request's life ("granted", "revoked"), even when the step
//! that says them runs again after a crash or on two replicas: the thread is read first, and
//! a note of the bot's that starts with the same marker means it was said.

use super::Workflow;
use crate::forge::{Thread, unmarked};

/// The first line of the granted note (`templates/comments/granted.md.j2`, and its fallback).
pub(super) const GRANTED: &str = "🔓";
/// The first character of the revoked note.
pub(super) const REVOKED: &str = "🔒";

tokio::task_local! {
    /// Set by [`Workflow::refusing_once`].
    static SAID_ANY_TIME: ();
}

impl Workflow {
    /// Posts `body` on `thread` unless the bot already posted a note starting with `marker`
    /// there. A crash between the post and the step's end is the one case this cannot see
    /// coming; reading the thread back is what makes the retry safe.
    pub(super) async fn note_once(
        &self,
        thread: Thread,
        marker: &str,
        body: &str,
    ) -> anyhow::Result<()> {
        debug_assert!(body.starts_with(marker), "the marker starts the note");
        let [said] = self.said(thread, [marker]).await?;
        if !said {
            self.forge.note(thread, body).await?;
        }
        Ok(())
    }

    /// Says a refusal on change `number` unless the bot's latest note there says the same, so
    /// that deciding a refused head again (its webhook late, redelivered or handled again after
    /// a crash, or the catch-up at start) does not repeat it (one read of the thread).
    /// Within [`Workflow::refusing_once`], unless the bot's latest refusal there (its latest
    /// ⛔ or ❌ note, or one saying the same) says the same.
    pub(super) async fn say_refusal(&self, number: u64, text: &str) -> anyhow::Result<()> {
        let thread = Thread::Change(number);
        if SAID_ANY_TIME.try_with(|_| ()).is_err() {
            return self.note_unless_latest(thread, text).await;
        }
        let notes = self.forge.notes(thread).await?;
        let same = |body: &str| body.trim_end() == text.trim_end();
        // Of equal times the last listed (the forges list notes oldest first).
        let latest = notes
            .iter()
            .filter(|note| note.author_id == self.bot.id)
            .filter(|note| {
                let body = unmarked(&note.body);
                crate::comment::is_refusal(body) || same(body)
            })
            .max_by_key(|note| note.created_at);
        if !latest.is_some_and(|note| same(unmarked(&note.body))) {
            self.forge.note(thread, text).await?;
        }
        Ok(())
    }

    /// Runs `work` (a command deciding a PR the bot has no record of) so that a refusal it says
    /// is not said again while it is the bot's latest refusal there: the command's own answer
    /// follows it, so "unless the latest note says the same" repeated the refusal at every
    /// command. (A refusal of a version pushed back, after another's, is said again.)
    pub(super) async fn refusing_once<T>(&self, work: impl Future<Output = T>) -> T {
        // Boxed: a decision's future is large, and a scope holds it by value.
        SAID_ANY_TIME.scope((), Box::pin(work)).await
    }

    /// Says `text` on `thread` unless the bot's latest note there says the same (one read).
    pub(super) async fn note_unless_latest(
        &self,
        thread: Thread,
        text: &str,
    ) -> anyhow::Result<()> {
        let notes = self.forge.notes(thread).await?;
        let latest = notes
            .iter()
            .filter(|note| note.author_id == self.bot.id)
            .max_by_key(|note| note.created_at);
        if latest.is_some_and(|note| unmarked(&note.body).trim_end() == text.trim_end()) {
            return Ok(());
        }
        self.forge.note(thread, text).await?;
        Ok(())
    }

    /// For each marker, whether a note of the bot's on `thread` starts with it (one read).
    pub(super) async fn said<const N: usize>(
        &self,
        thread: Thread,
        markers: [&str; N],
    ) -> anyhow::Result<[bool; N]> {
        let notes = self.forge.notes(thread).await?;
        Ok(markers.map(|marker| {
            notes
                .iter()
                .any(|note| note.author_id == self.bot.id && note.body.starts_with(marker))
        }))
    }
}
