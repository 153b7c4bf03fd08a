//! Checks a set of policy files and reports every problem in every file at once, so that one
//! `breakglass policy lint` run is enough to fix a change.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};

use regex::Regex;
use serde::Serialize;

use super::PolicyFile;
use super::model::{KNOWN_REACTIONS, Policy, ProviderKind, Role};
use crate::grant::aws_iam::principal;
use crate::grant::iac;
use crate::names::Principal;

/// One thing wrong with a policy file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Problem {
    pub file: PathBuf,
    /// 1-based line, for parse errors.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<u64>,
    /// 1-based column, for parse errors.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub column: Option<u64>,
    pub message: String,
}

impl Problem {
    pub(crate) fn file(file: &Path, message: String) -> Self {
        Self {
            file: file.to_owned(),
            line: None,
            column: None,
            message,
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
            if let Some(column) = self.column {
                write!(f, ":{column}")?;
            }
        }
        write!(f, ": {}", self.message)
    }
}

/// Every problem of a set of policy files (empty when all is well).
pub fn lint(files: &[PolicyFile]) -> Vec<Problem> {
    check_files(files).1
}

/// With the bot's templates directory at hand: each `iac` role's template must be there and
/// render a sample request, as a grant would (a missing one would make the role ungrantable,
/// found only by the first request). Files that do not parse are [`lint`]'s to report.
pub fn lint_templates(files: &[PolicyFile], templates_dir: &Path) -> Vec<Problem> {
    let mut problems = Vec::new();
    for file in files {
        let Ok(policy) = crate::yaml::from_str::<Policy>(&file.text) else {
            continue;
        };
        let environment = policy.environment.to_string();
        for (name, role) in &policy.roles {
            let iac = role.provider_kind() == Some(ProviderKind::Iac) && role.template.is_some();
            if !iac {
                continue;
            }
            if let Err(why) = iac::check_template(templates_dir, role, &environment, name.as_str())
            {
                problems.push(Problem::file(&file.path, format!("role `{name}`: {why}")));
            }
        }
    }
    problems
}

/// Parses and checks the files; returns the policies that parsed and all problems found.
pub(crate) fn check_files(files: &[PolicyFile]) -> (Vec<Policy>, Vec<Problem>) {
    let mut problems = Vec::new();
    let mut policies = Vec::new();
    let mut seen: BTreeMap<String, PathBuf> = BTreeMap::new();
    for file in files {
        let policy = match crate::yaml::from_str::<Policy>(&file.text) {
            Ok(policy) => policy,
            Err(err) => {
                // The parser stops at its first complaint; every missing key is named too.
                let missing = missing_keys(&file.text);
                // (A missing-key error is among the missing keys listed below.)
                if missing.is_empty() || !err.message.starts_with("missing field") {
                    problems.push(Problem {
                        file: file.path.clone(),
                        line: err.line,
                        column: err.column,
                        message: err.message,
                    });
                }
                for key in missing {
                    problems.push(Problem::file(&file.path, format!("missing field `{key}`")));
                }
                continue;
            }
        };
        let env = policy.environment.to_string();
        let mut report = |message: String| problems.push(Problem::file(&file.path, message));
        if let Some(first) = seen.get(&env) {
            report(format!(
                "environment `{env}` is already defined by {}",
                first.display()
            ));
        } else {
            seen.insert(env.clone(), file.path.clone());
        }
        let stem = file
            .path
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or_default();
        if stem != env {
            report(format!(
                "environment `{env}` must be defined in a file named `{env}.yaml`, not `{stem}`"
            ));
        }
        if crate::command::is_verb(&env) {
            report(format!(
                "environment `{env}` is also a command word, so `/breakglass {env} 1h` could never request it; rename it"
            ));
        }
        check_policy(&policy, &mut report);
        policies.push(policy);
    }
    (policies, problems)
}

/// The keys every policy must have that a file's top-level mapping lacks (none when it is not
/// a mapping of keys: the parser's own error says what is wrong then).
fn missing_keys(text: &str) -> Vec<&'static str> {
    const REQUIRED: [&str; 5] = [
        "environment",
        "max_duration",
        "requesters",
        "approvers",
        "roles",
    ];
    match crate::yaml::from_str::<BTreeMap<String, serde::de::IgnoredAny>>(text) {
        Ok(keys) => REQUIRED
            .into_iter()
            .filter(|key| !keys.contains_key(*key))
            .collect(),
        Err(_) => Vec::new(),
    }
}

fn check_policy(policy: &Policy, report: &mut impl FnMut(String)) {
    let max = policy.max_duration;
    if let Some(default) = policy.default_duration
        && default > max
    {
        report(format!(
            "default_duration {default} is above max_duration {max}"
        ));
    }
    check_people(policy, report);
    check_signals(policy, report);
    if policy.roles.is_empty() {
        report("roles is empty: there is nothing to request".into());
    }
    for (name, role) in &policy.roles {
        check_role(policy.environment.as_str(), name.as_str(), role, report);
    }
    check_fast_paths(policy, report);
}

/// Who may ask and who may approve: someone on each side, and enough approvers to approve.
fn check_people(policy: &Policy, report: &mut impl FnMut(String)) {
    if policy.requesters.is_empty() {
        report(
            "requesters is empty: nobody could ask for access; list users or `@org/team`".into(),
        );
    }
    if policy.approvers.is_empty() {
        report(
            "approvers is empty: nobody could approve or review; list users or `@org/team`".into(),
        );
    }
    check_duplicates("requesters", &policy.requesters, report);
    check_duplicates("approvers", &policy.approvers, report);
    let listed_users = policy
        .approvers
        .iter()
        .filter(|p| matches!(p, Principal::User(_)))
        .count();
    let has_team = policy
        .approvers
        .iter()
        .any(|p| matches!(p, Principal::Team(_)));
    if !has_team && policy.approvals as usize > listed_users {
        report(format!(
            "approvals is {} but only {listed_users} approver(s) are listed: no request could ever be approved",
            policy.approvals
        ));
    }
}

/// What a request and its approval are read from: reactions, reason codes, the ticket pattern.
fn check_signals(policy: &Policy, report: &mut impl FnMut(String)) {
    if policy.approval_reactions.is_empty() {
        report(format!(
            "approval_reactions is empty; use e.g. [\"+1\"] (known: {})",
            KNOWN_REACTIONS.join(", ")
        ));
    }
    for reaction in &policy.approval_reactions {
        if !KNOWN_REACTIONS.contains(&reaction.as_str()) {
            report(format!(
                "approval_reactions: `{reaction}` is not a reaction; use one of {}",
                KNOWN_REACTIONS.join(", ")
            ));
        }
    }
    for code in &policy.reason_codes {
        if code.is_empty() || code.chars().any(char::is_whitespace) {
            report(format!(
                "reason_codes: `{code}` must be one word, e.g. `incident`"
            ));
        }
    }
    if let Some(pattern) = &policy.ticket_pattern
        && let Err(err) = Regex::new(pattern)
    {
        report(format!(
            "ticket_pattern `{pattern}` is not a valid regular expression: {}",
            one_line(&err.to_string())
        ));
    }
}

/// Each fast-path rule: named once, within the policy's max_duration, narrowed by labels or
/// requesters, and naming only the policy's roles.
fn check_fast_paths(policy: &Policy, report: &mut impl FnMut(String)) {
    let max = policy.max_duration;
    let mut rule_names = BTreeSet::new();
    for rule in &policy.fast_path {
        let name = &rule.name;
        if !rule_names.insert(name.clone()) {
            report(format!("fast_path: rule `{name}` is defined twice"));
        }
        if let Some(rule_max) = rule.max_duration
            && rule_max > max
        {
            report(format!(
                "fast_path `{name}`: max_duration {rule_max} is above the policy's max_duration {max}"
            ));
        }
        if rule.labels_any.is_empty() && rule.requesters.is_empty() {
            report(format!(
                "fast_path `{name}` has neither labels_any nor requesters: it would let every request skip approval"
            ));
        }
        for role in &rule.roles {
            if !policy.roles.contains_key(role) {
                report(format!(
                    "fast_path `{name}`: role `{role}` is not one of the policy's roles"
                ));
            }
        }
    }
}

fn check_role(environment: &str, name: &str, role: &Role, report: &mut impl FnMut(String)) {
    let Some(kind) = role.provider_kind() else {
        report(format!(
            "role `{name}`: unknown provider `{}`; use aws-iam, iac or noop",
            role.provider
        ));
        return;
    };
    let keys = [
        ("account", role.account.is_some(), ProviderKind::AwsIam),
        ("principal", role.principal.is_some(), ProviderKind::AwsIam),
        (
            "policy_arn",
            role.policy_arn.is_some(),
            ProviderKind::AwsIam,
        ),
        ("policy", role.policy.is_some(), ProviderKind::AwsIam),
        ("template", role.template.is_some(), ProviderKind::Iac),
        ("output", role.output.is_some(), ProviderKind::Iac),
    ];
    for (key, present, owner) in keys {
        if present && owner != kind {
            report(format!(
                "role `{name}`: `{key}` is a key of provider {owner}, not {kind}"
            ));
        }
    }
    match kind {
        ProviderKind::AwsIam => check_aws_iam_role(environment, name, role, report),
        ProviderKind::Iac => check_iac_role(environment, name, role, report),
        ProviderKind::Noop => {}
    }
}

/// An aws-iam role: a 12-digit account, a principal template, exactly one policy.
fn check_aws_iam_role(environment: &str, name: &str, role: &Role, report: &mut impl FnMut(String)) {
    let is_account =
        |account: &str| account.len() == 12 && account.bytes().all(|b| b.is_ascii_digit());
    match &role.account {
        None => report(format!(
            "role `{name}`: provider aws-iam needs `account` (the 12-digit AWS account id)"
        )),
        Some(account) if !is_account(account) => report(format!(
            "role `{name}`: account `{account}` is not a 12-digit AWS account id (quote it in YAML)"
        )),
        Some(_) => {}
    }
    if let Some(arn) = &role.policy_arn
        && !principal::is_policy_arn(arn)
    {
        report(format!(
            "role `{name}`: policy_arn `{arn}` is not an IAM policy ARN (arn:aws:iam::aws:policy/<name> or arn:aws:iam::<account>:policy/<name>)"
        ));
    }
    match (&role.principal, &role.account) {
        (None, _) => report(format!(
            "role `{name}`: provider aws-iam needs `principal`, the IAM role to grant (may use {{{{ requester }}}})"
        )),
        (Some(template), Some(account)) if is_account(account) => {
            if let Err(why) = principal::check(template, account, environment, name) {
                report(format!("role `{name}`: {why}"));
            }
        }
        (Some(_), _) => {} // the account's own problem is said above
    }
    match (&role.policy_arn, &role.policy) {
        (Some(_), Some(_)) | (None, None) => report(format!(
            "role `{name}`: provider aws-iam needs exactly one of `policy_arn` (a managed policy) and `policy` (an inline document)"
        )),
        (None, Some(document)) => {
            if let Some(problem) = document.problem() {
                report(format!("role `{name}`: policy: {problem}"));
            }
        }
        (Some(_), _) => {} // the account's own problem is said above
    }
}

/// An iac role: a template, and an output path of a format whose values can be escaped.
fn check_iac_role(environment: &str, name: &str, role: &Role, report: &mut impl FnMut(String)) {
    if role.template.is_none() {
        report(format!(
            "role `{name}`: provider iac needs `template`, the grant template to render"
        ));
    }
    if let Some(Err(why)) = role.template.as_deref().map(iac::check_template_name) {
        report(format!("role `{name}`: {why}"));
    }
    // Values are escaped for the grant file's format, which its extension names; a
    // file of no known format could not be rendered safely, so the grant would fail,
    // as it would for a path that cannot be rendered or lands among requests.
    let output = role.output.as_deref().unwrap_or(iac::DEFAULT_OUTPUT);
    if let Err(why) = iac::check_output(output, environment, name) {
        report(format!("role `{name}`: {why}"));
    }
}

fn check_duplicates(key: &str, principals: &[Principal], report: &mut impl FnMut(String)) {
    let mut seen = BTreeSet::new();
    for principal in principals {
        if !seen.insert(principal.to_string().to_lowercase()) {
            report(format!("{key}: `{principal}` is listed twice"));
        }
    }
}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
environment: prod
max_duration: 4h
default_duration: 1h
requesters: ["@acme/sre", alice]
approvers: ["@acme/sre-leads", carol]
approvals: 1
approval_reactions: ["+1"]
reason_codes: [incident, maintenance]
ticket_pattern: "^(INC|CHG)-[0-9]+$"
roles:
  admin:
    provider: noop
fast_path:
  - name: sev1
    labels_any: [sev1]
    requesters: ["@acme/oncall"]
    max_duration: 1h
    review_within: 24h
"#;

    fn file(name: &str, text: &str) -> PolicyFile {
        PolicyFile {
            path: PathBuf::from(format!("policies/{name}")),
            text: text.to_owned(),
        }
    }

    fn messages(files: &[PolicyFile]) -> Vec<String> {
        lint(files).into_iter().map(|p| p.to_string()).collect()
    }

    #[test]
    fn the_spec_example_is_clean() {
        assert_eq!(messages(&[file("prod.yaml", GOOD)]), Vec::<String>::new());
    }

    #[test]
    fn a_flag_is_true_or_false_never_yes_or_off() {
        for word in ["yes", "off", "on", "no"] {
            let text = GOOD.replace(
                "    review_within: 24h\n",
                &format!("    review_within: 24h\n    block_until_reviewed: {word}\n"),
            );
            let problems = messages(&[file("prod.yaml", &text)]);
            assert_eq!(problems.len(), 1, "{word}: {problems:?}");
            assert!(
                problems[0].contains("invalid boolean"),
                "{word}: {problems:?}"
            );
        }
        let text = GOOD.replace(
            "    review_within: 24h\n",
            "    review_within: 24h\n    block_until_reviewed: false\n",
        );
        assert_eq!(messages(&[file("prod.yaml", &text)]), Vec::<String>::new());
    }

    #[test]
    fn a_role_that_could_never_be_granted_is_reported_before_anyone_asks() {
        let with_roles = |roles: &str| GOOD.replace("  admin:\n    provider: noop\n", roles);
        let cases = [
            (
                "  admin:\n    provider: aws-iam\n    account: \"123456789012\"\n    principal: \"arn:aws:iam::999999999999:role/bg-{{ requester }}\"\n    policy_arn: arn:aws:iam::aws:policy/ReadOnlyAccess\n",
                "`principal` gave a role in account 999999999999, but the role's `account` is 123456789012",
            ),
            (
                "  admin:\n    provider: aws-iam\n    account: \"123456789012\"\n    principal: \"arn:aws:iam::123456789012:user/{{ requester }}\"\n    policy_arn: arn:aws:iam::aws:policy/ReadOnlyAccess\n",
                "which is not an IAM role ARN",
            ),
            (
                "  admin:\n    provider: aws-iam\n    account: \"123456789012\"\n    principal: \"arn:aws:iam::123456789012:role/{{ nope }}\"\n    policy_arn: arn:aws:iam::aws:policy/ReadOnlyAccess\n",
                "cannot render `principal`",
            ),
            (
                "  admin:\n    provider: aws-iam\n    account: \"123456789012\"\n    principal: \"arn:aws:iam::123456789012:role/bg\"\n    policy_arn: \"arn:aws:iam::aws:policy/\"\n",
                "is not an IAM policy ARN",
            ),
            (
                "  admin:\n    provider: iac\n    template: ../secrets.tf.j2\n",
                "must be a path inside the templates directory",
            ),
            (
                "  admin:\n    provider: iac\n    template: iac/aws-role-policy.tf.j2\n    output: \"requests/{{ environment }}/{{ id }}.yaml\"\n",
                "must not be under requests/ or policies/",
            ),
            (
                "  admin:\n    provider: iac\n    template: iac/aws-role-policy.tf.j2\n    output: \"grants/{{ reason }}.json\"\n",
                "may not be part of a path",
            ),
            (
                "  admin:\n    provider: iac\n    template: iac/aws-role-policy.tf.j2\n    output: \"grants/{{ id }.json\"\n",
                "cannot render output path",
            ),
        ];
        for (roles, expected) in cases {
            let problems = messages(&[file("prod.yaml", &with_roles(roles))]);
            assert!(
                problems.len() == 1 && problems[0].contains(expected),
                "{roles}: expected one problem with {expected:?}, got {problems:#?}"
            );
        }
    }

    #[test]
    fn every_missing_key_is_named_not_only_the_first() {
        let text = "environment: prod\nrequesters: [alice]\n";
        assert_eq!(
            messages(&[file("prod.yaml", text)]),
            [
                "policies/prod.yaml: missing field `max_duration`",
                "policies/prod.yaml: missing field `approvers`",
                "policies/prod.yaml: missing field `roles`",
            ]
        );
    }

    #[test]
    fn reports_every_problem_of_every_file_at_once() {
        let bad = GOOD
            .replace("provider: noop", "provider: gcp-magic")
            .replace("approvers: [\"@acme/sre-leads\", carol]", "approvers: []")
            .replace("max_duration: 1h", "max_duration: 8h")
            .replace("^(INC|CHG)-[0-9]+$", "^(INC|CHG-[0-9]+$");
        let problems = messages(&[
            file("prod.yaml", &bad),
            file("staging.yaml", "environment: staging\nroles: {}\n"),
        ]);
        let expected = [
            "policies/prod.yaml: approvers is empty: nobody could approve or review; list users or `@org/team`",
            "policies/prod.yaml: approvals is 1 but only 0 approver(s) are listed: no request could ever be approved",
            "policies/prod.yaml: role `admin`: unknown provider `gcp-magic`; use aws-iam, iac or noop",
            "policies/prod.yaml: fast_path `sev1`: max_duration 8h is above the policy's max_duration 4h",
        ];
        for want in expected {
            assert!(
                problems.iter().any(|p| p == want),
                "missing {want:?} in {problems:#?}"
            );
        }
        assert!(problems.iter().any(|p| p.starts_with("policies/prod.yaml: ticket_pattern `^(INC|CHG-[0-9]+$` is not a valid regular expression")), "{problems:#?}");
        for key in ["max_duration", "requesters", "approvers"] {
            let want = format!("policies/staging.yaml: missing field `{key}`");
            assert!(problems.contains(&want), "{want} in {problems:#?}");
        }
        assert_eq!(problems.len(), 8, "{problems:#?}");
    }

    #[test]
    fn duplicate_environments_and_misnamed_files_are_reported() {
        let problems = messages(&[file("prod.yaml", GOOD), file("production.yaml", GOOD)]);
        assert!(problems.contains(&"policies/production.yaml: environment `prod` is already defined by policies/prod.yaml".to_owned()), "{problems:#?}");
        assert!(problems.contains(&"policies/production.yaml: environment `prod` must be defined in a file named `prod.yaml`, not `production`".to_owned()), "{problems:#?}");
    }

    #[test]
    fn parse_errors_carry_line_and_column() {
        let problems = lint(&[file(
            "prod.yaml",
            "environment: prod\nmax_duration: 4 hours\n",
        )]);
        assert_eq!(problems.len(), 4, "the bad value, then each missing key");
        assert_eq!(problems[0].line, Some(2));
        assert!(problems[0].column.is_some());
        assert!(
            problems[0].message.contains("`4 hours` is not a duration"),
            "{}",
            problems[0]
        );
    }

    #[test]
    fn an_aws_role_names_exactly_one_of_a_managed_policy_and_an_inline_document() {
        let aws = |permissions: &str| {
            GOOD.replace(
                "    provider: noop",
                &format!(
                    "    provider: aws-iam\n    account: \"123456789012\"\n    principal: \"arn:aws:iam::123456789012:role/bg-{{{{ requester }}}}\"{permissions}"
                ),
            )
        };
        let inline = "\n    policy:\n      Version: \"2012-10-17\"\n      Statement:\n        - Effect: Allow\n          Action: [\"s3:GetObject\"]\n          Resource: \"*\"";
        let managed = "\n    policy_arn: arn:aws:iam::aws:policy/ReadOnlyAccess";
        assert_eq!(
            messages(&[file("prod.yaml", &aws(inline))]),
            Vec::<String>::new()
        );
        assert_eq!(
            messages(&[file("prod.yaml", &aws(managed))]),
            Vec::<String>::new()
        );
        let exactly_one = "policies/prod.yaml: role `admin`: provider aws-iam needs exactly one of `policy_arn` (a managed policy) and `policy` (an inline document)";
        assert_eq!(messages(&[file("prod.yaml", &aws(""))]), [exactly_one]);
        assert_eq!(
            messages(&[file("prod.yaml", &aws(&format!("{managed}{inline}")))]),
            [exactly_one]
        );
        let old_version = aws(&inline.replace("2012-10-17", "2008-10-17"));
        let problems = messages(&[file("prod.yaml", &old_version)]);
        assert!(
            problems.len() == 1 && problems[0].contains("policy: `Version` is `2008-10-17`"),
            "{problems:#?}"
        );
    }

    #[test]
    fn provider_keys_are_checked() {
        let text = GOOD.replace(
            "    provider: noop",
            "    provider: aws-iam\n    account: 12345\n    template: x.tf\n    policy_arn: AdministratorAccess",
        );
        let problems = messages(&[file("prod.yaml", &text)]);
        for want in [
            "policies/prod.yaml: role `admin`: `template` is a key of provider iac, not aws-iam",
            "policies/prod.yaml: role `admin`: account `12345` is not a 12-digit AWS account id (quote it in YAML)",
            "policies/prod.yaml: role `admin`: policy_arn `AdministratorAccess` is not an IAM policy ARN (arn:aws:iam::aws:policy/<name> or arn:aws:iam::<account>:policy/<name>)",
        ] {
            assert!(
                problems.iter().any(|p| p == want),
                "missing {want:?} in {problems:#?}"
            );
        }
        let iac = GOOD.replace("    provider: noop", "    provider: iac");
        assert_eq!(
            messages(&[file("prod.yaml", &iac)]),
            [
                "policies/prod.yaml: role `admin`: provider iac needs `template`, the grant template to render"
            ]
        );
    }

    #[test]
    fn an_iac_output_of_unknown_format_is_reported() {
        let iac = |output: &str| {
            GOOD.replace(
                "    provider: noop",
                &format!("    provider: iac\n    template: iac/t.j2\n    output: \"{output}\""),
            )
        };
        for fine in [
            "grants/{{ id }}.tf",
            "grants/{{ id }}.tf.json",
            "k8s/{{ environment }}/{{ id }}.yaml",
        ] {
            assert_eq!(
                messages(&[file("prod.yaml", &iac(fine))]),
                Vec::<String>::new()
            );
        }
        assert_eq!(
            messages(&[file("prod.yaml", &iac("grants/{{ id }}.txt"))]),
            [
                "policies/prod.yaml: role `admin`: output `grants/{{ id }}.txt` has no extension whose format breakglass can escape values for; end it in .tf or .hcl (HCL), .yaml or .yml (YAML), or .json (JSON)"
            ]
        );
    }

    #[test]
    fn unconditional_fast_paths_and_unknown_reactions_are_refused() {
        let text = GOOD
            .replace(
                "    labels_any: [sev1]\n    requesters: [\"@acme/oncall\"]\n",
                "",
            )
            .replace(
                "approval_reactions: [\"+1\"]",
                "approval_reactions: [\"+1\", thumbsup]",
            );
        let problems = messages(&[file("prod.yaml", &text)]);
        assert!(
            problems
                .iter()
                .any(|p| p.contains("fast_path `sev1` has neither labels_any nor requesters")),
            "{problems:#?}"
        );
        assert!(
            problems
                .iter()
                .any(|p| p.contains("approval_reactions: `thumbsup` is not a reaction")),
            "{problems:#?}"
        );
    }

    #[test]
    fn environments_named_like_commands_are_refused() {
        let text = GOOD.replace("environment: prod", "environment: status");
        let problems = messages(&[file("status.yaml", &text)]);
        assert_eq!(
            problems,
            [
                "policies/status.yaml: environment `status` is also a command word, so `/breakglass status 1h` could never request it; rename it"
            ]
        );
    }

    #[test]
    fn default_above_max_and_duplicates_are_reported() {
        let text = GOOD
            .replace("default_duration: 1h", "default_duration: 5h")
            .replace("[\"@acme/sre\", alice]", "[alice, Alice]");
        let problems = messages(&[file("prod.yaml", &text)]);
        assert!(
            problems.contains(
                &"policies/prod.yaml: default_duration 5h is above max_duration 4h".to_owned()
            ),
            "{problems:#?}"
        );
        assert!(
            problems
                .contains(&"policies/prod.yaml: requesters: `Alice` is listed twice".to_owned()),
            "{problems:#?}"
        );
    }
}
