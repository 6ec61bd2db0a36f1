//! The route table: which configured route a request belongs to.
//!
//! Routes are tried in file order and the first whose methods and path
//! match wins (`replay-guard check` prints that order). Path patterns use
//! `matchit` syntax — exact segments, `{name}` for one segment, `{*rest}`
//! for one or more — and are matched against the normalised path's
//! [`match_key`](crate::path::match_key); the patterns themselves are
//! compiled with the configuration ([`PathPattern`], re-exported here).
//! This module depends on [`crate::config`], never the reverse, and must
//! never look at anything but the method and the normalised path.

use http::Method;

pub use crate::config::PathPattern;
use crate::config::Route;

/// Ordered routes, or anything that carries one (the proxy keeps each
/// route's state beside its rule: `RouteTable<Arc<RouteState>>`).
#[derive(Debug, Clone)]
pub struct RouteTable<R = Route> {
    routes: Vec<R>,
}

impl<R> Default for RouteTable<R> {
    fn default() -> Self {
        Self { routes: Vec::new() }
    }
}

impl<R: Routed> RouteTable<R> {
    /// Build from validated routes, in file order.
    pub fn new(routes: Vec<R>) -> Self {
        Self { routes }
    }

    /// The first route matching method and path key. Methods match
    /// ASCII-case-insensitively (`post` gets the `POST` route, as the
    /// frameworks behind us fold case) and `HEAD` matches a route that lists
    /// `GET` (servers answer HEAD with the GET handler).
    pub fn find(&self, method: &Method, key: &str) -> Option<&R> {
        self.routes.iter().find(|entry| {
            let route = entry.route();
            route
                .methods
                .as_ref()
                .is_none_or(|methods| methods.iter().any(|listed| method_matches(listed, method)))
                && route.path.matches(key)
        })
    }

    /// All routes, in match order.
    pub fn routes(&self) -> &[R] {
        &self.routes
    }
}

/// Whether a request's method matches a method a route lists (upper-case).
fn method_matches(listed: &Method, method: &Method) -> bool {
    let asked = method.as_str();
    asked.eq_ignore_ascii_case(listed.as_str())
        || (*listed == Method::GET && asked.eq_ignore_ascii_case("HEAD"))
}

/// What a table entry is matched by: its route.
pub trait Routed {
    /// The validated route.
    fn route(&self) -> &Route;
}

impl Routed for Route {
    fn route(&self) -> &Route {
        self
    }
}

impl<T: Routed> Routed for std::sync::Arc<T> {
    fn route(&self) -> &Route {
        T::route(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    #[test]
    fn methods_match_case_insensitively_and_head_matches_get() {
        let config = Config::parse(
            r#"
[server]
listen = "127.0.0.1:0"
upstream = "http://127.0.0.1:9"
[[routes]]
name = "pay"
methods = ["POST"]
path = "/payments"
[[routes]]
name = "read"
methods = ["GET"]
path = "/payments"
"#,
            "t.toml",
        )
        .unwrap();
        let table = RouteTable::new(config.routes.clone());
        let name = |method: &str| {
            let method = Method::from_bytes(method.as_bytes()).unwrap();
            table.find(&method, "/payments").map(|r| r.name.as_str())
        };
        for spelling in ["POST", "post", "Post", "pOsT"] {
            assert_eq!(name(spelling), Some("pay"), "{spelling}");
        }
        for spelling in ["GET", "get", "HEAD", "head", "Head"] {
            assert_eq!(name(spelling), Some("read"), "{spelling}");
        }
        assert_eq!(name("PUT"), None);
        assert_eq!(name("POSTX"), None);
    }
}
