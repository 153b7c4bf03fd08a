//! GitHub: the REST client, webhook verification and payload parsing.

pub mod added_file;
pub mod client;
pub mod webhook;

pub use client::{GithubAuth, GithubClient};
