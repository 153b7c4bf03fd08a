//! GitHub: the REST client, webhook verification and payload parsing.

pub mod client;
pub mod webhook;

pub use client::{GithubAuth, GithubClient};
