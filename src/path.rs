//! Request-path normalisation, so no spelling of a protected path bypasses
//! its route.
//!
//! The proxy matches routes on, and forwards, the normalised path:
//! percent-encoded unreserved characters are decoded (`%70` → `p`), other
//! escapes get uppercase hex, duplicate slashes collapse and dot segments
//! are resolved (RFC 3986 §5.2.4). Spellings whose meaning differs between
//! servers are refused instead of guessed: encoded slashes and backslashes
//! (`%2F`, `%5C`, `\`), encoded NUL, control characters, broken escapes,
//! and dot segments carrying `;` parameters (`..;`, `.;x`: Tomcat and
//! Spring strip the parameter and then climb, other servers do not).
//!
//! For matching only, a trailing slash, `;` matrix parameters and trailing
//! dots and encoded spaces at the end of a segment are ignored
//! (`/payments/`, `/payments;x=1`, `/payments.` and `/payments%20` are
//! `/payments` to the route table: Spring trims `%20`, IIS trailing dots),
//! as are the empty segments that stripping them leaves (`/;x/payments`
//! matches `/payments`) — the forwarded path keeps them all. This module
//! must never allocate more than a couple of strings per request, and never
//! touch the query.

use std::borrow::Cow;

/// Why a path was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    /// Not an origin-form path (`/...`).
    #[error("the request target is not an absolute path")]
    NotAbsolute,
    /// A `%` not followed by two hex digits.
    #[error("the path has a broken percent-escape")]
    BadEscape,
    /// `%2F`, `%5C`, `\`, `%00`, a control character, or a dot segment
    /// with `;` parameters (`..;`).
    #[error("the path contains an encoded slash, a backslash, a control character or a dot segment with parameters")]
    Ambiguous,
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Decode unreserved escapes, uppercase the others, refuse ambiguous bytes.
fn decode_unreserved(path: &str) -> Result<String, PathError> {
    let bytes = path.as_bytes();
    let mut out = String::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        match b {
            b'%' => {
                let hi = bytes.get(i + 1).copied().and_then(hex_value);
                let lo = bytes.get(i + 2).copied().and_then(hex_value);
                let (Some(hi), Some(lo)) = (hi, lo) else {
                    return Err(PathError::BadEscape);
                };
                let decoded = hi * 16 + lo;
                // Encoded slashes and backslashes mean different paths to
                // different servers; encoded controls (`%00`–`%1F`, `%7F`)
                // are trimmed or split on by some of them.
                if matches!(decoded, b'/' | b'\\') || decoded.is_ascii_control() {
                    return Err(PathError::Ambiguous);
                }
                if is_unreserved(decoded) {
                    out.push(char::from(decoded));
                } else {
                    out.push('%');
                    out.push(char::from(bytes[i + 1].to_ascii_uppercase()));
                    out.push(char::from(bytes[i + 2].to_ascii_uppercase()));
                }
                i += 3;
            }
            b'\\' => return Err(PathError::Ambiguous),
            b if b.is_ascii_control() => return Err(PathError::Ambiguous),
            _ => {
                // `path` is a &str from a parsed URI: ASCII in practice; keep
                // any other byte sequence intact by copying the char.
                let ch_len = utf8_len(b);
                out.push_str(&path[i..(i + ch_len).min(path.len())]);
                i += ch_len;
                continue;
            }
        }
    }
    Ok(out)
}

fn utf8_len(first: u8) -> usize {
    match first {
        0x00..=0x7f => 1,
        0xc0..=0xdf => 2,
        0xe0..=0xef => 3,
        _ => 4,
    }
}

/// Normalise a request path (without the query). A path that already is
/// normal (the usual case) is returned as it is, without a copy.
///
/// ```
/// use replay_guard::path::normalize;
/// assert_eq!(normalize("//a/./b/../%70ayments").unwrap(), "/a/payments");
/// assert_eq!(normalize("/a/payments").unwrap(), "/a/payments");
/// ```
pub fn normalize(path: &str) -> Result<Cow<'_, str>, PathError> {
    if !path.starts_with('/') {
        return Err(PathError::NotAbsolute);
    }
    if is_normal(path) {
        return Ok(Cow::Borrowed(path));
    }
    normalize_slowly(path).map(Cow::Owned)
}

/// Whether `path` (starting with `/`) is its own normal form, by a
/// conservative test: printable ASCII only, no `%` or `\`, no empty
/// segment, and no segment starting with `.` (dot segments and their `;`
/// variants; `/.well-known` merely takes the slow path).
fn is_normal(path: &str) -> bool {
    let mut previous = 0u8;
    for &b in path.as_bytes() {
        let plain = match b {
            b'%' | b'\\' => false,
            b'/' | b'.' => previous != b'/',
            _ => b.is_ascii_graphic(),
        };
        if !plain {
            return false;
        }
        previous = b;
    }
    true
}

/// The full normalisation: decode, resolve dot segments, collapse slashes.
fn normalize_slowly(path: &str) -> Result<String, PathError> {
    let decoded = decode_unreserved(path)?;
    let mut segments: Vec<&str> = Vec::new();
    let mut trailing_slash = false;
    for segment in decoded.split('/') {
        trailing_slash = false;
        match segment {
            "" => trailing_slash = true,
            "." => trailing_slash = true,
            ".." => {
                segments.pop();
                trailing_slash = true;
            }
            other => {
                // `..;x` is `..` to servers that strip parameters first.
                let bare = other.split(';').next().unwrap_or(other);
                if bare == "." || bare == ".." {
                    return Err(PathError::Ambiguous);
                }
                segments.push(other);
            }
        }
    }
    let mut out = String::with_capacity(decoded.len());
    for segment in &segments {
        out.push('/');
        out.push_str(segment);
    }
    if trailing_slash || out.is_empty() {
        out.push('/');
    }
    Ok(out)
}

/// The key the route table matches on: the normalised path without
/// `;` parameters in any segment, without trailing dots and encoded spaces
/// at a segment's end, without the empty segments stripping them leaves,
/// and without a trailing slash.
pub fn match_key(normalized: &str) -> Cow<'_, str> {
    let trimmed = if normalized.len() > 1 {
        normalized.trim_end_matches('/')
    } else {
        normalized
    };
    if !needs_trimming(trimmed) {
        return Cow::Borrowed(if trimmed.is_empty() { "/" } else { trimmed });
    }
    let mut out = String::with_capacity(trimmed.len());
    for segment in trimmed.split('/').skip(1) {
        let bare = trim_segment_end(segment.split(';').next().unwrap_or(""));
        if bare.is_empty() {
            continue;
        }
        out.push('/');
        out.push_str(bare);
    }
    let out = out.trim_end_matches('/').to_owned();
    Cow::Owned(if out.is_empty() { "/".to_owned() } else { out })
}

/// Whether a path has anything the match key drops: a `;` parameter, an
/// escape (an encoded space may end a segment), or a dot ending a segment.
/// One pass; normal paths (the usual case) need none of it.
fn needs_trimming(path: &str) -> bool {
    let bytes = path.as_bytes();
    bytes.iter().enumerate().any(|(i, &b)| {
        b == b';' || b == b'%' || (b == b'.' && bytes.get(i + 1).is_none_or(|next| *next == b'/'))
    })
}

/// A segment without the dots and encoded spaces at its end.
fn trim_segment_end(mut segment: &str) -> &str {
    loop {
        let shorter = segment
            .strip_suffix('.')
            .or_else(|| segment.strip_suffix("%20"));
        match shorter {
            Some(shorter) => segment = shorter,
            None => return segment,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fast_path_only_takes_paths_that_are_already_normal() {
        // Every path up to six characters over an alphabet of the bytes
        // that matter: where the fast path says "normal", the full
        // normalisation must agree byte for byte.
        let alphabet = ['a', '/', '.', ';', '%', '2', 'F', '~', '\\', ' '];
        let mut paths = vec![String::from("/")];
        let mut taken = 0;
        for _ in 0..5 {
            let longer: Vec<String> = paths
                .iter()
                .flat_map(|p| alphabet.iter().map(move |c| format!("{p}{c}")))
                .collect();
            for path in &longer {
                if is_normal(path) {
                    taken += 1;
                    assert_eq!(
                        normalize_slowly(path).as_deref(),
                        Ok(path.as_str()),
                        "{path}"
                    );
                }
            }
            paths = longer;
        }
        assert!(taken > 1000, "the fast path took only {taken} paths");
        for path in [
            "/a//b",
            "/a/./b",
            "/a/../b",
            "/.well-known",
            "/a/%70",
            "/a\\b",
            "/a b",
            "/é",
        ] {
            assert!(!is_normal(path), "{path}");
        }
        assert!(matches!(normalize("/pay/ments;v=1/"), Ok(Cow::Borrowed(_))));
    }

    #[test]
    fn bypass_spellings_normalise_to_the_route() {
        for spelling in [
            "/payments",
            "/payments/",
            "//payments",
            "/./payments",
            "/a/../payments",
            "/%70ayments",
            "/%70%61yments",
            "/payments/.",
            "/x/y/../../payments",
            "/../payments",
            "/payments;jsessionid=1",
            "/%2e/payments",
            "/%2E%2E/payments",
        ] {
            let normalized = normalize(spelling).unwrap();
            assert_eq!(
                match_key(&normalized),
                "/payments",
                "{spelling} → {normalized}"
            );
        }
    }

    #[test]
    fn forwarded_path_keeps_meaningful_shape() {
        assert_eq!(normalize("/a//b/").unwrap(), "/a/b/");
        assert_eq!(normalize("/").unwrap(), "/");
        assert_eq!(normalize("/a/%7e%41").unwrap(), "/a/~A");
        assert_eq!(normalize("/a/%c3%a9").unwrap(), "/a/%C3%A9");
        assert_eq!(normalize("/a/..").unwrap(), "/");
    }

    #[test]
    fn ambiguous_spellings_are_refused() {
        assert_eq!(normalize("/pay%2Fments"), Err(PathError::Ambiguous));
        assert_eq!(normalize("/pay%2fments"), Err(PathError::Ambiguous));
        assert_eq!(normalize("/pay%5Cments"), Err(PathError::Ambiguous));
        assert_eq!(normalize("/pay\\ments"), Err(PathError::Ambiguous));
        assert_eq!(normalize("/pay%00"), Err(PathError::Ambiguous));
        for control in ["%09", "%0A", "%0d", "%1F", "%7F", "%7f", "%01"] {
            assert_eq!(
                normalize(&format!("/payments{control}")),
                Err(PathError::Ambiguous),
                "{control}"
            );
            assert_eq!(
                normalize(&format!("/pay{control}ments")),
                Err(PathError::Ambiguous),
                "{control}"
            );
        }
        assert_eq!(
            normalize("/payments%20").unwrap(),
            "/payments%20",
            "space is not a control"
        );
        assert_eq!(normalize("/pay%zz"), Err(PathError::BadEscape));
        assert_eq!(normalize("/pay%4"), Err(PathError::BadEscape));
        assert_eq!(normalize("*"), Err(PathError::NotAbsolute));
    }

    /// Fuzz regressions (`fuzz/fuzz_targets/path_normalize.rs`): a dot
    /// segment with parameters reached the match key as `..`, so
    /// `/public/..;/payments` matched `/public/{*rest}` while Tomcat-style
    /// upstreams run `/payments`.
    #[test]
    fn fuzz_regression_dot_segments_with_parameters_are_refused() {
        for input in [
            "/..;/admin",
            "/public/..;/payments",
            "/public/..;x=1/payments",
            "/public/.;/payments",
            "/public/%2e%2e;/payments",
            "/public/.%2E;a/payments",
        ] {
            assert_eq!(normalize(input), Err(PathError::Ambiguous), "{input}");
        }
        // Parameters on ordinary segments, and dots inside a segment, pass.
        assert_eq!(normalize("/a..;x/b").unwrap(), "/a..;x/b");
        assert_eq!(normalize("/...;x").unwrap(), "/...;x");
    }

    /// Regression guarded by the same fuzz target's "no empty segment in
    /// the match key" invariant: stripping a parameter-only segment left an
    /// empty segment in the match key (`/;x/payments` → `//payments`), so the
    /// route was missed and the request forwarded as unmatched.
    #[test]
    fn fuzz_regression_parameter_only_segments_vanish_from_the_match_key() {
        for input in [
            "/;x/payments",
            "/;/payments",
            "/payments/;",
            "/;a/;b/payments;c/",
        ] {
            let normalized = normalize(input).unwrap();
            assert_eq!(match_key(&normalized), "/payments", "{input}");
        }
        assert_eq!(match_key("/a/;/b"), "/a/b");
    }

    #[test]
    fn match_key_strips_matrix_parameters_and_trailing_slash() {
        assert_eq!(match_key("/"), "/");
        assert_eq!(match_key("/a;x/b;y=2/"), "/a/b");
        assert_eq!(match_key("/;x"), "/");
    }

    #[test]
    fn match_key_ignores_trailing_dots_and_encoded_spaces_of_segments() {
        for spelling in [
            "/payments.",
            "/payments..",
            "/payments%20",
            "/payments%20%20",
            "/payments.%20.",
            "/payments%20/",
            "/payments./",
            "/payments.;x",
        ] {
            let normalized = normalize(spelling).unwrap();
            assert_eq!(match_key(&normalized), "/payments", "{spelling}");
        }
        assert_eq!(match_key("/a./b%20/c"), "/a/b/c");
        assert_eq!(match_key("/v1.2/x"), "/v1.2/x", "inner dots stay");
        assert_eq!(match_key("/a%20b"), "/a%20b", "inner spaces stay");
        assert_eq!(match_key("/payments.json"), "/payments.json");
    }
}
