//! What `run` would refuse at startup, checked while validating, so that
//! `check` says so too: a public and an admin listener that cannot both be
//! bound, and TLS files that are unreadable or do not make a certificate
//! and a matching key (built with the very function startup uses,
//! [`crate::tls::acceptor_from_pem`]).
//!
//! This module must never bind, connect or read anything except through
//! the injected [`Environment`]; a port another process holds is found
//! only by `run` itself.

use std::net::SocketAddr;
use std::ops::Range;

use super::Problems;
use crate::config::{Environment, Server};

/// Where the server's startup-relevant keys are written.
pub(super) struct Spans {
    /// `admin_listen`'s value.
    pub(super) admin_listen: Option<Range<usize>>,
    /// The `[server.tls]` table.
    pub(super) tls: Option<Range<usize>>,
}

/// Every startup refusal of `server` that can be known from the file.
pub(super) fn check(server: &Server, spans: &Spans, env: &dyn Environment, p: &mut Problems<'_>) {
    if let (Some(admin), Some(span)) = (server.admin_listen, spans.admin_listen.clone()) {
        if overlap(server.listen, admin) {
            p.at(
                span,
                format!(
                    "admin_listen {admin} and listen {} cannot both be bound (the same port on overlapping addresses): give admin_listen its own port, e.g. \"127.0.0.1:9901\"",
                    server.listen
                ),
            );
        }
    }
    if let (Some(files), Some(span)) = (&server.tls, spans.tls.clone()) {
        let cert = env.read_file(&files.cert_file);
        let key = env.read_file(&files.key_file);
        match (cert, key) {
            (Ok(cert), Ok(key)) => {
                if let Err(e) = crate::tls::acceptor_from_pem(files, &cert, &key) {
                    p.at(span, format!("{e}: write PEM files (BEGIN CERTIFICATE, BEGIN PRIVATE KEY) of one certificate and its key"));
                }
            }
            (cert, key) => {
                for (what, path, result) in [
                    ("cert_file", &files.cert_file, cert.err()),
                    ("key_file", &files.key_file, key.err()),
                ] {
                    if let Some(e) = result {
                        p.at(
                            span.clone(),
                            format!(
                                "{what} {} cannot be read: {e}; write the path of a readable PEM file",
                                path.display()
                            ),
                        );
                    }
                }
            }
        }
    }
}

/// Two listeners that the OS will not bind both: the same port (not 0) on
/// the same address, or on addresses where one is the wildcard of the
/// other's family (`0.0.0.0` / `[::]`, which on Linux also takes IPv4).
fn overlap(a: SocketAddr, b: SocketAddr) -> bool {
    if a.port() != b.port() || a.port() == 0 {
        return false;
    }
    a.ip() == b.ip()
        || a.ip().is_unspecified() && (a.is_ipv6() || a.is_ipv4() == b.is_ipv4())
        || b.ip().is_unspecified() && (b.is_ipv6() || b.is_ipv4() == a.is_ipv4())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listeners_overlap_on_one_port_of_overlapping_addresses() {
        let addr = |s: &str| s.parse::<SocketAddr>().unwrap();
        assert!(overlap(addr("127.0.0.1:8080"), addr("127.0.0.1:8080")));
        assert!(overlap(addr("0.0.0.0:8080"), addr("127.0.0.1:8080")));
        assert!(overlap(addr("127.0.0.1:8080"), addr("[::]:8080")));
        assert!(!overlap(addr("127.0.0.1:8080"), addr("127.0.0.1:9901")));
        assert!(!overlap(addr("127.0.0.1:0"), addr("127.0.0.1:0")));
        assert!(!overlap(addr("127.0.0.1:8080"), addr("127.0.0.2:8080")));
        assert!(!overlap(addr("0.0.0.0:8080"), addr("[::1]:8080")));
    }
}
