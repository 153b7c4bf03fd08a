//! Small validated strings shared by requests, policies and commands: environment and role
//! names, user logins, team references, request ids and tickets.
//!
//! Each is a newtype that can only hold a valid value, so code further in never re-checks, and
//! each rejects bad input with a sentence that says what is allowed. They deserialize through
//! `TryFrom<String>`, so a YAML error points at the offending line.

use std::fmt;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// An environment or role name: lowercase letters, digits, `-` and `_`, as in `prod` or
/// `db-admin`. Also a file stem under `policies/` and a directory under `requests/`.
#[derive(
    Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema,
)]
#[serde(try_from = "String", into = "String")]
#[schemars(with = "String", extend("pattern" = r"^[a-z0-9][a-z0-9_-]{0,62}$"))]
pub struct Name(String);

impl Name {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Name {
    type Error = String;
    fn try_from(value: String) -> Result<Self, String> {
        if regex!(r"^[a-z0-9][a-z0-9_-]{0,62}$").is_match(&value) {
            Ok(Self(value))
        } else {
            Err(format!(
                "`{}` is not a valid name; use 1 to 63 lowercase letters, digits, `-` or `_`, starting with a letter or digit",
                shorten(&value)
            ))
        }
    }
}

impl std::str::FromStr for Name {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Self::try_from(s.to_owned())
    }
}

/// A forge user's login, e.g. `alice` or `carol-sre`, compared without case as both forges do.
/// GitHub's are up to 39 characters; GitLab's up to 255, and older GitLab accounts may start
/// with `_`.
#[derive(
    Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema,
)]
#[serde(try_from = "String", into = "String")]
#[schemars(with = "String", extend("pattern" = r"^@?[A-Za-z0-9_][A-Za-z0-9._-]{0,254}(\[bot\])?$"))]
pub struct Login(String);

impl Login {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether two logins name the same account (forges compare logins case-insensitively).
    pub fn matches(&self, other: &Login) -> bool {
        self.0.eq_ignore_ascii_case(&other.0)
    }
}

impl TryFrom<String> for Login {
    type Error = String;
    fn try_from(value: String) -> Result<Self, String> {
        let value = value.strip_prefix('@').map(str::to_owned).unwrap_or(value);
        if regex!(r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,254}(\[bot\])?$").is_match(&value) {
            Ok(Self(value))
        } else {
            Err(format!("`{}` is not a valid user login", shorten(&value)))
        }
    }
}

impl std::str::FromStr for Login {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Self::try_from(s.to_owned())
    }
}

/// A team, written `@org/team` in policies (`@acme/sre-leads`). On GitLab `slug` may hold
/// subgroups (`@acme/sre/oncall`: org `acme`, slug `sre/oncall`); GitHub teams have none.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Team {
    pub org: String,
    pub slug: String,
}

impl fmt::Display for Team {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "@{}/{}", self.org, self.slug)
    }
}

impl std::str::FromStr for Team {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match Principal::try_from(s.to_owned())? {
            Principal::Team(team) => Ok(team),
            Principal::User(_) => Err(format!("`{s}` is not a team; write `@org/team`")),
        }
    }
}

/// Who may request or approve: a user (`alice`) or every member of a team: a GitHub team
/// (`@acme/sre`) or a GitLab group with its subgroups (`@acme/sre`, `@acme/sre/oncall`).
#[derive(
    Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema,
)]
#[serde(try_from = "String", into = "String")]
#[schemars(
    with = "String",
    extend("pattern" = r"^(@[A-Za-z0-9][A-Za-z0-9._-]{0,99}/[A-Za-z0-9][A-Za-z0-9._-]{0,99}(/[A-Za-z0-9][A-Za-z0-9._-]{0,99}){0,19}|@?[A-Za-z0-9_][A-Za-z0-9._-]{0,254}(\[bot\])?)$")
)]
pub enum Principal {
    User(Login),
    Team(Team),
}

impl TryFrom<String> for Principal {
    type Error = String;
    fn try_from(value: String) -> Result<Self, String> {
        if let Some(caps) =
            regex!(r"^@([A-Za-z0-9][A-Za-z0-9._-]{0,99})/([A-Za-z0-9][A-Za-z0-9._-]{0,99}(?:/[A-Za-z0-9][A-Za-z0-9._-]{0,99}){0,19})$")
                .captures(&value)
        {
            return Ok(Self::Team(Team {
                org: caps[1].to_owned(),
                slug: caps[2].to_owned(),
            }));
        }
        Login::try_from(value.clone()).map(Self::User).map_err(|_| {
            format!(
                "`{}` is neither a user login (`alice`) nor a team (`@org/team`)",
                shorten(&value)
            )
        })
    }
}

impl fmt::Display for Principal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::User(login) => f.write_str(login.as_str()),
            Self::Team(team) => team.fmt(f),
        }
    }
}

/// The id of a request: the file stem of `requests/<environment>/<id>.yaml`, unique in the
/// repository, e.g. `20261126-0214-alice-prod`. Also used in branch names and commit trailers,
/// hence the narrow alphabet.
#[derive(
    Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema,
)]
#[serde(try_from = "String", into = "String")]
#[schemars(with = "String")]
pub struct RequestId(String);

impl RequestId {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for RequestId {
    type Error = String;
    fn try_from(value: String) -> Result<Self, String> {
        if regex!(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$").is_match(&value) && !value.contains("..") {
            Ok(Self(value))
        } else {
            Err(format!(
                "`{}` is not a valid request id; use up to 100 letters, digits, `.`, `-` or `_`",
                shorten(&value)
            ))
        }
    }
}

/// A ticket reference such as `INC-1234`: a single word, no spaces. A number (`1234`) is read
/// as its text, exactly as written.
// The YAML reader hands a number to `TryFrom<String>` as its text, so the schema takes a number
// too: an editor must not flag what the bot accepts (`pattern` applies to strings only).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(try_from = "String", into = "String")]
#[schemars(
    with = "String",
    extend("type" = ["string", "number"], "pattern" = r"^\S{1,100}$")
)]
pub struct Ticket(String);

impl Ticket {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Ticket {
    type Error = String;
    fn try_from(value: String) -> Result<Self, String> {
        if !value.is_empty()
            && value.chars().count() <= 100
            && !value.chars().any(|c| c.is_whitespace() || c.is_control())
        {
            Ok(Self(value))
        } else {
            Err(format!(
                "ticket `{}` must be one word of at most 100 characters, e.g. `INC-1234`",
                shorten(&value)
            ))
        }
    }
}

macro_rules! into_string {
    ($($t:ty),*) => {$(
        impl From<$t> for String {
            fn from(value: $t) -> String {
                value.to_string()
            }
        }
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    )*};
}
into_string!(Name, Login, RequestId, Ticket);

impl From<Principal> for String {
    fn from(value: Principal) -> String {
        value.to_string()
    }
}

/// Keeps echoed user input short enough for a one-line message.
pub(crate) fn shorten(value: &str) -> String {
    const MAX: usize = 60;
    if value.chars().count() <= MAX {
        value.to_owned()
    } else {
        let head: String = value.chars().take(MAX).collect();
        format!("{head}…")
    }
}

/// `text` with anything but ASCII letters, digits, `-` and `_` as `-`, cut to `max`
/// characters: a name made from anyone's text (a file name) that can stand in a branch name
/// or a commit title without changing its shape.
pub fn plain_name(text: &str, max: usize) -> String {
    text.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .take(max)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_accept_lowercase_identifiers_only() {
        for ok in ["prod", "db-admin", "eu_west_1", "0day"] {
            assert!(Name::try_from(ok.to_owned()).is_ok(), "{ok}");
        }
        for bad in ["Prod", "-x", "", "a b", "prod!", "ä", &"a".repeat(64)] {
            assert!(Name::try_from(bad.to_owned()).is_err(), "{bad}");
        }
    }

    #[test]
    fn principals_are_users_or_teams() {
        assert_eq!(
            Principal::try_from("alice".to_owned()).unwrap().to_string(),
            "alice"
        );
        assert_eq!(
            Principal::try_from("@alice".to_owned())
                .unwrap()
                .to_string(),
            "alice"
        );
        assert_eq!(
            Principal::try_from("@acme/sre-leads".to_owned()).unwrap(),
            Principal::Team(Team {
                org: "acme".into(),
                slug: "sre-leads".into()
            })
        );
        // GitLab subgroups, at any depth GitLab allows.
        assert_eq!(
            Principal::try_from("@acme/sre/night-shift".to_owned()).unwrap(),
            Principal::Team(Team {
                org: "acme".into(),
                slug: "sre/night-shift".into()
            })
        );
        assert_eq!(
            Principal::try_from("@acme/sre/night-shift".to_owned())
                .unwrap()
                .to_string(),
            "@acme/sre/night-shift"
        );
        for bad in [
            "@acme/",
            "@acme/sre/",
            "@acme//sre",
            "@/sre",
            "@acme/sre/x y",
        ] {
            assert!(Principal::try_from(bad.to_owned()).is_err(), "{bad}");
        }
        let err = Principal::try_from("acme/sre".to_owned()).unwrap_err();
        assert_eq!(
            err,
            "`acme/sre` is neither a user login (`alice`) nor a team (`@org/team`)"
        );
    }

    #[test]
    fn logins_compare_case_insensitively() {
        let a: Login = "Alice".parse().unwrap();
        let b: Login = "alice".parse().unwrap();
        assert!(a.matches(&b));
        assert!(Login::try_from("breakglass[bot]".to_owned()).is_ok());
        assert!(Login::try_from("al ice".to_owned()).is_err());
    }

    #[test]
    fn request_ids_cannot_escape_their_directory() {
        assert!(RequestId::try_from("20261126-0214-alice-prod".to_owned()).is_ok());
        for bad in ["../x", "a/b", "a..b", ".hidden", ""] {
            assert!(RequestId::try_from(bad.to_owned()).is_err(), "{bad}");
        }
    }

    #[test]
    fn long_input_is_shortened_in_messages() {
        let err = Name::try_from("X".repeat(500)).unwrap_err();
        assert!(err.chars().count() < 200, "{err}");
    }
}
