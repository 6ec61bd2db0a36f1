//! `access_log_fields`: which fields the access log line carries.
//!
//! Plain names, validated against [`AccessField::ALL`]; the default set is
//! close to Envoy's default access log format (method, route, status,
//! reason, bytes in and out, duration, upstream time, client address,
//! request id). This module must never offer a field that holds a
//! client's raw identity text, a header value, a query string or a secret:
//! `identity` is a short hash, `key_id` a configured key's id.

use std::fmt;

/// One field of the access log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccessField {
    /// `X-Request-Id`.
    RequestId,
    /// The request method.
    Method,
    /// The matched route's name (or `unmatched`).
    Route,
    /// The answer's status.
    Status,
    /// The rejection reason (or the report-mode would-be reason).
    Reason,
    /// Milliseconds from arrival to the last byte of the answer.
    DurationMs,
    /// Milliseconds to the upstream's response head.
    UpstreamMs,
    /// Request body bytes read.
    BytesIn,
    /// Response body bytes sent.
    BytesOut,
    /// The TCP peer, `ip:port`.
    Client,
    /// The verified key id.
    KeyId,
    /// The identity's short hash tag (never the identity).
    Identity,
}

impl AccessField {
    /// Every field, in the order the line carries them.
    pub const ALL: [AccessField; 12] = [
        AccessField::RequestId,
        AccessField::Method,
        AccessField::Route,
        AccessField::Status,
        AccessField::Reason,
        AccessField::DurationMs,
        AccessField::UpstreamMs,
        AccessField::BytesIn,
        AccessField::BytesOut,
        AccessField::Client,
        AccessField::KeyId,
        AccessField::Identity,
    ];

    /// The name in the config file and on the log line.
    pub fn name(self) -> &'static str {
        match self {
            AccessField::RequestId => "request_id",
            AccessField::Method => "method",
            AccessField::Route => "route",
            AccessField::Status => "status",
            AccessField::Reason => "reason",
            AccessField::DurationMs => "duration_ms",
            AccessField::UpstreamMs => "upstream_ms",
            AccessField::BytesIn => "bytes_in",
            AccessField::BytesOut => "bytes_out",
            AccessField::Client => "client",
            AccessField::KeyId => "key_id",
            AccessField::Identity => "identity",
        }
    }

    /// The field named `name`.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|field| field.name() == name)
    }

    fn bit(self) -> u16 {
        1 << (self as u16)
    }
}

/// A set of access log fields.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct AccessLogFields(u16);

impl AccessLogFields {
    /// Everything but `key_id` and `identity`.
    pub const DEFAULT: [AccessField; 10] = [
        AccessField::RequestId,
        AccessField::Method,
        AccessField::Route,
        AccessField::Status,
        AccessField::Reason,
        AccessField::DurationMs,
        AccessField::UpstreamMs,
        AccessField::BytesIn,
        AccessField::BytesOut,
        AccessField::Client,
    ];

    /// The set of `fields`.
    pub fn of(fields: impl IntoIterator<Item = AccessField>) -> Self {
        Self(fields.into_iter().fold(0, |set, f| set | f.bit()))
    }

    /// Whether the line carries `field`.
    pub fn has(self, field: AccessField) -> bool {
        self.0 & field.bit() != 0
    }
}

impl Default for AccessLogFields {
    fn default() -> Self {
        Self::of(Self::DEFAULT)
    }
}

impl fmt::Debug for AccessLogFields {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(
                AccessField::ALL
                    .into_iter()
                    .filter(|field| self.has(*field))
                    .map(AccessField::name),
            )
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_the_default_leaves_out_identity_and_key() {
        for field in AccessField::ALL {
            assert_eq!(AccessField::from_name(field.name()), Some(field));
        }
        let default = AccessLogFields::default();
        assert!(default.has(AccessField::Client) && default.has(AccessField::BytesOut));
        assert!(!default.has(AccessField::Identity) && !default.has(AccessField::KeyId));
        assert_eq!(AccessField::from_name("path"), None);
    }
}
