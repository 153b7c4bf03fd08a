//! The `/breakglass` slash commands: turns the markdown body of an issue or pull-request comment
//! into typed [`Command`]s, or into errors whose text is the reply the bot posts.
//!
//! This module is pure (no I/O, no clock, no forge types) so that every rule about what counts as
//! a command can be tested here, once. Two rules shape it:
//!
//! * Only *live* text counts. A command that is quoted (`> /breakglass approve`), shown in code,
//!   hidden in HTML or written inside a link is someone talking *about* a command, and acting on it
//!   would let a reply that quotes an approval approve again.
//! * A command starts its line. `please /breakglass approve` is prose, not an instruction.
//!
//! An ordinary comment yields nothing (the bot must stay silent); a comment with a malformed
//! command yields an error per line, because a command the bot silently ignores is worse than one
//! it refuses with an explanation.

use std::fmt;
use std::ops::Range;

use pulldown_cmark::{Event, Parser, Tag, TagEnd};
use strum::IntoEnumIterator;

use crate::duration::HumanDuration;

/// The word every command line starts with (compared ignoring ASCII case).
pub const PREFIX: &str = "/breakglass";

/// Largest comment body, in bytes, that is read at all. GitHub caps comments at 65,536
/// characters; anything bigger is not a human typing a command.
pub const MAX_BODY_BYTES: usize = 65_536;

/// Longest command line, in characters.
pub const MAX_LINE_CHARS: usize = 1_000;

/// Longest reason, in characters: it goes into the request file and commit trailers, so it should
/// point to the incident rather than contain it.
pub const MAX_REASON_CHARS: usize = 500;

/// Most commands read from one comment; later ones are ignored, so a pasted log cannot make the
/// bot post a hundred replies.
pub const MAX_COMMANDS: usize = 10;

/// Longest environment or role name.
const MAX_NAME_LEN: usize = 63;

/// Stands in for markup that was dropped at the start of a line (inline HTML), so that the text
/// after it cannot become a command by moving to the start of the line.
const DROPPED_MARKUP: char = '\u{FFFC}';

/// Verbs and their aliases. [`CommandKind::Request`] has no verb: its first word is the
/// environment. A test checks that every other kind is reachable through this table.
const VERBS: [(&str, CommandKind); 8] = [
    ("approve", CommandKind::Approve),
    ("deny", CommandKind::Deny),
    ("revoke", CommandKind::Revoke),
    ("done", CommandKind::Revoke),
    ("extend", CommandKind::Extend),
    ("status", CommandKind::Status),
    ("reviewed", CommandKind::Reviewed),
    ("help", CommandKind::Help),
];

/// One command, as written in a comment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `/breakglass <environment> [duration] [role] [-- reason]`: ask for access.
    Request {
        /// Lowercased environment name, e.g. `prod`.
        environment: String,
        /// How long the grant should last; `None` takes the policy's `default_duration`.
        duration: Option<HumanDuration>,
        /// Lowercased role name; `None` leaves the choice to the policy.
        role: Option<String>,
        /// Everything after ` -- `, trimmed; `None` when empty.
        reason: Option<String>,
    },
    /// `/breakglass approve`
    Approve,
    /// `/breakglass deny [reason]`
    Deny { reason: Option<String> },
    /// `/breakglass revoke`, or its alias `/breakglass done`.
    Revoke,
    /// `/breakglass extend <duration>`
    Extend {
        /// Time to add to the grant's current expiry.
        duration: HumanDuration,
    },
    /// `/breakglass status`
    Status,
    /// `/breakglass reviewed`: closes a fast-path request's retroactive review.
    Reviewed,
    /// `/breakglass help`
    Help,
}

impl Command {
    /// Which command this is, without its arguments.
    pub fn kind(&self) -> CommandKind {
        match self {
            Command::Request { .. } => CommandKind::Request,
            Command::Approve => CommandKind::Approve,
            Command::Deny { .. } => CommandKind::Deny,
            Command::Revoke => CommandKind::Revoke,
            Command::Extend { .. } => CommandKind::Extend,
            Command::Status => CommandKind::Status,
            Command::Reviewed => CommandKind::Reviewed,
            Command::Help => CommandKind::Help,
        }
    }
}

impl fmt::Display for Command {
    /// Writes the canonical spelling, which [`parse_commands`] reads back to the same command:
    /// useful in logs and in replies that say what the bot understood.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Command::Request {
                environment,
                duration,
                role,
                reason,
            } => {
                write!(f, "{PREFIX} {environment}")?;
                if let Some(duration) = duration {
                    write!(f, " {duration}")?;
                }
                if let Some(role) = role {
                    write!(f, " {role}")?;
                }
                if let Some(reason) = reason {
                    write!(f, " -- {reason}")?;
                }
                Ok(())
            }
            // Always with `--`, which the parser strips, so a reason that itself starts with `--`
            // survives the round trip.
            Command::Deny {
                reason: Some(reason),
            } => write!(f, "{PREFIX} deny -- {reason}"),
            Command::Extend { duration } => write!(f, "{PREFIX} extend {duration}"),
            Command::Approve
            | Command::Deny { reason: None }
            | Command::Revoke
            | Command::Status
            | Command::Reviewed
            | Command::Help => write!(f, "{PREFIX} {}", self.kind().name()),
        }
    }
}

/// The commands without their arguments, one per [`Command`] variant: what help, metrics and
/// error messages talk about.
#[derive(strum::EnumIter, Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommandKind {
    Request,
    Approve,
    Deny,
    Revoke,
    Extend,
    Status,
    Reviewed,
    Help,
}

impl CommandKind {
    /// Short lowercase name: the verb, or `request` for a request (which has no verb).
    pub fn name(self) -> &'static str {
        match self {
            CommandKind::Request => "request",
            CommandKind::Approve => "approve",
            CommandKind::Deny => "deny",
            CommandKind::Revoke => "revoke",
            CommandKind::Extend => "extend",
            CommandKind::Status => "status",
            CommandKind::Reviewed => "reviewed",
            CommandKind::Help => "help",
        }
    }

    /// How to write the command, with `<required>` and `[optional]` parts.
    // An exhaustive match, like `summary`, so that a new command does not compile until its help
    // is written.
    pub const fn usage(self) -> &'static str {
        match self {
            CommandKind::Request => "/breakglass <environment> [duration] [role] [-- reason]",
            CommandKind::Approve => "/breakglass approve",
            CommandKind::Deny => "/breakglass deny [reason]",
            CommandKind::Revoke => "/breakglass revoke",
            CommandKind::Extend => "/breakglass extend <duration>",
            CommandKind::Status => "/breakglass status",
            CommandKind::Reviewed => "/breakglass reviewed",
            CommandKind::Help => "/breakglass help",
        }
    }

    /// What the command does, in one sentence of markdown.
    pub fn summary(self) -> &'static str {
        match self {
            CommandKind::Request => {
                "Asks for temporary access to an environment, for example \
                 `/breakglass prod 1h admin -- incident: INC-1234 database failover`."
            }
            CommandKind::Approve => {
                "Approves the pending request of this pull request (GitLab: merge request); only an \
                 approver named by the policy can, and never the requester."
            }
            CommandKind::Deny => {
                "Denies the pending request of this pull request (GitLab: merge request), with an \
                 optional reason."
            }
            CommandKind::Revoke => {
                "Ends the grant now instead of at its expiry; `/breakglass done` does the same."
            }
            CommandKind::Extend => {
                "Asks for more time on an active grant, which needs approval again unless a \
                 fast-path rule allows it."
            }
            CommandKind::Status => "Shows who asked for what, who approved it and when it expires.",
            CommandKind::Reviewed => {
                "Closes the retroactive review of a request that was granted on the fast path."
            }
            CommandKind::Help => "Shows this help.",
        }
    }

    fn from_name(name: &str) -> Option<Self> {
        CommandKind::iter().find(|kind| kind.name() == name)
    }
}

/// Whether `word` is a command verb or alias (`approve`, `done`, …), compared ignoring case.
///
/// Such a word can never be an environment in a comment command, because verbs are tried first;
/// policy lint can use this to warn about an environment named `status`.
pub fn is_verb(word: &str) -> bool {
    verb(word).is_some()
}

/// The full help, in markdown, built from every [`CommandKind`].
pub fn help_text() -> String {
    let mut text = String::from(
        "**breakglass commands.** Write each command at the start of its own line of a comment:\n\n",
    );
    for kind in CommandKind::iter() {
        text.push_str(&format!("- `{}`: {}\n", kind.usage(), kind.summary()));
    }
    text.push_str(
        "\nDurations are written like `90s`, `45m`, `2h` or `1h30m`. Environment and role names are \
         lowercase letters, digits, `-` and `_`. Commands inside code, quotes, links or HTML are \
         ignored.\n",
    );
    text
}

/// Why a `/breakglass` line is not a command. The `Display` text is the reply to post: it says
/// what was wrong and what to write instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommandParseError {
    /// A bare `/breakglass`.
    #[error("`/breakglass` needs a command after it; write `/breakglass help` to see them all.")]
    MissingCommand,
    /// The first word is neither a verb nor an environment followed by a duration.
    #[error("{}", unknown_command_message(.word, *.did_you_mean))]
    UnknownCommand {
        word: String,
        /// The verb the word most likely misspells.
        did_you_mean: Option<&'static str>,
    },
    /// A required argument is absent; `command` is a [`CommandKind::name`].
    #[error("{}", missing_argument_message(.command, .argument))]
    MissingArgument {
        command: &'static str,
        argument: &'static str,
    },
    /// A word the command does not take; `command` is a [`CommandKind::name`].
    #[error("{}", unexpected_argument_message(.command, .value))]
    UnexpectedArgument {
        command: &'static str,
        value: String,
    },
    /// The word where a duration belongs is not one; `message` says why.
    #[error("{message}.")]
    InvalidDuration { value: String, message: String },
    /// An environment or role name (`what`) with characters or a length names cannot have.
    #[error(
        "{} is not a valid {what} name; a name is 1 to 63 lowercase letters, digits, `-` or `_`, \
         starting with a letter or digit.",
        Code(.value)
    )]
    InvalidName { what: &'static str, value: String },
    /// The comment, the command line or the reason is longer than `limit`.
    #[error("{}", too_long_message(*.limit))]
    TooLong { limit: usize },
    /// Punctuation right after the prefix (`/breakglass: approve`); `meant` is the line as it
    /// would read with a space instead.
    #[error(
        "write a space after `/breakglass`, not punctuation: {} rather than {}.",
        Code(.meant),
        Code(.written)
    )]
    PunctuationAfterPrefix { written: String, meant: String },
}

impl CommandParseError {
    /// The usage line of the command the error is about, when that is known. `None` means the
    /// error is not about one command, and [`help_text`] is the better reply.
    pub fn usage(&self) -> Option<&'static str> {
        match self {
            CommandParseError::UnknownCommand { did_you_mean, .. } => {
                did_you_mean.and_then(verb).map(CommandKind::usage)
            }
            CommandParseError::MissingArgument { command, .. }
            | CommandParseError::UnexpectedArgument { command, .. } => {
                CommandKind::from_name(command).map(CommandKind::usage)
            }
            CommandParseError::InvalidName { .. } => Some(CommandKind::Request.usage()),
            // A bad duration may belong to a request or to `extend`; the message says what a
            // duration looks like, which is what the user needs.
            CommandParseError::MissingCommand
            | CommandParseError::InvalidDuration { .. }
            | CommandParseError::TooLong { .. }
            | CommandParseError::PunctuationAfterPrefix { .. } => None,
        }
    }
}

fn unknown_command_message(word: &str, did_you_mean: Option<&str>) -> String {
    match did_you_mean {
        Some(verb) => format!(
            "unknown command {}; did you mean `{PREFIX} {verb}`?",
            Code(word)
        ),
        None => format!(
            "unknown command {}; write `{}` to ask for access, or `{PREFIX} help` to see all commands.",
            Code(word),
            CommandKind::Request.usage(),
        ),
    }
}

fn missing_argument_message(command: &str, argument: &str) -> String {
    let kind = CommandKind::from_name(command);
    let subject = match kind {
        Some(CommandKind::Request) => "a request".to_owned(),
        _ => format!("`{PREFIX} {command}`"),
    };
    let example = if argument == "duration" {
        " such as `45m` or `1h30m`"
    } else {
        ""
    };
    match kind {
        Some(kind) => format!(
            "{subject} needs a {argument}{example}; write `{}`.",
            kind.usage()
        ),
        None => format!("{subject} needs a {argument}{example}."),
    }
}

fn unexpected_argument_message(command: &str, value: &str) -> String {
    let value = Code(value);
    match CommandKind::from_name(command) {
        Some(CommandKind::Request) => format!(
            "a request takes an environment, a duration and a role at most, so {value} is \
             unexpected; write `{}`, with the reason after `--`.",
            CommandKind::Request.usage()
        ),
        Some(kind @ (CommandKind::Extend | CommandKind::Deny)) => format!(
            "`{PREFIX} {}` does not take {value}; write `{}`.",
            kind.name(),
            kind.usage()
        ),
        Some(kind) => format!(
            "`{PREFIX} {}` takes no arguments, so {value} is unexpected; write just `{}`.",
            kind.name(),
            kind.usage()
        ),
        None => format!("{value} is unexpected; write `{PREFIX} help` to see the commands."),
    }
}

fn too_long_message(limit: usize) -> String {
    match limit {
        MAX_BODY_BYTES => format!(
            "this comment is longer than {MAX_BODY_BYTES} bytes, so its commands were not read; \
             post the command in a short comment of its own."
        ),
        MAX_LINE_CHARS => format!(
            "this command is longer than {MAX_LINE_CHARS} characters; shorten it, and keep the \
             reason under {MAX_REASON_CHARS} characters."
        ),
        MAX_REASON_CHARS => format!(
            "the reason is longer than {MAX_REASON_CHARS} characters; shorten it and link to the \
             incident for the details."
        ),
        _ => format!("this command is longer than {limit} characters; shorten it."),
    }
}

/// Quotes user text as a markdown code span that the text cannot break out of (a backtick in it
/// would otherwise end the span and turn the rest, mentions included, into live markdown), cut
/// short so that a reply never echoes a wall of text.
struct Code<'a>(&'a str);

impl fmt::Display for Code<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const MAX_SHOWN: usize = 64;
        let mut shown: String = self.0.chars().take(MAX_SHOWN).collect();
        if self.0.chars().nth(MAX_SHOWN).is_some() {
            shown.push('…');
        }
        let mut longest = 0;
        let mut run = 0;
        for c in shown.chars() {
            run = if c == '`' { run + 1 } else { 0 };
            longest = longest.max(run);
        }
        let fence = "`".repeat(longest + 1);
        let pad = if shown.starts_with('`') || shown.ends_with('`') {
            " "
        } else {
            ""
        };
        write!(f, "{fence}{pad}{shown}{pad}{fence}")
    }
}

/// Whether `text` (a description, a review's text) holds a line of live text that starts with
/// `/breakglass`: where commands are not read, the bot says so.
pub fn holds_command(text: Option<&str>) -> bool {
    text.is_some_and(|text| !parse_commands(text).is_empty())
}

/// Reads every command in a comment body: one entry per line of live text that starts with
/// `/breakglass`, the same command once, at most [`MAX_COMMANDS`]. Empty when the comment has no command, which means
/// the bot must not answer.
pub fn parse_commands(body: &str) -> Vec<Result<Command, CommandParseError>> {
    if body.len() > MAX_BODY_BYTES {
        // Refuse rather than read part of it, but only if it looks addressed to us: a huge
        // ordinary comment gets no reply, like any ordinary comment.
        let mentions_us = body
            .as_bytes()
            .windows(PREFIX.len())
            .any(|w| w.eq_ignore_ascii_case(PREFIX.as_bytes()));
        return if mentions_us {
            vec![Err(CommandParseError::TooLong {
                limit: MAX_BODY_BYTES,
            })]
        } else {
            vec![]
        };
    }
    let mut commands = Vec::new();
    let text = live_text(body);
    let parsed = text.lines().filter_map(command_line).map(|(line, rest)| {
        if line.chars().count() > MAX_LINE_CHARS {
            return Err(CommandParseError::TooLong {
                limit: MAX_LINE_CHARS,
            });
        }
        if rest.starts_with(is_prefix_punctuation) {
            let words = rest.trim_start_matches(is_prefix_punctuation).trim();
            let meant = match words {
                "" => format!("{PREFIX} help"),
                words => format!("{PREFIX} {words}"),
            };
            return Err(CommandParseError::PunctuationAfterPrefix {
                written: line.to_owned(),
                meant,
            });
        }
        parse_command(rest)
    });
    for command in parsed {
        // A repeated line is read once: it would do nothing new, and ten `approve` lines from
        // someone who cannot approve must not make the bot answer ten times.
        if commands.len() == MAX_COMMANDS {
            break;
        }
        if !commands.contains(&command) {
            commands.push(command);
        }
    }
    commands
}

/// If `line` is a command line, returns it trimmed and what follows the prefix.
fn command_line(line: &str) -> Option<(&str, &str)> {
    // An invisible character in front (a zero-width space or a byte-order mark pasted along
    // from a chat or an editor) is no reason to ignore what the reader sees as a command.
    let line = line
        .trim_start_matches(|c: char| c.is_whitespace() || is_invisible(c))
        .trim_end();
    // `get` rather than slicing: the prefix length may fall inside a multi-byte character.
    let head = line.get(..PREFIX.len())?;
    if !head.eq_ignore_ascii_case(PREFIX) {
        return None;
    }
    let rest = &line[PREFIX.len()..];
    // `/breakglassfoo` is some other word; `/breakglass: approve` and `/breakglass-status` are
    // a command mistyped, answered rather than ignored; `/breakglass-bot is down` and
    // `/breakglass.toml` are prose about other things.
    let spaced = rest.chars().next().is_none_or(char::is_whitespace);
    (spaced || is_mistyped_command(rest)).then_some((line, rest))
}

/// Whether what follows the prefix is punctuation and then the end of the line, a space, a
/// command's verb (`: approve`, `.`, `-status`, `:approve.`) or a request's duration
/// (`:prod 1h admin`).
fn is_mistyped_command(rest: &str) -> bool {
    if !rest.starts_with(is_prefix_punctuation) {
        return false;
    }
    let after = rest.trim_start_matches(is_prefix_punctuation);
    let mut words = after.split_whitespace();
    let first = words.next().unwrap_or("");
    let verb_word = first.trim_end_matches(|c: char| c.is_ascii_punctuation());
    after.chars().next().is_none_or(char::is_whitespace)
        || verb(verb_word).is_some()
        || words.next().is_some_and(looks_like_a_number)
}

/// Punctuation people put right after `/breakglass` (`/breakglass: approve`,
/// `/breakglass, status`, `/breakglass-status`, a sentence's end). Not `/` or `_`, which make
/// a path or another word (`/breakglass/docs`, `/breakglass_old`).
fn is_prefix_punctuation(c: char) -> bool {
    matches!(c, ':' | ',' | '.' | ';' | '!' | '?' | '-')
}

/// Unicode format characters (`Cf`) that render as nothing: zero-width spaces and joiners,
/// direction marks and isolates, the word joiner and its invisible operators, the byte-order
/// mark, the soft hyphen. [`DROPPED_MARKUP`] is none of them: it stays in front of text that
/// followed dropped markup.
fn is_invisible(c: char) -> bool {
    matches!(
        c,
        '\u{00AD}'
            | '\u{061C}'
            | '\u{180E}'
            | '\u{200B}'..='\u{200F}'
            | '\u{202A}'..='\u{202E}'
            | '\u{2060}'..='\u{2064}'
            | '\u{2066}'..='\u{206F}'
            | '\u{FEFF}'
    )
}

/// `body` with GitLab's multi-line quotes blanked out: from a line `>>>` to the next such line
/// (or the end), which GitLab shows as a quote and CommonMark reads as an empty quote and then
/// live text. Blanked on both forges: on GitHub it only leaves such lines unread, never acts on
/// a quote. Each line keeps its place, so the rest parses as before.
fn without_multiline_quotes(body: &str) -> String {
    let fence = |line: &str| {
        let indent = line.len() - line.trim_start_matches(' ').len();
        indent <= 3 && line.trim() == ">>>"
    };
    let mut quoted = false;
    let mut out = String::with_capacity(body.len());
    for line in body.split_inclusive('\n') {
        if fence(line) {
            quoted = !quoted;
            out.push('\n');
        } else if quoted {
            out.push('\n');
        } else {
            out.push_str(line);
        }
    }
    out
}

/// The text of a comment that a reader sees as the author's own words, one line per line.
///
/// Block quotes, code blocks and HTML blocks are dropped with their content. Inline markup that
/// is not plain text (code spans, links, images) is kept in its source form, so that the
/// backtick or bracket in front of it stops it from ever being a command while a reason such as
/// ``-- see `INC-1` and [the runbook](https://…)`` still reads as written. Inline HTML is dropped.
fn live_text(body: &str) -> String {
    let body = &without_multiline_quotes(body);
    let mut text = LiveText::default();
    let mut events = Parser::new(body).into_offset_iter();
    while let Some((event, range)) = events.next() {
        match event {
            Event::Start(tag) => match tag {
                // An HTML block's own lines are dropped, but the elements it leaves open (a
                // `<blockquote>` line, a blank line, Markdown, `</blockquote>`) hold what follows.
                Tag::HtmlBlock => {
                    for (event, _) in events.by_ref() {
                        match event {
                            Event::Html(html) => text.follow_html(&html),
                            Event::End(TagEnd::HtmlBlock) => break,
                            _ => {}
                        }
                    }
                    text.newline();
                }
                Tag::BlockQuote(_)
                | Tag::CodeBlock(_)
                | Tag::MetadataBlock(_)
                | Tag::FootnoteDefinition(_)
                | Tag::Table(_) => {
                    skip_to_end(&mut events);
                    text.newline();
                }
                Tag::Link { .. } | Tag::Image { .. } => {
                    skip_to_end(&mut events);
                    text.push_source(body, range);
                }
                Tag::Paragraph
                | Tag::Heading { .. }
                | Tag::List(_)
                | Tag::Item
                | Tag::DefinitionList
                | Tag::DefinitionListTitle
                | Tag::DefinitionListDefinition
                | Tag::TableHead
                | Tag::TableRow
                | Tag::TableCell => text.newline(),
                Tag::Emphasis
                | Tag::Strong
                | Tag::Strikethrough
                | Tag::Superscript
                | Tag::Subscript => {}
            },
            Event::End(tag) => match tag {
                TagEnd::Emphasis
                | TagEnd::Strong
                | TagEnd::Strikethrough
                | TagEnd::Superscript
                | TagEnd::Subscript
                | TagEnd::Link
                | TagEnd::Image => {}
                _ => text.newline(),
            },
            Event::Text(s) => text.push(&s),
            Event::Code(_)
            | Event::InlineMath(_)
            | Event::DisplayMath(_)
            | Event::FootnoteReference(_) => text.push_source(body, range),
            Event::Html(html) | Event::InlineHtml(html) => {
                text.follow_html(&html);
                text.drop_markup();
            }
            Event::TaskListMarker(_) => text.drop_markup(),
            Event::SoftBreak | Event::HardBreak | Event::Rule => text.newline(),
        }
    }
    text.out
}

/// Skips the events up to and including the `End` that matches the `Start` just read.
fn skip_to_end<'a>(events: &mut impl Iterator<Item = (Event<'a>, Range<usize>)>) {
    // Events nest properly, so counting every Start and End finds the matching End whatever the
    // tags in between.
    let mut depth = 1usize;
    for (event, _) in events {
        match event {
            Event::Start(_) => depth += 1,
            Event::End(_) => {
                depth -= 1;
                if depth == 0 {
                    return;
                }
            }
            _ => {}
        }
    }
}

#[derive(Default)]
struct LiveText {
    out: String,
    /// Nothing but whitespace since the last newline.
    line_has_text: bool,
    /// How many of each [`HIDING_ELEMENTS`] are open (opened, not closed yet): what they hold
    /// is rendered quoted, struck, folded away or as code, so it is no live text, whatever
    /// Markdown is inside.
    open_html: [usize; HIDING_ELEMENTS.len()],
}

/// The HTML elements whose content is someone else's words or not read as the author's own:
/// quoted, struck, folded, code, or not shown. Any other tag (`<p>`, `<sub>`, a stray
/// `<INC-42>` the forge strips) hides nothing, so an ordinary comment's command still counts.
const HIDING_ELEMENTS: [&str; 14] = [
    "blockquote",
    "q",
    "del",
    "s",
    "strike",
    "details",
    "code",
    "pre",
    "kbd",
    "samp",
    "tt",
    "template",
    "textarea",
    "noscript",
];

impl LiveText {
    fn hidden(&self) -> bool {
        self.open_html.iter().any(|&open| open > 0)
    }

    fn push(&mut self, s: &str) {
        if self.hidden() {
            return self.drop_markup();
        }
        match s.rsplit_once('\n') {
            Some((_, last)) => self.line_has_text = !last.trim().is_empty(),
            None => self.line_has_text |= !s.trim().is_empty(),
        }
        self.out.push_str(s);
    }

    /// Counts the [`HIDING_ELEMENTS`] `html` opens and closes (comments aside). An end tag
    /// closes only its own kind; a `/>` opens all the same (HTML has no self-closing
    /// `<blockquote/>`), so neither a stray end tag nor an attribute's text lets a quote's
    /// content count.
    fn follow_html(&mut self, html: &str) {
        let mut rest = html;
        while let Some(at) = rest.find('<') {
            rest = &rest[at + 1..];
            if rest.starts_with("!--") {
                rest = rest.find("-->").map_or("", |end| &rest[end + 3..]);
                continue;
            }
            let closing = rest.starts_with('/');
            let name: String = rest[usize::from(closing)..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '-')
                .collect::<String>()
                .to_ascii_lowercase();
            let Some(kind) = HIDING_ELEMENTS.iter().position(|e| *e == name) else {
                continue;
            };
            let open = &mut self.open_html[kind];
            *open = if closing {
                open.saturating_sub(1)
            } else {
                *open + 1
            };
        }
    }

    /// Pushes the markdown source of an element on the current line.
    fn push_source(&mut self, body: &str, range: Range<usize>) {
        if self.hidden() {
            return self.drop_markup();
        }
        let source = body.get(range).unwrap_or_default();
        // A link text may span lines; keep it on this one so that no piece of it starts a line.
        let source: String = source
            .chars()
            .map(|c| if c == '\n' || c == '\r' { ' ' } else { c })
            .collect();
        self.push(&source);
    }

    fn drop_markup(&mut self) {
        if !self.line_has_text {
            self.out.push(DROPPED_MARKUP);
            self.line_has_text = true;
        }
    }

    fn newline(&mut self) {
        self.out.push('\n');
        self.line_has_text = false;
    }
}

/// A word of a command line and the byte offset just after it.
#[derive(Clone, Copy)]
struct Word<'a> {
    text: &'a str,
    end: usize,
}

/// Splits on any Unicode whitespace (tabs, no-break spaces), remembering where each word ends so
/// that a reason can be taken verbatim from the rest of the line.
fn words(line: &str) -> Vec<Word<'_>> {
    let mut words = Vec::new();
    let mut start = None;
    for (i, c) in line.char_indices() {
        match (c.is_whitespace(), start) {
            (true, Some(s)) => {
                words.push(Word {
                    text: &line[s..i],
                    end: i,
                });
                start = None;
            }
            (false, None) => start = Some(i),
            _ => {}
        }
    }
    if let Some(s) = start {
        words.push(Word {
            text: &line[s..],
            end: line.len(),
        });
    }
    words
}

fn verb(word: &str) -> Option<CommandKind> {
    VERBS
        .iter()
        .find(|(verb, _)| verb.eq_ignore_ascii_case(word))
        .map(|(_, kind)| *kind)
}

/// Parses what follows `/breakglass` on a command line.
fn parse_command(rest: &str) -> Result<Command, CommandParseError> {
    let words = words(rest);
    let Some(first) = words.first() else {
        return Err(CommandParseError::MissingCommand);
    };
    // `taken` words (the verb and its arguments) are expected; the next one is not.
    let only = |taken: usize, kind: CommandKind, command: Command| match words.get(taken) {
        Some(extra) => Err(CommandParseError::UnexpectedArgument {
            command: kind.name(),
            value: extra.text.to_owned(),
        }),
        None => Ok(command),
    };
    // Verbs win over environment names, so that `/breakglass status` always means status.
    match verb(first.text) {
        Some(CommandKind::Approve) => only(1, CommandKind::Approve, Command::Approve),
        Some(CommandKind::Revoke) => only(1, CommandKind::Revoke, Command::Revoke),
        Some(CommandKind::Status) => only(1, CommandKind::Status, Command::Status),
        Some(CommandKind::Reviewed) => only(1, CommandKind::Reviewed, Command::Reviewed),
        // Answering `/breakglass help me` with an error that says to write `/breakglass help`
        // would only be pedantic.
        Some(CommandKind::Help) => Ok(Command::Help),
        Some(CommandKind::Deny) => {
            let mut reason = &rest[first.end..];
            if let Some(dashes) = words.get(1).filter(|w| is_reason_separator(w.text)) {
                reason = &rest[dashes.end..];
            }
            Ok(Command::Deny {
                reason: reason_text(reason)?,
            })
        }
        Some(CommandKind::Extend) => {
            let Some(value) = words.get(1) else {
                return Err(CommandParseError::MissingArgument {
                    command: CommandKind::Extend.name(),
                    argument: "duration",
                });
            };
            let duration =
                HumanDuration::parse(value.text).map_err(|_| invalid_duration(&words[1..]))?;
            only(2, CommandKind::Extend, Command::Extend { duration })
        }
        Some(CommandKind::Request) | None => parse_request(rest, &words),
    }
}

/// The word before a reason: `--`, or the dash a phone's keyboard makes of it (an em or en dash),
/// since a requester at 2 a.m. may well type on one.
fn is_reason_separator(word: &str) -> bool {
    matches!(word, "--" | "\u{2014}" | "\u{2013}")
}

/// The first word is not a verb: a request for that environment, with an optional duration
/// (the policy's `default_duration` without one) and role, unless the word is a verb misspelt.
fn parse_request(rest: &str, words: &[Word<'_>]) -> Result<Command, CommandParseError> {
    // Everything after a lone `--` is the reason, dashes and all.
    let (args, reason) = match words.iter().position(|w| is_reason_separator(w.text)) {
        Some(i) => (&words[..i], Some(&rest[words[i].end..])),
        None => (words, None),
    };
    let first = words[0].text;
    let suggestion = did_you_mean(first);
    // A second word that starts with a digit (or a sign and a digit: `-1h`) is meant as a
    // duration (`2 hours`, `1H`): said wrong, it is explained, never read as a role.
    let duration = match args.get(1) {
        Some(word) if looks_like_a_number(word.text) => {
            Some(HumanDuration::parse(word.text).map_err(|_| invalid_duration(&args[1..]))?)
        }
        _ => None,
    };
    // `extnd 30m` or `aprove` would otherwise be a request for an environment called `extnd`
    // or `aprove`, and open a pull request nobody wanted.
    if suggestion.is_some() && (duration.is_none() || suggestion == Some("extend")) {
        return Err(CommandParseError::UnknownCommand {
            word: first.to_owned(),
            did_you_mean: suggestion,
        });
    }
    // With a duration after it the word was meant as an environment, and is said to be a bad
    // name; alone it may as well be a mistyped command.
    let environment = name("environment", first).map_err(|err| match duration {
        Some(_) => err,
        None => CommandParseError::UnknownCommand {
            word: first.to_owned(),
            did_you_mean: None,
        },
    })?;
    let after = if duration.is_some() { 2 } else { 1 };
    let role = args.get(after).map(|w| name("role", w.text)).transpose()?;
    if let Some(extra) = args.get(after + 1) {
        return Err(CommandParseError::UnexpectedArgument {
            command: CommandKind::Request.name(),
            value: extra.text.to_owned(),
        });
    }
    let reason = reason.map(reason_text).transpose()?.flatten();
    Ok(Command::Request {
        environment,
        duration,
        role,
        reason,
    })
}

/// The error for a duration that does not parse, starting at `words[0]`.
fn invalid_duration(words: &[Word<'_>]) -> CommandParseError {
    let mut value = words[0].text.to_owned();
    // `2 hours` splits into two words; quoting both shows the user what we rejected better than
    // complaining about a lone `2`.
    if let Some(unit) = words.get(1)
        && value.chars().all(|c| c.is_ascii_digit())
        && is_unit_word(unit.text)
    {
        value = format!("{value} {}", unit.text);
    }
    let message = match HumanDuration::parse(&value) {
        Err(error) => error.to_string(),
        // Not reachable: only values that failed to parse come here.
        Ok(_) => format!("duration `{value}` is not valid"),
    };
    CommandParseError::InvalidDuration { value, message }
}

/// `1h`, `90`, `-1h`, `+2h`: a number, maybe signed, whatever follows it. No name starts so.
fn looks_like_a_number(word: &str) -> bool {
    word.trim_start_matches(['-', '+'])
        .starts_with(|c: char| c.is_ascii_digit())
}

/// A word that names a unit of time (`hours`, `min`, `d`), as people write after a number:
/// `90 admin` is a number and a role, not a duration to quote whole.
fn is_unit_word(word: &str) -> bool {
    const UNITS: &[&str] = &[
        "s", "sec", "secs", "second", "seconds", "m", "min", "mins", "minute", "minutes", "h",
        "hr", "hrs", "hour", "hours", "d", "day", "days", "w", "week", "weeks",
    ];
    UNITS.iter().any(|unit| unit.eq_ignore_ascii_case(word))
}

/// Lowercases and checks an environment or role name.
fn name(what: &'static str, word: &str) -> Result<String, CommandParseError> {
    // ASCII only: Unicode lowercasing turns the Kelvin sign `K` into `k`, so `revoKe` would
    // become an environment called `revoke` that the verb table (ASCII) never matched.
    let lower = word.to_ascii_lowercase();
    let bytes = lower.as_bytes();
    let valid = matches!(bytes.first(), Some(c) if c.is_ascii_lowercase() || c.is_ascii_digit())
        && bytes.len() <= MAX_NAME_LEN
        && bytes
            .iter()
            .all(|&c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-' || c == b'_');
    if valid {
        Ok(lower)
    } else {
        Err(CommandParseError::InvalidName {
            what,
            value: word.to_owned(),
        })
    }
}

fn reason_text(text: &str) -> Result<Option<String>, CommandParseError> {
    let text = text.trim();
    if text.chars().count() > MAX_REASON_CHARS {
        return Err(CommandParseError::TooLong {
            limit: MAX_REASON_CHARS,
        });
    }
    Ok((!text.is_empty()).then(|| text.to_owned()))
}

/// The verb `word` most likely misspells, if any.
fn did_you_mean(word: &str) -> Option<&'static str> {
    // Longer words are not typos of an eight-letter verb; skipping them also bounds the work.
    if word.chars().count() > 12 {
        return None;
    }
    let word = word.to_lowercase();
    VERBS
        .iter()
        .map(|(verb, _)| {
            (
                *verb,
                strsim::damerau_levenshtein(&word, verb),
                strsim::jaro_winkler(&word, verb),
            )
        })
        // Edit distance alone makes `dev` a typo of `deny`; Jaro-Winkler keeps short environment
        // names such as `dev` or `qa` from being read as misspelt verbs.
        .filter(|(_, distance, similarity)| *distance <= 2 && *similarity >= 0.85)
        .min_by(|a, b| a.1.cmp(&b.1).then(b.2.total_cmp(&a.2)))
        .map(|(verb, _, _)| verb)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn dur(text: &str) -> HumanDuration {
        HumanDuration::parse(text).unwrap()
    }

    fn request(
        environment: &str,
        duration: &str,
        role: Option<&str>,
        reason: Option<&str>,
    ) -> Command {
        Command::Request {
            environment: environment.to_owned(),
            duration: Some(dur(duration)),
            role: role.map(str::to_owned),
            reason: reason.map(str::to_owned),
        }
    }

    /// The single result of a comment that must hold exactly one command.
    #[track_caller]
    fn one(body: &str) -> Result<Command, CommandParseError> {
        let mut all = parse_commands(body);
        assert_eq!(
            all.len(),
            1,
            "expected one command in {body:?}, got {all:?}"
        );
        all.remove(0)
    }

    #[track_caller]
    fn ok(body: &str) -> Command {
        one(body).unwrap_or_else(|e| panic!("{body:?} failed: {e}"))
    }

    #[track_caller]
    fn err(body: &str) -> CommandParseError {
        one(body).expect_err(body)
    }

    #[track_caller]
    fn ignored(body: &str) {
        assert_eq!(
            parse_commands(body),
            vec![],
            "{body:?} should hold no command"
        );
    }

    // --- verbs -------------------------------------------------------------------------------

    #[test]
    fn parses_each_verb() {
        let cases = [
            ("/breakglass approve", Command::Approve),
            ("/breakglass deny", Command::Deny { reason: None }),
            ("/breakglass revoke", Command::Revoke),
            (
                "/breakglass extend 30m",
                Command::Extend {
                    duration: dur("30m"),
                },
            ),
            ("/breakglass status", Command::Status),
            ("/breakglass reviewed", Command::Reviewed),
            ("/breakglass help", Command::Help),
        ];
        for (body, expected) in cases {
            assert_eq!(ok(body), expected, "{body}");
        }
    }

    /// A command mistyped with punctuation after the prefix is answered with the line as meant,
    /// never ignored; a path or another word that starts so is no command.
    #[test]
    fn punctuation_after_the_prefix_is_answered_with_the_line_as_meant() {
        for (body, meant) in [
            ("/breakglass: approve", "/breakglass approve"),
            ("/breakglass, status", "/breakglass status"),
            ("/breakglass-status", "/breakglass status"),
            ("/breakglass:", "/breakglass help"),
            ("/breakglass.", "/breakglass help"),
            ("/breakglass?", "/breakglass help"),
        ] {
            let error = err(body);
            assert_eq!(
                error,
                CommandParseError::PunctuationAfterPrefix {
                    written: body.to_owned(),
                    meant: meant.to_owned(),
                },
                "{body}"
            );
            assert!(error.to_string().contains(&format!("`{meant}`")), "{error}");
        }
        ignored("/breakglass/docs is the folder");
        ignored("/breakglass_old approve");
        ignored("/breakglassing approve");
        // Prose that names other things so.
        for body in [
            "/breakglass:prod 1h admin -- incident: INC-1 x",
            "/breakglass:approve.",
            "/breakglass-help!",
        ] {
            assert!(
                matches!(err(body), CommandParseError::PunctuationAfterPrefix { .. }),
                "{body}"
            );
        }
        ignored("/breakglass-requests is the repo to use");
        ignored("/breakglass.toml on the host");
        ignored("/breakglass-bot seems down?");
    }

    #[test]
    fn done_is_an_alias_of_revoke() {
        assert_eq!(ok("/breakglass done"), Command::Revoke);
        assert_eq!(ok("/breakglass DONE"), Command::Revoke);
    }

    #[test]
    fn verbs_and_prefix_ignore_case() {
        for body in [
            "/breakglass APPROVE",
            "/breakglass Approve",
            "/BREAKGLASS approve",
            "/BreakGlass aPpRoVe",
        ] {
            assert_eq!(ok(body), Command::Approve, "{body}");
        }
    }

    #[test]
    fn extend_accepts_compound_durations() {
        assert_eq!(
            ok("/breakglass extend 1h30m"),
            Command::Extend {
                duration: dur("1h30m")
            }
        );
        assert_eq!(
            ok("/breakglass extend 90s"),
            Command::Extend {
                duration: dur("90s")
            }
        );
    }

    #[test]
    fn help_ignores_trailing_words() {
        assert_eq!(ok("/breakglass help me please"), Command::Help);
    }

    #[test]
    fn every_kind_but_request_has_a_verb() {
        for kind in CommandKind::iter().filter(|k| *k != CommandKind::Request) {
            assert!(
                VERBS.iter().any(|(_, k)| *k == kind),
                "{kind:?} cannot be typed"
            );
            assert!(is_verb(kind.name()), "{kind:?}");
        }
        assert!(is_verb("DONE"));
        assert!(!is_verb("prod"));
        assert!(!is_verb("request"));
    }

    #[test]
    fn kind_matches_the_command() {
        let cases = [
            (request("prod", "1h", None, None), CommandKind::Request),
            (Command::Approve, CommandKind::Approve),
            (Command::Deny { reason: None }, CommandKind::Deny),
            (Command::Revoke, CommandKind::Revoke),
            (
                Command::Extend {
                    duration: dur("1m"),
                },
                CommandKind::Extend,
            ),
            (Command::Status, CommandKind::Status),
            (Command::Reviewed, CommandKind::Reviewed),
            (Command::Help, CommandKind::Help),
        ];
        for (command, kind) in cases {
            assert_eq!(command.kind(), kind);
        }
    }

    // --- deny reasons ------------------------------------------------------------------------

    #[test]
    fn deny_takes_the_rest_of_the_line_as_reason() {
        let cases = [
            ("/breakglass deny", None),
            ("/breakglass deny   ", None),
            (
                "/breakglass deny not during the freeze",
                Some("not during the freeze"),
            ),
            (
                "/breakglass deny -- not during the freeze",
                Some("not during the freeze"),
            ),
            ("/breakglass deny --", None),
            ("/breakglass deny -- -- odd", Some("-- odd")),
            (
                "/breakglass deny --no-space stays",
                Some("--no-space stays"),
            ),
            (
                "/breakglass deny use the   runbook",
                Some("use the   runbook"),
            ),
            ("/breakglass deny see `INC-1`", Some("see `INC-1`")),
            ("/breakglass DENY Nope 🚫", Some("Nope 🚫")),
        ];
        for (body, reason) in cases {
            assert_eq!(
                ok(body),
                Command::Deny {
                    reason: reason.map(str::to_owned)
                },
                "{body}"
            );
        }
    }

    // --- requests ----------------------------------------------------------------------------

    #[test]
    fn parses_requests_with_and_without_role_and_reason() {
        let cases = [
            ("/breakglass prod 1h", request("prod", "1h", None, None)),
            (
                "/breakglass prod 1h admin",
                request("prod", "1h", Some("admin"), None),
            ),
            (
                "/breakglass prod 1h -- INC-1 failover",
                request("prod", "1h", None, Some("INC-1 failover")),
            ),
            (
                "/breakglass prod 1h30m admin -- INC-1234 checkout DB failover",
                request(
                    "prod",
                    "1h30m",
                    Some("admin"),
                    Some("INC-1234 checkout DB failover"),
                ),
            ),
            (
                "/breakglass prod 45m admin --",
                request("prod", "45m", Some("admin"), None),
            ),
            (
                "/breakglass prod 45m admin --    ",
                request("prod", "45m", Some("admin"), None),
            ),
            (
                "/breakglass eu-west_2 2d read-only",
                request("eu-west_2", "2d", Some("read-only"), None),
            ),
            ("/breakglass 0 1m 9", request("0", "1m", Some("9"), None)),
        ];
        for (body, expected) in cases {
            assert_eq!(ok(body), expected, "{body}");
        }
    }

    #[test]
    fn request_names_are_lowercased() {
        assert_eq!(
            ok("/breakglass PROD 1h Admin"),
            request("prod", "1h", Some("admin"), None)
        );
    }

    #[test]
    fn request_reason_keeps_unicode_emoji_and_dashes() {
        let cases = [
            (
                "/breakglass prod 1h -- 🔥 base de données en panne — ça urge",
                "🔥 base de données en panne — ça urge",
            ),
            ("/breakglass prod 1h -- fix -- now", "fix -- now"),
            ("/breakglass prod 1h -- a--b", "a--b"),
            ("/breakglass prod 1h -- 障害対応 INC-7", "障害対応 INC-7"),
            ("/breakglass prod 1h -- --", "--"),
            // A phone turns `--` into a dash; the first separator of either kind starts it.
            (
                "/breakglass prod 1h \u{2014} DB down -- now",
                "DB down -- now",
            ),
            ("/breakglass prod 1h \u{2013} DB down", "DB down"),
        ];
        for (body, reason) in cases {
            assert_eq!(
                ok(body),
                request("prod", "1h", None, Some(reason)),
                "{body}"
            );
        }
        assert_eq!(
            ok("/breakglass prod 1h admin \u{2014} INC-7 failover"),
            request("prod", "1h", Some("admin"), Some("INC-7 failover"))
        );
    }

    #[test]
    fn request_reason_keeps_inline_code_and_links_as_written() {
        assert_eq!(
            ok("/breakglass prod 1h -- see `INC-1` and [runbook](https://wiki/x)"),
            request(
                "prod",
                "1h",
                None,
                Some("see `INC-1` and [runbook](https://wiki/x)")
            )
        );
    }

    #[test]
    fn words_split_on_any_whitespace() {
        let cases = [
            "/breakglass   prod    1h   admin",
            "/breakglass\tprod\t1h\tadmin",
            "/breakglass\u{a0}prod\u{a0}1h\u{a0}admin",
            "/breakglass prod \u{2003} 1h\u{3000}admin",
            "   /breakglass prod 1h admin   ",
            "\u{a0}/breakglass prod 1h admin",
        ];
        for body in cases {
            assert_eq!(
                ok(body),
                request("prod", "1h", Some("admin"), None),
                "{body:?}"
            );
        }
    }

    #[test]
    fn invisible_characters_before_the_prefix_are_skipped() {
        for body in [
            "\u{200b}/breakglass approve",
            "\u{feff}/breakglass approve",
            "\u{200d}\u{2060} /breakglass approve",
            "\u{200e}/breakglass approve\r\n",
            "LGTM\n\n\u{200b}/breakglass approve",
        ] {
            assert_eq!(ok(body), Command::Approve, "{body:?}");
        }
        // Still inert where a visible character or markup comes first.
        for body in [
            "> \u{200b}/breakglass approve",
            "```\n\u{feff}/breakglass approve\n```",
            "`\u{200b}/breakglass approve`",
            "please \u{200b}/breakglass approve",
            "x\u{200b}/breakglass approve",
        ] {
            ignored(body);
        }
    }

    #[test]
    fn tab_between_prefix_and_verb_is_whitespace() {
        assert_eq!(ok("/breakglass\tapprove"), Command::Approve);
    }

    #[test]
    fn verbs_win_over_environment_names() {
        assert_eq!(
            err("/breakglass status 1h"),
            CommandParseError::UnexpectedArgument {
                command: "status",
                value: "1h".into()
            }
        );
    }

    // --- where commands are found ------------------------------------------------------------

    #[test]
    fn ordinary_comments_hold_no_command() {
        for body in [
            "",
            "LGTM 👍",
            "Thanks!\n\nI'll look at it tomorrow.",
            "we should use breakglass here",
            "the /breakglass command is documented in the README",
            "/break glass approve",
            "/ breakglass approve",
            "\\",
            "/breakglas approve",
        ] {
            ignored(body);
        }
    }

    #[test]
    fn command_must_start_its_line() {
        for body in [
            "please /breakglass approve",
            "ok. /breakglass approve",
            "- [x] done /breakglass approve",
            "**note**: /breakglass approve",
        ] {
            ignored(body);
        }
    }

    #[test]
    fn prefix_must_be_a_whole_word() {
        for body in ["/breakglassapprove", "/breakglasses approve"] {
            ignored(body);
        }
        // Punctuation is no letter: a mistyped command, answered (see above).
        for body in ["/breakglass-approve", "/breakglass.approve"] {
            assert!(
                matches!(err(body), CommandParseError::PunctuationAfterPrefix { .. }),
                "{body}"
            );
        }
    }

    #[test]
    fn quoted_and_coded_commands_are_ignored() {
        for body in [
            "> /breakglass approve",
            ">/breakglass approve",
            "> > /breakglass approve",
            "> quoting you:\n> /breakglass approve",
            "> - /breakglass approve",
            "> ```\n> /breakglass approve\n> ```",
            "```\n/breakglass approve\n```",
            "~~~\n/breakglass approve\n~~~",
            "```text\n/breakglass approve\n```",
            "```\n/breakglass approve",
            "    /breakglass approve",
            "\t/breakglass approve",
            "text\n\n    /breakglass approve",
            "`/breakglass approve`",
            "``/breakglass approve``",
            "`/breakglass` approve",
            "- `/breakglass approve`",
        ] {
            ignored(body);
        }
    }

    #[test]
    fn commands_in_gitlabs_multiline_quotes_are_ignored() {
        for body in [
            ">>>\n/breakglass approve\n>>>",
            ">>>\r\ndan wrote:\r\n/breakglass approve\r\n>>>\r\n",
            "  >>>\n/breakglass deny\n>>>\nthat was dan",
            ">>>\n/breakglass approve",
        ] {
            ignored(body);
        }
        // What follows the quote is the author's own again.
        assert_eq!(
            parse_commands(">>>\n/breakglass deny\n>>>\n/breakglass approve"),
            vec![Ok(Command::Approve)]
        );
    }

    #[test]
    fn lazy_continuation_of_a_quote_is_still_quoted() {
        // CommonMark continues a quoted paragraph on an unmarked line, and so does the rendering.
        ignored("> please approve\n/breakglass approve");
    }

    #[test]
    fn commands_in_links_and_images_are_ignored() {
        for body in [
            "[/breakglass approve](http://x)",
            "[/breakglass approve]",
            "[/breakglass approve][ref]\n\n[ref]: http://x",
            "[x](/breakglass%20approve)",
            "![/breakglass approve](http://x/img.png)",
            "<http://x/breakglass approve>",
            "[see\n/breakglass approve\n](http://x)",
            "[x](http://x) /breakglass approve",
        ] {
            ignored(body);
        }
    }

    #[test]
    fn commands_in_html_are_ignored() {
        for body in [
            "<!-- /breakglass approve -->",
            "<!--\n/breakglass approve\n-->",
            "<div>\n/breakglass approve\n</div>",
            "<details><summary>x</summary>\n/breakglass approve\n</details>",
            "<b>/breakglass approve</b>",
            "text\n<!-- x --> /breakglass approve",
            "<span></span>/breakglass approve",
            // An element left open by an HTML block holds the Markdown after it, rendered
            // inside it: quoted, struck, folded away or as code.
            "<blockquote>\n\n/breakglass approve\n\n</blockquote>\n\nwhy admin?",
            "<del>\n\n/breakglass approve\n\n</del>",
            "<code>\n\n/breakglass extend 3h\n\n</code>",
            "<details>\n<summary>logs</summary>\n\n/breakglass approve\n\n</details>",
            "<blockquote><p>\n\n/breakglass approve\n\n</p></blockquote>",
            "<BLOCKQUOTE>\n\n/breakglass approve\n\n</BLOCKQUOTE>",
            // Neither a stray end tag of another element nor a `/>` in an attribute (or as a
            // would-be self-closing quote) lets the quote's content count.
            "<blockquote>\n\nsee<br></br>\n\n/breakglass approve\n\n</blockquote>",
            "<blockquote title=\"a/>\">\n\n/breakglass approve\n\n</blockquote>",
            "<blockquote>\n<img src=x></img>\n\n/breakglass approve\n\n</blockquote>",
            "<del><p></p></p>\n\n/breakglass approve\n\n</del>",
            "<blockquote/>\n\n/breakglass approve",
            "<blockquote>\n\n</del>\n\n/breakglass approve\n\n</blockquote>",
        ] {
            ignored(body);
        }
        // Closed elements, void ones and comments hold nothing after them.
        for body in [
            "<details><summary>logs</summary>\n\nsee above\n\n</details>\n\n/breakglass approve",
            "<blockquote>\n\nquoted\n\n</blockquote>\n\n/breakglass approve",
            "a line<br>\n\n/breakglass approve",
            "<img src=\"x.png\">\n\n/breakglass approve",
            "<hr/>\n\n/breakglass approve",
            "<!-- <blockquote> -->\n\n/breakglass approve",
            // A tag left open that hides nothing (the forge strips `<INC-42>`) hides no
            // command after it.
            "Checked against <INC-42>, fine.\n\n/breakglass approve",
            "<p>Looks good\n\n/breakglass approve",
            "<sub>sent from mobile\n\n/breakglass approve",
            "<p align=\"center\">ok</p>\n<p>fine\n\n/breakglass approve",
            "<a name=\"x\">\n\n/breakglass approve",
        ] {
            assert_eq!(ok(body), Command::Approve, "{body:?}");
        }
    }

    #[test]
    fn commands_in_lists_headings_and_emphasis_count() {
        for body in [
            "- /breakglass approve",
            "* /breakglass approve",
            "1. /breakglass approve",
            "- first\n  - /breakglass approve",
            "# /breakglass approve",
            "/breakglass approve\n---",
            "**/breakglass approve**",
            "_/breakglass approve_",
        ] {
            assert_eq!(ok(body), Command::Approve, "{body:?}");
        }
    }

    #[test]
    fn text_around_the_command_is_fine() {
        for body in [
            "Looks right to me.\n/breakglass approve",
            "Looks right to me.\n\n/breakglass approve\n\nThanks for the quick fix!",
            "/breakglass approve\nthanks",
            "  /breakglass approve",
            "> /breakglass deny\n\n/breakglass approve",
            "```\n/breakglass deny\n```\n/breakglass approve",
            "/breakglass approve <!-- checked the runbook -->",
        ] {
            assert_eq!(ok(body), Command::Approve, "{body:?}");
        }
    }

    #[test]
    fn crlf_line_endings_are_lines() {
        assert_eq!(
            parse_commands("hello\r\n/breakglass approve\r\n/breakglass status\r\n"),
            vec![Ok(Command::Approve), Ok(Command::Status)]
        );
        assert_eq!(
            ok("/breakglass deny nope\r\n"),
            Command::Deny {
                reason: Some("nope".into())
            }
        );
        assert_eq!(ok("x\r/breakglass approve"), Command::Approve);
    }

    #[test]
    fn reads_several_commands_in_order() {
        let body = "/breakglass approve\nand also\n/breakglass extend 30m\n\n- /breakglass stauts";
        assert_eq!(
            parse_commands(body),
            vec![
                Ok(Command::Approve),
                Ok(Command::Extend {
                    duration: dur("30m")
                }),
                Err(CommandParseError::UnknownCommand {
                    word: "stauts".into(),
                    did_you_mean: Some("status")
                }),
            ]
        );
    }

    #[test]
    fn reads_at_most_ten_commands() {
        let body: String = (1..=25)
            .map(|minutes| format!("/breakglass extend {minutes}m\n"))
            .collect();
        let all = parse_commands(&body);
        assert_eq!(all.len(), MAX_COMMANDS);
        assert_eq!(
            all.last(),
            Some(&Ok(Command::Extend {
                duration: HumanDuration::from_secs(600)
            }))
        );
    }

    #[test]
    fn a_repeated_command_is_read_once() {
        let body = "/breakglass approve\n/breakglass status\n".repeat(25)
            + "/breakglass zzzz\n/breakglass zzzz";
        assert_eq!(
            parse_commands(&body),
            [
                Ok(Command::Approve),
                Ok(Command::Status),
                Ok(Command::Request {
                    environment: "zzzz".into(),
                    duration: None,
                    role: None,
                    reason: None
                })
            ]
        );
    }

    #[test]
    fn hard_break_ends_a_line() {
        assert_eq!(
            parse_commands("/breakglass approve  \n/breakglass status\\\n/breakglass help"),
            vec![Ok(Command::Approve), Ok(Command::Status), Ok(Command::Help)]
        );
    }

    // --- errors ------------------------------------------------------------------------------

    #[test]
    fn bare_prefix_is_missing_command() {
        for body in [
            "/breakglass",
            "/breakglass   ",
            "/BREAKGLASS\t",
            "- /breakglass",
        ] {
            assert_eq!(err(body), CommandParseError::MissingCommand, "{body:?}");
        }
    }

    #[test]
    fn extra_words_after_argumentless_verbs_are_unexpected() {
        let cases = [
            ("/breakglass approve foo", "approve", "foo"),
            ("/breakglass approve lgtm thanks", "approve", "lgtm"),
            ("/breakglass status now", "status", "now"),
            ("/breakglass revoke x", "revoke", "x"),
            ("/breakglass done now", "revoke", "now"),
            ("/breakglass reviewed ok", "reviewed", "ok"),
            ("/breakglass extend 30m extra", "extend", "extra"),
            ("/breakglass prod 1h admin extra", "request", "extra"),
            (
                "/breakglass prod 1h admin extra -- reason",
                "request",
                "extra",
            ),
        ];
        for (body, command, value) in cases {
            assert_eq!(
                err(body),
                CommandParseError::UnexpectedArgument {
                    command,
                    value: value.into()
                },
                "{body}"
            );
        }
    }

    #[test]
    fn a_missing_extension_is_reported() {
        assert_eq!(
            err("/breakglass extend"),
            CommandParseError::MissingArgument {
                command: "extend",
                argument: "duration"
            },
        );
    }

    // The policy's `default_duration` applies to a request that names none, as to a file.
    #[test]
    fn a_request_without_a_duration_leaves_it_to_the_policy() {
        let cases = [
            ("/breakglass prod", "prod", None, None),
            ("/breakglass PROD", "prod", None, None),
            ("/breakglass prod -- urgent", "prod", None, Some("urgent")),
            (
                "/breakglass prod admin -- db down",
                "prod",
                Some("admin"),
                Some("db down"),
            ),
            ("/breakglass prod soon", "prod", Some("soon"), None),
            ("/breakglass qa", "qa", None, None),
        ];
        for (body, environment, role, reason) in cases {
            assert_eq!(
                parse_commands(body),
                [Ok(Command::Request {
                    environment: environment.into(),
                    duration: None,
                    role: role.map(Into::into),
                    reason: reason.map(Into::into),
                })],
                "{body}"
            );
        }
    }

    #[test]
    fn invalid_durations_are_reported_with_the_reason() {
        let cases = [
            (
                "/breakglass prod 2 hours",
                "2 hours",
                "duration `2 hours` is not a duration; write e.g. `90s`, `45m`, `2h` or `1h30m`",
            ),
            (
                "/breakglass prod -1h admin",
                "-1h",
                "duration `-1h` is not a duration; write e.g. `90s`, `45m`, `2h` or `1h30m`",
            ),
            (
                "/breakglass prod 90 admin",
                "90",
                "duration `90` is not a duration; write e.g. `90s`, `45m`, `2h` or `1h30m`",
            ),
            (
                "/breakglass prod 0m",
                "0m",
                "duration `0m` is zero; ask for the time you need, e.g. `30m`",
            ),
            (
                "/breakglass prod 1w admin",
                "1w",
                "duration `1w` is not a duration; write e.g. `90s`, `45m`, `2h` or `1h30m`",
            ),
            (
                "/breakglass prod 8d",
                "8d",
                "duration `8d` is longer than the 7 days any grant may last",
            ),
            (
                "/breakglass extend 2 hours",
                "2 hours",
                "duration `2 hours` is not a duration; write e.g. `90s`, `45m`, `2h` or `1h30m`",
            ),
            (
                "/breakglass extend 1H",
                "1H",
                "duration `1H` is not a duration; write e.g. `90s`, `45m`, `2h` or `1h30m`",
            ),
            (
                "/breakglass extend --",
                "--",
                "duration `--` is not a duration; write e.g. `90s`, `45m`, `2h` or `1h30m`",
            ),
        ];
        for (body, value, message) in cases {
            assert_eq!(
                err(body),
                CommandParseError::InvalidDuration {
                    value: value.into(),
                    message: message.into()
                },
                "{body}"
            );
        }
    }

    #[test]
    fn invalid_names_are_reported() {
        let long = "a".repeat(64);
        let cases = [
            (
                "/breakglass Prod! 1h".to_owned(),
                "environment",
                "Prod!".to_owned(),
            ),
            (
                format!("/breakglass {long} 1h"),
                "environment",
                long.clone(),
            ),
            (
                "/breakglass -prod 1h".to_owned(),
                "environment",
                "-prod".to_owned(),
            ),
            (
                "/breakglass _prod 1h".to_owned(),
                "environment",
                "_prod".to_owned(),
            ),
            (
                "/breakglass prød 1h".to_owned(),
                "environment",
                "prød".to_owned(),
            ),
            (
                "/breakglass prod 1h ad.min".to_owned(),
                "role",
                "ad.min".to_owned(),
            ),
            (format!("/breakglass prod 1h {long}"), "role", long.clone()),
            (
                "/breakglass prod 1h --admin".to_owned(),
                "role",
                "--admin".to_owned(),
            ),
        ];
        for (body, what, value) in cases {
            assert_eq!(
                err(&body),
                CommandParseError::InvalidName { what, value },
                "{body}"
            );
        }
        // 63 characters is still a name.
        let longest = "a".repeat(63);
        assert_eq!(
            ok(&format!("/breakglass {longest} 1h")),
            request(&longest, "1h", None, None)
        );
    }

    #[test]
    fn misspelt_verbs_get_a_suggestion() {
        let cases = [
            ("aprove", "approve"),
            ("approv", "approve"),
            ("Aprove", "approve"),
            ("revokee", "revoke"),
            ("revok", "revoke"),
            ("stauts", "status"),
            ("stats", "status"),
            ("hlep", "help"),
            ("dny", "deny"),
            ("reveiwed", "reviewed"),
            ("extned", "extend"),
        ];
        for (word, verb) in cases {
            assert_eq!(
                err(&format!("/breakglass {word}")),
                CommandParseError::UnknownCommand {
                    word: word.into(),
                    did_you_mean: Some(verb)
                },
                "{word}"
            );
        }
    }

    #[test]
    fn misspelt_extend_with_a_duration_is_not_a_request() {
        assert_eq!(
            err("/breakglass extnd 30m"),
            CommandParseError::UnknownCommand {
                word: "extnd".into(),
                did_you_mean: Some("extend")
            }
        );
    }

    #[test]
    fn unknown_words_without_a_close_verb_get_no_suggestion() {
        for word in ["???", "Prod!", "@bors", "r+", "💥"] {
            assert_eq!(
                err(&format!("/breakglass {word}")),
                CommandParseError::UnknownCommand {
                    word: word.into(),
                    did_you_mean: None
                },
                "{word}"
            );
        }
    }

    #[test]
    fn oversize_body_is_refused_only_when_it_mentions_us() {
        let filler = "x".repeat(MAX_BODY_BYTES);
        assert_eq!(
            parse_commands(&format!("/breakglass approve\n{filler}")),
            vec![Err(CommandParseError::TooLong {
                limit: MAX_BODY_BYTES
            })]
        );
        assert_eq!(
            parse_commands(&format!("{filler}\n/BreakGlass approve")),
            vec![Err(CommandParseError::TooLong {
                limit: MAX_BODY_BYTES
            })]
        );
        ignored(&format!("{filler}\nok"));
        // Exactly at the limit is still read.
        let at_limit = format!("/breakglass approve\n{}", "x".repeat(MAX_BODY_BYTES - 20));
        assert_eq!(at_limit.len(), MAX_BODY_BYTES);
        assert_eq!(parse_commands(&at_limit), vec![Ok(Command::Approve)]);
    }

    #[test]
    fn oversize_line_is_refused() {
        let body = format!("/breakglass deny {}", "é".repeat(MAX_LINE_CHARS));
        assert_eq!(
            err(&body),
            CommandParseError::TooLong {
                limit: MAX_LINE_CHARS
            }
        );
        // The line limit counts characters, not bytes.
        let body = format!("/breakglass deny {}", "é".repeat(400));
        assert!(ok(&body).kind() == CommandKind::Deny);
    }

    #[test]
    fn oversize_reason_is_refused() {
        let reason = "r".repeat(MAX_REASON_CHARS + 1);
        assert_eq!(
            err(&format!("/breakglass deny {reason}")),
            CommandParseError::TooLong {
                limit: MAX_REASON_CHARS
            }
        );
        assert_eq!(
            err(&format!("/breakglass prod 1h -- {reason}")),
            CommandParseError::TooLong {
                limit: MAX_REASON_CHARS
            }
        );
        let reason = "r".repeat(MAX_REASON_CHARS);
        assert_eq!(
            ok(&format!("/breakglass prod 1h -- {reason}")),
            request("prod", "1h", None, Some(&reason))
        );
    }

    #[test]
    fn errors_and_commands_mix_in_one_comment() {
        assert_eq!(
            parse_commands("/breakglass\n/breakglass approve"),
            vec![Err(CommandParseError::MissingCommand), Ok(Command::Approve)]
        );
    }

    // --- messages ----------------------------------------------------------------------------

    #[test]
    fn unknown_command_message_suggests_the_verb() {
        insta::assert_snapshot!(err("/breakglass aprove").to_string(), @"unknown command `aprove`; did you mean `/breakglass approve`?");
    }

    #[test]
    fn unknown_command_message_without_suggestion_shows_how_to_ask() {
        insta::assert_snapshot!(err("/breakglass ???").to_string(), @"unknown command `???`; write `/breakglass <environment> [duration] [role] [-- reason]` to ask for access, or `/breakglass help` to see all commands.");
    }

    #[test]
    fn missing_argument_messages_show_usage() {
        insta::assert_snapshot!(err("/breakglass extend").to_string(), @"`/breakglass extend` needs a duration such as `45m` or `1h30m`; write `/breakglass extend <duration>`.");
    }

    #[test]
    fn unexpected_argument_messages_show_usage() {
        insta::assert_snapshot!(err("/breakglass approve foo").to_string(), @"`/breakglass approve` takes no arguments, so `foo` is unexpected; write just `/breakglass approve`.");
        insta::assert_snapshot!(err("/breakglass prod 1h admin extra").to_string(), @"a request takes an environment, a duration and a role at most, so `extra` is unexpected; write `/breakglass <environment> [duration] [role] [-- reason]`, with the reason after `--`.");
        insta::assert_snapshot!(err("/breakglass extend 30m more").to_string(), @"`/breakglass extend` does not take `more`; write `/breakglass extend <duration>`.");
    }

    #[test]
    fn other_error_messages() {
        insta::assert_snapshot!(CommandParseError::MissingCommand.to_string(), @"`/breakglass` needs a command after it; write `/breakglass help` to see them all.");
        insta::assert_snapshot!(err("/breakglass prod 2 hours").to_string(), @"duration `2 hours` is not a duration; write e.g. `90s`, `45m`, `2h` or `1h30m`.");
        insta::assert_snapshot!(err("/breakglass Prod! 1h").to_string(), @"`Prod!` is not a valid environment name; a name is 1 to 63 lowercase letters, digits, `-` or `_`, starting with a letter or digit.");
        insta::assert_snapshot!(CommandParseError::TooLong { limit: MAX_REASON_CHARS }.to_string(), @"the reason is longer than 500 characters; shorten it and link to the incident for the details.");
    }

    #[test]
    fn every_error_message_is_a_sentence() {
        let errors = [
            CommandParseError::MissingCommand,
            CommandParseError::UnknownCommand {
                word: "x".into(),
                did_you_mean: None,
            },
            CommandParseError::UnknownCommand {
                word: "x".into(),
                did_you_mean: Some("help"),
            },
            CommandParseError::MissingArgument {
                command: "extend",
                argument: "duration",
            },
            CommandParseError::MissingArgument {
                command: "nope",
                argument: "duration",
            },
            CommandParseError::UnexpectedArgument {
                command: "status",
                value: "x".into(),
            },
            CommandParseError::UnexpectedArgument {
                command: "nope",
                value: "x".into(),
            },
            CommandParseError::InvalidDuration {
                value: "x".into(),
                message: "duration `x` is bad".into(),
            },
            CommandParseError::InvalidName {
                what: "role",
                value: "X!".into(),
            },
            CommandParseError::TooLong {
                limit: MAX_BODY_BYTES,
            },
            CommandParseError::TooLong {
                limit: MAX_LINE_CHARS,
            },
            CommandParseError::TooLong { limit: 7 },
        ];
        for error in errors {
            let text = error.to_string();
            assert!(text.ends_with('.') || text.ends_with('?'), "{text}");
            // A reply quoting a command must not itself be read as one.
            assert_eq!(parse_commands(&text), vec![], "{text}");
        }
    }

    #[test]
    fn echoed_values_cannot_break_out_of_their_code_span() {
        let error = CommandParseError::InvalidName {
            what: "role",
            value: "a`@acme/sre`".into(),
        };
        insta::assert_snapshot!(error.to_string(), @"`` a`@acme/sre` `` is not a valid role name; a name is 1 to 63 lowercase letters, digits, `-` or `_`, starting with a letter or digit.");
        let error = CommandParseError::UnknownCommand {
            word: "x".repeat(100),
            did_you_mean: None,
        };
        assert!(
            error
                .to_string()
                .contains(&format!("`{}…`", "x".repeat(64)))
        );
    }

    #[test]
    fn usage_points_at_the_command_in_question() {
        let cases = [
            (err("/breakglass extend"), Some(CommandKind::Extend.usage())),
            (
                err("/breakglass prod 1h a b"),
                Some(CommandKind::Request.usage()),
            ),
            (
                err("/breakglass approve x"),
                Some(CommandKind::Approve.usage()),
            ),
            (err("/breakglass done x"), Some(CommandKind::Revoke.usage())),
            (
                err("/breakglass aprove"),
                Some(CommandKind::Approve.usage()),
            ),
            (err("/breakglass dne"), Some(CommandKind::Revoke.usage())),
            (
                err("/breakglass Prod! 1h"),
                Some(CommandKind::Request.usage()),
            ),
            (err("/breakglass ???"), None),
            (err("/breakglass"), None),
            (err("/breakglass prod 2 hours"), None),
        ];
        for (error, usage) in cases {
            assert_eq!(error.usage(), usage, "{error:?}");
        }
    }

    // --- help --------------------------------------------------------------------------------

    #[test]
    fn help_mentions_every_command() {
        let help = help_text();
        for kind in CommandKind::iter() {
            assert!(help.contains(kind.usage()), "help lacks {kind:?}");
            assert!(help.contains(kind.summary()), "help lacks {kind:?}");
        }
    }

    #[test]
    fn help_is_not_itself_a_command() {
        assert_eq!(parse_commands(&help_text()), vec![]);
    }

    #[test]
    fn help_text_reads_well() {
        insta::assert_snapshot!(help_text(), @r"
        **breakglass commands.** Write each command at the start of its own line of a comment:

        - `/breakglass <environment> [duration] [role] [-- reason]`: Asks for temporary access to an environment, for example `/breakglass prod 1h admin -- incident: INC-1234 database failover`.
        - `/breakglass approve`: Approves the pending request of this pull request (GitLab: merge request); only an approver named by the policy can, and never the requester.
        - `/breakglass deny [reason]`: Denies the pending request of this pull request (GitLab: merge request), with an optional reason.
        - `/breakglass revoke`: Ends the grant now instead of at its expiry; `/breakglass done` does the same.
        - `/breakglass extend <duration>`: Asks for more time on an active grant, which needs approval again unless a fast-path rule allows it.
        - `/breakglass status`: Shows who asked for what, who approved it and when it expires.
        - `/breakglass reviewed`: Closes the retroactive review of a request that was granted on the fast path.
        - `/breakglass help`: Shows this help.

        Durations are written like `90s`, `45m`, `2h` or `1h30m`. Environment and role names are lowercase letters, digits, `-` and `_`. Commands inside code, quotes, links or HTML are ignored.
        ");
    }

    #[test]
    fn display_writes_the_canonical_form() {
        let cases = [
            (
                request("prod", "90m", Some("admin"), Some("INC-1 x")),
                "/breakglass prod 1h30m admin -- INC-1 x",
            ),
            (request("prod", "1h", None, None), "/breakglass prod 1h"),
            (
                Command::Deny {
                    reason: Some("no".into()),
                },
                "/breakglass deny -- no",
            ),
            (Command::Deny { reason: None }, "/breakglass deny"),
            (Command::Revoke, "/breakglass revoke"),
            (
                Command::Extend {
                    duration: dur("30m"),
                },
                "/breakglass extend 30m",
            ),
        ];
        for (command, text) in cases {
            assert_eq!(command.to_string(), text);
        }
    }

    #[test]
    fn pathological_markdown_up_to_the_size_limit_is_read() {
        // Nesting and unclosed delimiters are where markdown parsers go quadratic; a comment at
        // the size limit must still be read in well under a second.
        let bodies = [
            "[".repeat(MAX_BODY_BYTES - 20),
            "> ".repeat(MAX_BODY_BYTES / 2 - 20),
            "*a_".repeat(MAX_BODY_BYTES / 3 - 20),
            "`".repeat(MAX_BODY_BYTES - 20),
            "<a ".repeat(MAX_BODY_BYTES / 3 - 20),
            "- ".repeat(MAX_BODY_BYTES / 2 - 20),
            "[a](".repeat(MAX_BODY_BYTES / 4 - 20),
            "<!--".repeat(MAX_BODY_BYTES / 4 - 20),
        ];
        for body in bodies {
            let body = format!("/breakglass status\n{body}");
            assert!(body.len() <= MAX_BODY_BYTES);
            assert_eq!(parse_commands(&body).first(), Some(&Ok(Command::Status)));
        }
    }

    /// Found by the `slash_commands` fuzz target's round-trip check: `K` is not ASCII, so the
    /// word was no verb, yet Unicode lowercasing made it a valid name, and the request
    /// rendered as `/breakglass revoke 1h`, which reads back as a malformed revoke.
    #[test]
    fn names_are_ascii_so_a_lookalike_never_becomes_a_verb() {
        for line in ["/breakglass revo\u{212A}e 1h", "/breakglass \u{212A}8s 1h"] {
            let parsed = parse_commands(line);
            assert!(
                matches!(
                    parsed.as_slice(),
                    [Err(CommandParseError::InvalidName { .. })]
                ),
                "{line}: {parsed:?}"
            );
        }
        assert_eq!(
            parse_commands("/breakglass PROD 1h Admin"),
            [Ok(Command::Request {
                environment: "prod".into(),
                duration: Some(HumanDuration::from_secs(3600)),
                role: Some("admin".into()),
                reason: None,
            })]
        );
    }

    // --- properties --------------------------------------------------------------------------

    fn command_strategy() -> impl Strategy<Value = Command> {
        let name = "[a-z0-9][a-z0-9-]{0,20}";
        let reason = proptest::option::of("[A-Za-z0-9][A-Za-z0-9 .,:!?-]{0,40}[A-Za-z0-9]");
        let duration = (1u64..=7 * 24 * 3600).prop_map(HumanDuration::from_secs);
        prop_oneof![
            (
                name,
                proptest::option::of(duration.clone()),
                proptest::option::of(name),
                reason.clone()
            )
                // Verbs and near-misses of `extend` are read as commands, not environments; so
                // is a near-miss of any verb without a duration, and a role in a duration's
                // place that starts with a digit is read as a mistyped duration.
                .prop_filter("not a verb", |(env, duration, role, _)| !is_verb(env)
                    && did_you_mean(env) != Some("extend")
                    && (duration.is_some()
                        || (did_you_mean(env).is_none()
                            && !role.as_ref().is_some_and(
                                |r| r.starts_with(|c: char| c.is_ascii_digit())
                            ))))
                .prop_map(|(environment, duration, role, reason)| Command::Request {
                    environment,
                    duration,
                    role,
                    reason
                }),
            Just(Command::Approve),
            reason.prop_map(|reason| Command::Deny { reason }),
            Just(Command::Revoke),
            duration.prop_map(|duration| Command::Extend { duration }),
            Just(Command::Status),
            Just(Command::Reviewed),
            Just(Command::Help),
        ]
    }

    proptest! {
        #[test]
        fn never_panics_on_any_text(body in any::<String>()) {
            let all = parse_commands(&body);
            prop_assert!(all.len() <= MAX_COMMANDS);
        }

        #[test]
        fn never_panics_on_any_command_line(rest in any::<String>()) {
            let _ = parse_commands(&format!("/breakglass {rest}"));
        }

        #[test]
        fn never_panics_on_markdown_like_text(
            body in "[ \t\r\n>`*_\\[\\]()!<#/:.a-zA-Z0-9\u{a0}é😀-]{0,200}"
        ) {
            let _ = parse_commands(&body);
            let _ = parse_commands(&format!("/breakglass {body}"));
        }

        #[test]
        fn canonical_form_reads_back(command in command_strategy()) {
            prop_assert_eq!(parse_commands(&command.to_string()), vec![Ok(command)]);
        }

        #[test]
        fn quoting_a_comment_removes_its_commands(command in command_strategy()) {
            prop_assert_eq!(parse_commands(&format!("> {command}")), vec![]);
        }
    }
}
