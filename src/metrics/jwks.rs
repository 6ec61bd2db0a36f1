//! The JWKS series of `[jwt]` with `jwks_file` or `jwks_url`: refreshes by
//! result, and the keys in the set in use. Created only when a JWKS is
//! configured, so a config without one exports none.
//!
//! This module must never label a series with a URL, a key id or anything
//! a token carries.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use super::{add, ResultLabel};

/// `source="file"` or `source="url"`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct SourceLabel {
    source: String,
}

/// The registered families.
#[derive(Debug, Clone)]
pub(super) struct JwksFamilies {
    refreshes: Family<ResultLabel, Counter>,
    keys: Family<SourceLabel, Gauge>,
}

impl JwksFamilies {
    pub(super) fn register(registry: &mut Registry) -> Self {
        JwksFamilies {
            refreshes: add(
                registry,
                "jwks_refreshes",
                "JWKS fetches (jwks_url) or reads (jwks_file) by result (ok, error); a failed one keeps the last good key set",
                Family::default(),
            ),
            keys: add(
                registry,
                "jwks_keys",
                "Keys in the JWKS in use (0 until a jwks_url is first fetched)",
                Family::default(),
            ),
        }
    }

    /// The series of one JWKS, created at their current values.
    pub(super) fn series(&self, source: &str) -> JwksSeries {
        let result = |result: &str| {
            self.refreshes
                .get_or_create(&ResultLabel {
                    result: result.to_owned(),
                })
                .clone()
        };
        JwksSeries {
            ok: result("ok"),
            error: result("error"),
            keys: self
                .keys
                .get_or_create(&SourceLabel {
                    source: source.to_owned(),
                })
                .clone(),
        }
    }
}

/// What a JWT verifier reports about its JWKS.
#[derive(Debug, Clone, Default)]
pub struct JwksSeries {
    ok: Counter,
    error: Counter,
    keys: Gauge,
}

impl JwksSeries {
    /// A refresh that installed a set of `keys` keys.
    pub fn refreshed(&self, keys: usize) {
        self.ok.inc();
        self.set_keys(keys);
    }

    /// A refresh that failed (the last good set stays in use).
    pub fn failed(&self) {
        self.error.inc();
    }

    /// The set in use has `keys` keys.
    pub fn set_keys(&self, keys: usize) {
        self.keys.set(i64::try_from(keys).unwrap_or(i64::MAX));
    }
}
