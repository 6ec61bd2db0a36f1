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

/// Ordered routes.
#[derive(Debug, Clone, Default)]
pub struct RouteTable {
    routes: Vec<Route>,
}

impl RouteTable {
    /// Build from validated routes, in file order.
    pub fn new(routes: Vec<Route>) -> Self {
        Self { routes }
    }

    /// The first route matching method and path key, with its index.
    pub fn find(&self, method: &Method, key: &str) -> Option<(usize, &Route)> {
        self.routes.iter().enumerate().find(|(_, route)| {
            route
                .methods
                .as_ref()
                .is_none_or(|methods| methods.contains(method))
                && route.path.matches(key)
        })
    }

    /// All routes, in match order.
    pub fn routes(&self) -> &[Route] {
        &self.routes
    }
}
