//! Who a grant is for, in AWS terms: the IAM role rendered from the policy's `principal`
//! template, and the names the bot's own STS session carries. Pure: no I/O.
//!
//! The template sees only values that can be part of an IAM name (`requester`, `account`,
//! `id`, `environment`, `role`), never free text such as the reason, and each value must be in
//! IAM's name alphabet, so no value can add a path segment or leave the ARN. The result must
//! be a role ARN in the role's own `account`.

use std::sync::LazyLock;

use minijinja::{Error, ErrorKind};
use regex::Regex;
use serde::Serialize;

use super::super::iac::{render_with, text_of};
use crate::grant::{GrantError, GrantSpec};

/// An IAM role, by ARN and by the name IAM's role APIs take.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct RoleArn {
    arn: String,
    name: String,
}

impl RoleArn {
    pub fn arn(&self) -> &str {
        &self.arn
    }

    /// The role name without its path: what `PutRolePolicy` and friends take.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl std::fmt::Display for RoleArn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.arn)
    }
}

/// The values a principal template may use.
#[derive(Serialize)]
struct PrincipalValues<'a> {
    requester: &'a str,
    account: &'a str,
    id: &'a str,
    environment: &'a str,
    role: &'a str,
}

/// `arn:<partition>:iam::<12 digits>:role/<path/>name`, IAM's own grammar for role ARNs.
static ROLE_ARN: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"^arn:(aws|aws-cn|aws-us-gov):iam::([0-9]{12}):role/((?:[A-Za-z0-9+=,.@_-]+/)*)([A-Za-z0-9+=,.@_-]{1,64})$",
    )
    .expect("valid literal regex")
});

/// Whether `value` is made of IAM name characters only (`[A-Za-z0-9+=,.@_-]`): no `/`, `:`,
/// space or quote that could change which role an ARN names.
pub fn is_iam_name_safe(value: &str) -> bool {
    !value.is_empty()
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+=,.@_-".contains(&b))
}

/// The role `template` names for `spec`, in `account`.
pub fn render(template: &str, account: &str, spec: &GrantSpec) -> Result<RoleArn, GrantError> {
    let values = PrincipalValues {
        requester: &spec.requester,
        account,
        id: &spec.id,
        environment: &spec.environment,
        role: &spec.role,
    };
    let arn = render_with(template, &values, |out, _, value| {
        let text = text_of(value);
        if !is_iam_name_safe(&text) {
            return Err(Error::new(
                ErrorKind::InvalidOperation,
                format!(
                    "the value `{}` may not be part of an IAM role ARN: only letters, digits and `+=,.@_-` are allowed",
                    text.escape_debug()
                ),
            ));
        }
        out.write_str(&text)?;
        Ok(())
    })
    .map_err(|err| GrantError::Misconfigured(format!("cannot render `principal`: {err}")))?;
    parse(&arn, account)
}

/// Whether `template` renders to a role of `account`, tried on a request as the comment form
/// makes them (the policy linter's check, before any grant depends on it).
pub fn check(template: &str, account: &str, environment: &str, role: &str) -> Result<(), String> {
    let sample = GrantSpec {
        id: format!("20261126-0214-alice-{environment}"),
        environment: environment.to_owned(),
        role: role.to_owned(),
        requester: "alice".into(),
        reason: String::new(),
        ticket: None,
        duration: "1h".into(),
        expires_at: crate::grant::NOT_YET_GRANTED.into(),
    };
    render(template, account, &sample)
        .map(|_| ())
        .map_err(|err| match err {
            GrantError::Misconfigured(why) => why,
            other => other.to_string(),
        })
}

/// Whether `arn` is the ARN of an IAM managed policy: AWS's own (`arn:aws:iam::aws:policy/…`)
/// or an account's.
pub fn is_policy_arn(arn: &str) -> bool {
    static POLICY_ARN: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(
            r"^arn:(aws|aws-cn|aws-us-gov):iam::(aws|[0-9]{12}):policy/(?:[A-Za-z0-9+=,.@_-]+/)*[A-Za-z0-9+=,.@_-]{1,128}$",
        )
        .expect("valid literal regex")
    });
    POLICY_ARN.is_match(arn)
}

/// `arn` as a role of `account`, or why it is not one.
fn parse(arn: &str, account: &str) -> Result<RoleArn, GrantError> {
    let Some(parts) = ROLE_ARN.captures(arn) else {
        return Err(GrantError::Misconfigured(format!(
            "`principal` gave `{arn}`, which is not an IAM role ARN (arn:aws:iam::<account>:role/<name>)"
        )));
    };
    if &parts[2] != account {
        return Err(GrantError::Misconfigured(format!(
            "`principal` gave a role in account {}, but the role's `account` is {account}",
            &parts[2]
        )));
    }
    Ok(RoleArn {
        arn: arn.to_owned(),
        name: parts[4].to_owned(),
    })
}

/// The `SourceIdentity` of the bot's session for a grant: the requester's login, which STS
/// keeps for the whole session and CloudTrail shows on every call. STS takes 2 to 64
/// characters of `[A-Za-z0-9+=,.@_-]`; a login outside that cannot be linked, so it is refused.
pub fn source_identity(requester: &str) -> Result<&str, GrantError> {
    if (2..=64).contains(&requester.len()) && is_iam_name_safe(requester) {
        Ok(requester)
    } else {
        Err(GrantError::Misconfigured(format!(
            "the login `{}` cannot be an STS SourceIdentity (2 to 64 of `A-Za-z0-9+=,.@_-`)",
            requester.escape_debug()
        )))
    }
}

/// The `RoleSessionName` of the bot's session for a grant: `breakglass-<id>`, cut to STS's 64
/// characters (the full id is in the session tags). Request ids are already in its alphabet.
pub fn session_name(id: &str) -> String {
    format!("breakglass-{id}").chars().take(64).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(requester: &str) -> GrantSpec {
        GrantSpec {
            id: "20261126-0214-alice-prod".into(),
            environment: "prod".into(),
            role: "admin".into(),
            requester: requester.into(),
            reason: "incident: \"x\" / y".into(),
            ticket: None,
            duration: "1h".into(),
            expires_at: String::new(),
        }
    }

    #[test]
    fn renders_the_requester_and_account_into_a_role_arn() {
        let role = render(
            "arn:aws:iam::{{ account }}:role/breakglass/{{ environment }}-{{ requester }}",
            "123456789012",
            &spec("alice"),
        )
        .unwrap();
        assert_eq!(
            role.arn(),
            "arn:aws:iam::123456789012:role/breakglass/prod-alice"
        );
        assert_eq!(role.name(), "prod-alice");
    }

    #[test]
    fn a_value_cannot_add_a_path_or_leave_the_arn() {
        for requester in ["al/ice", "alice:x", "al ice", "al\"ice", ""] {
            let err = render(
                "arn:aws:iam::123456789012:role/breakglass-{{ requester }}",
                "123456789012",
                &spec(requester),
            )
            .unwrap_err();
            assert!(
                matches!(&err, GrantError::Misconfigured(m) if m.contains("may not be part of an IAM role ARN")),
                "{requester:?}: {err}"
            );
        }
    }

    #[test]
    fn free_text_is_not_offered_to_the_template() {
        let err = render(
            "arn:aws:iam::123456789012:role/{{ reason }}",
            "123456789012",
            &spec("alice"),
        )
        .unwrap_err();
        assert!(
            err.to_string().contains("cannot render `principal`"),
            "{err}"
        );
    }

    #[test]
    fn only_a_role_of_the_roles_own_account_is_a_principal() {
        let cases = [
            (
                "arn:aws:iam::123456789012:user/alice",
                "not an IAM role ARN",
            ),
            ("arn:aws:iam::{account}:role/x", "not an IAM role ARN"),
            (
                "arn:aws:iam::999999999999:role/x",
                "role in account 999999999999",
            ),
            (
                "arn:aws:sts::123456789012:assumed-role/x/y",
                "not an IAM role ARN",
            ),
        ];
        for (template, expected) in cases {
            let err = render(template, "123456789012", &spec("alice")).unwrap_err();
            assert!(err.to_string().contains(expected), "{template}: {err}");
        }
    }

    #[test]
    fn the_source_identity_is_the_login_when_sts_can_carry_it() {
        assert_eq!(source_identity("carol-sre").unwrap(), "carol-sre");
        assert_eq!(source_identity("first.last_1").unwrap(), "first.last_1");
        for bad in ["a", "a b", &"x".repeat(65)] {
            assert!(source_identity(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn session_names_fit_sts() {
        assert_eq!(session_name("r-1"), "breakglass-r-1");
        assert_eq!(session_name(&"x".repeat(100)).len(), 64);
    }
}
