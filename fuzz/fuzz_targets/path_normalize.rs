//! Path normalisation: never panics; the output is a fixed point; it holds
//! no `//`, `.` or `..` segment; and the route table's match key never
//! holds one either (so a `;`-parameter cannot smuggle a dot segment or an
//! empty segment past the route table).
#![no_main]

use libfuzzer_sys::fuzz_target;
use replay_guard::path::{match_key, normalize};

fn has_dot_or_empty_inner_segment(path: &str) -> bool {
    let inner = path.strip_prefix('/').unwrap_or(path);
    let inner = inner.strip_suffix('/').unwrap_or(inner);
    !inner.is_empty()
        && inner
            .split('/')
            .any(|s| s.is_empty() || s == "." || s == "..")
}

fuzz_target!(|input: &str| {
    let Ok(normalized) = normalize(input) else {
        return;
    };
    assert!(normalized.starts_with('/'), "{input:?} → {normalized:?}");
    assert_eq!(
        normalize(&normalized).as_deref(),
        Ok(normalized.as_str()),
        "not idempotent for {input:?}"
    );
    for bad in ["//", "/./", "/../"] {
        assert!(!normalized.contains(bad), "{input:?} → {normalized:?}");
    }
    assert!(
        !normalized.ends_with("/.") && !normalized.ends_with("/.."),
        "{input:?} → {normalized:?}"
    );
    let key = match_key(&normalized);
    assert!(key.starts_with('/'), "{input:?} → key {key:?}");
    assert!(!key.contains(';'), "{input:?} → key {key:?}");
    assert!(
        key.len() == 1 || !key.ends_with('/'),
        "{input:?} → key {key:?}"
    );
    assert!(
        !has_dot_or_empty_inner_segment(&key),
        "{input:?} → {normalized:?} → key {key:?}"
    );
    assert_eq!(
        match_key(&key),
        key,
        "match key not idempotent for {input:?}"
    );
});
