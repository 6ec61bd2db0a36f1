//! Timestamp parsing in every format: never panics; integer formats agree
//! with a plain decimal parse; every accepted instant round-trips through
//! the freshness window check without overflow.
#![no_main]

use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use replay_guard::checks::freshness::{parse, within_window};
use replay_guard::config::TimestampFormat;

const FORMATS: [TimestampFormat; 4] = [
    TimestampFormat::Unix,
    TimestampFormat::UnixMs,
    TimestampFormat::Rfc3339,
    TimestampFormat::HttpDate,
];

fuzz_target!(|input: &str| {
    for format in FORMATS {
        let Some(millis) = parse(input, format) else {
            continue;
        };
        match format {
            TimestampFormat::Unix => {
                assert!(input.len() <= 12 && input.bytes().all(|b| b.is_ascii_digit()));
                assert_eq!(millis, input.parse::<i128>().unwrap() * 1000);
            }
            TimestampFormat::UnixMs => {
                assert!(input.len() <= 15 && input.bytes().all(|b| b.is_ascii_digit()));
                assert_eq!(millis, input.parse::<i128>().unwrap());
            }
            TimestampFormat::Rfc3339 | TimestampFormat::HttpDate => {
                // Four-digit years only: well inside ±10^15 ms.
                assert!(millis.abs() < 400_000_000_000_000, "{input:?} → {millis}");
            }
        }
        // Any accepted instant can be checked against any clock.
        for now in [0u64, 1_764_326_400, u64::MAX / 1000] {
            let _ = within_window(millis, Duration::from_secs(120), Duration::from_secs(now));
        }
        let _ = within_window(millis, Duration::MAX, Duration::MAX);
    }
});
