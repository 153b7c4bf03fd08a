//! AWS's own time, as the `Date` header of its answers gives it: the revocation's cut of
//! older sessions is compared by IAM with `aws:TokenIssueTime`, AWS's clock, so it is written
//! no earlier than AWS's time (one clock per comparison), not only the bot's.

use std::sync::{Arc, Mutex};

use aws_sdk_iam::config::interceptors::BeforeDeserializationInterceptorContextRef;
use aws_sdk_iam::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_sdk_iam::error::BoxError;
use chrono::{DateTime, TimeDelta, Utc};

/// How far ahead of the bot's clock an answer's `Date` is believed: AWS refuses a request
/// signed more than 15 minutes off its own time, so an answer further ahead is no AWS clock
/// (a proxy's, a misconfigured endpoint's) and is not used: it would deny the principal's
/// sessions of later grants until then.
pub const MOST_AHEAD: TimeDelta = TimeDelta::minutes(15);

/// The `Date` of the provider's latest IAM answer (whole seconds), shared by every client of
/// one provider. The latest, not the largest: one bogus answer is forgotten at the next.
#[derive(Clone, Debug, Default)]
pub struct AwsTime(Arc<Mutex<Option<DateTime<Utc>>>>);

impl AwsTime {
    /// The time the latest answer said, if any came yet.
    pub fn latest(&self) -> Option<DateTime<Utc>> {
        *self
            .0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn saw(&self, at: DateTime<Utc>) {
        *self
            .0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(at);
    }

    /// An interceptor that records the `Date` of each answer into this.
    pub fn recorder(&self) -> DateRecorder {
        DateRecorder(self.clone())
    }
}

/// Records each answer's `Date` header (RFC 7231's IMF-fixdate, read as RFC 2822).
#[derive(Debug)]
pub struct DateRecorder(AwsTime);

impl Intercept for DateRecorder {
    fn name(&self) -> &'static str {
        "breakglass::DateRecorder"
    }

    fn read_after_transmit(
        &self,
        context: &BeforeDeserializationInterceptorContextRef<'_>,
        _components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let date = context.response().headers().get("date");
        if let Some(at) = date.and_then(|d| DateTime::parse_from_rfc2822(d).ok()) {
            self.0.saw(at.with_timezone(&Utc));
        }
        Ok(())
    }
}

/// The instant a revocation cuts sessions at: the bot's `now` rounded up to a whole second,
/// or, when AWS's latest answer (`aws`, whole seconds) says later, the second after it (a
/// session issued in that second, before the cut is written, is cut too). An answer more
/// than [`MOST_AHEAD`] ahead of the bot is not AWS's clock and is left out.
pub fn session_cut(now: DateTime<Utc>, aws: Option<DateTime<Utc>>) -> DateTime<Utc> {
    let whole = now.timestamp();
    let mut at = DateTime::from_timestamp(whole, 0).unwrap_or(now);
    if at < now {
        at += TimeDelta::seconds(1);
    }
    match aws {
        Some(aws) if aws <= now + MOST_AHEAD => at.max(aws + TimeDelta::seconds(1)),
        Some(aws) => {
            tracing::warn!(aws = %aws, bot = %now, "an AWS answer is dated far ahead of the bot's clock; its date is not used");
            at
        }
        None => at,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(text: &str) -> DateTime<Utc> {
        text.parse().unwrap()
    }

    #[test]
    fn the_cut_is_the_later_of_the_bots_second_and_the_second_after_awss_answer() {
        // The bot alone: rounded up to its next whole second, a whole second kept.
        assert_eq!(
            session_cut(t("2026-11-26T02:34:00.5Z"), None),
            t("2026-11-26T02:34:01Z")
        );
        assert_eq!(
            session_cut(t("2026-11-26T03:00:00Z"), None),
            t("2026-11-26T03:00:00Z")
        );
        // AWS 7 s ahead: cut after AWS's second, where IAM compares.
        let aws = Some(t("2026-11-26T03:00:07Z"));
        assert_eq!(
            session_cut(t("2026-11-26T03:00:00Z"), aws),
            t("2026-11-26T03:00:08Z")
        );
        // AWS behind, or its answer older: the bot's own second.
        let aws = Some(t("2026-11-26T02:59:53Z"));
        assert_eq!(
            session_cut(t("2026-11-26T03:00:00Z"), aws),
            t("2026-11-26T03:00:00Z")
        );
        // 10 minutes ahead is still AWS (a signature may be 15 minutes off).
        let ahead = Some(t("2026-11-26T03:10:00Z"));
        assert_eq!(
            session_cut(t("2026-11-26T03:00:00Z"), ahead),
            t("2026-11-26T03:10:01Z")
        );
        // No AWS is further ahead than a signature may be off: a Date an hour ahead is not
        // used at all (it would deny the sessions of a later grant).
        let far = Some(t("2026-11-26T04:00:00Z"));
        assert_eq!(
            session_cut(t("2026-11-26T03:00:00Z"), far),
            t("2026-11-26T03:00:00Z")
        );
    }

    #[test]
    fn the_latest_answer_counts_so_that_a_bogus_one_is_forgotten() {
        let time = AwsTime::default();
        assert_eq!(time.latest(), None);
        time.saw(t("9999-12-31T23:59:59Z"));
        time.saw(t("2026-11-26T03:00:05Z"));
        assert_eq!(time.latest(), Some(t("2026-11-26T03:00:05Z")));
    }
}
