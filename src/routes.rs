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

    /// The first route matching method and path key.
    pub fn find(&self, method: &Method, key: &str) -> Option<&R> {
        self.routes.iter().find(|entry| {
            let route = entry.route();
            route
                .methods
                .as_ref()
                .is_none_or(|methods| methods.contains(method))
                && route.path.matches(key)
        })
    }

    /// All routes, in match order.
    pub fn routes(&self) -> &[R] {
        &self.routes
    }
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
