//! Freshness: the request timestamp must be present, parse in the route's
//! format and lie within `max_skew` of the proxy clock, in both directions;
//! on a route with nonces, [`Fence`]s also refuse timestamps whose nonce
//! records may be missing: from before a memory store forgot its nonces at
//! a restart, or stored under a narrower window before a reload widened it.
//!
//! [`check`] is the entry point. This check is stateless and must never
//! touch the store.

use std::time::Duration;

use http::header::HeaderName;
use http::HeaderMap;
use time::format_description::well_known::Rfc3339;
use time::macros::format_description;
use time::{OffsetDateTime, PrimitiveDateTime};

use super::header_text;
use crate::clock::Clock;
use crate::config::{Freshness, TimestampFormat};
use crate::rejection::Rejection;

/// A timestamp that passed the check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fresh {
    /// The timestamp, milliseconds since the epoch.
    pub millis: i128,
    /// The timestamp rounded up to whole seconds (for nonce expiry).
    pub seconds_ceil: u64,
    /// The rule's skew, whole seconds (for nonce expiry).
    pub max_skew_secs: u64,
}

/// Timestamps whose nonce records may be missing. Timestamps before
/// `seen_until` could have been accepted by an earlier generation of this
/// process whose records of them last only `kept` after the timestamp
/// (`None`: not at all). Such a timestamp is refused as stale once its
/// record may be gone; honest requests, whose timestamps are close to now,
/// are never refused by a reload's fence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fence {
    /// Timestamps before this instant (the proxy clock) are fenced.
    pub seen_until: Duration,
    /// How long after its timestamp an earlier record is kept.
    pub kept: Option<Duration>,
}

impl Fence {
    /// The memory store forgot every nonce at restart: for one skew window
    /// after `started`, a timestamp from before the start could be a replay
    /// the store cannot recognise. Compared in whole seconds (the start
    /// rounded down), so clients signing in the start's own second are not
    /// refused.
    pub fn restart(started: Duration) -> Self {
        Self {
            seen_until: Duration::from_secs(started.as_secs()),
            kept: None,
        }
    }

    /// A reload at `at` widened the route's skew from `old_skew`: the old
    /// generation accepted timestamps up to `at + old_skew` and kept their
    /// nonces for `old_skew` plus the replica margin.
    pub fn widened(at: Duration, old_skew: Duration, margin: Duration) -> Self {
        Self {
            seen_until: at + old_skew,
            kept: Some(old_skew + margin),
        }
    }

    /// Whether the fence can still refuse anything once the window is
    /// `skew` at `now`.
    pub fn is_live(&self, skew: Duration, now: Duration) -> bool {
        now.saturating_sub(skew) < self.seen_until
    }

    fn check(&self, millis: i128, now: Duration) -> Result<(), Rejection> {
        if millis >= self.seen_until.as_millis() as i128 {
            return Ok(());
        }
        match self.kept {
            None => Err(Rejection::StaleTimestamp),
            // One second of slack for the whole-second expiry of records.
            Some(kept) if millis < now.as_millis() as i128 - kept.as_millis() as i128 + 1000 => {
                Err(Rejection::StaleTimestamp)
            }
            Some(_) => Ok(()),
        }
    }
}

/// Parse a timestamp in a format, to milliseconds since the epoch.
pub fn parse(value: &str, format: TimestampFormat) -> Option<i128> {
    match format {
        TimestampFormat::Unix => digits(value, 12).map(|s| s * 1000),
        TimestampFormat::UnixMs => digits(value, 15),
        TimestampFormat::Rfc3339 => OffsetDateTime::parse(value, &Rfc3339)
            .ok()
            .map(|t| t.unix_timestamp_nanos() / 1_000_000),
        TimestampFormat::HttpDate => {
            let imf = format_description!(
                "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
            );
            PrimitiveDateTime::parse(value, imf)
                .ok()
                .map(|t| t.assume_utc().unix_timestamp_nanos() / 1_000_000)
        }
    }
}

/// Unsigned decimal digits only, at most `max_len` of them.
fn digits(value: &str, max_len: usize) -> Option<i128> {
    if value.is_empty() || value.len() > max_len || !value.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    value.parse::<i128>().ok()
}

/// The freshness check: the timestamp header `name` against the rule and
/// the route's fences.
pub fn check(
    headers: &HeaderMap,
    name: &HeaderName,
    rule: &Freshness,
    clock: &dyn Clock,
    fences: &[Fence],
) -> Result<Fresh, Rejection> {
    let value = match header_text(headers, name) {
        None => return Err(Rejection::MissingTimestamp),
        Some(Err(())) => return Err(Rejection::MalformedTimestamp),
        Some(Ok(value)) => value,
    };
    let millis = parse(value, rule.format).ok_or(Rejection::MalformedTimestamp)?;
    let now = clock.now();
    within_window(millis, rule.max_skew, now)?;
    for fence in fences {
        fence.check(millis, now)?;
    }
    let seconds_ceil = u64::try_from((millis + 999).div_euclid(1000)).unwrap_or(0);
    Ok(Fresh {
        millis,
        seconds_ceil,
        max_skew_secs: rule.max_skew.as_secs(),
    })
}

/// Whether a timestamp lies within `skew` of `now`, both ways.
pub fn within_window(millis: i128, skew: Duration, now: Duration) -> Result<(), Rejection> {
    let now = now.as_millis() as i128;
    let skew = skew.as_millis() as i128;
    if millis < now - skew {
        Err(Rejection::StaleTimestamp)
    } else if millis > now + skew {
        Err(Rejection::FutureTimestamp)
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use http::HeaderValue;

    const T: i128 = 1_764_326_400_000; // 2025-11-28T10:40:00Z

    #[test]
    fn formats_parse_to_the_same_instant() {
        assert_eq!(parse("1764326400", TimestampFormat::Unix), Some(T));
        assert_eq!(parse("1764326400000", TimestampFormat::UnixMs), Some(T));
        assert_eq!(
            parse("2025-11-28T10:40:00Z", TimestampFormat::Rfc3339),
            Some(T)
        );
        assert_eq!(
            parse("2025-11-28T11:40:00+01:00", TimestampFormat::Rfc3339),
            Some(T)
        );
        assert_eq!(
            parse("Fri, 28 Nov 2025 10:40:00 GMT", TimestampFormat::HttpDate),
            Some(T)
        );
    }

    #[test]
    fn malformed_values_are_refused() {
        for (value, format) in [
            ("-1764326400", TimestampFormat::Unix),
            ("1764326400.5", TimestampFormat::Unix),
            ("+1764326400", TimestampFormat::Unix),
            ("17643264000000000", TimestampFormat::Unix),
            ("abc", TimestampFormat::UnixMs),
            ("2025-11-28 10:40:00", TimestampFormat::Rfc3339),
            ("Friday, 28-Nov-25 10:40:00 GMT", TimestampFormat::HttpDate),
            ("Fri Nov 28 10:40:00 2025", TimestampFormat::HttpDate),
            ("Fri, 28 Nov 2025 10:40:00 UTC", TimestampFormat::HttpDate),
        ] {
            assert_eq!(parse(value, format), None, "{value} as {format}");
        }
    }

    #[test]
    fn window_is_two_sided() {
        let clock = ManualClock::at_secs(1_764_326_400);
        let rule = Freshness {
            max_skew: Duration::from_secs(120),
            format: TimestampFormat::Unix,
        };
        let name = HeaderName::from_static("x-request-timestamp");
        let at = |value: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(name.clone(), HeaderValue::from_str(value).unwrap());
            check(&headers, &name, &rule, clock.as_ref(), &[])
        };
        assert!(at("1764326400").is_ok());
        assert!(at("1764326280").is_ok());
        assert!(at("1764326520").is_ok());
        assert_eq!(at("1764326279"), Err(Rejection::StaleTimestamp));
        assert_eq!(at("1764326521"), Err(Rejection::FutureTimestamp));
        assert_eq!(at("soon"), Err(Rejection::MalformedTimestamp));
        assert_eq!(at(" "), Err(Rejection::MissingTimestamp));
        assert_eq!(
            check(&HeaderMap::new(), &name, &rule, clock.as_ref(), &[]),
            Err(Rejection::MissingTimestamp)
        );
    }

    #[test]
    fn restart_fence_refuses_timestamps_from_before_the_start_for_one_window() {
        let clock = ManualClock::at_secs(1_764_326_400);
        let fence = Fence::restart(clock.now());
        let rule = Freshness {
            max_skew: Duration::from_secs(120),
            format: TimestampFormat::Unix,
        };
        let name = HeaderName::from_static("x-request-timestamp");
        let at = |value: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(name.clone(), HeaderValue::from_str(value).unwrap());
            check(&headers, &name, &rule, clock.as_ref(), &[fence])
        };
        assert_eq!(at("1764326399"), Err(Rejection::StaleTimestamp));
        assert!(at("1764326400").is_ok());
        clock.advance(Duration::from_secs(60));
        assert_eq!(at("1764326399"), Err(Rejection::StaleTimestamp));
        let mut headers = HeaderMap::new();
        headers.insert(name.clone(), HeaderValue::from_static("1764326399"));
        assert!(
            check(&headers, &name, &rule, clock.as_ref(), &[]).is_ok(),
            "within the window: only the fence refuses it"
        );
    }

    #[test]
    fn a_widening_reload_fences_only_timestamps_whose_old_records_may_be_gone() {
        // At T the skew went from 60 s to 300 s; old records last 60 + 60 s.
        let clock = ManualClock::at_secs(1_764_326_400);
        let fence = Fence::widened(
            clock.now(),
            Duration::from_secs(60),
            Duration::from_secs(60),
        );
        let rule = Freshness {
            max_skew: Duration::from_secs(300),
            format: TimestampFormat::Unix,
        };
        let name = HeaderName::from_static("x-request-timestamp");
        let at = |value: u64| {
            let mut headers = HeaderMap::new();
            headers.insert(name.clone(), HeaderValue::from(value));
            check(&headers, &name, &rule, clock.as_ref(), &[fence])
        };
        let t = 1_764_326_400;
        clock.advance(Duration::from_secs(150));
        // Accepted before the reload (t - 30), its record expired at t + 90.
        assert_eq!(at(t - 30), Err(Rejection::StaleTimestamp));
        // Honest, fresh requests pass, and so do timestamps whose old
        // records are still kept.
        assert!(at(t + 150).is_ok());
        assert!(at(t + 40).is_ok());
        // Timestamps the old generation could never have seen pass.
        assert!(at(t + 61).is_ok());
        assert!(fence.is_live(rule.max_skew, clock.now()));
        clock.advance(Duration::from_secs(300));
        assert!(!fence.is_live(rule.max_skew, clock.now()));
    }
}
