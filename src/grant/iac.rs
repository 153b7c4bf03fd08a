//! The `iac` provider: a grant file rendered from a minijinja template (`template:` of the
//! role, under the bot's templates directory) to `output:` in the requests repo.
//!
//! Every `{{ value }}` is escaped for the grant file's format (see [`super::escape`]), which
//! the output path's extension names; templates put each value inside a double-quoted string.
//! The output path is rendered from the same values, which may only use `[A-Za-z0-9._/-]`.

use std::path::Path;

use minijinja::syntax::SyntaxConfig;
use minijinja::value::Value;
use minijinja::{Environment, Error, ErrorKind, Output, State};

use super::escape::{FileFormat, is_path_safe};
use super::{GrantError, GrantSpec, RenderedFile};
use crate::policy::Role;

/// Where a grant file goes when the role does not say.
pub const DEFAULT_OUTPUT: &str = "grants/{{ environment }}/{{ id }}.tf";

/// Renders the role's grant file for `spec`.
pub fn render(
    templates_dir: &Path,
    role: &Role,
    spec: &GrantSpec,
) -> Result<RenderedFile, GrantError> {
    let name = role
        .template
        .as_deref()
        .ok_or_else(|| GrantError::Misconfigured("iac role without `template`".into()))?;
    check_template_name(name).map_err(GrantError::Misconfigured)?;
    let source = std::fs::read_to_string(templates_dir.join(name)).map_err(|err| {
        GrantError::Misconfigured(format!("cannot read template `{name}`: {err}"))
    })?;
    let path = render_path(role.output.as_deref().unwrap_or(DEFAULT_OUTPUT), spec)?;
    let format = FileFormat::of_path(&path)
        .map_err(|why| GrantError::Misconfigured(format!("output {why}")))?;
    let content = render_with(&source, spec, move |out, _, value| {
        out.write_str(&format.escape(&text_of(value)))?;
        Ok(())
    })
    .map_err(|err| GrantError::Misconfigured(format!("cannot render template `{name}`: {err}")))?;
    Ok(RenderedFile { path, content })
}

/// A template is named by a path inside the bot's templates directory.
pub fn check_template_name(name: &str) -> Result<(), String> {
    if name.contains("..") || name.starts_with('/') {
        return Err(format!(
            "template `{name}` must be a path inside the templates directory"
        ));
    }
    Ok(())
}

/// Whether an `output:` renders to a usable path, tried on a request as the comment form
/// makes them (the policy linter's check, before any grant depends on it): a value outside
/// the path alphabet (a `reason`), an unknown value, broken template syntax, a path among
/// requests or policies or outside the repo, or an extension of no known format fail here.
pub fn check_output(output: &str, environment: &str, role: &str) -> Result<(), String> {
    let sample = GrantSpec {
        id: format!("20261126-0214-alice-{environment}"),
        environment: environment.to_owned(),
        role: role.to_owned(),
        requester: "alice".into(),
        reason: "incident: INC-1 checkout DB failover".into(),
        ticket: Some("INC-1".into()),
        duration: "1h".into(),
        expires_at: super::NOT_YET_GRANTED.into(),
    };
    FileFormat::of_path(output).map_err(|why| format!("output {why}"))?;
    render_path(output, &sample)
        .map(|_| ())
        .map_err(|err| match err {
            GrantError::Misconfigured(why) => why,
            other => other.to_string(),
        })
}

/// The output path for `spec`, refusing values outside the path alphabet and paths that would
/// land among requests or policies, or outside the repo.
fn render_path(template: &str, spec: &GrantSpec) -> Result<String, GrantError> {
    let path = render_with(template, spec, |out, _, value| {
        let text = text_of(value);
        if !is_path_safe(&text) {
            return Err(Error::new(
                ErrorKind::InvalidOperation,
                format!(
                    "the value `{}` may not be part of a path: only letters, digits, `.`, `_`, `/` and `-` are allowed",
                    text.escape_debug()
                ),
            ));
        }
        out.write_str(&text)?;
        Ok(())
    })
    .map_err(|err| GrantError::Misconfigured(format!("cannot render output path: {err}")))?;
    if path.starts_with("requests/")
        || path.starts_with("policies/")
        || path.contains("..")
        || path.starts_with('/')
    {
        return Err(GrantError::Misconfigured(format!(
            "output `{path}` must not be under requests/ or policies/ nor leave the repo"
        )));
    }
    Ok(path)
}

/// Renders `template` with `values` (a [`GrantSpec`] here; the aws-iam principal has its own
/// narrower set), each `{{ … }}` written by `formatter`. The formatter sees every value,
/// `| safe` ones included: no template can opt out of escaping.
pub(super) fn render_with<S, F>(template: &str, values: &S, formatter: F) -> Result<String, Error>
where
    S: serde::Serialize,
    F: Fn(&mut Output, &mut State, &Value) -> Result<(), Error> + Send + Sync + 'static,
{
    let mut env = Environment::new();
    env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
    // A grant file ends with a newline like any source file; a path has none to keep.
    env.set_syntax(
        SyntaxConfig::builder()
            .keep_trailing_newline(true)
            .build()?,
    );
    env.set_formatter(formatter);
    env.render_str(template, minijinja::value::Serde(values))
}

/// The text of a value as the template shows it; an absent optional value (a request without
/// a ticket) is the empty string rather than minijinja's `none`.
pub(super) fn text_of(value: &Value) -> String {
    if value.is_none() {
        String::new()
    } else {
        value.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> GrantSpec {
        GrantSpec {
            id: "20261126-0214-alice-prod".into(),
            environment: "prod".into(),
            role: "dns".into(),
            requester: "alice".into(),
            reason: "incident: INC-1".into(),
            ticket: Some("INC-1".into()),
            duration: "1h".into(),
            expires_at: String::new(),
        }
    }

    fn role(template: &str, output: Option<&str>) -> Role {
        Role {
            provider: "iac".into(),
            description: None,
            account: None,
            principal: None,
            policy_arn: None,
            policy: None,
            template: Some(template.into()),
            output: output.map(Into::into),
        }
    }

    #[test]
    fn renders_the_shipped_example_template() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("templates");
        let file = render(&dir, &role("iac/aws-role-policy.tf.j2", None), &spec()).unwrap();
        assert_eq!(file.path, "grants/prod/20261126-0214-alice-prod.tf");
        assert!(file.content.contains("\"alice\""), "{}", file.content);
        assert!(
            file.content.contains("20261126-0214-alice-prod"),
            "{}",
            file.content
        );
    }

    #[test]
    fn refuses_escaping_paths_and_missing_templates() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("templates");
        assert!(render(&dir, &role("../Cargo.toml", None), &spec()).is_err());
        assert!(render(&dir, &role("iac/missing.j2", None), &spec()).is_err());
        let err = render(
            &dir,
            &role("iac/aws-role-policy.tf.j2", Some("requests/x.yaml")),
            &spec(),
        )
        .unwrap_err();
        assert!(
            err.to_string().contains("must not be under requests/"),
            "{err}"
        );
    }

    /// A template in a fresh directory, for the cases the shipped ones do not show.
    fn template_dir(source: &str) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("t.j2"), source).unwrap();
        dir
    }

    #[test]
    fn an_output_of_unknown_format_is_refused() {
        let dir = template_dir("reason = \"{{ reason }}\"\n");
        for output in [
            "grants/{{ id }}.txt",
            "grants/{{ id }}",
            "grants/{{ id }}.TF",
        ] {
            let err = render(dir.path(), &role("t.j2", Some(output)), &spec()).unwrap_err();
            assert!(
                matches!(err, GrantError::Misconfigured(_))
                    && err.to_string().contains(".tf or .hcl"),
                "{output}: {err}"
            );
        }
    }

    #[test]
    fn path_values_outside_the_path_alphabet_are_refused() {
        let dir = template_dir("x = 1\n");
        let mut spec = spec();
        spec.requester = "al ice\"".into();
        let err = render(
            dir.path(),
            &role("t.j2", Some("grants/{{ requester }}.tf")),
            &spec,
        )
        .unwrap_err();
        assert!(
            err.to_string().contains("may not be part of a path"),
            "{err}"
        );
    }

    #[test]
    fn safe_does_not_switch_escaping_off_and_none_is_empty() {
        let dir = template_dir("a = \"{{ reason | safe }}\"\nb = \"{{ ticket }}\"\n");
        let mut spec = spec();
        spec.reason = "x\"\ny".into();
        spec.ticket = None;
        let file = render(dir.path(), &role("t.j2", None), &spec).unwrap();
        assert_eq!(file.content, "a = \"x\\\"\\ny\"\nb = \"\"\n");
    }
}
