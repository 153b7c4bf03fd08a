//! Secrets (webhook secrets, tokens, private keys) that never show up in logs or debug output.

use std::fmt;
use std::sync::RwLock;

/// A secret value. `Debug` and `Display` print `[redacted]`; the value is only reachable
/// through [`Secret::expose`], which makes every use easy to find in review.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

/// The values of every [`Secret`] made in this process (of [`MIN_KNOWN`] characters and more):
/// [`scrub`] takes them out of any text, whatever their format, so that a forge or proxy echoing
/// a token of no known shape (a legacy token, a custom prefix) does not put it in a log.
static KNOWN: RwLock<Vec<String>> = RwLock::new(Vec::new());

/// Shorter values are not scrubbed by value: they would take ordinary words out of messages.
const MIN_KNOWN: usize = 8;

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        let value = value.into();
        remember(&value);
        Self(value)
    }

    /// The secret itself, for the one call that needs it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret([redacted])")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

fn remember(value: &str) {
    let value = value.trim();
    if value.chars().count() < MIN_KNOWN {
        return;
    }
    let mut known = KNOWN
        .write()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if !known.iter().any(|k| k == value) {
        known.push(value.to_owned());
    }
}

/// `text` (a forge's error message, a transport error) with whatever looks like a credential
/// replaced by `[redacted]`: every secret the process holds, by value; the forges' token
/// formats, the value after `Bearer`, `token` or `Basic`, a URL's password and
/// `password=`-style parameters. A forge or a proxy in front of it that echoes the request's
/// credentials in its error must not put them in our logs.
pub fn scrub(text: &str) -> String {
    let mut text = text.to_owned();
    for value in KNOWN
        .read()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .iter()
    {
        if text.contains(value.as_str()) {
            text = text.replace(value.as_str(), "[redacted]");
        }
    }
    let text = regex!(
        r"\b(?:gh[pousr]_|github_pat_|glpat-|gldt-|glrt-|glptt-|glsoat-|glcbt-|gloas-)[A-Za-z0-9_-]+"
    )
    .replace_all(&text, "[redacted]");
    let text = regex!(r"(?i)\b(bearer|basic)(\s+)[^\s\[\]\x22',;]{4,}")
        .replace_all(&text, "$1$2[redacted]");
    let text = regex!(r"(?i)\b(token|private-token|authorization)(\s*[:=]\s*)[^\s\[\]\x22',;]{4,}")
        .replace_all(&text, "$1$2[redacted]");
    let text = regex!(r"://[^/\s:@]+:[^/\s@]+@").replace_all(&text, "://[redacted]@");
    without_secret_params(&text)
}

/// `text` with the values of `password=`-style parameters replaced by `[redacted]`.
fn without_secret_params(text: &str) -> String {
    regex!(r"(?i)\b(password|passwd|pwd|secret|access_token|private_token)=[^&\s]+")
        .replace_all(text, "$1=[redacted]")
        .into_owned()
}

/// A URL without its credentials (`https://user:token@host` → `https://user:redacted@host`;
/// over HTTP a lone user name is a token too: `https://token@host` → `https://redacted@host`),
/// and without `password=`-style parameters, so a secret never reaches a report or a message.
pub fn redact_url(url: &str) -> String {
    let Ok(mut parsed) = url::Url::parse(url) else {
        return without_secret_params(&without_user_password(url));
    };
    let redacted = if parsed.password().is_some() {
        parsed.set_password(Some("redacted"))
    } else if matches!(parsed.scheme(), "http" | "https") && !parsed.username().is_empty() {
        parsed.set_username("redacted")
    } else {
        Ok(())
    };
    if redacted.is_err() {
        // A scheme whose URLs hold no credentials (`file:`) keeps what it was given.
        return without_secret_params(&without_user_password(url));
    }
    // A database URL may carry its password as a parameter (`?password=…`).
    without_secret_params(parsed.as_str())
}

/// `scheme://user:password@rest` → `scheme://user:redacted@rest` (over HTTP a lone user
/// too, as [`redact_url`] does), by text alone: for what the URL parser refuses
/// (`file://u:pw@/path`, a broken host or port), which may still reach git. The credentials
/// run to the last `@` before the path: a password may hold an `@`.
fn without_user_password(url: &str) -> String {
    let credentials = regex!(r"^([A-Za-z][A-Za-z0-9+.-]*)://([^/\s]*)@");
    credentials
        .replace(url, |found: &regex::Captures<'_>| {
            let (scheme, userinfo) = (&found[1], &found[2]);
            let redacted = match userinfo.split_once(':') {
                Some((user, _)) => format!("{user}:redacted"),
                None if matches!(scheme.to_ascii_lowercase().as_str(), "http" | "https") => {
                    "redacted".to_owned()
                }
                None => userinfo.to_owned(),
            };
            format!("{scheme}://{redacted}@")
        })
        .into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_prints_its_value() {
        let secret = Secret::new("hunter2");
        assert_eq!(
            format!("{secret:?} {secret} {:?}", Some(&secret)),
            "Secret([redacted]) [redacted] Some(Secret([redacted]))"
        );
        assert_eq!(secret.expose(), "hunter2");
    }

    #[test]
    fn scrub_takes_out_every_secret_made_whatever_its_shape() {
        let _token = Secret::new("TOKSECRET_q2w8-legacy");
        let _short = Secret::new("abc");
        assert_eq!(
            scrub("HTTP 403: Bad credentials for TOKSECRET_q2w8-legacy (abc)"),
            "HTTP 403: Bad credentials for [redacted] (abc)"
        );
    }

    #[test]
    fn scrub_takes_credentials_out_of_forge_messages() {
        assert_eq!(
            scrub("Bad credentials: you sent Bearer ghp_TOKENSECRET2 / None"),
            "Bad credentials: you sent Bearer [redacted] / None"
        );
        assert_eq!(
            scrub("401: None / glpat-SECRET4 and token=abcd1234 PRIVATE-TOKEN: xyzw5678"),
            "401: None / [redacted] and token=[redacted] PRIVATE-TOKEN: [redacted]"
        );
        assert_eq!(
            scrub("error sending request for url (https://bot:hunter22@ghe.example/api/v3/user)"),
            "error sending request for url (https://[redacted]@ghe.example/api/v3/user)"
        );
        assert_eq!(
            scrub("postgres://db/x?sslmode=disable&password=HUNTER2PW"),
            "postgres://db/x?sslmode=disable&password=[redacted]"
        );
        let plain =
            "Validation Failed: head ref breakglass/r1 is invalid; the token budget is spent";
        assert_eq!(scrub(plain), plain);
        assert_eq!(scrub("Not Found"), "Not Found");
    }

    #[test]
    fn credentials_never_show() {
        assert_eq!(
            redact_url("https://bot:ghp_secret@github.com/acme/r.git"),
            "https://bot:redacted@github.com/acme/r.git"
        );
        assert_eq!(
            redact_url("https://ghp_secret@github.com/acme/r.git"),
            "https://redacted@github.com/acme/r.git"
        );
        assert_eq!(redact_url("ssh://git@host/r.git"), "ssh://git@host/r.git");
        assert_eq!(
            redact_url("file://u:HUNTER2PW@/srv/requests.git"),
            "file://u:redacted@/srv/requests.git"
        );
        assert_eq!(
            redact_url("https://u:HUNTER2PW@bad host/r.git"),
            "https://u:redacted@bad host/r.git"
        );
        // What the parser refuses keeps no token as a user, nor the end of a password.
        assert_eq!(
            redact_url("https://s3cr3tT0ken@github.com:99999/acme/r.git"),
            "https://redacted@github.com:99999/acme/r.git"
        );
        assert_eq!(
            redact_url("https://u:p4ss@w0rd@bad host/r.git"),
            "https://u:redacted@bad host/r.git"
        );
        assert_eq!(
            redact_url("ssh://git@bad host:x/r.git"),
            "ssh://git@bad host:x/r.git"
        );
        assert_eq!(
            redact_url("git@github.com:a/b.git"),
            "git@github.com:a/b.git"
        );
        assert_eq!(
            redact_url("postgres://postgres@db:5432/x?sslmode=disable&password=HUNTER2PW"),
            "postgres://postgres@db:5432/x?sslmode=disable&password=[redacted]"
        );
        assert_eq!(
            redact_url("postgres://app:pw@db/x"),
            "postgres://app:redacted@db/x"
        );
    }
}
