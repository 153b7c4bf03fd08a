//! GitHub: the REST client, webhook verification and payload parsing.

pub mod client;
mod reaction_etags;
pub mod webhook;

pub use client::{GithubAuth, GithubClient};
