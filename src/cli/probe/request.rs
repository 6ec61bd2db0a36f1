//! The requests `probe` sends, built as exact HTTP/1.1 bytes: the
//! [`Profile`] says how a client of the target writes its replay headers
//! (names, timestamp format, nonce, idempotency key, v1 signing key), the
//! [`Base`] holds what every request shares (method, target, `Host`, body,
//! the operator's own headers), and a [`Draft`] is one request, ready to
//! print (`--dry-run`) or to send.
//!
//! Signatures are made by the library's client signing
//! ([`replay_guard::client::sign`], or [`replay_guard::client::sign_rfc9421`]
//! on an RFC 9421 route, with the route's components, `tag` and the
//! transmission's `created` and `nonce` as signature parameters) over the
//! normalised path, exactly as `replay-guard sign` does. This module must never perform I/O, and never
//! print or put a secret into a request (only the HMAC leaves it).

use std::sync::Arc;

use replay_guard::checks::rfc9421::sign::SigningKey;
use replay_guard::client::{self, Rfc9421Request, SignRequest};
use replay_guard::config::{Component, Secret, TimestampFormat};
use time::format_description::well_known::Rfc3339;
use time::macros::format_description;
use time::OffsetDateTime;

/// Header names a client of the target uses.
#[derive(Debug, Clone)]
pub struct Names {
    /// Request timestamp.
    pub timestamp: String,
    /// Per-transmission nonce.
    pub nonce: String,
    /// `v1=<hex>` signature.
    pub signature: String,
    /// Key id.
    pub key_id: String,
    /// Idempotency key.
    pub idempotency_key: String,
}

impl Default for Names {
    fn default() -> Self {
        Names {
            timestamp: client::names::TIMESTAMP.into(),
            nonce: client::names::NONCE.into(),
            signature: client::names::SIGNATURE.into(),
            key_id: client::names::KEY_ID.into(),
            idempotency_key: "Idempotency-Key".into(),
        }
    }
}

/// A signing key: the id sent, and the secret (v1, RFC 9421 HMAC) or the
/// private key (RFC 9421) that signs.
#[derive(Debug, Clone)]
pub struct Signing {
    /// Key id, sent in the key-id header or as `keyid`.
    pub key_id: String,
    /// The key (never printed; `Debug` names only its algorithm).
    pub key: Arc<SigningKey>,
}

impl Signing {
    /// An HMAC secret.
    pub fn secret(key_id: String, secret: Secret) -> Signing {
        Signing {
            key_id,
            key: Arc::new(SigningKey::Hmac(secret)),
        }
    }
}

/// How a client of the target signs.
#[derive(Debug, Clone, Default)]
pub enum Scheme {
    /// `X-Signature: v1=<hex>` with timestamp and nonce headers.
    #[default]
    V1,
    /// RFC 9421 (with the signing key's algorithm): `Signature-Input` /
    /// `Signature` covering the route's components, `created` and `nonce`
    /// signed parameters.
    Rfc9421 {
        /// What the route requires the signature to cover.
        components: Vec<Component>,
        /// The route's `tag`, if it sets one.
        tag: Option<String>,
        /// The label to sign under.
        label: String,
    },
}

/// How a well-behaved client of the target writes its replay headers.
#[derive(Debug, Clone)]
pub struct Profile {
    /// Header names.
    pub names: Names,
    /// Timestamp format.
    pub format: TimestampFormat,
    /// How far past the window the stale and future timestamps lie, seconds.
    pub stale_secs: u64,
    /// Whether the client sends a nonce.
    pub nonce: bool,
    /// Whether the client sends an `Idempotency-Key`.
    pub idempotency: bool,
    /// The signing key (an HMAC secret, or an RFC 9421 private key), where
    /// the client signs.
    pub signing: Option<Signing>,
    /// How it signs.
    pub scheme: Scheme,
}

/// How a request's body is framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// `Content-Length` (omitted for an empty GET/HEAD).
    Length,
    /// Both `Content-Length` and `Transfer-Encoding: chunked`, agreeing on
    /// the same bytes (so nothing is smuggled even where it is accepted).
    LengthAndChunked,
}

/// One request, exactly as it goes on the wire.
#[derive(Debug, Clone)]
pub struct Draft {
    /// Method as sent (case kept).
    pub method: String,
    /// Request target as sent (origin- or absolute-form).
    pub target: String,
    /// One `Host` header per entry.
    pub hosts: Vec<String>,
    /// Every other header, in order.
    pub headers: Vec<(String, String)>,
    /// Body bytes.
    pub body: Vec<u8>,
    /// Body framing.
    pub framing: Framing,
}

impl Draft {
    /// `METHOD target`, for reports.
    pub fn line(&self) -> String {
        format!("{} {}", self.method, self.target)
    }

    /// Whether the answer has no body (a HEAD request).
    pub fn is_head(&self) -> bool {
        self.method.eq_ignore_ascii_case("HEAD")
    }

    /// Replace (or add) a header.
    pub fn set(&mut self, name: &str, value: impl Into<String>) {
        self.remove(name);
        self.headers.push((name.to_owned(), value.into()));
    }

    /// Remove every value of a header.
    pub fn remove(&mut self, name: &str) {
        self.headers.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
    }

    /// The HTTP/1.1 bytes, ending with `Connection: close`.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut head = format!("{} {} HTTP/1.1\r\n", self.method, self.target);
        for host in &self.hosts {
            head.push_str(&format!("Host: {host}\r\n"));
        }
        for (name, value) in &self.headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        let body = match self.framing {
            Framing::Length => self.body.clone(),
            Framing::LengthAndChunked => chunked(&self.body),
        };
        let bodiless = matches!(self.method.to_ascii_uppercase().as_str(), "GET" | "HEAD");
        if !(body.is_empty() && bodiless) {
            head.push_str(&format!("Content-Length: {}\r\n", body.len()));
        }
        if self.framing == Framing::LengthAndChunked {
            head.push_str("Transfer-Encoding: chunked\r\n");
        }
        head.push_str("Connection: close\r\n\r\n");
        let mut bytes = head.into_bytes();
        bytes.extend_from_slice(&body);
        bytes
    }
}

/// `body` as one chunk and the last chunk.
fn chunked(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + 16);
    if !body.is_empty() {
        out.extend_from_slice(format!("{:x}\r\n", body.len()).as_bytes());
        out.extend_from_slice(body);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"0\r\n\r\n");
    out
}

/// The replay headers of one transmission.
#[derive(Debug, Clone)]
pub struct Fresh {
    /// Seconds added to now for the timestamp (negative: in the past).
    pub offset_secs: i64,
    /// Nonce value.
    pub nonce: String,
    /// Idempotency key, where the profile sends one.
    pub idempotency_key: String,
}

impl Fresh {
    /// A fresh transmission now, with a new nonce and a new key.
    pub fn now() -> Fresh {
        Fresh {
            offset_secs: 0,
            nonce: client::new_nonce(),
            idempotency_key: format!("probe-{}", client::new_nonce()),
        }
    }
}

/// What every request shares.
#[derive(Debug, Clone)]
pub struct Base {
    /// `http` or `https`.
    pub scheme: String,
    /// `host[:port]` as in the URL (for absolute-form targets).
    pub authority: String,
    /// `Host` header value (default port omitted).
    pub host: String,
    /// Method, upper case.
    pub method: String,
    /// The URL's path, as given.
    pub path: String,
    /// `?query` as given, or empty.
    pub query: String,
    /// The normalised path and query the proxy verifies a signature over.
    pub signed_path_and_query: String,
    /// Body bytes.
    pub body: Vec<u8>,
    /// The operator's headers, the route's identity header, Content-Type.
    pub extra: Vec<(String, String)>,
    /// How replay headers are written.
    pub profile: Profile,
}

impl Base {
    /// A request with no replay headers at all, to `target` with `method`.
    pub fn bare_to(&self, method: &str, target: String) -> Draft {
        let body = if method.eq_ignore_ascii_case("HEAD") {
            Vec::new()
        } else {
            self.body.clone()
        };
        Draft {
            method: method.to_owned(),
            target,
            hosts: vec![self.host.clone()],
            headers: self.extra.clone(),
            body,
            framing: Framing::Length,
        }
    }

    /// [`Base::bare_to`] the URL's own method and target.
    pub fn bare(&self) -> Draft {
        self.bare_to(&self.method, format!("{}{}", self.path, self.query))
    }

    /// A request as a well-behaved client sends it: timestamp, nonce,
    /// idempotency key and signature as the profile says.
    pub fn fresh(&self, fresh: &Fresh) -> Draft {
        self.fresh_signed_by(self.profile.signing.as_ref(), fresh)
    }

    /// [`Base::fresh`], signed by `signing` (another key than the
    /// profile's, for the unknown-key attack).
    pub fn fresh_signed_by(&self, signing: Option<&Signing>, fresh: &Fresh) -> Draft {
        let profile = &self.profile;
        let names = &profile.names;
        let mut draft = self.bare();
        if profile.idempotency {
            draft.set(&names.idempotency_key, fresh.idempotency_key.clone());
        }
        if let (Some(signing), Scheme::Rfc9421 { .. }) = (signing, &profile.scheme) {
            // The idempotency key is an ordinary header: covered when the
            // route's `components` name it, like any other.
            for (name, value) in self
                .rfc9421_headers(signing, fresh, &draft.headers)
                .unwrap_or_default()
            {
                draft.set(&name, value);
            }
            return draft;
        }
        let timestamp = format_timestamp(now_millis() + fresh.offset_secs * 1000, profile.format);
        draft.set(&names.timestamp, timestamp.clone());
        if profile.nonce || signing.is_some() {
            draft.set(&names.nonce, fresh.nonce.clone());
        }
        if let Some(signing) = signing {
            let signature = self.signature(signing, &timestamp, &fresh.nonce);
            draft.set(&names.key_id, signing.key_id.clone());
            draft.set(&names.signature, signature);
        }
        draft
    }

    /// `Content-Digest`, `Signature-Input` and `Signature` for this base's
    /// request on an RFC 9421 route, `created` offset as `fresh` says;
    /// `headers` are the request's other headers (a covered header takes
    /// its value from them).
    pub fn rfc9421_headers(
        &self,
        signing: &Signing,
        fresh: &Fresh,
        headers: &[(String, String)],
    ) -> Result<Vec<(String, String)>, String> {
        let Scheme::Rfc9421 {
            components,
            tag,
            label,
        } = &self.profile.scheme
        else {
            return Err("not an RFC 9421 route".into());
        };
        let created = now_millis().div_euclid(1000) + fresh.offset_secs;
        let signed = client::sign_rfc9421(
            &signing.key,
            &Rfc9421Request {
                method: &self.method,
                host: &self.host,
                path_and_query: &self.signed_path_and_query,
                https: self.scheme == "https",
                body: &self.body,
                key_id: &signing.key_id,
                created,
                nonce: Some(&fresh.nonce),
                tag: tag.as_deref(),
                label,
                components,
                headers,
            },
        )?;
        Ok(signed.headers)
    }

    /// The v1 signature header value for this base's request (empty for
    /// a private key, which v1 cannot sign with; the profile refuses one).
    pub fn signature(&self, signing: &Signing, timestamp: &str, nonce: &str) -> String {
        let SigningKey::Hmac(secret) = &*signing.key else {
            return String::new();
        };
        let signed = client::sign(
            secret,
            &SignRequest {
                method: &self.method,
                host: &self.host,
                path_and_query: &self.signed_path_and_query,
                body: &self.body,
                timestamp: timestamp.to_owned(),
                nonce: nonce.to_owned(),
                key_id: &signing.key_id,
            },
        );
        signed
            .headers
            .into_iter()
            .find(|(name, _)| name == client::names::SIGNATURE)
            .map(|(_, value)| value)
            .unwrap_or_default()
    }
}

/// Milliseconds since the epoch, now.
fn now_millis() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// A timestamp in a route's format.
pub fn format_timestamp(millis: i64, format: TimestampFormat) -> String {
    let secs = millis.div_euclid(1000);
    let at = || OffsetDateTime::from_unix_timestamp(secs).unwrap_or(OffsetDateTime::UNIX_EPOCH);
    match format {
        TimestampFormat::Unix => secs.to_string(),
        TimestampFormat::UnixMs => millis.to_string(),
        TimestampFormat::Rfc3339 => at().format(&Rfc3339).unwrap_or_default(),
        TimestampFormat::HttpDate => {
            let imf = format_description!(
                "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
            );
            at().format(imf).unwrap_or_default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use replay_guard::checks::freshness;

    #[test]
    fn timestamps_parse_back_in_every_format() {
        let millis = 1_764_326_400_123;
        for format in [
            TimestampFormat::Unix,
            TimestampFormat::UnixMs,
            TimestampFormat::Rfc3339,
            TimestampFormat::HttpDate,
        ] {
            let text = format_timestamp(millis, format);
            let parsed = freshness::parse(&text, format).expect("parses");
            assert!(
                (i128::from(millis) - parsed).abs() < 1000,
                "{format}: {text}"
            );
        }
        assert_eq!(
            format_timestamp(millis, TimestampFormat::HttpDate),
            "Fri, 28 Nov 2025 10:40:00 GMT"
        );
    }

    #[test]
    fn both_framings_agree_on_the_body() {
        let draft = Draft {
            method: "POST".into(),
            target: "/p".into(),
            hosts: vec!["h".into()],
            headers: Vec::new(),
            body: b"{}".to_vec(),
            framing: Framing::LengthAndChunked,
        };
        let text = String::from_utf8(draft.to_bytes()).unwrap();
        assert!(text.ends_with("Content-Length: 12\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n2\r\n{}\r\n0\r\n\r\n"), "{text}");
    }
}
