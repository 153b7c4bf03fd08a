//! The access request: `requests/<environment>/<id>.yaml` in the requests repo.
//!
//! This module knows the file's shape and what a valid file looks like on its own; whether the
//! request is *allowed* is the policy's business (`crate::policy`).

use std::path::Path;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::duration::HumanDuration;
use crate::names::{Login, Name, RequestId, Ticket};
use crate::yaml::{self, YamlError};

/// Directory in the requests repo under which request files live.
pub const REQUESTS_DIR: &str = "requests";

/// Longest reason we accept: enough for an incident summary, short enough for a PR title.
pub const MAX_REASON_CHARS: usize = 500;

/// An engineer's request for temporary access, as written in the request file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "breakglass access request", extend("$id" = "https://breakglass.dev/schemas/request.schema.json"))]
pub struct AccessRequest {
    /// The environment to access; a policy `policies/<environment>.yaml` must exist.
    pub environment: Name,
    /// The role to assume; must be one of the policy's `roles`.
    pub role: Name,
    /// How long the access should last (`90s`, `45m`, `1h30m`); the policy's
    /// `default_duration` when omitted, never more than its `max_duration`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration: Option<HumanDuration>,
    /// Why access is needed. When the policy sets `reason_codes`, it must start with one.
    pub reason: Reason,
    /// Incident or change ticket, e.g. `INC-1234`; required when the policy sets `ticket_pattern`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ticket: Option<Ticket>,
    /// Who asks. Optional; when given it must be the PR author (or the commenter who asked
    /// the bot to open the PR).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requester: Option<Login>,
}

/// The free-text justification: 1 to 500 characters, not blank.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(try_from = "String", into = "String")]
#[schemars(with = "String", extend("minLength" = 1, "maxLength" = 500, "pattern" = r"\S"))]
pub struct Reason(String);

impl Reason {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Reason {
    type Error = String;
    fn try_from(value: String) -> Result<Self, String> {
        let trimmed = value.trim();
        if trimmed.is_empty() {
            return Err(
                "reason is empty; say why you need access, e.g. `INC-1234 checkout DB failover`"
                    .into(),
            );
        }
        // A NUL cannot be stored in PostgreSQL's text, and other control characters only
        // hide text from whoever reads the reason.
        if let Some(c) = trimmed
            .chars()
            .find(|c| c.is_control() && !matches!(c, '\t' | '\n' | '\r'))
        {
            return Err(format!(
                "reason holds the control character U+{:04X}; write it as plain text",
                u32::from(c)
            ));
        }
        let chars = trimmed.chars().count();
        if chars > MAX_REASON_CHARS {
            return Err(format!(
                "reason is {chars} characters long; keep it to {MAX_REASON_CHARS}"
            ));
        }
        Ok(Self(trimmed.to_owned()))
    }
}

impl From<Reason> for String {
    fn from(value: Reason) -> String {
        value.0
    }
}

impl AccessRequest {
    /// Parses a request file's text. Errors carry line and column.
    pub fn from_yaml(text: &str) -> Result<Self, YamlError> {
        yaml::from_str(text)
    }

    /// The file as the bot writes it (for `/breakglass prod 1h` comments), with the schema line
    /// that editors use for completion.
    pub fn to_yaml(&self) -> String {
        let body = serde_saphyr::to_string(self).expect("a request always serializes");
        format!("# yaml-language-server: $schema=../../schemas/request.schema.json\n{body}")
    }
}

/// Where a request file sits: `requests/<environment>/<id>.yaml`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestPath {
    pub environment: Name,
    pub id: RequestId,
}

impl RequestPath {
    /// Recognises a repo-relative path of a request file; `None` for any other path.
    pub fn parse(path: &str) -> Option<Self> {
        let mut parts = path.split('/');
        let (Some(REQUESTS_DIR), Some(env), Some(file), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return None;
        };
        // One spelling only: `.yml` would pass here and fail wherever the path is rebuilt from
        // the id, which once made the bot merge, refuse and retry in a loop.
        let stem = file.strip_suffix(".yaml")?;
        Some(Self {
            environment: env.to_owned().try_into().ok()?,
            id: stem.to_owned().try_into().ok()?,
        })
    }

    /// Recognises a request file on disk from its last three path components, so that
    /// `breakglass check` can compare the directory with the file's `environment`.
    pub fn from_fs_path(path: &Path) -> Option<Self> {
        let parts: Vec<&str> = path.iter().filter_map(|p| p.to_str()).collect();
        let tail = parts.get(parts.len().checked_sub(3)?..)?.join("/");
        Self::parse(&tail)
    }

    /// The repo-relative path of this request file.
    pub fn to_repo_path(&self) -> String {
        format!("{REQUESTS_DIR}/{}/{}.yaml", self.environment, self.id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = "environment: prod\nrole: admin\nduration: 1h\nreason: \"INC-1234 checkout DB failover\"\nticket: INC-1234\nrequester: alice\n";

    #[test]
    fn parses_the_spec_example() {
        let request = AccessRequest::from_yaml(EXAMPLE).unwrap();
        assert_eq!(request.environment.as_str(), "prod");
        assert_eq!(request.role.as_str(), "admin");
        assert_eq!(request.duration.unwrap().as_secs(), 3600);
        assert_eq!(request.reason.as_str(), "INC-1234 checkout DB failover");
        assert_eq!(request.ticket.unwrap().as_str(), "INC-1234");
        assert_eq!(request.requester.unwrap().as_str(), "alice");
    }

    #[test]
    fn round_trips_through_the_bots_own_rendering() {
        let request = AccessRequest::from_yaml(EXAMPLE).unwrap();
        let text = request.to_yaml();
        assert!(
            text.starts_with("# yaml-language-server: $schema="),
            "{text}"
        );
        assert_eq!(AccessRequest::from_yaml(&text).unwrap(), request);
    }

    #[test]
    fn a_bad_duration_names_its_line() {
        let err = AccessRequest::from_yaml(
            "environment: prod\nrole: admin\nduration: 2 hours\nreason: x\n",
        )
        .unwrap_err();
        assert_eq!(err.line, Some(3));
        assert!(err.to_string().starts_with("line 3"), "{err}");
        assert!(
            err.message
                .contains("duration `2 hours` is not a duration; write e.g."),
            "{err}"
        );
    }

    #[test]
    fn unknown_keys_are_refused_with_their_position() {
        let err =
            AccessRequest::from_yaml("environment: prod\nrole: admin\nreason: x\nsudo: true\n")
                .unwrap_err();
        assert_eq!(err.line, Some(4), "{err}");
        assert!(err.message.contains("sudo"), "{err}");
    }

    #[test]
    fn missing_and_mistyped_fields_are_explained() {
        let err = AccessRequest::from_yaml("environment: prod\nreason: x\n").unwrap_err();
        assert!(err.message.contains("role"), "{err}");
        let err =
            AccessRequest::from_yaml("environment: [prod]\nrole: admin\nreason: x\n").unwrap_err();
        assert_eq!(err.line, Some(1), "{err}");
    }

    #[test]
    fn tabs_oversize_and_empty_files_are_refused() {
        let err = AccessRequest::from_yaml("environment: prod\n\trole: admin\n").unwrap_err();
        assert_eq!(
            err.to_string(),
            "line 2, column 1: indentation uses a tab; YAML indents with spaces"
        );
        let huge = format!(
            "environment: prod\nrole: admin\nreason: \"{}\"\n",
            "x".repeat(70_000)
        );
        let err = AccessRequest::from_yaml(&huge).unwrap_err();
        assert!(err.message.contains("at most 65536 bytes"), "{err}");
        assert!(AccessRequest::from_yaml("   \n").is_err());
    }

    #[test]
    fn parser_errors_are_said_in_plain_words() {
        let error = |yaml: &str| AccessRequest::from_yaml(yaml).unwrap_err().to_string();
        let base = "environment: prod\nduration: 1h\nreason: \"incident: x\"\n";
        assert_eq!(
            error(&format!("{base}role: admin\nrole: admin\n")),
            "line 5, column 1: `role` is given twice; keep one"
        );
        assert_eq!(
            error(&format!("{base}role: &r admin\n")),
            "line 4, column 10: anchors and aliases (`&name`, `*name`) are not allowed"
        );
        assert!(
            error(&format!("{base}role: admin\n---\nrole: admin\n"))
                .ends_with("the file holds more than one YAML document (`---`); write one request or policy per file")
        );
        assert_eq!(
            error(&format!("{base}role:\n")),
            "line 4, column 5: a value is missing here"
        );
        assert_eq!(
            error(&format!("{base}role: [admin]\n")),
            "line 4, column 7: expected a single text value here, not a list or a mapping"
        );
        assert_eq!(
            error(&format!("{base}role: !custom admin\n")),
            "line 4, column 15: tags such as `!custom` are not allowed; write the value as it is"
        );
        // The mistakes people make by hand, said so that they know what to change.
        let head = "environment: prod\nrole: admin\nduration: 1h\n";
        for (yaml, said) in [
            (
                format!("{head}reason: incident: INC-1 db\n"),
                "line 4, column 17: a `: ` inside a value reads as another key; put the whole value in quotes, e.g. `reason: \"incident: INC-1 db failover\"`",
            ),
            (
                "environment: prod\nrole:admin\n".to_owned(),
                "line 2, column 1: a key and its value need a colon and a space between them, e.g. `role: admin`",
            ),
            (
                format!("{head}reason: 'incident' INC-1\n"),
                "line 4, column 20: text follows the closing quote; put the whole value inside the quotes",
            ),
            (
                format!("{head}reason: \"incident\" INC-1\n"),
                "line 4, column 20: text follows the closing quote; put the whole value inside the quotes",
            ),
            (
                "# only a comment\n".to_owned(),
                "line 2, column 1: the file ends early: it is empty or only comments, or a quote or bracket is never closed",
            ),
            (
                format!("{head}reason: - incident\n"),
                "line 4, column 9: `- ` starts a list item, which is not allowed here; a value that starts with `-` needs quotes",
            ),
        ] {
            assert_eq!(error(&yaml), said, "{yaml}");
        }
    }

    // What a reviewer reads must be what the bot grants: a merge key adds a value no line
    // names (and two of them leave tools to disagree on which wins), and `!!binary` decodes to
    // a word the file never shows.
    #[test]
    fn merge_keys_and_tags_that_hide_a_value_are_refused() {
        let error = |yaml: &str| AccessRequest::from_yaml(yaml).unwrap_err().to_string();
        let base = "environment: prod\nduration: 1h\nreason: \"incident: x\"\n";
        for hidden in [
            "<<: {role: admin}\n",
            "<<: {role: admin}\n<<: {role: readonly}\n",
            "<<: [{role: admin}, {role: readonly}]\n",
            "role: readonly\n<<: {role: admin}\n",
        ] {
            let said = error(&format!("{base}{hidden}"));
            assert!(
                said.contains("merge keys (`<<`) are not allowed"),
                "{hidden}: {said}"
            );
        }
        assert_eq!(
            error(&format!("{base}role: !!binary YWRtaW4=\n")),
            "line 4, column 16: tags such as `!!binary` are not allowed; write the value as it is"
        );
        assert_eq!(
            error(&format!("{base}role: admin\nticket: !!str INC-1\n")),
            "line 5, column 15: tags such as `!!str` are not allowed; write the value as it is"
        );
        assert!(error(&format!("{base}role: !!map {{a: b}}\n")).contains("`!!map`"));
        // Escapes that spell `admin` without the word in the file, in a value or in a key.
        for hidden in [
            r#"role: "\x61dmin""#,
            r#"role: "\u0061dmin""#,
            r#"role: "\U00000061dmin""#,
            "role: \"ad\\\n  min\"",
            r#""\x72ole": admin"#,
        ] {
            let said = error(&format!("{base}{hidden}\n"));
            assert!(said.contains("escapes such as"), "{hidden}: {said}");
        }
        // A quote or a backslash may still be escaped: they hide no letter.
        let quoted =
            AccessRequest::from_yaml(&format!("{base}role: admin\nticket: \"INC-1\"\n")).unwrap();
        assert_eq!(quoted.ticket.unwrap().as_str(), "INC-1");
        let reason = "environment: prod\nrole: admin\nreason: \"incident: rotate \\\"db\\\" creds in C:\\\\tmp\"\n";
        let parsed = AccessRequest::from_yaml(reason).unwrap();
        assert_eq!(
            parsed.reason.as_str(),
            r#"incident: rotate "db" creds in C:\tmp"#
        );
    }

    #[test]
    fn blank_reasons_are_refused() {
        let err = AccessRequest::from_yaml("environment: prod\nrole: admin\nreason: \"  \"\n")
            .unwrap_err();
        assert!(err.message.contains("reason is empty"), "{err}");
    }

    #[test]
    fn control_characters_in_a_reason_or_ticket_are_refused() {
        let with = |reason: &str, ticket: &str| {
            AccessRequest::from_yaml(&format!(
                "environment: prod\nrole: admin\nreason: \"{reason}\"\nticket: \"{ticket}\"\n"
            ))
        };
        // Written as escapes they are refused as escapes (see `yaml::refuse_hidden_values`);
        // the characters themselves, by the parser.
        let err = with("incident: INC-1 a\\0b", "INC-1").unwrap_err();
        assert!(err.message.contains("escapes such as"), "{err}");
        let err = with("incident: INC-1 \\e[8mhidden", "INC-1").unwrap_err();
        assert!(err.message.contains("escapes such as"), "{err}");
        assert!(with("incident: INC-1 \u{1b}[8mhidden", "INC-1").is_err());
        assert!(with("incident: INC-1", "INC-1\\0").is_err());
        // Lines and tabs are text.
        let fine = with("incident: INC-1\\n\\tsecond line", "INC-1").unwrap();
        assert_eq!(fine.reason.as_str(), "incident: INC-1\n\tsecond line");
    }

    #[test]
    fn request_paths_are_recognised() {
        let path = RequestPath::parse("requests/prod/20261126-0214-alice-prod.yaml").unwrap();
        assert_eq!(path.environment.as_str(), "prod");
        assert_eq!(path.id.as_str(), "20261126-0214-alice-prod");
        assert_eq!(
            path.to_repo_path(),
            "requests/prod/20261126-0214-alice-prod.yaml"
        );
        for other in [
            "policies/prod.yaml",
            "requests/prod.yaml",
            "requests/prod/a/b.yaml",
            "requests/Prod/x.yaml",
            "requests/prod/x.txt",
        ] {
            assert_eq!(RequestPath::parse(other), None, "{other}");
        }
        assert!(RequestPath::from_fs_path(Path::new("/tmp/repo/requests/prod/x.yaml")).is_some());
    }
}
