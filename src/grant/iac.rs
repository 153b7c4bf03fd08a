//! The `iac` provider: a grant file rendered from a minijinja template (`template:` of the
//! role, under the bot's templates directory) to `output:` in the requests repo.
//!
//! Every `{{ value }}` is escaped for the grant file's format (see [`super::escape`]), which
//! the output path's extension names; templates put each value inside a double-quoted string.
//! The output path is rendered from the same values, which may only use `[A-Za-z0-9._/-]`.
//! Names the cloud identifies a grant by come from `{{ id | resource_name }}` (see
//! [`resource_name`]), never from the id reshaped by hand.

use std::collections::BTreeSet;
use std::path::Path;

use minijinja::syntax::SyntaxConfig;
use minijinja::value::Value;
use minijinja::{Environment, Error, ErrorKind, Output, State};
use sha2::{Digest, Sha256};

use super::escape::{FileFormat, is_path_safe};
use super::{GrantError, GrantSpec, RenderedFile};
use crate::policy::{PolicySet, Role};

/// Where a grant file goes when the role does not say.
pub const DEFAULT_OUTPUT: &str = "grants/{{ environment }}/{{ id }}.tf";

/// The directory grant files are under whatever the policies say: [`DEFAULT_OUTPUT`]'s.
pub const GRANTS_ROOT: &str = "grants/";

/// Where grant files live, each root ending in `/`: [`GRANTS_ROOT`], and the fixed directory
/// part of every role's `output` (`k8s/` for `k8s/{{ environment }}/{{ id }}.yaml`). `None`
/// (policies that cannot be read) leaves [`GRANTS_ROOT`] alone. One computation for the bot,
/// which removes files that land there without it, and the audit, which flags them.
pub fn grant_roots(policies: Option<&PolicySet>) -> BTreeSet<String> {
    let outputs = policies
        .into_iter()
        .flat_map(PolicySet::iter)
        .flat_map(|policy| policy.roles.values())
        .filter_map(|role| role.output.as_deref());
    let mut roots = BTreeSet::from([GRANTS_ROOT.to_owned()]);
    roots.extend(outputs.filter_map(output_root));
    roots
}

/// The directory an `output:` renders under before its first value (`k8s/` for
/// `k8s/{{ environment }}/{{ id }}.yaml`); `None` when a value comes first or it names no
/// directory.
fn output_root(output: &str) -> Option<String> {
    let fixed = output.split("{{").next().unwrap_or_default();
    let (dir, _) = fixed.rsplit_once('/')?;
    (!dir.is_empty()).then(|| format!("{dir}/"))
}

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

/// A request as the comment form makes them, for trying a role's templates before any grant
/// depends on them.
fn sample_spec(environment: &str, role: &str) -> GrantSpec {
    GrantSpec {
        id: format!("20261126-0214-alice-{environment}"),
        environment: environment.to_owned(),
        role: role.to_owned(),
        requester: "alice".into(),
        reason: "incident: INC-1 checkout DB failover".into(),
        ticket: Some("INC-1".into()),
        duration: "1h".into(),
        expires_at: super::NOT_YET_GRANTED.into(),
    }
}

/// Whether role `name`'s template is in `templates_dir` and renders a sample request (the
/// linter's check with the bot's templates at hand).
pub fn check_template(
    templates_dir: &Path,
    role: &Role,
    environment: &str,
    name: &str,
) -> Result<(), String> {
    render(templates_dir, role, &sample_spec(environment, name))
        .map(|_| ())
        .map_err(|err| match err {
            GrantError::Misconfigured(why) => why,
            other => other.to_string(),
        })
}

/// Whether an `output:` renders to a usable path, tried on a request as the comment form
/// makes them (the policy linter's check, before any grant depends on it): a value outside
/// the path alphabet (a `reason`), an unknown value, broken template syntax, a path among
/// requests or policies or outside the repo, or an extension of no known format fail here.
pub fn check_output(output: &str, environment: &str, role: &str) -> Result<(), String> {
    let sample = sample_spec(environment, role);
    FileFormat::of_path(output).map_err(|why| format!("output {why}"))?;
    // Grant files that land without breakglass (a hand merge, a direct push, a rewrite) are
    // found under that directory: an output that starts with a value has none to watch.
    if output_root(output).is_none() {
        return Err(format!(
            "output `{}` must start with a fixed directory before any `{{{{ value }}}}` (as `grants/{{{{ environment }}}}/{{{{ id }}}}.tf`): breakglass watches it for grant files that land without it",
            output.escape_debug()
        ));
    }
    render_path(output, &sample)
        .map(|_| ())
        .map_err(|err| match err {
            GrantError::Misconfigured(why) => why,
            other => other.to_string(),
        })
}

/// The output path for `spec`, refusing values outside the path alphabet and paths that would
/// land among requests or policies, or outside the repo (see [`check_path`]).
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
    check_path(&path).map_err(GrantError::Misconfigured)?;
    // A value must not change what kind of file it is: an id `inc-7.tf` would turn the JSON
    // record `{{ id }}.json` into Terraform's `inc-7.tf.json`, read as configuration.
    if let (Ok(declared), Ok(rendered)) =
        (FileFormat::of_path(template), FileFormat::of_path(&path))
        && declared != rendered
    {
        return Err(GrantError::Misconfigured(format!(
            "the grant file `{path}` would be read as {rendered:?}, not as the output's {declared:?}: a value (the request id) ends like a file extension"
        )));
    }
    Ok(path)
}

/// The top directories of the requests repo that hold the requests and policies themselves:
/// a grant file there would be read as one of them.
const RESERVED_DIRS: [&str; 2] = ["requests", "policies"];

/// Whether a rendered output path names a file of the repo outside [`RESERVED_DIRS`], judged
/// by its components rather than its text: `./requests/x` and `a/../requests/x` are refused,
/// while `inc-1..tf` (the id `inc-1.` and `.tf`) is one ordinary file name. Only plain
/// components are accepted, so the first one is the top directory the file lands in.
fn check_path(path: &str) -> Result<(), String> {
    if path.starts_with('/') {
        return Err(format!(
            "output `{path}` must be relative to the repo, not an absolute path"
        ));
    }
    for component in path.split('/') {
        if component.is_empty() {
            return Err(format!(
                "output `{path}` must not have an empty component (`//`, or a trailing `/`)"
            ));
        }
        if component == "." || component == ".." {
            return Err(format!(
                "output `{path}` must not have a `{component}` component: it may leave the repo \
                 or hide where the file lands"
            ));
        }
    }
    // Compared without case: a checkout on a case-insensitive file system (macOS, Windows)
    // puts `Requests/` in the same directory as `requests/`.
    let top = path.split('/').next().unwrap_or_default();
    if let Some(dir) = RESERVED_DIRS.iter().find(|d| d.eq_ignore_ascii_case(top)) {
        return Err(format!(
            "output `{path}` must not be under requests/ or policies/: `{top}/` is where the \
             {dir} themselves are"
        ));
    }
    Ok(())
}

/// Kubernetes' limit on an object name or label value (RFC 1123 label), the strictest place
/// a [`resource_name`] goes.
const RESOURCE_NAME_MAX: usize = 63;

/// What every [`resource_name`] starts with: a letter, as Terraform labels and RFC 1123 names
/// need, and the owner of the resource for whoever reads it in the cloud.
const RESOURCE_NAME_PREFIX: &str = "breakglass-";

/// `{{ id | resource_name }}`: a name for the resources of one grant, unique per exact id and
/// valid as a Terraform label, a Kubernetes object name, an IAM policy name and a GCP
/// condition title: `breakglass-<slug>-<8 hex>`.
///
/// Ids are unique only exactly (`INC-1`, `inc-1`, `inc_1` and `inc.1` are four requests), and
/// no alphabet all those places accept can spell them all apart, so the readable slug may be
/// shared and the 8 hex digits of the id's SHA-256 tell them apart.
fn resource_name(id: &str) -> String {
    let digest = Sha256::digest(id.as_bytes());
    let hash = hex::encode(&digest[..4]);
    let room = RESOURCE_NAME_MAX - RESOURCE_NAME_PREFIX.len() - 1 - hash.len();
    match slug(id, room) {
        slug if slug.is_empty() => format!("{RESOURCE_NAME_PREFIX}{hash}"),
        slug => format!("{RESOURCE_NAME_PREFIX}{slug}-{hash}"),
    }
}

/// `text` lowercased to `[a-z0-9-]`, each run of other characters one `-`, at most `max`
/// characters, without a `-` at either end (so the name it goes into has no `--` either).
fn slug(text: &str, max: usize) -> String {
    let mut slug = String::new();
    for c in text.chars() {
        if c.is_ascii_alphanumeric() {
            slug.push(c.to_ascii_lowercase());
        } else if !slug.is_empty() && !slug.ends_with('-') {
            slug.push('-');
        }
    }
    // All ASCII by now, so any length is a character boundary.
    slug.truncate(max);
    slug.trim_end_matches('-').to_owned()
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
    // Here rather than in `render` so the policy linter's `check_output` knows it too.
    env.add_filter("resource_name", |value: Value| {
        resource_name(&text_of(&value))
    });
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

    #[test]
    fn output_paths_are_judged_by_their_components() {
        for (path, why) in [
            ("/etc/grants/x.tf", "not an absolute path"),
            ("grants//x.tf", "empty component"),
            ("grants/x/", "empty component"),
            ("./grants/x.tf", "a `.` component"),
            ("grants/./x.tf", "a `.` component"),
            ("grants/../x.tf", "a `..` component"),
            ("grants//../requests/x.yaml", "empty component"),
            (
                "requests/prod/r-1.yaml",
                "`requests/` is where the requests",
            ),
            ("Policies/prod.yaml", "`Policies/` is where the policies"),
        ] {
            let err = check_path(path).unwrap_err();
            assert!(err.contains(why), "{path}: {err}");
        }
        for path in [
            "grants/prod/inc-1..tf",
            "grants/requests/x.tf",
            "requests.d/x.tf",
            "grants/...tf",
            "x.tf",
        ] {
            assert_eq!(check_path(path), Ok(()), "{path}");
        }
    }

    #[test]
    fn a_dotted_id_renders_the_default_output_and_a_dot_slash_one_is_refused() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("templates");
        let mut spec = spec();
        spec.id = "inc-1.".into();
        let file = render(&dir, &role("iac/aws-role-policy.tf.j2", None), &spec).unwrap();
        assert_eq!(file.path, "grants/prod/inc-1..tf");
        for output in [
            "./requests/{{ environment }}/{{ id }}.yaml",
            "./policies/{{ environment }}.yaml",
        ] {
            let err = render(
                &dir,
                &role("iac/aws-role-policy.tf.j2", Some(output)),
                &spec,
            )
            .unwrap_err();
            assert!(err.to_string().contains("a `.` component"), "{err}");
        }
    }

    #[test]
    fn resource_names_keep_a_readable_slug_and_the_exact_id_apart() {
        assert_eq!(
            resource_name("20261126-0214-alice-prod"),
            "breakglass-20261126-0214-alice-prod-0b8b6dd7"
        );
        assert_eq!(resource_name("inc-1"), "breakglass-inc-1-186608b2");
        assert_eq!(resource_name("inc_1"), "breakglass-inc-1-d5701cf0");
        assert_eq!(resource_name("INC-1"), "breakglass-inc-1-c1bcc963");
        assert_eq!(
            resource_name("inc.-_1_"),
            format!("breakglass-inc-1-{}", &hash8("inc.-_1_"))
        );
        assert_eq!(resource_name("__"), format!("breakglass-{}", hash8("__")));
    }

    /// The first 8 hex digits of the SHA-256 of `text`.
    fn hash8(text: &str) -> String {
        hex::encode(Sha256::digest(text.as_bytes()))[..8].to_owned()
    }

    #[test]
    fn a_long_id_is_cut_to_63_characters_ending_in_its_hash() {
        let id = format!("{}-{}", "a".repeat(42), "b".repeat(57));
        let name = resource_name(&"x".repeat(100));
        assert_eq!(name.len(), 63, "{name}");
        assert_eq!(
            name,
            format!("breakglass-{}-{}", "x".repeat(43), hash8(&"x".repeat(100)))
        );
        // Cut right after a separator, the slug drops it rather than end the name in `--`.
        assert_eq!(
            resource_name(&id),
            format!("breakglass-{}-{}", "a".repeat(42), hash8(&id))
        );
    }

    #[test]
    fn templates_can_use_resource_name_on_any_value() {
        let dir = template_dir(
            "a = \"{{ id | resource_name }}\"\nb = \"{{ ticket | resource_name }}\"\n",
        );
        let mut spec = spec();
        spec.ticket = None;
        let file = render(dir.path(), &role("t.j2", None), &spec).unwrap();
        assert_eq!(
            file.content,
            format!(
                "a = \"breakglass-20261126-0214-alice-prod-0b8b6dd7\"\nb = \"breakglass-{}\"\n",
                hash8("")
            )
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
    fn a_value_that_changes_the_files_format_is_refused() {
        let dir = template_dir("{\"reason\": \"{{ reason }}\"}\n");
        let mut spec = spec();
        spec.id = "inc-7.tf".into();
        let role = role("t.j2", Some("grants/{{ environment }}/{{ id }}.json"));
        let err = render(dir.path(), &role, &spec).unwrap_err();
        assert!(
            err.to_string()
                .contains("would be read as TerraformJson, not as the output's Json"),
            "{err}"
        );
        spec.id = "inc-7.x".into();
        assert!(
            render(dir.path(), &role, &spec).is_ok(),
            "another dotted id is fine"
        );
    }

    #[test]
    fn an_output_without_a_fixed_directory_first_is_refused() {
        for output in [
            "{{ environment }}/grants/{{ id }}.tf",
            "top-{{ id }}.tf",
            "grants-{{ environment }}/{{ id }}.tf",
            "{{ id }}.tf",
        ] {
            let err = check_output(output, "prod", "admin").unwrap_err();
            assert!(
                err.contains("must start with a fixed directory"),
                "{output}: {err}"
            );
        }
        for output in ["grants/{{ environment }}/{{ id }}.tf", "k8s/{{ id }}.yaml"] {
            assert_eq!(check_output(output, "prod", "admin"), Ok(()), "{output}");
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

    /// A policy set of one `network` policy whose iac roles render to `outputs`.
    fn policies_with_outputs(outputs: &[&str]) -> PolicySet {
        let mut text = "environment: network\nmax_duration: 2h\nrequesters: [alice]\napprovers: [carol]\nroles:\n".to_owned();
        for (n, output) in outputs.iter().enumerate() {
            text.push_str(&format!(
                "  r{n}:\n    provider: iac\n    template: iac/t.tf.j2\n    output: \"{output}\"\n"
            ));
        }
        let file = crate::policy::PolicyFile {
            path: "policies/network.yaml".into(),
            text,
        };
        PolicySet::from_files(&[file]).unwrap()
    }

    #[test]
    fn grant_roots_are_grants_and_the_fixed_directory_of_every_output() {
        let policies = policies_with_outputs(&[
            "k8s/{{ environment }}/{{ id }}.yaml",
            "infra/grants/{{ id }}.tf",
            "grants/{{ environment }}/{{ id }}.tf",
        ]);
        assert_eq!(
            grant_roots(Some(&policies)),
            BTreeSet::from(["grants/", "infra/grants/", "k8s/"].map(String::from))
        );
        assert_eq!(
            grant_roots(None),
            BTreeSet::from([GRANTS_ROOT.to_owned()]),
            "unreadable policies: grants/ alone"
        );
    }
}
