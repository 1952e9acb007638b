//! One retry policy for every provider that retries (Doppler, Pulumi ESC, GCP) and for the
//! engine's scheduler: exponential backoff with jitter, capped, honouring a server's
//! `Retry-After`, bounded in attempts and optionally in total time.
//!
//! The jitter is "equal jitter": a random wait in `[d/2, d]` where `d = base · 2^attempt`,
//! capped at `cap`. Full jitter (`[0, d]`) spreads retries slightly more but may retry at
//! once; the half floor keeps a throttled provider from being asked again immediately.

use std::time::Duration;

use rand::Rng;

/// How to retry a failed call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// The first wait (before jitter).
    pub base: Duration,
    /// The longest wait (before jitter).
    pub cap: Duration,
    /// Retries after the first attempt.
    pub max_retries: u32,
    /// A server asking to wait longer than this is not waited for: the call fails with
    /// its throttling error (and the engine's scheduler retries the spec later).
    pub max_retry_after: Duration,
    /// No retry starts after this much time since the first attempt.
    pub total: Option<Duration>,
}

impl Default for Backoff {
    /// 200 ms doubling to 5 s, 3 retries, `Retry-After` up to 30 s, no total limit.
    fn default() -> Self {
        Self {
            base: Duration::from_millis(200),
            cap: Duration::from_secs(5),
            max_retries: 3,
            max_retry_after: Duration::from_secs(30),
            total: None,
        }
    }
}

impl Backoff {
    /// The wait before retry number `attempt` (0 for the first retry): random in `[d/2, d]`,
    /// `d = base · 2^attempt ≤ cap`.
    pub fn delay(&self, attempt: u32) -> Duration {
        let d = self.base.saturating_mul(1u32 << attempt.min(16)).min(self.cap);
        let half = d / 2;
        let jitter = rand::rng().random_range(0..=half.as_micros().max(1) as u64);
        half + Duration::from_micros(jitter)
    }

    /// After failed attempt `attempt` (0-based), `elapsed` since the first: how long to wait
    /// before the next, or `None` to give up (out of retries, or the server asks for more
    /// than [`max_retry_after`](Self::max_retry_after), or the wait would pass
    /// [`total`](Self::total)). A `retry_after` from the server is waited as asked.
    pub fn wait(&self, attempt: u32, retry_after: Option<Duration>, elapsed: Duration) -> Option<Duration> {
        if attempt >= self.max_retries {
            return None;
        }
        let wait = match retry_after {
            Some(ra) if ra > self.max_retry_after => return None,
            Some(ra) => ra,
            None => self.delay(attempt),
        };
        match self.total {
            Some(t) if elapsed + wait > t => None,
            _ => Some(wait),
        }
    }
}

/// An HTTP `Retry-After` value in seconds (integer or decimal). An HTTP date is not
/// honoured (`None`): the backoff applies instead.
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    let v = value.trim();
    v.parse::<u64>().ok().map(Duration::from_secs).or_else(|| {
        v.parse::<f64>()
            .ok()
            .filter(|s| s.is_finite() && *s >= 0.0 && *s < 1e9)
            .map(Duration::from_secs_f64)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_are_capped_and_keep_a_floor() {
        let b = Backoff {
            base: Duration::from_millis(100),
            cap: Duration::from_millis(400),
            ..Backoff::default()
        };
        for attempt in 0..20 {
            let d = b.delay(attempt);
            let full = Duration::from_millis(100 * (1 << attempt.min(2)));
            assert!(d <= full && d >= full / 2, "attempt {attempt}: {d:?}");
        }
    }

    #[test]
    fn gives_up_when_out_of_retries_time_or_patience() {
        let b = Backoff {
            max_retries: 2,
            max_retry_after: Duration::from_secs(10),
            total: Some(Duration::from_secs(15)),
            ..Backoff::default()
        };
        assert!(b.wait(0, None, Duration::ZERO).is_some());
        assert!(b.wait(2, None, Duration::ZERO).is_none(), "out of retries");
        assert_eq!(
            b.wait(0, Some(Duration::from_secs(3)), Duration::ZERO),
            Some(Duration::from_secs(3))
        );
        assert!(
            b.wait(0, Some(Duration::from_secs(11)), Duration::ZERO).is_none(),
            "asks too much"
        );
        assert!(
            b.wait(1, Some(Duration::from_secs(3)), Duration::from_secs(13))
                .is_none(),
            "past the total"
        );
    }

    #[test]
    fn parses_retry_after_seconds_not_dates() {
        assert_eq!(parse_retry_after("3"), Some(Duration::from_secs(3)));
        assert_eq!(parse_retry_after(" 1.5 "), Some(Duration::from_millis(1500)));
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"), None);
        assert_eq!(parse_retry_after("-1"), None);
    }
}
