//! The `iac` provider: a grant file rendered from a minijinja template (`template:` of the
//! role, under the bot's templates directory) to `output:` in the requests repo.

use std::path::Path;

use minijinja::Environment;

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
    if name.contains("..") || name.starts_with('/') {
        return Err(GrantError::Misconfigured(format!(
            "template `{name}` must be a path inside the templates directory"
        )));
    }
    let source = std::fs::read_to_string(templates_dir.join(name)).map_err(|err| {
        GrantError::Misconfigured(format!("cannot read template `{name}`: {err}"))
    })?;
    let mut env = Environment::new();
    env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
    let render = |template: &str, what: &str| {
        env.render_str(template, minijinja::value::Serde(spec))
            .map_err(|err| GrantError::Misconfigured(format!("cannot render {what}: {err}")))
    };
    let content = render(&source, &format!("template `{name}`"))?;
    let path = render(
        role.output.as_deref().unwrap_or(DEFAULT_OUTPUT),
        "output path",
    )?;
    if path.starts_with("requests/")
        || path.starts_with("policies/")
        || path.contains("..")
        || path.starts_with('/')
    {
        return Err(GrantError::Misconfigured(format!(
            "output `{path}` must not be under requests/ or policies/ nor leave the repo"
        )));
    }
    Ok(RenderedFile { path, content })
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
            template: Some(template.into()),
            output: output.map(Into::into),
        }
    }

    #[test]
    fn renders_the_shipped_example_template() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("templates");
        let file = render(
            &dir,
            &role("iac/terraform-group-membership.tf.j2", None),
            &spec(),
        )
        .unwrap();
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
            &role(
                "iac/terraform-group-membership.tf.j2",
                Some("requests/x.yaml"),
            ),
            &spec(),
        )
        .unwrap_err();
        assert!(
            err.to_string().contains("must not be under requests/"),
            "{err}"
        );
    }
}
