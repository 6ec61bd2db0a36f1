//! The identities nobody checked: the client address behind trusted
//! proxies (`client_ip`) and a header's value (`header:NAME`).
//!
//! `client_ip` walks `X-Forwarded-For` from the right — the hop appended by
//! the nearest proxy first — and stops at the first address not in
//! `trusted_proxies`; a client can prepend any value it likes, so the
//! leftmost value is believed only when every hop is trusted. This module
//! must never trust a header from a peer outside `trusted_proxies`.

use std::net::IpAddr;

use http::HeaderMap;
use ipnet::IpNet;

use crate::checks::header_text;
use crate::config::Identity;
use crate::rejection::Rejection;

/// The longest header identity accepted, in bytes.
pub const MAX_HEADER_IDENTITY: usize = 256;

/// The identity a route names that is known before anything is verified,
/// tagged with its kind so that identities of different kinds never share
/// a scope or a rate-limit key (`ip:10.0.0.1` ≠ `hdr:10.0.0.1`): the client
/// address, or a header's value. `Ok(None)` for `key_id`, which is known
/// only once the signature is verified. An absent header is
/// `missing_identity`; a repeated, non-UTF-8 or overlong one
/// `malformed_identity`.
pub fn unverified(
    identity: &Identity,
    headers: &HeaderMap,
    peer: IpAddr,
    trusted: &[IpNet],
) -> Result<Option<String>, Rejection> {
    match identity {
        Identity::ClientIp => Ok(Some(format!("ip:{}", client_ip(peer, headers, trusted)))),
        Identity::Header(name) => match header_text(headers, name) {
            None => Err(Rejection::MissingIdentity),
            Some(Ok(value)) if value.len() <= MAX_HEADER_IDENTITY => {
                Ok(Some(format!("hdr:{value}")))
            }
            Some(_) => Err(Rejection::MalformedIdentity),
        },
        // Known only once verified: the signature, the token, the
        // certificate (see `super::resolve`).
        Identity::KeyId | Identity::Jwt(_) | Identity::ClientCert => Ok(None),
    }
}

/// The client address for a request from `peer`. Addresses are
/// canonicalised before they are compared or returned (an IPv4-mapped
/// `::ffff:a.b.c.d`, as a dual-stack listener reports IPv4 peers, is
/// `a.b.c.d`), and hops written `ip:port` or `[v6]:port` are read as their
/// address.
pub fn client_ip(peer: IpAddr, headers: &HeaderMap, trusted: &[IpNet]) -> IpAddr {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(ip));
    let peer = peer.to_canonical();
    if !is_trusted(&peer) {
        return peer;
    }
    let mut current = peer;
    let hops = headers
        .get_all(http::header::HeaderName::from_static("x-forwarded-for"))
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect::<Vec<_>>();
    for hop in hops.iter().rev() {
        // An unparsable hop ends the walk: the last trusted hop we saw is
        // the closest address we can vouch for.
        let Some(ip) = hop_address(hop) else {
            return current;
        };
        current = ip;
        if !is_trusted(&ip) {
            return ip;
        }
    }
    current
}

/// The address of one `X-Forwarded-For` hop: `ip`, `ip:port`, `[v6]` or
/// `[v6]:port`, canonicalised.
fn hop_address(hop: &str) -> Option<IpAddr> {
    if let Ok(ip) = hop.parse::<IpAddr>() {
        return Some(ip.to_canonical());
    }
    if let Ok(addr) = hop.parse::<std::net::SocketAddr>() {
        return Some(addr.ip().to_canonical());
    }
    let bracketed = hop.strip_prefix('[')?.strip_suffix(']')?;
    bracketed
        .parse::<std::net::Ipv6Addr>()
        .ok()
        .map(|ip| IpAddr::V6(ip).to_canonical())
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn xff(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert("x-forwarded-for", HeaderValue::from_str(value).unwrap());
        headers
    }

    #[test]
    fn untrusted_peer_is_the_client_whatever_it_claims() {
        let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        let peer: IpAddr = "203.0.113.9".parse().unwrap();
        assert_eq!(client_ip(peer, &xff("1.2.3.4"), &trusted), peer);
    }

    #[test]
    fn walks_from_the_right_past_trusted_hops() {
        let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        let peer: IpAddr = "10.0.0.2".parse().unwrap();
        let headers = xff("6.6.6.6, 198.51.100.7, 10.0.0.1");
        assert_eq!(
            client_ip(peer, &headers, &trusted),
            "198.51.100.7".parse::<IpAddr>().unwrap()
        );
        assert_eq!(
            client_ip(peer, &xff("10.1.1.1, 10.0.0.1"), &trusted),
            "10.1.1.1".parse::<IpAddr>().unwrap()
        );
        assert_eq!(client_ip(peer, &HeaderMap::new(), &trusted), peer);
        assert_eq!(
            client_ip(peer, &xff("garbage, 10.0.0.1"), &trusted),
            "10.0.0.1".parse::<IpAddr>().unwrap()
        );
    }

    #[test]
    fn mapped_peers_and_hops_with_ports_are_the_addresses_they_name() {
        let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        let mapped: IpAddr = "::ffff:10.0.0.5".parse().unwrap();
        assert_eq!(
            client_ip(mapped, &xff("198.51.100.7"), &trusted),
            "198.51.100.7".parse::<IpAddr>().unwrap(),
            "an IPv4-mapped load balancer is trusted like 10.0.0.5"
        );
        let untrusted: IpAddr = "::ffff:198.51.100.9".parse().unwrap();
        assert_eq!(
            client_ip(untrusted, &xff("1.2.3.4"), &trusted),
            "198.51.100.9".parse::<IpAddr>().unwrap()
        );
        let peer: IpAddr = "10.0.0.5".parse().unwrap();
        for (hop, want) in [
            ("198.51.100.7:4711", "198.51.100.7"),
            ("[2001:db8::7]:443", "2001:db8::7"),
            ("[2001:db8::7]", "2001:db8::7"),
            ("::ffff:198.51.100.7", "198.51.100.7"),
            ("203.0.113.1, 10.0.0.9:80", "203.0.113.1"),
        ] {
            assert_eq!(
                client_ip(peer, &xff(hop), &trusted),
                want.parse::<IpAddr>().unwrap(),
                "{hop}"
            );
        }
    }
}
