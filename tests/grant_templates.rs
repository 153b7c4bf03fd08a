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

/// `id | resource_name` of the tests' request: the id's slug and the first 8 hex digits of the
/// SHA-256 of `20261126-0214-alice-prod`.
const NAME: &str = "breakglass-20261126-0214-alice-prod-0b8b6dd7";

/// The instant the tests' grants expire at.
const EXPIRES: &str = "2026-12-02T05:00:00Z";

/// The shipped Terraform templates: (template, resource type each grants with, labels of the
/// blocks a render holds).
const TERRAFORM: [(&str, &str); 3] = [
    ("iac/aws-role-policy.tf.j2", "aws_iam_role_policy"),
    (
        "iac/gcp-project-iam-member.tf.j2",
        "google_project_iam_member",
    ),
    (
        "iac/azure-pim-role-assignment.tf.j2",
        "azurerm_pim_active_role_assignment",
    ),
];

fn render_tf(template: &str, spec: &GrantSpec) -> (RenderedFile, Body) {
    let file = render_shipped(template, "grants/{{ environment }}/{{ id }}.tf", spec);
    let body = hcl::parse(&file.content).unwrap_or_else(|err| {
        panic!(
            "{template}: {:?} broke the file: {err}\n{}",
            spec.reason, file.content
        )
    });
    (file, body)
}

/// The one block `kind name` of `body`.
#[track_caller]
fn resource<'a>(body: &'a Body, kind: &str) -> &'a Block {
    let found: Vec<&Block> = body
        .blocks()
        .filter(|b| b.identifier() == "resource" && b.labels()[0].as_str() == kind)
        .collect();
    assert_eq!(found.len(), 1, "one {kind} in {body:?}");
    found[0]
}

/// The expression of attribute `key` of `block`.
#[track_caller]
fn attribute<'a>(block: &'a Block, key: &str) -> &'a Expression {
    block
        .body()
        .attributes()
        .find(|a| a.key() == key)
        .map(|a| a.expr())
        .unwrap_or_else(|| panic!("no `{key}` in {block:?}"))
}

/// The one nested block `name` of `block`.
#[track_caller]
fn nested<'a>(block: &'a Block, name: &str) -> &'a Block {
    block
        .body()
        .blocks()
        .find(|b| b.identifier() == name)
        .unwrap_or_else(|| panic!("no `{name}` block in {block:?}"))
}

#[test]
fn a_reason_cannot_add_a_terraform_resource_to_any_shipped_template() {
    for (template, kind) in TERRAFORM {
        let expected = {
            let (_, body) = render_tf(template, &spec("plain"));
            block_heads(&body)
        };
        assert!(
            expected
                .iter()
                .any(|h| h.starts_with(&format!("resource {kind} "))),
            "{template}: {expected:?}"
        );
        for reason in hostile_reasons() {
            let (file, body) = render_tf(template, &spec(&reason));
            assert_eq!(
                block_heads(&body),
                expected,
                "{reason:?}:\n{}",
                file.content
            );
            assert_eq!(body.attributes().count(), 0, "{}", file.content);
        }
    }
}

#[test]
fn the_aws_request_record_reads_back_the_reason_exactly() {
    for reason in hostile_reasons() {
        let (file, body) = render_tf("iac/aws-role-policy.tf.j2", &spec(&reason));
        let input = attribute(resource(&body, "terraform_data"), "input");
        // A plain string, not a template: nothing in it interpolates, `$${` reads as `${`.
        assert_eq!(
            object_value(input, "reason"),
            &Expression::String(reason.clone()),
            "{}",
            file.content
        );
    }
}

#[test]
fn the_azure_justification_reads_back_the_reason_exactly() {
    for reason in hostile_reasons() {
        let (file, body) = render_tf("iac/azure-pim-role-assignment.tf.j2", &spec(&reason));
        let assignment = resource(&body, "azurerm_pim_active_role_assignment");
        assert_eq!(
            attribute(assignment, "justification"),
            &Expression::String(format!("breakglass 20261126-0214-alice-prod: {reason}")),
            "{}",
            file.content
        );
    }
}

/// `spec` with the tests' expiry, as the merge renders it.
fn expiring(reason: &str) -> GrantSpec {
    let mut spec = spec(reason);
    spec.expires_at = EXPIRES.into();
    spec
}

/// Evaluates an HCL expression as Terraform would for the AWS template: `var` holds the
/// repo's one variable and `jsonencode` encodes JSON.
fn evaluate_aws(expr: &Expression) -> serde_json::Value {
    let mut ctx = Context::new();
    ctx.declare_var(
        "var",
        hcl::value!({ breakglass_actions = { "prod/dns" = ["route53:ChangeResourceRecordSets"] } }),
    );
    ctx.declare_func(
        "jsonencode",
        hcl::eval::FuncDef::builder()
            .param(hcl::eval::ParamType::Any)
            .build(|args| {
                serde_json::to_string(&args[0])
                    .map(hcl::Value::String)
                    .map_err(|e| e.to_string())
            }),
    );
    let hcl::Value::String(json) = expr.evaluate(&ctx).expect("the policy evaluates") else {
        panic!("jsonencode gives a string");
    };
    serde_json::from_str(&json).expect("the policy is JSON")
}

#[test]
fn the_aws_policy_allows_only_until_the_expiry_in_aws_terms() {
    let (file, body) = render_tf("iac/aws-role-policy.tf.j2", &expiring("incident"));
    let policy_block = resource(&body, "aws_iam_role_policy");
    assert_eq!(
        attribute(policy_block, "name"),
        &Expression::String(NAME.into())
    );
    assert_eq!(
        attribute(policy_block, "role"),
        &Expression::String("breakglass-alice".into())
    );
    let policy = evaluate_aws(attribute(policy_block, "policy"));
    let statements = policy["Statement"].as_array().expect("statements");
    assert!(!statements.is_empty(), "{}", file.content);
    for statement in statements {
        if statement["Effect"] == "Allow" {
            assert_eq!(
                statement["Condition"]["DateLessThan"]["aws:CurrentTime"], EXPIRES,
                "every Allow ends at the expiry: {policy}"
            );
        }
    }
    assert_eq!(
        statements[0]["Action"],
        serde_json::json!(["route53:ChangeResourceRecordSets"])
    );
    // IAM's inline quota is 10,240 characters per role (whitespace excluded).
    let size = policy
        .to_string()
        .chars()
        .filter(|c| !c.is_whitespace())
        .count();
    assert!(size < 2_048, "{size} characters: {policy}");
}

#[test]
fn the_gcp_binding_holds_only_while_request_time_is_before_the_expiry() {
    let (file, body) = render_tf("iac/gcp-project-iam-member.tf.j2", &expiring("incident"));
    let member = resource(&body, "google_project_iam_member");
    let condition = nested(member, "condition");
    assert_eq!(
        attribute(condition, "expression"),
        &Expression::String(format!("request.time < timestamp(\"{EXPIRES}\")")),
        "{}",
        file.content
    );
    assert_eq!(
        attribute(condition, "title"),
        &Expression::String(NAME.into())
    );
}

#[test]
fn the_azure_assignment_is_scheduled_to_end_at_the_expiry() {
    let (file, body) = render_tf("iac/azure-pim-role-assignment.tf.j2", &expiring("incident"));
    let assignment = resource(&body, "azurerm_pim_active_role_assignment");
    let expiration = nested(nested(assignment, "schedule"), "expiration");
    assert_eq!(
        attribute(expiration, "end_date_time"),
        &Expression::String(EXPIRES.into()),
        "{}",
        file.content
    );
}

#[test]
fn before_the_merge_every_shipped_grant_file_is_already_expired() {
    // Rendered for the PR, before breakglass fixes the expiry: merged any other way, the file
    // grants nothing.
    let mut before = spec("incident");
    before.expires_at = breakglass::grant::NOT_YET_GRANTED.into();
    let (_, aws) = render_tf("iac/aws-role-policy.tf.j2", &before);
    let policy = evaluate_aws(attribute(resource(&aws, "aws_iam_role_policy"), "policy"));
    assert_eq!(
        policy["Statement"][0]["Condition"]["DateLessThan"]["aws:CurrentTime"],
        "1970-01-01T00:00:00Z"
    );
    let (_, gcp) = render_tf("iac/gcp-project-iam-member.tf.j2", &before);
    let condition = nested(resource(&gcp, "google_project_iam_member"), "condition");
    assert_eq!(
        attribute(condition, "expression"),
        &Expression::String("request.time < timestamp(\"1970-01-01T00:00:00Z\")".into())
    );
    let (_, azure) = render_tf("iac/azure-pim-role-assignment.tf.j2", &before);
    let assignment = resource(&azure, "azurerm_pim_active_role_assignment");
    assert_eq!(
        attribute(
            nested(nested(assignment, "schedule"), "expiration"),
            "end_date_time"
        ),
        &Expression::String("1970-01-01T00:00:00Z".into())
    );
}

#[test]
fn two_overlapping_grants_render_independent_resources() {
    // The same person, role and environment twice: removing one file must leave the other's
    // access, so nothing the cloud identifies a grant by may be shared.
    let first = expiring("incident");
    let mut second = expiring("incident");
    second.id = "20261126-0230-alice-prod".into();
    second.expires_at = "2026-12-02T06:00:00Z".into();
    for (template, kind) in TERRAFORM {
        let (a, body_a) = render_tf(template, &first);
        let (b, body_b) = render_tf(template, &second);
        assert_ne!(a.path, b.path);
        let (ra, rb) = (resource(&body_a, kind), resource(&body_b, kind));
        assert_ne!(
            ra.labels(),
            rb.labels(),
            "{template}: Terraform addresses differ"
        );
        let identity = |block: &Block| -> Vec<Expression> {
            match kind {
                "aws_iam_role_policy" => vec![attribute(block, "name").clone()],
                "google_project_iam_member" => {
                    vec![attribute(nested(block, "condition"), "title").clone()]
                }
                _ => vec![attribute(block, "justification").clone()],
            }
        };
        assert_ne!(
            identity(ra),
            identity(rb),
            "{template}:\n{}\n{}",
            a.content,
            b.content
        );
    }
}

#[test]
fn every_shipped_template_matches_its_golden_file() {
    let spec = expiring("incident: INC-1 \"dns\" is down ${oops}");
    for (template, output) in [
        (
            "iac/aws-role-policy.tf.j2",
            "grants/{{ environment }}/{{ id }}.tf",
        ),
        (
            "iac/gcp-project-iam-member.tf.j2",
            "grants/{{ environment }}/{{ id }}.tf",
        ),
        (
            "iac/azure-pim-role-assignment.tf.j2",
            "grants/{{ environment }}/{{ id }}.tf",
        ),
        (
            "iac/k8s-rolebinding.yaml.j2",
            "k8s/{{ environment }}/{{ id }}.yaml",
        ),
        (
            "iac/grant.json.j2",
            "grants/{{ environment }}/{{ id }}.json",
        ),
    ] {
        let file = render_shipped(template, output, &spec);
        let name = template.trim_start_matches("iac/").replace('.', "_");
        insta::assert_snapshot!(name, format!("# {}\n{}", file.path, file.content));
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
    #[allow(dead_code)] // present and a string map, or the parse fails
    labels: BTreeMap<String, String>,
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
        assert_eq!(binding.metadata.name, NAME);
        assert_eq!(binding.metadata.namespace, "prod");
        assert_eq!(
            binding.metadata.annotations.get("breakglass.dev/reason"),
            Some(&reason),
            "{}",
            file.content
        );
        assert_eq!(binding.metadata.annotations.len(), 5);
        assert_eq!(
            binding
                .metadata
                .annotations
                .get("breakglass.dev/expires-at"),
            Some(&String::new())
        );
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
                "expires_at",
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

/// `kubernetes-validate` (PyPI; scripts/test installs it into .venv-moto), or `None` with a
/// loud skip when it is not there.
fn kubernetes_validate() -> Option<PathBuf> {
    match std::env::var_os("BREAKGLASS_KUBERNETES_VALIDATE") {
        Some(path) => Some(PathBuf::from(path)),
        None => {
            eprintln!(
                "SKIPPED kubernetes-validate: set BREAKGLASS_KUBERNETES_VALIDATE (scripts/test installs it)"
            );
            None
        }
    }
}

#[test]
fn rendered_role_bindings_pass_the_kubernetes_schemas_strictly() {
    let specs: Vec<GrantSpec> = hostile_reasons().iter().map(|r| expiring(r)).collect();
    role_bindings_pass_strictly(&specs);
}

/// Renders the shipped RoleBinding template for each spec and checks every file with the real
/// Kubernetes schemas (`kubernetes-validate --strict`); skipped when it is not installed.
fn role_bindings_pass_strictly(specs: &[GrantSpec]) {
    let Some(validate) = kubernetes_validate() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let mut files = Vec::new();
    for (i, spec) in specs.iter().enumerate() {
        let file = render_shipped(
            "iac/k8s-rolebinding.yaml.j2",
            "k8s/{{ environment }}/{{ id }}.yaml",
            spec,
        );
        let path = dir.path().join(format!("{i}.yaml"));
        std::fs::write(&path, &file.content).unwrap();
        files.push(path);
    }
    let out = std::process::Command::new(&validate)
        .arg("--strict")
        .args(&files)
        .output()
        .unwrap_or_else(|err| panic!("{}: {err}", validate.display()));
    let report =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{report}");
    assert_eq!(report.matches("passed").count(), files.len(), "{report}");
}

#[test]
fn kubernetes_validate_rejects_a_broken_role_binding() {
    // The check above is only worth something if the validator refuses what Kubernetes would.
    let Some(validate) = kubernetes_validate() else {
        return;
    };
    let file = render_shipped(
        "iac/k8s-rolebinding.yaml.j2",
        "k8s/{{ environment }}/{{ id }}.yaml",
        &expiring("incident"),
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("broken.yaml");
    std::fs::write(&path, file.content.replace("roleRef:", "roleReference:")).unwrap();
    let out = std::process::Command::new(&validate)
        .arg("--strict")
        .arg(&path)
        .output()
        .unwrap();
    assert!(!out.status.success());
}

/// Ids that are different requests, though they differ only by case or by `-`, `_` and `.`.
const LOOKALIKE_IDS: [&str; 5] = ["inc-1", "inc_1", "inc.1", "INC-1", "Inc_1"];

/// Valid request ids whose resource names are easy to get wrong: a separator at the end or
/// next to another, mixed case, and the longest id there can be.
fn odd_ids() -> Vec<String> {
    let mut ids: Vec<String> = ["inc-1_", "inc.-1", "inc-1-", "Inc_-1", "inc-1."]
        .iter()
        .map(|id| (*id).to_owned())
        .collect();
    ids.push(format!("{}_{}", "A".repeat(60), "b.".repeat(19) + "c"));
    ids.push("9".repeat(100));
    for id in &ids {
        assert!(
            breakglass::names::RequestId::try_from(id.clone()).is_ok(),
            "{id} is a valid request id"
        );
    }
    ids
}

fn spec_with_id(id: &str) -> GrantSpec {
    let mut spec = expiring("incident");
    spec.id = id.into();
    spec
}

/// `type label` of every resource block of `body`: its Terraform addresses.
fn addresses(body: &Body) -> Vec<String> {
    block_heads(body)
        .into_iter()
        .filter_map(|h| h.strip_prefix("resource ").map(str::to_owned))
        .collect()
}

#[test]
fn lookalike_ids_render_distinct_terraform_addresses_and_names() {
    for (template, kind) in TERRAFORM {
        let mut seen: BTreeMap<String, &str> = BTreeMap::new();
        for id in LOOKALIKE_IDS {
            let (file, body) = render_tf(template, &spec_with_id(id));
            let block = resource(&body, kind);
            // Besides the address, what the cloud identifies the grant by, where it is a name.
            let identity = match kind {
                "aws_iam_role_policy" => Some(attribute(block, "name").clone()),
                "google_project_iam_member" => {
                    Some(attribute(nested(block, "condition"), "title").clone())
                }
                _ => None,
            };
            let keys = addresses(&body)
                .into_iter()
                .chain(identity.map(|e| format!("name {e:?}")));
            for key in keys {
                if let Some(other) = seen.insert(key.clone(), id) {
                    panic!(
                        "{template}: `{other}` and `{id}` both render {key}\n{}",
                        file.content
                    );
                }
            }
        }
    }
}

#[test]
fn lookalike_ids_render_distinct_role_bindings() {
    let mut names = BTreeMap::new();
    for id in LOOKALIKE_IDS {
        let binding = role_binding(&spec_with_id(id));
        assert_eq!(binding.metadata.namespace, "prod");
        assert_eq!(
            binding.metadata.annotations.get("breakglass.dev/request"),
            Some(&id.to_owned())
        );
        if let Some(other) = names.insert(binding.metadata.name.clone(), id) {
            panic!(
                "`{other}` and `{id}` are one RoleBinding {}",
                binding.metadata.name
            );
        }
    }
}

/// The one RoleBinding the shipped template renders for `spec`.
#[track_caller]
fn role_binding(spec: &GrantSpec) -> RoleBinding {
    let file = render_shipped(
        "iac/k8s-rolebinding.yaml.j2",
        "k8s/{{ environment }}/{{ id }}.yaml",
        spec,
    );
    let mut documents: Vec<RoleBinding> = serde_saphyr::from_multiple(&file.content)
        .unwrap_or_else(|err| panic!("{}: {err}\n{}", spec.id, file.content));
    assert_eq!(documents.len(), 1, "{}", file.content);
    documents.remove(0)
}

#[test]
fn odd_valid_ids_render_valid_kubernetes_names_and_terraform_labels() {
    // An RFC 1123 label, which every object name (a subdomain, or a path segment) accepts;
    // and Terraform's identifier, which its block labels must be.
    let rfc1123_label = regex::Regex::new(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$").unwrap();
    let terraform_label = regex::Regex::new(r"^[A-Za-z_][A-Za-z0-9_-]*$").unwrap();
    for id in odd_ids() {
        let name = role_binding(&spec_with_id(&id)).metadata.name;
        assert!(rfc1123_label.is_match(&name), "{id} -> {name}");
        assert!(name.starts_with("breakglass-"), "{id} -> {name}");
        for (template, _) in TERRAFORM {
            let (file, body) = render_tf(template, &spec_with_id(&id));
            assert!(file.path.ends_with(&format!("/{id}.tf")), "{}", file.path);
            for address in addresses(&body) {
                let label = address.split(' ').nth(1).unwrap();
                assert!(
                    terraform_label.is_match(label),
                    "{template}: {id} -> {label}"
                );
                assert!(label.len() <= 63, "{template}: {id} -> {label}");
            }
        }
    }
}

#[test]
fn role_bindings_of_odd_ids_pass_the_kubernetes_schemas_strictly() {
    let specs: Vec<GrantSpec> = odd_ids().iter().map(|id| spec_with_id(id)).collect();
    role_bindings_pass_strictly(&specs);
}

#[test]
fn output_paths_are_refused_by_component_not_by_text() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("t.j2"), "x: \"{{ reason }}\"\n").unwrap();
    let attempt = |output: &str, spec: &GrantSpec| render(dir.path(), &role("t.j2", output), spec);
    for (output, why) in [
        (
            "./requests/{{ environment }}/{{ id }}.yaml",
            "a `.` component",
        ),
        ("./policies/{{ environment }}.yaml", "a `.` component"),
        ("grants//../requests/x.yaml", "an empty component"),
        ("grants/../requests/x.yaml", "a `..` component"),
        ("/grants/{{ id }}.yaml", "not an absolute path"),
        (
            "requests/{{ environment }}/{{ id }}.yaml",
            "must not be under requests/",
        ),
        ("REQUESTS/{{ id }}.yaml", "must not be under requests/"),
        (
            "policies/{{ environment }}.yaml",
            "`policies/` is where the policies",
        ),
    ] {
        let err = attempt(output, &spec("incident")).unwrap_err();
        assert!(err.to_string().contains(why), "{output}: {err}");
    }
    // A value in the path alphabet (`.` and `/` are in it) is judged by the same rule.
    let mut hostile = spec("incident");
    hostile.ticket = Some("./requests/prod/victim".into());
    let err = attempt("{{ ticket }}.yaml", &hostile).unwrap_err();
    assert!(err.to_string().contains("a `.` component"), "{err}");
    // An id ending in `.` is an ordinary file name, and so is a top directory merely
    // starting like a reserved one.
    for (output, path) in [
        (
            "grants/{{ environment }}/{{ id }}.yaml",
            "grants/prod/inc-1..yaml",
        ),
        (
            "requests-archive/{{ id }}.yaml",
            "requests-archive/inc-1..yaml",
        ),
        (
            "grants/requests/{{ id }}.yaml",
            "grants/requests/inc-1..yaml",
        ),
    ] {
        let file = attempt(output, &spec_with_id("inc-1.")).unwrap();
        assert_eq!(file.path, path);
    }
}
