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

/// Whether `value` is valid against `schema`, for the keywords the generated schemas use
/// (`$ref` into `$defs`, `anyOf`, `type`, `pattern`, `minLength`, `maxLength`, `properties`,
/// `required`, `additionalProperties: false`). An unknown keyword fails the check, so the
/// helper cannot pass a schema it does not understand.
fn valid(root: &serde_json::Value, schema: &serde_json::Value, value: &serde_json::Value) -> bool {
    use serde_json::Value;
    let schema = schema.as_object().expect("a schema is an object");
    let mut ok = true;
    for (key, rule) in schema {
        ok &= match key.as_str() {
            "$schema" | "$id" | "title" | "description" | "examples" | "$defs" => true,
            "$ref" => {
                let name = rule.as_str().unwrap().strip_prefix("#/$defs/").unwrap();
                valid(root, &root["$defs"][name], value)
            }
            "anyOf" => rule
                .as_array()
                .unwrap()
                .iter()
                .any(|s| valid(root, s, value)),
            "type" => {
                let types: Vec<&str> = match rule {
                    Value::String(t) => vec![t.as_str()],
                    Value::Array(ts) => ts.iter().map(|t| t.as_str().unwrap()).collect(),
                    _ => panic!("type {rule}"),
                };
                types.iter().any(|t| match *t {
                    "string" => value.is_string(),
                    "integer" => value.is_i64() || value.is_u64(),
                    "number" => value.is_number(),
                    "boolean" => value.is_boolean(),
                    "null" => value.is_null(),
                    "object" => value.is_object(),
                    "array" => value.is_array(),
                    other => panic!("type {other}"),
                })
            }
            "pattern" => value.as_str().is_none_or(|text| {
                regex::Regex::new(rule.as_str().unwrap())
                    .unwrap()
                    .is_match(text)
            }),
            "minLength" => value
                .as_str()
                .is_none_or(|t| t.chars().count() as u64 >= rule.as_u64().unwrap()),
            "maxLength" => value
                .as_str()
                .is_none_or(|t| t.chars().count() as u64 <= rule.as_u64().unwrap()),
            "properties" => value.as_object().is_none_or(|fields| {
                fields
                    .iter()
                    .all(|(name, field)| rule.get(name).is_none_or(|s| valid(root, s, field)))
            }),
            "required" => value.as_object().is_none_or(|fields| {
                rule.as_array()
                    .unwrap()
                    .iter()
                    .all(|name| fields.contains_key(name.as_str().unwrap()))
            }),
            "additionalProperties" => {
                assert_eq!(rule, &Value::Bool(false), "additionalProperties {rule}");
                value.as_object().is_none_or(|fields| {
                    fields
                        .keys()
                        .all(|name| schema["properties"].get(name).is_some())
                })
            }
            other => panic!("the schema check does not know `{other}`"),
        };
    }
    ok
}

/// README: "A number where text belongs (`ticket: 1234`) is read as its text." An editor's
/// schema check must take what the bot takes, and still refuse what it refuses.
#[test]
fn the_request_schema_takes_a_numeric_ticket_as_the_bot_does() {
    let schema: serde_json::Value = serde_json::from_str(&breakglass::schema::request()).unwrap();
    let with_ticket = |ticket: &str| {
        format!(
            "environment: prod\nrole: admin\nduration: 1h\nreason: x\nticket: {ticket}\nrequester: alice\n"
        )
    };
    for ticket in ["1234", "1.50", "-7", "INC-1234", "\"1234\""] {
        let yaml = with_ticket(ticket);
        let request = breakglass::request::AccessRequest::from_yaml(&yaml)
            .unwrap_or_else(|e| panic!("{ticket}: {e}"));
        assert_eq!(request.ticket.unwrap().as_str(), ticket.trim_matches('"'));
        let value: serde_json::Value = serde_saphyr::from_str(&yaml).unwrap();
        assert!(
            valid(&schema, &schema, &value),
            "the bot takes `ticket: {ticket}`, the schema refuses it: {:#}",
            schema["$defs"]["Ticket"]
        );
    }
    for ticket in ["\"INC 1234\"", "[1234]"] {
        let yaml = with_ticket(ticket);
        assert!(
            breakglass::request::AccessRequest::from_yaml(&yaml).is_err(),
            "{ticket}"
        );
        let value: serde_json::Value = serde_saphyr::from_str(&yaml).unwrap();
        assert!(
            !valid(&schema, &schema, &value),
            "the schema takes `ticket: {ticket}`"
        );
    }
}
