//! GitHub: webhook verification and payload parsing (the REST client comes with the service).

pub mod webhook;
