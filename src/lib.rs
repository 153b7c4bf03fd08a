//! breakglass: temporary, audited access to infrastructure through pull requests.
//!
//! The library holds everything but the command line: the request and policy models, the
//! decision engine, the slash-command parser, and (in later modules) the service.

// The service's futures nest deep (a delivery, its comment's commands, a request opened by
// one, the AWS SDK's calls under them): proving them `Send` takes more than the default 128.
#![recursion_limit = "256"]

/// A regex compiled once, from a literal.
macro_rules! regex {
    ($re:literal) => {{
        static RE: std::sync::LazyLock<regex::Regex> =
            std::sync::LazyLock::new(|| regex::Regex::new($re).expect("valid literal regex"));
        &*RE
    }};
}

pub mod audit;
pub mod check;
pub mod clock;
pub mod command;
pub mod comment;
pub mod config;
pub mod database_clock;
pub mod demo;
pub mod duration;
pub mod failures;
pub mod forge;
#[doc(hidden)]
pub mod fuzzing;
pub mod grant;
pub mod metrics;
pub mod names;
pub mod policy;
pub mod request;
pub mod schema;
pub mod secret;
pub mod server;
pub mod service;
pub mod store;
pub mod workflow;
pub mod yaml;
