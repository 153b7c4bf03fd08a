//! breakglass: temporary, audited access to infrastructure through pull requests.
//!
//! The library holds everything but the command line: the request and policy models, the
//! decision engine, the slash-command parser, and (in later modules) the service.

pub mod check;
pub mod clock;
pub mod command;
pub mod config;
pub mod duration;
pub mod forge;
pub mod grant;
pub mod names;
pub mod policy;
pub mod request;
pub mod schema;
pub mod secret;
pub mod yaml;
