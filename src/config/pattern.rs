//! The compiled path pattern of a route.
//!
//! Patterns use `matchit` syntax — exact segments, `{name}` for one
//! segment, `{*rest}` for one or more — and are compiled once, while the
//! configuration is validated; [`crate::routes`] matches them against the
//! normalised path's [`match_key`](crate::path::match_key). Compiling says
//! what to write instead of a bad pattern. This module must never look at a
//! request or know about routes: it only turns a pattern into a matcher.

/// A compiled path pattern.
#[derive(Clone)]
pub struct PathPattern {
    source: String,
    router: matchit::Router<()>,
}

impl std::fmt::Debug for PathPattern {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PathPattern({})", self.source)
    }
}

impl std::fmt::Display for PathPattern {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.source)
    }
}

impl PathPattern {
    /// Compile a pattern, or say what to write instead.
    pub fn compile(pattern: &str) -> Result<Self, String> {
        if !pattern.starts_with('/') {
            return Err(format!(
                "path {pattern:?} must start with '/', e.g. \"/payments\""
            ));
        }
        if pattern.len() > 1 && pattern.ends_with('/') {
            return Err(format!(
                "path {pattern:?} ends with '/': write {:?} (trailing slashes are ignored when matching)",
                pattern.trim_end_matches('/')
            ));
        }
        if pattern.contains("//") || pattern.split('/').any(|s| s == "." || s == "..") {
            return Err(format!(
                "path {pattern:?} is not normalised: no '//', '.' or '..' segments"
            ));
        }
        let mut router = matchit::Router::new();
        router
            .insert(pattern, ())
            .map_err(|e| format!("path {pattern:?} is not a valid pattern ({e}); use /exact, /orders/{{id}} or /api/{{*rest}}"))?;
        Ok(Self {
            source: pattern.to_owned(),
            router,
        })
    }

    /// Whether a match key fits the pattern.
    pub fn matches(&self, key: &str) -> bool {
        self.router.at(key).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_match_as_documented() {
        let exact = PathPattern::compile("/payments").unwrap();
        assert!(exact.matches("/payments"));
        assert!(!exact.matches("/payments/1"));
        let param = PathPattern::compile("/orders/{id}").unwrap();
        assert!(param.matches("/orders/42"));
        assert!(!param.matches("/orders/42/items"));
        assert!(!param.matches("/orders"));
        let rest = PathPattern::compile("/api/{*rest}").unwrap();
        assert!(rest.matches("/api/a"));
        assert!(rest.matches("/api/a/b/c"));
        assert!(!rest.matches("/api"));
    }

    #[test]
    fn bad_patterns_say_what_to_write() {
        assert!(PathPattern::compile("payments")
            .unwrap_err()
            .contains("start with '/'"));
        assert!(PathPattern::compile("/payments/")
            .unwrap_err()
            .contains("\"/payments\""));
        assert!(PathPattern::compile("/a/{*rest}/b").is_err());
    }
}
