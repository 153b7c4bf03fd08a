//! The committed JSON Schemas under `schemas/` must be exactly what the Rust types generate,
//! and the example files must be valid against the types. Regenerate with
//! `BREAKGLASS_BLESS=1 cargo test --test schemas`.

use std::path::Path;

fn compare(name: &str, generated: String) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("schemas")
        .join(name);
    let generated = format!("{generated}\n");
    if std::env::var_os("BREAKGLASS_BLESS").is_some() {
        std::fs::write(&path, &generated).unwrap();
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "{} drifted from the Rust types; run `BREAKGLASS_BLESS=1 cargo test --test schemas` and commit it",
        path.display()
    );
}

#[test]
fn request_schema_matches_the_types() {
    compare("request.schema.json", breakglass::schema::request());
}

#[test]
fn policy_schema_matches_the_types() {
    compare("policy.schema.json", breakglass::schema::policy());
}

#[test]
fn schemas_describe_the_fields_people_write() {
    let request: serde_json::Value = serde_json::from_str(&breakglass::schema::request()).unwrap();
    let props = request["properties"].as_object().unwrap();
    for key in [
        "environment",
        "role",
        "duration",
        "reason",
        "ticket",
        "requester",
    ] {
        assert!(props.contains_key(key), "request schema lacks {key}");
    }
    assert_eq!(request["additionalProperties"], false);
    let policy: serde_json::Value = serde_json::from_str(&breakglass::schema::policy()).unwrap();
    let props = policy["properties"].as_object().unwrap();
    for key in [
        "environment",
        "max_duration",
        "default_duration",
        "requesters",
        "approvers",
        "approvals",
        "approval_reactions",
        "reason_codes",
        "ticket_pattern",
        "roles",
        "fast_path",
    ] {
        assert!(props.contains_key(key), "policy schema lacks {key}");
    }
}

#[test]
fn examples_point_editors_at_the_schemas() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for file in [
        "policies/prod.yaml",
        "policies/staging.yaml",
        "examples/requests/prod/20261126-0214-alice-prod.yaml",
    ] {
        let text = std::fs::read_to_string(root.join(file)).unwrap();
        let first = text.lines().next().unwrap();
        let target = first
            .strip_prefix("# yaml-language-server: $schema=")
            .unwrap_or_else(|| panic!("{file}: no schema line"));
        let schema = root.join(file).parent().unwrap().join(target);
        assert!(
            schema.exists(),
            "{file}: {} does not exist",
            schema.display()
        );
    }
}

/// An editor's schema check and the bot must agree on a duration's shape: every part of the
/// pattern is optional, so the schema itself must refuse an empty one.
#[test]
fn the_duration_schema_refuses_what_the_bot_refuses_by_shape() {
    let request: serde_json::Value = serde_json::from_str(&breakglass::schema::request()).unwrap();
    let duration = &request["$defs"]["Duration"];
    let pattern = regex::Regex::new(duration["pattern"].as_str().unwrap()).unwrap();
    let min = duration["minLength"].as_u64().unwrap_or(0) as usize;
    let valid = |text: &str| text.len() >= min && pattern.is_match(text);
    for text in ["90s", "45m", "1h", "1h30m", "2d"] {
        assert!(valid(text), "{text}");
        assert!(
            text.parse::<breakglass::duration::HumanDuration>().is_ok(),
            "{text}"
        );
    }
    for text in ["", "h", "1 h", "1H", "30m1h"] {
        assert!(!valid(text), "the schema takes {text:?}");
        assert!(
            text.parse::<breakglass::duration::HumanDuration>().is_err(),
            "{text:?}"
        );
    }
}
