//! Helpers bound to a person, so that a story reads as it happens:
//! `s.by(&s.people.carol).approve(pr)`. (`as` is a Rust keyword, hence `by`.)

use breakglass_test_forge::User;

use super::Scenario;

/// One person of the story, acting in a scenario.
pub struct Person<'s> {
    s: &'s Scenario,
    user: &'s User,
}

impl Scenario {
    /// `user`, acting in this scenario.
    pub fn by<'s>(&'s self, user: &'s User) -> Person<'s> {
        Person { s: self, user }
    }
}

impl Person<'_> {
    /// Comments `/breakglass approve` on change `number`, a second after whatever came before
    /// on the forge's clock (see [`Scenario::approve`]); the comment's id.
    #[track_caller]
    pub fn approve(&self, number: u64) -> u64 {
        self.s.approve(number, self.user)
    }

    /// Approves change `number` with the forge's own button (see [`Scenario::approve_button`]).
    #[track_caller]
    pub fn approve_button(&self, number: u64) {
        self.s.approve_button(number, self.user);
    }

    /// Takes the approval given with the forge's button back.
    #[track_caller]
    pub fn unapprove_button(&self, number: u64) {
        self.s.unapprove_button(number, self.user);
    }

    /// Puts emoji `name` (GitHub's names) on change `number`, a second after whatever came
    /// before; the emoji's id.
    #[track_caller]
    pub fn emoji(&self, number: u64, name: &str) -> u64 {
        self.s.emoji(number, self.user, name)
    }

    /// [`Person::emoji`] at the forge's current second.
    #[track_caller]
    pub fn emoji_now(&self, number: u64, name: &str) -> u64 {
        self.s.emoji_now(number, self.user, name)
    }

    /// Comments `body` on change `number`; the comment's id.
    #[track_caller]
    pub fn note(&self, number: u64, body: &str) -> u64 {
        self.s.note(number, self.user, body)
    }

    /// Comments `body` on issue `number`; the comment's id.
    #[track_caller]
    pub fn note_on_issue(&self, number: u64, body: &str) -> u64 {
        self.s.note_on_issue(number, self.user, body)
    }

    /// Comments `/breakglass <command>` on change `number`; the comment's id.
    #[track_caller]
    pub fn command(&self, number: u64, command: &str) -> u64 {
        self.note(number, &format!("/breakglass {command}"))
    }

    /// Comments `/breakglass revoke` on change `number`.
    #[track_caller]
    pub fn revoke(&self, number: u64) -> u64 {
        self.command(number, "revoke")
    }

    /// Opens a request change adding `requests/<env>/<id>.yaml`; its number.
    #[track_caller]
    pub fn open_request(&self, env: &str, id: &str, yaml: &str) -> u64 {
        self.s.open_request(self.user, env, id, yaml)
    }

    /// Opens an issue; its number.
    #[track_caller]
    pub fn open_issue(&self, title: &str) -> u64 {
        self.s.open_issue(self.user, title)
    }

    /// Labels change `number`.
    #[track_caller]
    pub fn label(&self, number: u64, name: &str) {
        self.s.label(number, self.user, name);
    }

    /// Closes change `number`.
    #[track_caller]
    pub fn close(&self, number: u64) {
        self.s.close_change(number, self.user);
    }
}
