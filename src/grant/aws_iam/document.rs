//! The IAM policy documents breakglass writes, and the quota they must fit in. Pure: no I/O.
//!
//! Every grant carries its own expiry inside AWS, so the cloud denies access at the expiry
//! even when the bot, the forge and CI are all down (SPEC "two-layer expiry"):
//!
//! - an inline `policy` document is written with `DateLessThan aws:CurrentTime <expiry>` added
//!   to every Allow statement ([`with_expiry`]);
//! - a managed `policy_arn` is attached next to an inline Deny of everything that starts at the
//!   expiry ([`expiry_deny`]), because copying a managed policy inline breaks IAM's size quota;
//! - a revocation leaves a Deny of every session issued before it ([`revoked_sessions`], the
//!   pattern of the console's "Revoke active sessions"), which later sessions are not hit by.
//!
//! Documents are typed (never `serde_json::Value` from YAML, whose 1.1 booleans would turn
//! `"no"` into `false`), and serialize compactly and deterministically, so that what verify
//! reads back can be compared with what apply would write.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The only policy language version that supports everything breakglass writes.
pub const VERSION: &str = "2012-10-17";

/// IAM's quota on the inline policies of one role, all of them together, counted in
/// characters without whitespace (IAM quotas page; users have 2,048, groups 5,120).
pub const ROLE_INLINE_QUOTA: usize = 10_240;

/// The condition key that bounds a grant in time, and the one that ends older sessions.
const CURRENT_TIME: &str = "aws:CurrentTime";
const TOKEN_ISSUE_TIME: &str = "aws:TokenIssueTime";

/// One value or a list of them, as IAM's JSON grammar allows for `Action`, `Resource`,
/// `Statement` and condition values. Kept as written, so a document reads back unchanged.
//
// Read by hand rather than as an untagged enum: that would buffer the YAML and see a plain
// `no` as `false`. A single value must be a string or a mapping; a plain YAML boolean or
// number is refused (quote it) since its spelling is lost by then (`no` vs `false`, `010`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(untagged)]
#[schemars(rename = "OneOrMany_{T}")]
pub enum OneOrMany<T> {
    One(T),
    Many(Vec<T>),
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for OneOrMany<T> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(OneOrManyVisitor(std::marker::PhantomData))
    }
}

struct OneOrManyVisitor<T>(std::marker::PhantomData<T>);

impl<'de, T: Deserialize<'de>> serde::de::Visitor<'de> for OneOrManyVisitor<T> {
    type Value = OneOrMany<T>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a string, a mapping, or a list of them (quote booleans and numbers)")
    }

    fn visit_str<E: serde::de::Error>(self, value: &str) -> Result<Self::Value, E> {
        T::deserialize(serde::de::value::StrDeserializer::<E>::new(value)).map(OneOrMany::One)
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        T::deserialize(serde::de::value::MapAccessDeserializer::new(map)).map(OneOrMany::One)
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut many = Vec::new();
        while let Some(item) = seq.next_element()? {
            many.push(item);
        }
        Ok(OneOrMany::Many(many))
    }
}

/// `Allow` or `Deny`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum Effect {
    Allow,
    Deny,
}

/// A condition block: operator (`DateLessThan`) → key (`aws:CurrentTime`) → value(s).
pub type Condition = BTreeMap<String, BTreeMap<String, OneOrMany<String>>>;

/// An identity-based IAM policy document, as an `aws-iam` role's `policy:` writes it (a YAML
/// mapping with `Version` and `Statement`). `Principal` has no place in a policy attached to
/// a role, so it is refused like every other unknown key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PolicyDocument {
    /// Must be `2012-10-17`.
    #[serde(rename = "Version")]
    pub version: String,
    #[serde(rename = "Id", default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(rename = "Statement")]
    pub statement: OneOrMany<Statement>,
}

/// One statement of an IAM policy document.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Statement {
    #[serde(rename = "Sid", default, skip_serializing_if = "Option::is_none")]
    pub sid: Option<String>,
    #[serde(rename = "Effect")]
    pub effect: Effect,
    #[serde(rename = "Action", default, skip_serializing_if = "Option::is_none")]
    pub action: Option<OneOrMany<String>>,
    #[serde(rename = "NotAction", default, skip_serializing_if = "Option::is_none")]
    pub not_action: Option<OneOrMany<String>>,
    #[serde(rename = "Resource", default, skip_serializing_if = "Option::is_none")]
    pub resource: Option<OneOrMany<String>>,
    #[serde(
        rename = "NotResource",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub not_resource: Option<OneOrMany<String>>,
    #[serde(rename = "Condition", default, skip_serializing_if = "Option::is_none")]
    pub condition: Option<Condition>,
}

impl Statement {
    /// A statement of `effect` on every action and resource, under one condition.
    fn everything(sid: &str, effect: Effect, operator: &str, key: &str, at: &str) -> Self {
        let mut condition = Condition::new();
        condition
            .entry(operator.to_owned())
            .or_default()
            .insert(key.to_owned(), OneOrMany::One(at.to_owned()));
        Self {
            sid: Some(sid.to_owned()),
            effect,
            action: Some(OneOrMany::One("*".into())),
            not_action: None,
            resource: Some(OneOrMany::One("*".into())),
            not_resource: None,
            condition: Some(condition),
        }
    }

    /// What is wrong with this statement, if anything IAM would refuse or breakglass could
    /// not bound in time.
    fn problem(&self, index: usize) -> Option<String> {
        let name = self.sid.as_deref().map_or_else(
            || format!("statement {}", index + 1),
            |sid| format!("statement `{sid}`"),
        );
        if self.action.is_some() == self.not_action.is_some() {
            return Some(format!(
                "{name} needs exactly one of `Action` and `NotAction`"
            ));
        }
        if self.resource.is_some() == self.not_resource.is_some() {
            return Some(format!(
                "{name} needs exactly one of `Resource` and `NotResource`"
            ));
        }
        let sets_current_time = self
            .condition
            .iter()
            .flat_map(|c| c.values())
            .any(|keys| keys.keys().any(|k| k.eq_ignore_ascii_case(CURRENT_TIME)));
        if self.effect == Effect::Allow && sets_current_time {
            // Ours would be one more key of the same operator map; rather than pick between
            // two bounds silently, the policy is asked to leave time to breakglass.
            return Some(format!(
                "{name} has a condition on {CURRENT_TIME}; breakglass sets the expiry itself"
            ));
        }
        None
    }
}

impl PolicyDocument {
    /// A document of one statement.
    fn single(statement: Statement) -> Self {
        Self {
            version: VERSION.into(),
            id: None,
            statement: OneOrMany::Many(vec![statement]),
        }
    }

    fn statements_mut(&mut self) -> &mut [Statement] {
        match &mut self.statement {
            OneOrMany::One(one) => std::slice::from_mut(one),
            OneOrMany::Many(many) => many,
        }
    }

    fn statements(&self) -> &[Statement] {
        match &self.statement {
            OneOrMany::One(one) => std::slice::from_ref(one),
            OneOrMany::Many(many) => many,
        }
    }

    /// The document as IAM receives it: compact JSON, fields in a fixed order.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a policy document always serializes")
    }

    /// Why IAM would refuse this document or breakglass could not bound it, if so.
    pub fn problem(&self) -> Option<String> {
        if self.version != VERSION {
            return Some(format!("`Version` is `{}`; use `{VERSION}`", self.version));
        }
        if self.statements().is_empty() {
            return Some("the policy has no statement".into());
        }
        self.statements()
            .iter()
            .enumerate()
            .find_map(|(index, statement)| statement.problem(index))
    }
}

/// `at` as IAM's date conditions read it: UTC, whole seconds, `Z`.
pub fn iam_time(at: DateTime<Utc>) -> String {
    crate::clock::iso(at)
}

/// `document` with every Allow statement bounded by `DateLessThan aws:CurrentTime <expires_at>`.
/// Deny statements only take away, so they stay unbounded.
pub fn with_expiry(document: &PolicyDocument, expires_at: DateTime<Utc>) -> PolicyDocument {
    let mut bounded = document.clone();
    let until = iam_time(expires_at);
    for statement in bounded.statements_mut() {
        if statement.effect == Effect::Allow {
            statement
                .condition
                .get_or_insert_with(Condition::new)
                .entry("DateLessThan".into())
                .or_default()
                .insert(CURRENT_TIME.into(), OneOrMany::One(until.clone()));
        }
    }
    bounded
}

/// The inline Deny that ends a managed-policy grant at its expiry: everything, once
/// `aws:CurrentTime` is past it. An explicit Deny wins over any Allow, so the attachment
/// stops granting at the expiry whether or not the bot has detached it.
pub fn expiry_deny(expires_at: DateTime<Utc>) -> PolicyDocument {
    PolicyDocument::single(Statement::everything(
        "BreakglassExpiry",
        Effect::Deny,
        "DateGreaterThan",
        CURRENT_TIME,
        &iam_time(expires_at),
    ))
}

/// The Deny left by a revocation: every session whose token was issued before `revoked_at`.
/// Sessions started afterwards (another grant of the same principal) are not affected.
pub fn revoked_sessions(revoked_at: DateTime<Utc>) -> PolicyDocument {
    PolicyDocument::single(Statement::everything(
        "BreakglassRevokedSessions",
        Effect::Deny,
        "DateLessThan",
        TOKEN_ISSUE_TIME,
        &iam_time(revoked_at),
    ))
}

/// The instant a revoked-sessions Deny (as read back from IAM) cuts at, if it is one.
pub fn revoked_before(document: &serde_json::Value) -> Option<DateTime<Utc>> {
    let statements = match &document["Statement"] {
        serde_json::Value::Array(many) => many.clone(),
        one => vec![one.clone()],
    };
    statements
        .iter()
        .filter_map(|s| s["Condition"]["DateLessThan"][TOKEN_ISSUE_TIME].as_str())
        .filter_map(|at| DateTime::parse_from_rfc3339(at).ok())
        .map(|at| at.to_utc())
        .max()
}

/// The size IAM counts against its quotas: characters, whitespace not counted.
pub fn quota_size(json: &str) -> usize {
    json.chars().filter(|c| !c.is_whitespace()).count()
}

/// A policy document as IAM returns it (`GetRolePolicy` gives it URL-encoded, RFC 3986),
/// parsed. Text that is already JSON is read as it is.
pub fn decode(text: &str) -> Result<serde_json::Value, String> {
    let json = if text.trim_start().starts_with('{') {
        text.to_owned()
    } else {
        percent_decode(text)?
    };
    serde_json::from_str(&json).map_err(|err| format!("not a JSON policy document: {err}"))
}

/// `%XX` escapes decoded; `+` stays a plus (RFC 3986, not form encoding).
fn percent_decode(text: &str) -> Result<String, String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = text
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| format!("bad percent escape at byte {i}"))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| "the decoded document is not UTF-8".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text).unwrap().to_utc()
    }

    fn from_yaml(text: &str) -> PolicyDocument {
        serde_saphyr::from_str(text).unwrap()
    }

    const S3_READ: &str = r#"
Version: "2012-10-17"
Statement:
  - Sid: Read
    Effect: Allow
    Action: ["s3:GetObject", "s3:ListBucket"]
    Resource: "*"
    Condition:
      Bool: {"aws:SecureTransport": "true"}
  - Effect: Deny
    Action: s3:DeleteObject
    Resource: "*"
"#;

    #[test]
    fn every_allow_statement_gets_the_expiry_and_deny_statements_do_not() {
        let bounded = with_expiry(&from_yaml(S3_READ), at("2026-11-26T03:14:00Z"));
        assert_eq!(
            bounded.to_json(),
            r#"{"Version":"2012-10-17","Statement":[{"Sid":"Read","Effect":"Allow","Action":["s3:GetObject","s3:ListBucket"],"Resource":"*","Condition":{"Bool":{"aws:SecureTransport":"true"},"DateLessThan":{"aws:CurrentTime":"2026-11-26T03:14:00Z"}}},{"Effect":"Deny","Action":"s3:DeleteObject","Resource":"*"}]}"#
        );
    }

    #[test]
    fn a_single_statement_object_is_bounded_too() {
        let doc = from_yaml(
            "Version: \"2012-10-17\"\nStatement: {Effect: Allow, Action: \"ec2:*\", Resource: \"*\"}\n",
        );
        assert_eq!(
            with_expiry(&doc, at("2026-01-02T03:04:05Z")).to_json(),
            r#"{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"ec2:*","Resource":"*","Condition":{"DateLessThan":{"aws:CurrentTime":"2026-01-02T03:04:05Z"}}}}"#
        );
    }

    #[test]
    fn yaml_words_in_a_list_stay_strings_as_written() {
        let doc = from_yaml(
            "Version: \"2012-10-17\"\nStatement:\n  - Effect: Allow\n    Action: \"s3:*\"\n    Resource: \"*\"\n    Condition: {StringEquals: {\"s3:prefix\": [no, 010, on]}}\n",
        );
        assert!(
            doc.to_json().contains(r#"{"s3:prefix":["no","010","on"]}"#),
            "{}",
            doc.to_json()
        );
    }

    #[test]
    fn documents_breakglass_cannot_bound_or_iam_would_refuse_are_problems() {
        let cases = [
            (
                "Version: \"2008-10-17\"\nStatement: []\n",
                "use `2012-10-17`",
            ),
            ("Version: \"2012-10-17\"\nStatement: []\n", "no statement"),
            (
                "Version: \"2012-10-17\"\nStatement: [{Effect: Allow, Resource: \"*\"}]\n",
                "statement 1 needs exactly one of `Action`",
            ),
            (
                "Version: \"2012-10-17\"\nStatement: [{Sid: X, Effect: Allow, Action: \"*\", Resource: \"*\", NotResource: \"a\"}]\n",
                "statement `X` needs exactly one of `Resource`",
            ),
            (
                "Version: \"2012-10-17\"\nStatement: [{Effect: Allow, Action: \"*\", Resource: \"*\", Condition: {DateLessThan: {\"AWS:CurrentTime\": \"2099-01-01T00:00:00Z\"}}}]\n",
                "breakglass sets the expiry itself",
            ),
        ];
        for (yaml, expected) in cases {
            let problem = from_yaml(yaml).problem().unwrap_or_default();
            assert!(problem.contains(expected), "{yaml}: {problem:?}");
        }
        assert_eq!(from_yaml(S3_READ).problem(), None);
    }

    #[test]
    fn a_plain_yaml_boolean_or_number_as_a_single_value_must_be_quoted() {
        for value in ["no", "true", "10"] {
            let yaml = format!(
                "Version: \"2012-10-17\"\nStatement: [{{Effect: Allow, Action: \"*\", Resource: \"*\", Condition: {{StringEquals: {{\"aws:x\": {value}}}}}}}]\n"
            );
            let err = serde_saphyr::from_str::<PolicyDocument>(&yaml).unwrap_err();
            assert!(
                err.to_string().contains("quote booleans and numbers"),
                "{value}: {err}"
            );
            let quoted = yaml.replace(&format!(": {value}}}"), &format!(": \"{value}\"}}"));
            let doc: PolicyDocument = serde_saphyr::from_str(&quoted).unwrap();
            assert!(
                doc.to_json().contains(&format!("\"aws:x\":\"{value}\"")),
                "{quoted}"
            );
        }
    }

    #[test]
    fn a_principal_in_an_identity_policy_is_refused_when_read() {
        let err = serde_saphyr::from_str::<PolicyDocument>(
            "Version: \"2012-10-17\"\nStatement: [{Effect: Allow, Principal: \"*\", Action: \"*\", Resource: \"*\"}]\n",
        );
        assert!(err.is_err());
    }

    #[test]
    fn the_expiry_deny_and_the_revoked_sessions_deny_are_exact() {
        assert_eq!(
            expiry_deny(at("2026-11-26T03:14:00Z")).to_json(),
            r#"{"Version":"2012-10-17","Statement":[{"Sid":"BreakglassExpiry","Effect":"Deny","Action":"*","Resource":"*","Condition":{"DateGreaterThan":{"aws:CurrentTime":"2026-11-26T03:14:00Z"}}}]}"#
        );
        assert_eq!(
            revoked_sessions(at("2026-11-26T04:00:00Z")).to_json(),
            r#"{"Version":"2012-10-17","Statement":[{"Sid":"BreakglassRevokedSessions","Effect":"Deny","Action":"*","Resource":"*","Condition":{"DateLessThan":{"aws:TokenIssueTime":"2026-11-26T04:00:00Z"}}}]}"#
        );
    }

    #[test]
    fn the_revoked_sessions_instant_reads_back() {
        let written = revoked_sessions(at("2026-11-26T04:00:00Z")).to_json();
        let read = decode(&written).unwrap();
        assert_eq!(revoked_before(&read), Some(at("2026-11-26T04:00:00Z")));
        assert_eq!(
            revoked_before(&decode(&expiry_deny(at("2026-11-26T04:00:00Z")).to_json()).unwrap()),
            None
        );
    }

    #[test]
    fn url_encoded_documents_decode_and_plus_stays_plus() {
        let value =
            decode("%7B%22Version%22%3A%222012-10-17%22%2C%22A%22%3A%22a+b%20c%22%7D").unwrap();
        assert_eq!(value["Version"], "2012-10-17");
        assert_eq!(value["A"], "a+b c");
        assert_eq!(decode("{\"x\": 1}").unwrap()["x"], 1);
        assert!(decode("%7").is_err());
        assert!(decode("%FF%FE").is_err());
    }

    #[test]
    fn quota_size_does_not_count_whitespace() {
        assert_eq!(quota_size("{ \"a\" :\n\t1 }"), 7);
        // The largest of breakglass's own documents stays far below the role quota.
        assert!(quota_size(&revoked_sessions(Utc::now()).to_json()) < 200);
    }
}
