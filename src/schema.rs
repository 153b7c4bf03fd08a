//! JSON Schemas of the request and policy files, generated from the Rust types so they cannot
//! drift (a test compares them with the copies committed under `schemas/`).

use crate::policy::Policy;
use crate::request::AccessRequest;

/// The request file's schema, pretty-printed.
pub fn request() -> String {
    render(schemars::schema_for!(AccessRequest))
}

/// The policy file's schema, pretty-printed.
pub fn policy() -> String {
    render(schemars::schema_for!(Policy))
}

fn render(schema: schemars::Schema) -> String {
    serde_json::to_string_pretty(&schema).expect("a schema serializes")
}
