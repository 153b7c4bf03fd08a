//! Errors from a forge's API, sorted by what the caller should do about them.

use std::time::Duration;

/// A failed forge API call.
#[derive(Clone, Debug, thiserror::Error)]
pub enum ForgeError {
    /// Rate limited (primary or secondary); try again after `retry_after`.
    #[error("{call}: rate limited, retry after {retry_after:?}")]
    RateLimited { call: String, retry_after: Duration },
    /// The forge or the network failed (5xx, timeout, connection reset): worth retrying.
    #[error("{call}: {detail}")]
    Transient { call: String, detail: String },
    /// The forge refused the call; retrying the same call will not help.
    #[error("{call}: HTTP {status}: {message}")]
    Refused {
        call: String,
        status: u16,
        message: String,
    },
    /// The forge answered something we could not read.
    #[error("{call}: unexpected response: {detail}")]
    Decode { call: String, detail: String },
}

impl ForgeError {
    /// Whether trying the same call again may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::RateLimited { .. } | Self::Transient { .. })
    }

    /// The HTTP status of a refusal (404, 409, 422…), for callers that branch on it.
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::Refused { status, .. } => Some(*status),
            _ => None,
        }
    }
}
