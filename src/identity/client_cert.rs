//! `identity = "client_cert"`: who a verified client certificate names.
//!
//! The certificate was verified by the TLS handshake against
//! `[server.tls] client_ca_file` (rustls' WebPKI client verifier); this
//! module only reads its names: the first URI SAN (e.g. a SPIFFE id),
//! else the first DNS SAN, else the subject CN. It must never be handed a
//! certificate the handshake did not verify, and never log the names.

use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};

/// Which name of the certificate is the identity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameKind {
    /// A `uniformResourceIdentifier` SAN.
    Uri,
    /// A `dNSName` SAN.
    Dns,
    /// The subject's common name.
    CommonName,
}

impl NameKind {
    fn tag(self) -> &'static str {
        match self {
            NameKind::Uri => "uri",
            NameKind::Dns => "dns",
            NameKind::CommonName => "cn",
        }
    }
}

/// The identity of one verified client certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertIdentity {
    /// Which name it is.
    pub kind: NameKind,
    /// The name, as written in the certificate.
    pub name: String,
}

impl CertIdentity {
    /// The name from a verified end-entity certificate (DER); `None` when
    /// it names nothing usable (or does not parse).
    pub fn from_der(der: &[u8]) -> Option<CertIdentity> {
        let (_, cert) = X509Certificate::from_der(der).ok()?;
        if let Ok(Some(san)) = cert.subject_alternative_name() {
            let names = &san.value.general_names;
            let uri = names.iter().find_map(|n| match n {
                GeneralName::URI(uri) if !uri.is_empty() => Some((NameKind::Uri, *uri)),
                _ => None,
            });
            let dns = || {
                names.iter().find_map(|n| match n {
                    GeneralName::DNSName(dns) if !dns.is_empty() => Some((NameKind::Dns, *dns)),
                    _ => None,
                })
            };
            if let Some((kind, name)) = uri.or_else(dns) {
                return Some(CertIdentity {
                    kind,
                    name: name.to_owned(),
                });
            }
        }
        let cn = cert.subject().iter_common_name().next()?.as_str().ok()?;
        (!cn.is_empty()).then(|| CertIdentity {
            kind: NameKind::CommonName,
            name: cn.to_owned(),
        })
    }

    /// The identity tagged with its kind, for scopes and rate limits:
    /// `cert:uri:spiffe://…`, `cert:dns:…`, `cert:cn:…`.
    pub fn scoped(&self) -> String {
        format!("cert:{}:{}", self.kind.tag(), self.name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cert(sans: Vec<rcgen::SanType>, cn: Option<&str>) -> Vec<u8> {
        let mut params = rcgen::CertificateParams::default();
        params.subject_alt_names = sans;
        params.distinguished_name = rcgen::DistinguishedName::new();
        if let Some(cn) = cn {
            params
                .distinguished_name
                .push(rcgen::DnType::CommonName, cn);
        }
        let key = rcgen::KeyPair::generate().unwrap();
        params.self_signed(&key).unwrap().der().to_vec()
    }

    #[test]
    fn uri_san_then_dns_san_then_common_name() {
        let uri = rcgen::SanType::URI("spiffe://example.org/billing".try_into().unwrap());
        let dns = rcgen::SanType::DnsName("billing.internal".try_into().unwrap());
        let both = CertIdentity::from_der(&cert(vec![dns.clone(), uri], Some("cn"))).unwrap();
        assert_eq!(
            (both.kind, both.name.as_str()),
            (NameKind::Uri, "spiffe://example.org/billing")
        );
        let dns_only = CertIdentity::from_der(&cert(vec![dns], Some("cn"))).unwrap();
        assert_eq!(dns_only.scoped(), "cert:dns:billing.internal");
        let cn = CertIdentity::from_der(&cert(vec![], Some("billing"))).unwrap();
        assert_eq!(cn.scoped(), "cert:cn:billing");
        assert_eq!(CertIdentity::from_der(&cert(vec![], None)), None);
        assert_eq!(CertIdentity::from_der(b"not a certificate"), None);
    }
}
