//! Grant files rendered from hostile request values, read back with real parsers: whatever
//! the reason says, the file holds exactly the resources its template defines, and the
//! reason comes back as the very string the requester wrote.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use breakglass::grant::iac::render;
use breakglass::grant::{GrantSpec, RenderedFile};
use breakglass::policy::Role;
use hcl::eval::{Context, Evaluate};
use hcl::{Block, Body, Expression, ObjectKey, Template};
use serde::Deserialize;

/// A reason that tries to close its string and write a resource of its own.
const BREAKOUT: &str = "x\"\n}\nresource \"aws_iam_user\" \"evil\" {\n  name = \"mallory\"\n}\n#";

/// Reasons that each try one way out of a quoted string, plus all of them at once.
fn hostile_reasons() -> Vec<String> {
    let pieces = [
        BREAKOUT,
        "${file(\"/etc/passwd\")}",
        "%{ if true }x%{ endif }",
        "$${already escaped} and %%{this}",
        r"C:\temp\new back\slashes and a literal \n",
        "unicode: é 漢字 🚨 \u{202E}reversed\u{202C} \u{2028} tab\there",
        "---\nkind: Secret\n...\n--- !!binary |\n",
        "ends in a dollar $",
        "{starts with a brace",
        "100%",
    ];
    let mut reasons: Vec<String> = pieces.iter().map(|p| (*p).to_owned()).collect();
    reasons.push(pieces.join(" "));
    reasons
}

fn spec(reason: &str) -> GrantSpec {
    GrantSpec {
        id: "20261126-0214-alice-prod".into(),
        environment: "prod".into(),
        role: "dns".into(),
        requester: "alice".into(),
        reason: reason.into(),
        ticket: Some("INC-1".into()),
        duration: "1h".into(),
        expires_at: String::new(),
    }
}

fn role(template: &str, output: &str) -> Role {
    Role {
        provider: "iac".into(),
        description: None,
        account: None,
        principal: None,
        policy_arn: None,
        policy: None,
        template: Some(template.into()),
        output: Some(output.into()),
    }
}

fn shipped() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("templates")
}

#[track_caller]
fn render_shipped(template: &str, output: &str, spec: &GrantSpec) -> RenderedFile {
    render(&shipped(), &role(template, output), spec)
        .unwrap_or_else(|err| panic!("{template} for {:?}: {err}", spec.reason))
}

/// Renders `source` (a template of the test's own) to `output`.
#[track_caller]
fn render_own(source: &str, output: &str, spec: &GrantSpec) -> RenderedFile {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("t.j2"), source).unwrap();
    render(dir.path(), &role("t.j2", output), spec).unwrap()
}

/// The blocks of a parsed HCL body, as `type label label…`.
fn block_heads(body: &Body) -> Vec<String> {
    body.blocks()
        .map(|b: &Block| {
            std::iter::once(b.identifier().to_owned())
                .chain(b.labels().iter().map(|l| l.as_str().to_owned()))
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect()
}

/// The value of `key` in an HCL object expression.
fn object_value<'a>(expr: &'a Expression, key: &str) -> &'a Expression {
    let Expression::Object(object) = expr else {
        panic!("not an object: {expr:?}");
    };
    object
        .iter()
        .find(|(k, _)| matches!(k, ObjectKey::Identifier(id) if id.as_str() == key))
        .map(|(_, v)| v)
        .unwrap_or_else(|| panic!("no `{key}` in {object:?}"))
}

#[test]
fn a_reason_cannot_add_a_terraform_resource_and_reads_back_exactly() {
    for reason in hostile_reasons() {
        let file = render_shipped(
            "iac/terraform-group-membership.tf.j2",
            "grants/{{ environment }}/{{ id }}.tf",
            &spec(&reason),
        );
        let body = hcl::parse(&file.content)
            .unwrap_or_else(|err| panic!("{reason:?} broke the file: {err}\n{}", file.content));
        assert_eq!(
            block_heads(&body),
            [
                "resource aws_iam_user_group_membership breakglass_20261126_0214_alice_prod",
                "resource terraform_data breakglass_20261126_0214_alice_prod_request",
            ],
            "{reason:?}:\n{}",
            file.content
        );
        assert_eq!(body.attributes().count(), 0, "{}", file.content);
        let record = body.blocks().nth(1).unwrap();
        let input = record
            .body()
            .attributes()
            .find(|a| a.key() == "input")
            .expect("the request record has an input");
        // A plain string, not a template: nothing in it interpolates, `$${` reads as `${`.
        assert_eq!(
            object_value(input.expr(), "reason"),
            &Expression::String(reason.clone()),
            "{}",
            file.content
        );
        let membership = body.blocks().next().unwrap();
        let user = membership.body().attributes().find(|a| a.key() == "user");
        assert_eq!(
            user.map(|a| a.expr().clone()),
            Some(Expression::String("alice".into()))
        );
    }
}

#[test]
fn adjacent_values_cannot_meet_into_an_hcl_interpolation() {
    let mut spec = spec("cost: 5$");
    spec.ticket = Some("{file(\"/etc/passwd\")}".into());
    let file = render_own(
        "x = \"{{ reason }}{{ ticket }}\"\ny = \"{{ ticket }}%\"\n",
        "grants/{{ id }}.hcl",
        &spec,
    );
    let body = hcl::parse(&file.content).unwrap();
    let value = |key: &str| {
        body.attributes()
            .find(|a| a.key() == key)
            .map(|a| a.expr().clone())
    };
    assert_eq!(
        value("x"),
        Some(Expression::String("cost: 5${file(\"/etc/passwd\")}".into())),
        "{}",
        file.content
    );
    assert_eq!(
        value("y"),
        Some(Expression::String("{file(\"/etc/passwd\")}%".into()))
    );
}

/// The parts of a RoleBinding the template writes; unknown fields are an error, so an
/// injected key would fail the parse.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RoleBinding {
    api_version: String,
    kind: String,
    metadata: Metadata,
    role_ref: BTreeMap<String, String>,
    subjects: Vec<BTreeMap<String, String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Metadata {
    name: String,
    namespace: String,
    annotations: BTreeMap<String, String>,
}

#[test]
fn a_reason_stays_one_annotation_of_one_kubernetes_document() {
    for reason in hostile_reasons() {
        let file = render_shipped(
            "iac/k8s-rolebinding.yaml.j2",
            "k8s/{{ environment }}/{{ id }}.yaml",
            &spec(&reason),
        );
        let documents: Vec<RoleBinding> = serde_saphyr::from_multiple(&file.content)
            .unwrap_or_else(|err| panic!("{reason:?} broke the file: {err}\n{}", file.content));
        assert_eq!(documents.len(), 1, "{reason:?}:\n{}", file.content);
        let binding = &documents[0];
        assert_eq!(
            (binding.api_version.as_str(), binding.kind.as_str()),
            ("rbac.authorization.k8s.io/v1", "RoleBinding")
        );
        assert_eq!(binding.metadata.name, "breakglass-20261126-0214-alice-prod");
        assert_eq!(binding.metadata.namespace, "prod");
        assert_eq!(
            binding.metadata.annotations.get("breakglass.dev/reason"),
            Some(&reason),
            "{}",
            file.content
        );
        assert_eq!(binding.metadata.annotations.len(), 4);
        assert_eq!(
            binding.role_ref.get("name").map(String::as_str),
            Some("dns")
        );
        assert_eq!(binding.subjects.len(), 1);
        assert_eq!(
            binding.subjects[0].get("name").map(String::as_str),
            Some("alice")
        );
    }
}

#[test]
fn a_reason_stays_one_string_of_the_json_record() {
    for reason in hostile_reasons() {
        let file = render_shipped(
            "iac/grant.json.j2",
            "grants/{{ environment }}/{{ id }}.json",
            &spec(&reason),
        );
        let record: serde_json::Value = serde_json::from_str(&file.content)
            .unwrap_or_else(|err| panic!("{reason:?} broke the file: {err}\n{}", file.content));
        let object = record.as_object().expect("one JSON object");
        assert_eq!(
            object.keys().map(String::as_str).collect::<Vec<_>>(),
            [
                "duration",
                "environment",
                "reason",
                "request",
                "requester",
                "role",
                "ticket"
            ]
        );
        assert_eq!(object["reason"], serde_json::Value::String(reason.clone()));
        assert_eq!(object["requester"], "alice");
    }
}

#[test]
fn terraform_json_strings_evaluate_to_the_reason_itself() {
    let source = "{\"resource\": {\"terraform_data\": {\"request\": {\"input\": \"{{ reason }}{{ ticket }}\"}}}}\n";
    for reason in hostile_reasons() {
        let mut spec = spec(&reason);
        spec.ticket = Some("{x}$".into());
        let file = render_own(source, "grants/{{ id }}.tf.json", &spec);
        let record: serde_json::Value = serde_json::from_str(&file.content)
            .unwrap_or_else(|err| panic!("{reason:?} broke the file: {err}\n{}", file.content));
        let resources = record["resource"]["terraform_data"].as_object().unwrap();
        assert_eq!(resources.len(), 1, "{}", file.content);
        // Terraform reads the decoded string as a template; evaluated with no variables and no
        // functions at all, it must give back the text as written.
        let text = resources["request"]["input"].as_str().unwrap();
        let template: Template = text.parse().unwrap();
        assert_eq!(
            template.evaluate(&Context::new()).unwrap(),
            format!("{reason}{{x}}$"),
            "{text}"
        );
    }
}
