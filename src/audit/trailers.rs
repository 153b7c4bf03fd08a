//! Commit messages as git reads them: the subject, the body, and the trailer block at the end,
//! then the bot's `Breakglass-*` trailers picked out of it. [`TrailerKey`] is the one spelling
//! of those keys: the workflow writes its merge messages with it and the audit reads them back
//! with it.
//!
//! The audit trusts nothing but the history, so this parser follows git's own rules
//! (`trailer.c`, as `git log --format=%(trailers)` and `git interpret-trailers --parse` apply
//! them) rather than a looser "any `Key: value` line" reading: a `Breakglass-Request:` line in
//! the middle of a reason is not a trailer for git and must not be one for the audit either.
//! It borrows from the message and allocates only to unfold a continuation line, because it
//! runs once per commit of a history that may hold hundreds of thousands of them. It never
//! panics, whatever the message: CRLF line ends, no body, no trailers, megabytes of text.

use std::borrow::Cow;
use std::fmt;

use strum::VariantArray as _;

/// Trailer keys that make a mixed last paragraph count as a trailer block, like git's own
/// generated prefixes (`Signed-off-by: `) and configured trailers do: with one of them, a
/// quarter of the lines being trailers is enough; without, every line must be one. Compared
/// case-insensitively, as git compares keys.
const RECOGNIZED_PREFIXES: [&str; 2] = [TrailerKey::PREFIX, "signed-off-by"];

/// A key of the bot's trailers. A contract between the workflow (which writes merge messages),
/// the audit (which reads them) and the SPEC, so it is spelled once, here: a new key that is
/// not written or not read does not compile ([`TrailerKey::as_str`] and
/// [`BotTrailers::slot`] are exhaustive).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, strum::VariantArray)]
pub enum TrailerKey {
    /// `Breakglass-Request`: the request id, on every grant merge.
    Request,
    Requester,
    Environment,
    Role,
    Ticket,
    /// Logins joined with `, `, `fast-path:<rule>` or `self-service`.
    ApprovedBy,
    Expires,
    ReviewDue,
    /// `Breakglass-Revokes`: the request id, on every revoke and removal merge.
    Revokes,
    RevokedReason,
    /// `Breakglass-Revoked-By`: who asked for an early revoke (`/breakglass revoke`).
    RevokedBy,
    ReviewedBy,
}

impl TrailerKey {
    /// The prefix of every key the bot writes (git compares keys case-insensitively).
    pub const PREFIX: &'static str = "Breakglass-";

    /// The key as the bot writes it.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Request => "Breakglass-Request",
            Self::Requester => "Breakglass-Requester",
            Self::Environment => "Breakglass-Environment",
            Self::Role => "Breakglass-Role",
            Self::Ticket => "Breakglass-Ticket",
            Self::ApprovedBy => "Breakglass-Approved-By",
            Self::Expires => "Breakglass-Expires",
            Self::ReviewDue => "Breakglass-Review-Due",
            Self::Revokes => "Breakglass-Revokes",
            Self::RevokedReason => "Breakglass-Revoked-Reason",
            Self::RevokedBy => "Breakglass-Revoked-By",
            Self::ReviewedBy => "Breakglass-Reviewed-By",
        }
    }

    /// The key that `key` names, compared case-insensitively as git does.
    pub fn parse(key: &str) -> Option<Self> {
        Self::VARIANTS
            .iter()
            .copied()
            .find(|known| known.as_str().eq_ignore_ascii_case(key))
    }

    /// One trailer line as the bot writes it: `Key: value` and a line feed.
    pub fn line(self, value: impl fmt::Display) -> String {
        format!("{self}: {value}\n")
    }
}

impl fmt::Display for TrailerKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Whether `key` starts with [`TrailerKey::PREFIX`], in any case.
fn is_bot_key(key: &str) -> bool {
    key.get(..TrailerKey::PREFIX.len())
        .is_some_and(|prefix| prefix.eq_ignore_ascii_case(TrailerKey::PREFIX))
}

/// A commit message split the way git splits it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Message<'a> {
    /// The first line, without its line end.
    subject: &'a str,
    /// Everything between the first paragraph and the trailer block.
    body: &'a str,
    /// The trailer block (the last paragraph), or `""` when the message has none.
    block: &'a str,
}

impl<'a> Message<'a> {
    /// Splits a message. The trailer block is the last paragraph when it is not the first
    /// (the title never holds trailers) and when all of its lines are `Key: value` lines, or a
    /// quarter of them with a recognized key among them.
    pub fn parse(text: &'a str) -> Self {
        let subject = text
            .split('\n')
            .next()
            .unwrap_or_default()
            .trim_end_matches('\r');
        let end_of_title = end_of_title(text);
        let block_start = trailer_block_start(text, end_of_title);
        Self {
            subject,
            body: text.get(end_of_title..block_start).unwrap_or_default(),
            block: text.get(block_start..).unwrap_or_default(),
        }
    }

    /// The first line of the message.
    pub fn subject(&self) -> &'a str {
        self.subject
    }

    /// The body between the title paragraph and the trailers, on one line: lines are trimmed
    /// and joined with single spaces (the bot writes the reason as one line; a hand-written
    /// message may wrap it). Borrowed when it already is one line.
    pub fn body(&self) -> Cow<'a, str> {
        let body = self.body.trim();
        if !body.contains('\n') {
            return Cow::Borrowed(body.trim_end_matches('\r'));
        }
        let mut joined = String::with_capacity(body.len());
        for line in body.split('\n').map(str::trim).filter(|l| !l.is_empty()) {
            if !joined.is_empty() {
                joined.push(' ');
            }
            joined.push_str(line);
        }
        Cow::Owned(joined)
    }

    /// The trailers of the last paragraph, in order; continuation lines (starting with
    /// whitespace) are unfolded into their trailer's value with single spaces, as git does.
    pub fn trailers(&self) -> Trailers<'a> {
        Trailers { rest: self.block }
    }
}

/// One `Key: value` trailer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Trailer<'a> {
    /// The key as written (git compares keys case-insensitively).
    pub key: &'a str,
    /// The value, trimmed; owned only when continuation lines were unfolded into it.
    pub value: Cow<'a, str>,
}

/// Iterator over the trailers of a [`Message`].
#[derive(Clone, Debug)]
pub struct Trailers<'a> {
    rest: &'a str,
}

impl<'a> Iterator for Trailers<'a> {
    type Item = Trailer<'a>;

    fn next(&mut self) -> Option<Trailer<'a>> {
        loop {
            let line = self.take_line()?;
            if line.starts_with('#') || is_blank(line) || starts_with_space(line) {
                // Comments, and continuations of a line that was not a trailer.
                continue;
            }
            let Some(separator) = find_separator(line) else {
                continue; // a non-trailer line of a mixed block
            };
            let key = line[..separator].trim_end();
            let mut value = Cow::Borrowed(line[separator + 1..].trim());
            while self.rest.starts_with([' ', '\t']) {
                let continuation = self.take_line().unwrap_or_default().trim();
                if continuation.is_empty() {
                    continue;
                }
                let value = value.to_mut();
                if !value.is_empty() {
                    value.push(' ');
                }
                value.push_str(continuation);
            }
            return Some(Trailer { key, value });
        }
    }
}

impl<'a> Trailers<'a> {
    /// The next line, without `\n` or `\r\n`.
    fn take_line(&mut self) -> Option<&'a str> {
        if self.rest.is_empty() {
            return None;
        }
        let (line, rest) = self.rest.split_once('\n').unwrap_or((self.rest, ""));
        self.rest = rest;
        Some(line.strip_suffix('\r').unwrap_or(line))
    }
}

/// Everything the bot writes in its trailers, as found in one message. Values are the
/// trailers' text, unchecked: the report decides what a missing or malformed value means.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BotTrailers<'a> {
    /// `Breakglass-Request`: present on every grant merge.
    pub request: Option<Cow<'a, str>>,
    pub requester: Option<Cow<'a, str>>,
    pub environment: Option<Cow<'a, str>>,
    pub role: Option<Cow<'a, str>>,
    pub ticket: Option<Cow<'a, str>>,
    /// `Breakglass-Approved-By`: logins joined with `, `, `fast-path:<rule>` or `self-service`.
    pub approved_by: Option<Cow<'a, str>>,
    pub expires: Option<Cow<'a, str>>,
    pub review_due: Option<Cow<'a, str>>,
    /// `Breakglass-Revokes`: present on every revoke and removal merge.
    pub revokes: Option<Cow<'a, str>>,
    pub revoked_reason: Option<Cow<'a, str>>,
    pub revoked_by: Option<Cow<'a, str>>,
    pub reviewed_by: Option<Cow<'a, str>>,
    /// Whether the message carries any `Breakglass-*` trailer at all, known or not.
    pub any: bool,
}

impl<'a> BotTrailers<'a> {
    /// Picks the bot's trailers out of a message. Keys are matched case-insensitively, as git
    /// does; when a key repeats, the first one counts; unknown keys are ignored.
    pub fn from_message(message: &Message<'a>) -> Self {
        let mut found = Self::default();
        for trailer in message.trailers() {
            if !is_bot_key(trailer.key) {
                continue;
            }
            found.any = true;
            // No lowercased copy of the key: this runs for every trailer of every commit.
            let Some(key) = TrailerKey::parse(trailer.key) else {
                continue;
            };
            let slot = found.slot(key);
            if slot.is_none() {
                *slot = Some(trailer.value);
            }
        }
        found
    }

    /// Where the value of `key` goes.
    fn slot(&mut self, key: TrailerKey) -> &mut Option<Cow<'a, str>> {
        match key {
            TrailerKey::Request => &mut self.request,
            TrailerKey::Requester => &mut self.requester,
            TrailerKey::Environment => &mut self.environment,
            TrailerKey::Role => &mut self.role,
            TrailerKey::Ticket => &mut self.ticket,
            TrailerKey::ApprovedBy => &mut self.approved_by,
            TrailerKey::Expires => &mut self.expires,
            TrailerKey::ReviewDue => &mut self.review_due,
            TrailerKey::Revokes => &mut self.revokes,
            TrailerKey::RevokedReason => &mut self.revoked_reason,
            TrailerKey::RevokedBy => &mut self.revoked_by,
            TrailerKey::ReviewedBy => &mut self.reviewed_by,
        }
    }

    /// Reads a whole message.
    pub fn parse(text: &'a str) -> Self {
        Self::from_message(&Message::parse(text))
    }
}

/// Git's "blank": nothing but whitespace (which covers the `\r` of a CRLF line end).
fn is_blank(line: &str) -> bool {
    line.bytes().all(|b| b.is_ascii_whitespace())
}

fn starts_with_space(line: &str) -> bool {
    line.starts_with([' ', '\t'])
}

/// Where `Key:` ends, by git's `find_separator`: a token of ASCII letters, digits and `-`,
/// optionally followed by spaces, then `:`. `None` for any other line.
fn find_separator(line: &str) -> Option<usize> {
    let mut whitespace_found = false;
    for (i, b) in line.bytes().enumerate() {
        match b {
            b':' if i > 0 => return Some(i),
            b if !whitespace_found && (b.is_ascii_alphanumeric() || b == b'-') => {}
            b' ' | b'\t' if i > 0 => whitespace_found = true,
            _ => return None,
        }
    }
    None
}

/// The offset of the first blank line: the title paragraph ends there, and the trailer block
/// can only start after it. The message's length when there is no blank line.
fn end_of_title(text: &str) -> usize {
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        if !line.starts_with('#') && is_blank(line) {
            return offset;
        }
        offset += line.len();
    }
    text.len()
}

/// Where the trailer block starts (`text.len()` when there is none): git's
/// `find_trailer_block_start`, scanning the last paragraph from its end.
fn trailer_block_start(text: &str, end_of_title: usize) -> usize {
    let mut only_spaces = true;
    let mut recognized_prefix = false;
    let mut trailer_lines = 0usize;
    let mut non_trailer_lines = 0usize;
    let mut possible_continuation_lines = 0usize;
    for (start, line) in RevLines::new(text) {
        if start < end_of_title {
            break;
        }
        if line.starts_with('#') {
            non_trailer_lines += possible_continuation_lines;
            possible_continuation_lines = 0;
            continue;
        }
        if is_blank(line) {
            if only_spaces {
                continue; // trailing blank lines
            }
            non_trailer_lines += possible_continuation_lines;
            if (recognized_prefix && trailer_lines * 3 >= non_trailer_lines)
                || (trailer_lines > 0 && non_trailer_lines == 0)
            {
                // The block starts on the line after this blank one.
                return text[start..]
                    .find('\n')
                    .map_or(text.len(), |i| start + i + 1);
            }
            return text.len();
        }
        only_spaces = false;
        match find_separator(line) {
            Some(separator) if !starts_with_space(line) => {
                trailer_lines += 1;
                possible_continuation_lines = 0;
                let key = &line[..separator];
                recognized_prefix |= RECOGNIZED_PREFIXES.iter().any(|prefix| {
                    key.get(..prefix.len())
                        .is_some_and(|k| k.eq_ignore_ascii_case(prefix))
                });
            }
            _ if starts_with_space(line) => possible_continuation_lines += 1,
            _ => {
                non_trailer_lines += 1 + possible_continuation_lines;
                possible_continuation_lines = 0;
            }
        }
    }
    text.len()
}

/// The lines of a text from the last to the first, each with its start offset and without its
/// line end. A final `\n` does not start an empty last line.
struct RevLines<'a> {
    text: &'a str,
    /// The end of the next line to yield; `None` when done.
    end: Option<usize>,
}

impl<'a> RevLines<'a> {
    fn new(text: &'a str) -> Self {
        let end = match text.len() {
            0 => None,
            len if text.ends_with('\n') => Some(len - 1),
            len => Some(len),
        };
        Self { text, end }
    }
}

impl<'a> Iterator for RevLines<'a> {
    type Item = (usize, &'a str);

    fn next(&mut self) -> Option<(usize, &'a str)> {
        let end = self.end?;
        let start = self.text[..end].rfind('\n').map_or(0, |i| i + 1);
        self.end = start.checked_sub(1);
        let line = &self.text[start..end];
        Some((start, line.strip_suffix('\r').unwrap_or(line)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GRANT: &str = "breakglass: grant r-1 (prod/admin for 1h to alice)\n\nincident: INC-1 db down\n\nBreakglass-Request: r-1\nBreakglass-Requester: alice\nBreakglass-Environment: prod\nBreakglass-Role: admin\nBreakglass-Ticket: INC-1\nBreakglass-Approved-By: carol, dave\nBreakglass-Expires: 2026-11-26T03:14:00Z\n";

    fn pairs(text: &str) -> Vec<(String, String)> {
        Message::parse(text)
            .trailers()
            .map(|t| (t.key.to_owned(), t.value.into_owned()))
            .collect()
    }

    #[test]
    fn reads_a_grant_message() {
        let message = Message::parse(GRANT);
        assert_eq!(
            message.subject(),
            "breakglass: grant r-1 (prod/admin for 1h to alice)"
        );
        assert_eq!(message.body(), "incident: INC-1 db down");
        let bot = BotTrailers::from_message(&message);
        assert_eq!(bot.request.as_deref(), Some("r-1"));
        assert_eq!(bot.requester.as_deref(), Some("alice"));
        assert_eq!(bot.environment.as_deref(), Some("prod"));
        assert_eq!(bot.role.as_deref(), Some("admin"));
        assert_eq!(bot.ticket.as_deref(), Some("INC-1"));
        assert_eq!(bot.approved_by.as_deref(), Some("carol, dave"));
        assert_eq!(bot.expires.as_deref(), Some("2026-11-26T03:14:00Z"));
        assert_eq!(bot.review_due, None);
        assert_eq!(bot.revokes, None);
        assert!(bot.any);
    }

    #[test]
    fn crlf_messages_read_the_same() {
        let crlf = GRANT.replace('\n', "\r\n");
        assert_eq!(BotTrailers::parse(&crlf), BotTrailers::parse(GRANT));
        let message = Message::parse(&crlf);
        assert_eq!(
            message.subject(),
            "breakglass: grant r-1 (prod/admin for 1h to alice)"
        );
        assert_eq!(message.body(), "incident: INC-1 db down");
    }

    #[test]
    fn a_trailer_like_line_in_the_body_is_not_a_trailer() {
        let text = "title\n\nBreakglass-Request: forged\nsaid someone\n\nBreakglass-Revokes: r-1\n";
        let bot = BotTrailers::parse(text);
        assert_eq!(bot.request, None);
        assert_eq!(bot.revokes.as_deref(), Some("r-1"));
        assert_eq!(
            Message::parse(text).body(),
            "Breakglass-Request: forged said someone"
        );
    }

    #[test]
    fn the_title_is_never_a_trailer() {
        assert_eq!(pairs("Breakglass-Request: r-1\n"), []);
        assert_eq!(pairs("Breakglass-Request: r-1\nBreakglass-Role: x"), []);
        assert_eq!(
            BotTrailers::parse("Breakglass-Request: r-1"),
            BotTrailers::default()
        );
    }

    #[test]
    fn messages_without_trailers() {
        for text in [
            "",
            "\n",
            "\n\n\n",
            "title",
            "title\n",
            "title\n\nbody only\n",
            "title\n\nNot a trailer line\nKey: value\n",
            "title\n\n: no key\n",
            "title\n\nkey with space: value\n",
        ] {
            assert_eq!(pairs(text), [], "{text:?}");
            assert_eq!(BotTrailers::parse(text), BotTrailers::default());
        }
        // As in git, a blank first line ends the title at once.
        assert_eq!(pairs("   \n\nKey: value"), [("Key".into(), "value".into())]);
        assert_eq!(Message::parse("title\n\nbody only\n").body(), "body only");
        assert_eq!(Message::parse("").subject(), "");
    }

    #[test]
    fn a_mixed_last_paragraph_needs_a_recognized_key() {
        // One trailer in four lines is enough with a Breakglass- key, as with Signed-off-by.
        let text = "t\n\nBreakglass-Revokes: r-1\nfree text\nmore text\nand more\n";
        assert_eq!(
            BotTrailers::parse(text).revokes.as_deref(),
            Some("r-1"),
            "25% with a recognized prefix"
        );
        let text = "t\n\nBreakglass-Revokes: r-1\na\nb\nc\nd\n";
        assert_eq!(BotTrailers::parse(text).revokes, None, "below 25%");
        let text = "t\n\nOther: x\nfree text\n";
        assert_eq!(
            pairs(text),
            [],
            "no recognized prefix: all lines must be trailers"
        );
    }

    #[test]
    fn extra_unknown_and_repeated_trailers() {
        let text = "t\n\nSigned-off-by: Bob <b@x>\nBREAKGLASS-REVOKES: r-1\nBreakglass-Revokes: r-2\nBreakglass-Future-Thing: x\nCo-authored-by: y\n";
        let bot = BotTrailers::parse(text);
        assert_eq!(bot.revokes.as_deref(), Some("r-1"), "first one wins");
        assert!(bot.any);
        let text = "t\n\nBreakglass-Future-Thing: x\n";
        let bot = BotTrailers::parse(text);
        assert!(bot.any);
        assert_eq!(bot.request, None);
    }

    #[test]
    fn continuation_lines_are_unfolded() {
        let text =
            "t\n\nBreakglass-Approved-By: carol,\n  dave\n\tand erin\nBreakglass-Request: r-1\n";
        assert_eq!(
            pairs(text),
            [
                (
                    "Breakglass-Approved-By".into(),
                    "carol, dave and erin".into()
                ),
                ("Breakglass-Request".into(), "r-1".into())
            ]
        );
    }

    #[test]
    fn spacing_around_the_separator() {
        assert_eq!(
            pairs("t\n\nBreakglass-Request :   r-1   \nBreakglass-Role:admin\n"),
            [
                ("Breakglass-Request".into(), "r-1".into()),
                ("Breakglass-Role".into(), "admin".into())
            ]
        );
    }

    #[test]
    fn trailing_blank_lines_and_comments_are_skipped() {
        let text = "t\n\nbody\n\nBreakglass-Revokes: r-1\n# a comment\n\n\n  \n";
        assert_eq!(BotTrailers::parse(text).revokes.as_deref(), Some("r-1"));
    }

    #[test]
    fn a_wrapped_body_is_joined_on_one_line() {
        let text =
            "t\n\n  first line\r\n  second line  \n\nthird paragraph\n\nBreakglass-Request: r\n";
        assert_eq!(
            Message::parse(text).body(),
            "first line second line third paragraph"
        );
    }

    #[test]
    fn huge_and_odd_messages_do_not_panic() {
        let huge_body = "x".repeat(8 << 20);
        let text = format!("t\n\n{huge_body}\n\nBreakglass-Request: r-1\n");
        assert_eq!(BotTrailers::parse(&text).request.as_deref(), Some("r-1"));
        let many_lines = "Breakglass-Role: admin\n".repeat(200_000);
        let text = format!("t\n\n{many_lines}");
        assert_eq!(BotTrailers::parse(&text).role.as_deref(), Some("admin"));
        let no_newlines = "a".repeat(1 << 20);
        assert_eq!(pairs(&no_newlines), []);
        for odd in [
            "\r",
            "\r\n\r\n",
            ":",
            "t\n\n:",
            "t\n\n-: x",
            "t\n\nk:",
            "t\n\n\u{feff}Breakglass-Request: r",
            "t\n\nBreakglass-Requést: r",
            "t\n\n日本: 語\n",
            "t\n\n\0\n",
            "t\n\n \n\tKey: x",
        ] {
            let _ = BotTrailers::parse(odd);
            let _ = Message::parse(odd).body();
        }
        assert_eq!(pairs("t\n\n-: x"), [("-".into(), "x".into())]);
        assert_eq!(pairs("t\n\nk:"), [("k".into(), "".into())]);
    }

    #[test]
    fn every_key_is_spelled_as_the_spec_says_and_read_back() {
        let spelled: Vec<&str> = TrailerKey::VARIANTS.iter().map(|k| k.as_str()).collect();
        assert_eq!(
            spelled,
            [
                "Breakglass-Request",
                "Breakglass-Requester",
                "Breakglass-Environment",
                "Breakglass-Role",
                "Breakglass-Ticket",
                "Breakglass-Approved-By",
                "Breakglass-Expires",
                "Breakglass-Review-Due",
                "Breakglass-Revokes",
                "Breakglass-Revoked-Reason",
                "Breakglass-Revoked-By",
                "Breakglass-Reviewed-By",
            ]
        );
        for &key in TrailerKey::VARIANTS {
            assert!(key.as_str().starts_with(TrailerKey::PREFIX));
            assert_eq!(TrailerKey::parse(&key.as_str().to_uppercase()), Some(key));
            // Each key lands in its own field.
            let text = format!("t\n\n{}", key.line("v"));
            let mut bot = BotTrailers::parse(&text);
            assert_eq!(bot.slot(key).as_deref(), Some("v"), "{key}");
            *bot.slot(key) = None;
            assert_eq!(
                bot,
                BotTrailers {
                    any: true,
                    ..BotTrailers::default()
                },
                "{key}"
            );
        }
        assert_eq!(TrailerKey::parse("Breakglass-Future-Thing"), None);
        assert_eq!(
            TrailerKey::Ticket.line("INC-1"),
            "Breakglass-Ticket: INC-1\n"
        );
    }

    #[test]
    fn rev_lines_visits_every_line_once() {
        let lines: Vec<_> = RevLines::new("a\r\nbb\n\nc").collect();
        assert_eq!(lines, [(7, "c"), (6, ""), (3, "bb"), (0, "a")]);
        let lines: Vec<_> = RevLines::new("a\n").collect();
        assert_eq!(lines, [(0, "a")]);
        assert_eq!(RevLines::new("").count(), 0);
        assert_eq!(RevLines::new("\n").collect::<Vec<_>>(), [(0, "")]);
    }
}
