//! The entry point driven as the request path drives it, with requests
//! signed by [`super::sign`]: several signatures, labels and tags,
//! optional routes, `expires`, a missing `created`, non-normal paths, and
//! a signer/verifier round trip for every asymmetric algorithm.

use std::collections::BTreeMap;

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{
    EcdsaKeyPair, Ed25519KeyPair, KeyPair as _, ECDSA_P256_SHA256_FIXED_SIGNING,
};
use http::request::Parts;
use http::{HeaderValue, Method, Request as HttpRequest};

use super::sign::{sign, Signer, SigningKey, Unsigned};
use super::{check, Now, Request, Verified};
use crate::clock::ManualClock;
use crate::config::{Algorithm, Component, Config, Key, KeyMaterial, PublicKey, Route, Secret};
use crate::rejection::Rejection;

const T: i64 = 1_764_326_400;
const BODY: &[u8] = b"{\"amount\":1250}";

const TOML: &str = "[server]\nlisten = \"127.0.0.1:0\"\nupstream = \"http://127.0.0.1:9\"\n\
    [[routes]]\nname = \"any\"\npath = \"/p\"\nfreshness = { max_skew_secs = 60 }\nsignature = { scheme = \"rfc9421\" }\n\
    [[routes]]\nname = \"labelled\"\npath = \"/p\"\nfreshness = { max_skew_secs = 60 }\nsignature = { scheme = \"rfc9421\", label = \"sig2\" }\n\
    [[routes]]\nname = \"optional\"\npath = \"/p\"\nfreshness = { max_skew_secs = 60 }\nsignature = { required = false, scheme = \"rfc9421\" }\n";

fn secret_key(id: &str, secret: &[u8]) -> (String, Key) {
    let material = KeyMaterial::Secret {
        current: Secret::new(secret.to_vec()),
        previous: None,
    };
    (
        id.to_owned(),
        Key {
            id: id.to_owned(),
            material,
            inline: false,
        },
    )
}

fn components() -> Vec<Component> {
    crate::config::DEFAULT_COMPONENTS
        .iter()
        .filter_map(|name| Component::named(name))
        .collect()
}

/// A request to `target` carrying the signatures of `signers`.
fn request(target: &str, signatures: &[(&SigningKey, Signer<'_>)]) -> Parts {
    let mut parts = HttpRequest::post(target)
        .header("host", "api.example")
        .body(())
        .unwrap()
        .into_parts()
        .0;
    let (mut inputs, mut values) = (Vec::new(), Vec::new());
    for (key, signer) in signatures {
        let unsigned = Unsigned {
            method: &Method::POST,
            uri: &parts.uri,
            headers: &parts.headers,
            body: BODY,
            https: false,
        };
        for (name, value) in sign(key, signer, unsigned).unwrap() {
            match name.as_str() {
                "signature-input" => inputs.push(value.to_str().unwrap().to_owned()),
                "signature" => values.push(value.to_str().unwrap().to_owned()),
                _ => {
                    parts.headers.insert(name, value);
                }
            }
        }
    }
    for (name, list) in [("signature-input", inputs), ("signature", values)] {
        if !list.is_empty() {
            parts
                .headers
                .insert(name, HeaderValue::from_str(&list.join(", ")).unwrap());
        }
    }
    parts
}

fn signer<'a>(label: &'a str, key_id: &'a str, components: &'a [Component]) -> Signer<'a> {
    Signer {
        label,
        components,
        key_id,
        created: T,
        expires: None,
        nonce: Some("a-nonce-of-twenty-chars"),
        tag: None,
        alg: true,
    }
}

struct Fixture {
    config: Config,
    keys: BTreeMap<String, Key>,
    clock: std::sync::Arc<ManualClock>,
}

impl Fixture {
    fn new(extra: Vec<(String, Key)>) -> Fixture {
        let mut keys: BTreeMap<String, Key> = [secret_key("mac", b"secret")].into_iter().collect();
        keys.extend(extra);
        Fixture {
            config: Config::parse(TOML, "t.toml").unwrap(),
            keys,
            clock: ManualClock::at_secs(T as u64),
        }
    }

    fn route(&self, name: &str) -> &Route {
        self.config.routes.iter().find(|r| r.name == name).unwrap()
    }

    fn run(
        &self,
        route: &str,
        parts: &Parts,
        path: &str,
    ) -> Result<Option<Verified<'_>>, Rejection> {
        let route = self.route(route);
        let content = crate::checks::Content::new(BODY);
        let request = Request {
            parts,
            path,
            body: &content,
            https: false,
        };
        let now = Now {
            clock: self.clock.as_ref(),
            fences: &[],
        };
        check(
            &self.keys,
            route,
            route.scheme.rfc9421().unwrap(),
            &request,
            now,
        )
    }
}

#[test]
fn the_first_signature_that_verifies_or_the_named_label() {
    let f = Fixture::new(vec![]);
    let mac = SigningKey::Hmac(Secret::new(b"secret".to_vec()));
    let wrong = SigningKey::Hmac(Secret::new(b"wrong".to_vec()));
    let c = components();
    let parts = request(
        "/p",
        &[
            (&wrong, signer("sig1", "mac", &c)),
            (&mac, signer("sig2", "mac", &c)),
        ],
    );
    let verified = f.run("any", &parts, "/p").unwrap().unwrap();
    assert_eq!(verified.key_id, "mac");
    assert_eq!(verified.nonce.as_deref(), Some("a-nonce-of-twenty-chars"));
    assert_eq!(verified.fresh.seconds_ceil, T as u64);
    assert!(f.run("labelled", &parts, "/p").unwrap().is_some());
    let swapped = request(
        "/p",
        &[
            (&mac, signer("sig1", "mac", &c)),
            (&wrong, signer("sig2", "mac", &c)),
        ],
    );
    assert_eq!(
        f.run("labelled", &swapped, "/p"),
        Err(Rejection::BadSignature),
        "only the route's label counts"
    );
    assert_eq!(f.run("any", &swapped, "/p").map(|v| v.is_some()), Ok(true));
}

#[test]
fn optional_routes_missing_created_expires_and_non_normal_paths() {
    let f = Fixture::new(vec![]);
    let mac = SigningKey::Hmac(Secret::new(b"secret".to_vec()));
    let c = components();
    let unsigned = request("/p", &[]);
    assert_eq!(f.run("optional", &unsigned, "/p"), Ok(None));
    assert_eq!(
        f.run("any", &unsigned, "/p"),
        Err(Rejection::MissingSignature)
    );
    let expired = Signer {
        expires: Some(T - 1),
        ..signer("sig1", "mac", &c)
    };
    assert_eq!(
        f.run("any", &request("/p", &[(&mac, expired)]), "/p"),
        Err(Rejection::StaleTimestamp)
    );
    let later = Signer {
        expires: Some(T + 10),
        ..signer("sig1", "mac", &c)
    };
    assert!(f.run("any", &request("/p", &[(&mac, later)]), "/p").is_ok());
    let mut no_created = request("/p", &[(&mac, signer("sig1", "mac", &c))]);
    let input = no_created.headers["signature-input"]
        .to_str()
        .unwrap()
        .replace(&format!(";created={T}"), "");
    no_created
        .headers
        .insert("signature-input", HeaderValue::from_str(&input).unwrap());
    assert_eq!(
        f.run("any", &no_created, "/p"),
        Err(Rejection::MissingTimestamp)
    );
    let no_keyid = signer("sig1", "", &c);
    assert_eq!(
        f.run("any", &request("/p", &[(&mac, no_keyid)]), "/p"),
        Err(Rejection::UnknownKey)
    );
    let raw = request("//p", &[(&mac, signer("sig1", "mac", &c))]);
    assert_eq!(
        f.run("any", &raw, "/p"),
        Err(Rejection::BadSignature),
        "signed as received, but not the path the proxy forwards"
    );
}

#[test]
fn every_asymmetric_algorithm_round_trips() {
    let rng = SystemRandom::new();
    let ed = Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
    let ec = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
    let ed = SigningKey::Ed25519(Ed25519KeyPair::from_pkcs8(ed.as_ref()).unwrap());
    let ec = SigningKey::EcdsaP256(
        EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, ec.as_ref()).unwrap(),
    );
    let rsa = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).unwrap();
    let rsa_der = rsa.as_der().unwrap();
    let pss = SigningKey::Rsa(
        aws_lc_rs::rsa::KeyPair::from_pkcs8(rsa_der.as_ref()).unwrap(),
        Algorithm::RsaPssSha512,
    );
    let v15 = SigningKey::Rsa(
        aws_lc_rs::rsa::KeyPair::from_pkcs8(rsa_der.as_ref()).unwrap(),
        Algorithm::RsaV15Sha256,
    );
    let keys: Vec<(&str, &SigningKey)> =
        vec![("ed", &ed), ("ec", &ec), ("pss", &pss), ("v15", &v15)];
    let public = |key: &SigningKey| -> PublicKey {
        let spki = match key {
            SigningKey::Ed25519(pair) => pair.public_key().as_der().unwrap().as_ref().to_vec(),
            SigningKey::EcdsaP256(pair) => pair.public_key().as_der().unwrap().as_ref().to_vec(),
            SigningKey::Rsa(pair, _) => pair.public_key().as_der().unwrap().as_ref().to_vec(),
            SigningKey::Hmac(_) => unreachable!(),
        };
        PublicKey::from_spki(key.algorithm(), &spki).unwrap()
    };
    let extra = keys
        .iter()
        .map(|(id, key)| {
            let material = KeyMaterial::Public {
                algorithm: key.algorithm(),
                current: public(key),
                previous: None,
            };
            (
                id.to_string(),
                Key {
                    id: id.to_string(),
                    material,
                    inline: false,
                },
            )
        })
        .collect();
    let f = Fixture::new(extra);
    let c = components();
    for (id, key) in &keys {
        let parts = request("/p", &[(key, signer("sig1", id, &c))]);
        assert_eq!(
            f.run("any", &parts, "/p").map(|v| v.map(|v| v.key_id)),
            Ok(Some(*id)),
            "{id}"
        );
        let other = if *id == "ed" { "ec" } else { "ed" };
        let parts = request(
            "/p",
            &[(
                key,
                Signer {
                    alg: false,
                    ..signer("sig1", other, &c)
                },
            )],
        );
        assert_eq!(
            f.run("any", &parts, "/p"),
            Err(Rejection::BadSignature),
            "{id} as {other}"
        );
    }
}
