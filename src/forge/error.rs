//! Errors from a forge's API, sorted by what the caller should do about them.

use std::time::Duration;

use serde::de::DeserializeOwned;

/// A failed forge API call.
#[derive(Clone, Debug, thiserror::Error)]
pub enum ForgeError {
    /// Rate limited (primary or secondary); try again after `retry_after`.
    #[error("{call}: rate limited, retry after {retry_after:?}")]
    RateLimited { call: String, retry_after: Duration },
    /// The forge or the network failed (5xx, timeout, connection reset): worth retrying.
    #[error("{call}: {detail}")]
    Transient { call: String, detail: String },
    /// The forge refused the call; retrying the same call will not help. Status 0: refused
    /// before any call (the configuration or an argument is wrong).
    #[error("{call}: {}", refusal(*status, message))]
    Refused {
        call: String,
        status: u16,
        message: String,
    },
    /// The forge answered something we could not read.
    #[error("{call}: unexpected response: {detail}")]
    Decode { call: String, detail: String },
}

/// A refusal's text: the forge's status and message, or the message alone when no call was made.
fn refusal(status: u16, message: &str) -> String {
    if status == 0 {
        message.to_owned()
    } else {
        format!("HTTP {status}: {message}")
    }
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

/// A body that does not read as `T`.
pub(crate) fn decode<T: DeserializeOwned>(call: &str, body: &str) -> Result<T, ForgeError> {
    serde_json::from_str(body).map_err(|err| ForgeError::Decode {
        call: call.to_owned(),
        detail: err.to_string(),
    })
}

/// A call that got no answer (a connection refused or reset, a timeout). The error's text may
/// name the URL, so it is scrubbed of credentials.
pub(crate) fn transport(call: &str, err: impl std::fmt::Display) -> ForgeError {
    ForgeError::Transient {
        call: call.to_owned(),
        detail: crate::secret::scrub(&err.to_string()),
    }
}
