//! AWS errors sorted by what the caller should do: retry (throttled, transient), or stop and
//! tell someone (denied, misconfigured). The SDK's own retries are off (see
//! [`super::AwsProvider`]): the job queue is the one retry layer, with its backoff.

use aws_sdk_iam::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};

use crate::grant::GrantError;

/// Error codes by what they mean for breakglass. Anything not listed is transient: a revoke
/// must never be dropped because AWS answered something new.
const THROTTLED: &[&str] = &[
    "Throttling",
    "ThrottlingException",
    "RequestLimitExceeded",
    "TooManyRequestsException",
];
const DENIED: &[&str] = &[
    "AccessDenied",
    "AccessDeniedException",
    "UnauthorizedOperation",
    "InvalidClientTokenId",
    "SignatureDoesNotMatch",
];
const MISCONFIGURED: &[&str] = &[
    "NoSuchEntity",
    "LimitExceeded",
    "MalformedPolicyDocument",
    "InvalidInput",
    "ValidationError",
    "UnmodifiableEntity",
    "PolicyNotAttachable",
    "PackedPolicyTooLarge",
    "RegionDisabledException",
];

/// What an AWS error code asks of the caller.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Throttled,
    Denied,
    Misconfigured,
    Transient,
}

/// The kind of a service error code; `None` (no response from AWS) is transient.
pub fn kind_of(code: Option<&str>) -> Kind {
    match code {
        Some(code) if THROTTLED.contains(&code) => Kind::Throttled,
        Some(code) if DENIED.contains(&code) => Kind::Denied,
        Some(code) if MISCONFIGURED.contains(&code) => Kind::Misconfigured,
        _ => Kind::Transient,
    }
}

/// Whether AWS said the thing acted on does not exist (revoking it is then already done).
pub fn is_no_such_entity<E: ProvideErrorMetadata, R>(err: &SdkError<E, R>) -> bool {
    err.code() == Some("NoSuchEntity")
}

/// `err` of the call `what` (e.g. "PutRolePolicy breakglass-r-1 on arn:…") as a
/// [`GrantError`]. The message holds AWS's code and message, never a credential.
pub fn classify<E, R>(what: &str, err: SdkError<E, R>) -> GrantError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug,
{
    let message = match (err.code(), err.message()) {
        (Some(code), Some(message)) => format!("{what}: {code}: {message}"),
        (Some(code), None) => format!("{what}: {code}"),
        _ => format!("{what}: {}", DisplayErrorContext(&err)),
    };
    // An endpoint or proxy may echo the request's credentials in what it answers.
    from_kind(kind_of(err.code()), crate::secret::scrub(&message))
}

/// The [`GrantError`] of `kind` saying `message`.
pub fn from_kind(kind: Kind, message: String) -> GrantError {
    match kind {
        Kind::Throttled => GrantError::Throttled(message),
        Kind::Denied => GrantError::Denied(message),
        Kind::Misconfigured => GrantError::Misconfigured(message),
        Kind::Transient => GrantError::Transient(message),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_sort_into_what_the_caller_should_do() {
        assert_eq!(kind_of(Some("Throttling")), Kind::Throttled);
        assert_eq!(kind_of(Some("AccessDenied")), Kind::Denied);
        assert_eq!(kind_of(Some("NoSuchEntity")), Kind::Misconfigured);
        assert_eq!(kind_of(Some("LimitExceeded")), Kind::Misconfigured);
        assert_eq!(
            kind_of(Some("MalformedPolicyDocument")),
            Kind::Misconfigured
        );
        assert_eq!(kind_of(Some("ServiceFailure")), Kind::Transient);
        assert_eq!(kind_of(Some("SomethingNew")), Kind::Transient);
        assert_eq!(kind_of(None), Kind::Transient);
    }

    #[test]
    fn only_throttled_and_transient_errors_are_retried() {
        let retried = |kind| from_kind(kind, "x".into()).is_retryable();
        assert!(retried(Kind::Throttled));
        assert!(retried(Kind::Transient));
        assert!(!retried(Kind::Denied));
        assert!(!retried(Kind::Misconfigured));
    }
}
