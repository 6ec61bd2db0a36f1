//! The attack list: every request a protected deployment must refuse,
//! each with the sentence that names the missing defence when it gets
//! through. Two families:
//!
//! - **broken replay headers** on an otherwise valid request (no
//!   timestamp, stale, future, malformed nonce, forged signature, unknown
//!   key): the target's checks must refuse them;
//! - **bypasses**: a request with no replay headers at all, sent with
//!   another method or another spelling of the path or framing: the route's
//!   checks must still apply (or the request be refused outright).
//!
//! The requests that are meant to execute (a valid one and its replays)
//! are not here but in `execute`, behind `--allow-execute`. This module
//! only builds requests; it must never send one.

use super::request::{Base, Draft, Framing, Fresh, Scheme};

/// One attack, ready to send.
#[derive(Debug, Clone)]
pub struct Attack {
    /// Stable id (JSON, tests).
    pub id: String,
    /// What the attack is, in a few words.
    pub title: String,
    /// The request.
    pub draft: Draft,
    /// What it means when it gets through.
    pub missing: String,
}

/// An attack that does not apply to this target, and why.
#[derive(Debug, Clone)]
pub struct Skip {
    /// Stable id.
    pub id: String,
    /// What the attack is.
    pub title: String,
    /// Why it is not sent.
    pub why: String,
}

/// The attacks for one target: sent, and skipped.
#[derive(Debug, Default)]
pub struct Plan {
    /// Sent, in order.
    pub attacks: Vec<Attack>,
    /// Not applicable.
    pub skipped: Vec<Skip>,
}

impl Plan {
    fn add(
        &mut self,
        id: &str,
        title: impl Into<String>,
        draft: Draft,
        missing: impl Into<String>,
    ) {
        self.attacks.push(Attack {
            id: id.to_owned(),
            title: title.into(),
            draft,
            missing: missing.into(),
        });
    }

    fn skip(&mut self, id: &str, title: &str, why: impl Into<String>) {
        self.skipped.push(Skip {
            id: id.to_owned(),
            title: title.to_owned(),
            why: why.into(),
        });
    }
}

/// Whether an attack id is a bypass (a bare request sent another way):
/// once a bare request to the URL itself gets through, bypasses prove
/// nothing more.
pub fn is_bypass(id: &str) -> bool {
    id.starts_with("method-") || id.starts_with("path-") || id == "duplicate-host" || id == "cl-te"
}

/// A nonce outside `[A-Za-z0-9._~+/=-]{16,128}`.
pub const MALFORMED_NONCE: &str = "probe!nonce*not*well-formed";
/// A key id no deployment configures.
pub const UNKNOWN_KEY_ID: &str = "replay-guard-probe-unknown-key";

/// A forged RFC 9421 signature: 32 zero bytes, the length of an HMAC-SHA256.
const ZERO_MAC_BASE64: &str = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";

/// Whether the profile signs RFC 9421.
fn rfc9421(base: &Base) -> bool {
    matches!(base.profile.scheme, Scheme::Rfc9421 { .. })
}

/// Every attack for `base`. `bypasses` is false when a bare request to the
/// canonical path is legitimately accepted (a route with no required rule),
/// so that sending bare requests elsewhere would prove nothing.
pub fn plan(base: &Base, bypasses: Option<&str>) -> Plan {
    let mut plan = Plan::default();
    header_attacks(base, &mut plan);
    match bypasses {
        None => {
            method_attacks(base, &mut plan);
            path_attacks(base, &mut plan);
            framing_attacks(base, &mut plan);
        }
        Some(why) => plan.skip("bypasses", "method, path and framing bypasses", why),
    }
    plan
}

/// Broken replay headers on an otherwise valid request.
fn header_attacks(base: &Base, plan: &mut Plan) {
    let profile = &base.profile;
    let names = &profile.names;
    let line = base.bare().line();
    plan.add(
        "no-replay-headers",
        "no replay headers at all",
        base.bare(),
        format!("{line} with no replay headers reached the upstream: it accepts requests without a timestamp, nonce or signature"),
    );
    if rfc9421(base) {
        plan.skip(
            "no-timestamp",
            "no timestamp",
            "an RFC 9421 route reads `created` from the signature, which the stale and future attacks sign",
        );
    } else {
        let mut draft = base.fresh(&Fresh::now());
        draft.remove(&names.timestamp);
        plan.add(
            "no-timestamp",
            "no timestamp",
            draft,
            "accepts requests without a timestamp",
        );
    }
    let secs = profile.stale_secs;
    let offset = i64::try_from(secs).unwrap_or(i64::MAX / 2000);
    let stale = Fresh {
        offset_secs: -offset,
        ..Fresh::now()
    };
    plan.add(
        "stale-timestamp",
        format!("timestamp {secs} s old"),
        base.fresh(&stale),
        format!("accepts a timestamp {secs} s in the past (a captured request stays usable)"),
    );
    let future = Fresh {
        offset_secs: offset,
        ..Fresh::now()
    };
    plan.add(
        "future-timestamp",
        format!("timestamp {secs} s ahead"),
        base.fresh(&future),
        format!(
            "accepts a timestamp {secs} s in the future (a pre-signed request outlives the window)"
        ),
    );
    if profile.nonce {
        let malformed = Fresh {
            nonce: MALFORMED_NONCE.into(),
            ..Fresh::now()
        };
        plan.add(
            "malformed-nonce",
            "malformed nonce",
            base.fresh(&malformed),
            format!("accepts a malformed nonce ({MALFORMED_NONCE:?})"),
        );
    } else {
        plan.skip(
            "malformed-nonce",
            "malformed nonce",
            "the route takes no nonce",
        );
    }
    signature_attacks(base, plan);
}

fn signature_attacks(base: &Base, plan: &mut Plan) {
    let names = &base.profile.names;
    if base.profile.signing.is_none() {
        let why = "the route does not sign (give --config/--route, or --key-id and --secret-env)";
        plan.skip("forged-signature", "forged signature", why);
        plan.skip("unknown-key", "unknown key", why);
        return;
    }
    let stranger = super::request::Signing::secret(
        UNKNOWN_KEY_ID.into(),
        replay_guard::config::Secret::new(b"replay-guard-probe-not-a-secret".to_vec()),
    );
    let mut forged = base.fresh(&Fresh::now());
    match &base.profile.scheme {
        Scheme::Rfc9421 { label, .. } => {
            forged.set("Signature", format!("{label}=:{ZERO_MAC_BASE64}:"));
        }
        Scheme::V1 => forged.set(&names.signature, format!("v1={}", "0".repeat(64))),
    }
    let unknown = base.fresh_signed_by(Some(&stranger), &Fresh::now());
    plan.add(
        "forged-signature",
        "forged signature",
        forged,
        "accepts a forged signature",
    );
    plan.add(
        "unknown-key",
        "signature by an unknown key",
        unknown,
        "accepts a signature made with a key it does not know",
    );
}

/// Bare requests with other spellings of the method.
fn method_attacks(base: &Base, plan: &mut Plan) {
    let target = format!("{}{}", base.path, base.query);
    let lower = base.method.to_ascii_lowercase();
    if lower != base.method {
        let draft = base.bare_to(&lower, target.clone());
        let line = draft.line();
        plan.add(
            "method-case",
            format!("lower-case method {lower}"),
            draft,
            format!("{line} (lower-case method) reached the upstream unchecked"),
        );
    }
    let mut others: Vec<&str> = vec!["HEAD", "PUT", "PATCH", "DELETE"];
    if others.contains(&base.method.as_str()) {
        others.retain(|m| *m != base.method);
        if base.method != "POST" {
            others.push("POST");
        }
    }
    for method in others {
        let draft = base.bare_to(method, target.clone());
        let line = draft.line();
        plan.add(
            &format!("method-{}", method.to_ascii_lowercase()),
            format!("{method} on the same path"),
            draft,
            format!("{line} reached the upstream unchecked"),
        );
    }
}

/// The spellings of a path that some servers treat as the same path.
pub fn spellings(path: &str) -> Vec<(&'static str, &'static str, String)> {
    let mut out = vec![
        ("path-double-slash", "doubled slash //", format!("/{path}")),
        ("path-dot-segment", "dot segment /./", format!("/.{path}")),
        (
            "path-encoded-dot",
            "encoded dot segment %2e",
            format!("/%2e{path}"),
        ),
    ];
    if let Some(i) = path.bytes().position(|b| b.is_ascii_alphanumeric()) {
        let encoded = format!(
            "{}%{:02x}{}",
            &path[..i],
            path.as_bytes()[i],
            &path[i + 1..]
        );
        out.push(("path-encoded-letter", "percent-encoded letter", encoded));
    }
    out.push(("path-parameter", "matrix parameter ;x", format!("{path};x")));
    if path != "/" {
        if let Some(stripped) = path.strip_suffix('/') {
            out.push((
                "path-trailing-slash",
                "without its trailing slash",
                stripped.to_owned(),
            ));
        } else {
            out.push(("path-trailing-slash", "trailing slash", format!("{path}/")));
        }
    }
    out.push(("path-trailing-space", "trailing %20", format!("{path}%20")));
    out.push(("path-trailing-dot", "trailing dot", format!("{path}.")));
    out.push((
        "path-encoded-control",
        "encoded control %09",
        format!("{path}%09"),
    ));
    out
}

/// Bare requests to other spellings of the path.
fn path_attacks(base: &Base, plan: &mut Plan) {
    for (id, title, path) in spellings(&base.path) {
        let draft = base.bare_to(&base.method, format!("{path}{}", base.query));
        let line = draft.line();
        plan.add(
            id,
            format!("path spelling: {title}"),
            draft,
            format!(
                "{line} ({title}) reached the upstream unchecked: this spelling bypasses the route"
            ),
        );
    }
    let absolute = format!(
        "{}://{}{}{}",
        base.scheme, base.authority, base.path, base.query
    );
    let draft = base.bare_to(&base.method, absolute);
    let line = draft.line();
    plan.add(
        "path-absolute-form",
        "absolute-form request target",
        draft,
        format!("{line} (absolute-form target) reached the upstream unchecked"),
    );
}

/// Bare requests with ambiguous framing.
fn framing_attacks(base: &Base, plan: &mut Plan) {
    let mut two_hosts = base.bare();
    two_hosts.hosts.push("replay-guard-probe.invalid".into());
    plan.add(
        "duplicate-host",
        "two Host headers",
        two_hosts,
        "a request with two Host headers reached the upstream unchecked",
    );
    let mut both = base.bare();
    both.framing = Framing::LengthAndChunked;
    plan.add(
        "cl-te",
        "Content-Length and Transfer-Encoding",
        both,
        "a request framed by both Content-Length and Transfer-Encoding reached the upstream unchecked (request smuggling risk)",
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spellings_of_payments() {
        let paths: Vec<String> = spellings("/payments").into_iter().map(|s| s.2).collect();
        assert_eq!(
            paths,
            [
                "//payments",
                "/./payments",
                "/%2e/payments",
                "/%70ayments",
                "/payments;x",
                "/payments/",
                "/payments%20",
                "/payments.",
                "/payments%09"
            ]
        );
    }
}
