//! RFC 9421 Appendix B known answers: the `test-request` message, the
//! example keys of B.1 and the signatures of B.2.1–B.2.3 (RSA-PSS),
//! B.2.5 (HMAC-SHA256) and B.2.6 (Ed25519): the signature base byte for
//! byte, the signature verified, and the whole check on B.2.3.

use std::collections::BTreeMap;
use std::time::Duration;

use base64::Engine as _;
use http::request::Parts;
use http::Request;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::SubjectPublicKeyInfoDer;

use super::base::{signature_base, Message};
use super::params::Fields;
use super::verify::verifies;
use super::{check, Now, Request as Checked};
use crate::clock::{Clock, ManualClock};
use crate::config::{Algorithm, Config, Key, KeyMaterial, PublicKey, Secret};
use crate::rejection::Rejection;

/// B.1.2 `test-key-rsa-pss`, public half.
const RSA_PSS_PUBLIC: &str = "-----BEGIN PUBLIC KEY-----
MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAr4tmm3r20Wd/PbqvP1s2
+QEtvpuRaV8Yq40gjUR8y2Rjxa6dpG2GXHbPfvMs8ct+Lh1GH45x28Rw3Ry53mm+
oAXjyQ86OnDkZ5N8lYbggD4O3w6M6pAvLkhk95AndTrifbIFPNU8PPMO7OyrFAHq
gDsznjPFmTOtCEcN2Z1FpWgchwuYLPL+Wokqltd11nqqzi+bJ9cvSKADYdUAAN5W
Utzdpiy6LbTgSxP7ociU4Tn0g5I6aDZJ7A8Lzo0KSyZYoA485mqcO0GVAdVw9lq4
aOT9v6d+nb4bnNkQVklLQ3fVAvJm+xdDOp9LCNCN48V2pnDOkFV6+U9nV5oyc6XI
2wIDAQAB
-----END PUBLIC KEY-----
";

/// B.1.4 `test-key-ed25519`, public half.
const ED25519_PUBLIC: &str = "-----BEGIN PUBLIC KEY-----
MCowBQYDK2VwAyEAJrQLj5P/89iXES9+vFgrIy29clF9CC/oPPsw3c5D0bs=
-----END PUBLIC KEY-----
";

/// B.1.5 `test-shared-secret` (base64).
const SHARED_SECRET_B64: &str =
    "uzvJfB4u3N0Jy4T7NZ75MDVcr8zSTInedJtkgcu46YW4XByzNJjxBdtjUkdJPBtbmHhIDi6pcl8jsasjlTMtDQ==";

const CONTENT_DIGEST: &str = "sha-512=:WZDPaVn/7XgHaAy8pmojAkGWoRx2UFChF41A2svX+TaPm+AbwAgBWnrIiYllu7BNNyealdVLvRwEmTHWXvJwew==:";

const BODY: &[u8] = b"{\"hello\": \"world\"}";

const CREATED: u64 = 1_618_884_473;

/// The `test-request` of Appendix B.2 with one signature's fields.
fn test_request(signature_input: &str, signature: &str) -> Parts {
    Request::post("/foo?param=Value&Pet=dog")
        .header("host", "example.com")
        .header("date", "Tue, 20 Apr 2021 02:07:55 GMT")
        .header("content-type", "application/json")
        .header("content-digest", CONTENT_DIGEST)
        .header("content-length", "18")
        .header("signature-input", signature_input)
        .header("signature", signature)
        .body(())
        .unwrap()
        .into_parts()
        .0
}

fn public(algorithm: Algorithm, pem: &str) -> KeyMaterial {
    let der = SubjectPublicKeyInfoDer::from_pem_slice(pem.as_bytes()).unwrap();
    KeyMaterial::Public {
        algorithm,
        current: PublicKey::from_spki(algorithm, der.as_ref()).unwrap(),
        previous: None,
    }
}

fn shared_secret() -> KeyMaterial {
    KeyMaterial::Secret {
        current: Secret::new(
            base64::engine::general_purpose::STANDARD
                .decode(SHARED_SECRET_B64)
                .unwrap(),
        ),
        previous: None,
    }
}

/// Build the base from the request's own fields and verify it.
fn assert_known_answer(parts: &Parts, material: &KeyMaterial, expected_base: &str) {
    let fields = Fields::read(&parts.headers).unwrap().unwrap();
    let all = fields.candidates().unwrap();
    assert_eq!(all.len(), 1);
    let message = Message {
        method: &parts.method,
        uri: &parts.uri,
        headers: &parts.headers,
        https: false,
    };
    let base = signature_base(&message, &all[0].input).unwrap();
    assert_eq!(base, expected_base, "signature base, byte for byte");
    assert!(
        verifies(material, base.as_bytes(), &all[0].signature),
        "the RFC's signature verifies"
    );
    let mut tampered = base.into_bytes();
    tampered[1] ^= 1;
    assert!(!verifies(material, &tampered, &all[0].signature));
}

#[test]
fn b21_minimal_rsa_pss_sha512() {
    let parts = test_request(
        "sig-b21=();created=1618884473;keyid=\"test-key-rsa-pss\";nonce=\"b3k2pp5k7z-50gnwp.yemd\"",
        "sig-b21=:d2pmTvmbncD3xQm8E9ZV2828BjQWGgiwAaw5bAkgibUopemLJcWDy/lkbbHAve4cRAtx31Iq786U7it++wgGxbtRxf8Udx7zFZsckzXaJMkA7ChG52eSkFxykJeNqsrWH5S+oxNFlD4dzVuwe8DhTSja8xxbR/Z2cOGdCbzR72rgFWhzx2VjBqJzsPLMIQKhO4DGezXehhWwE56YCE+O6c0mKZsfxVrogUvA4HELjVKWmAvtl6UnCh8jYzuVG5WSb/QEVPnP5TmcAnLH1g+s++v6d4s8m0gCw1fV5/SITLq9mhho8K3+7EPYTU8IU1bLhdxO5Nyt8C8ssinQ98Xw9Q==:",
    );
    assert_known_answer(
        &parts,
        &public(Algorithm::RsaPssSha512, RSA_PSS_PUBLIC),
        "\"@signature-params\": ();created=1618884473;keyid=\"test-key-rsa-pss\";nonce=\"b3k2pp5k7z-50gnwp.yemd\"",
    );
}

#[test]
fn b22_selective_rsa_pss_sha512_with_query_param_and_tag() {
    let parts = test_request(
        "sig-b22=(\"@authority\" \"content-digest\" \"@query-param\";name=\"Pet\");created=1618884473;keyid=\"test-key-rsa-pss\";tag=\"header-example\"",
        "sig-b22=:LjbtqUbfmvjj5C5kr1Ugj4PmLYvx9wVjZvD9GsTT4F7GrcQEdJzgI9qHxICagShLRiLMlAJjtq6N4CDfKtjvuJyE5qH7KT8UCMkSowOB4+ECxCmT8rtAmj/0PIXxi0A0nxKyB09RNrCQibbUjsLS/2YyFYXEu4TRJQzRw1rLEuEfY17SARYhpTlaqwZVtR8NV7+4UKkjqpcAoFqWFQh62s7Cl+H2fjBSpqfZUJcsIk4N6wiKYd4je2U/lankenQ99PZfB4jY3I5rSV2DSBVkSFsURIjYErOs0tFTQosMTAoxk//0RoKUqiYY8Bh0aaUEb0rQl3/XaVe4bXTugEjHSw==:",
    );
    assert_known_answer(
        &parts,
        &public(Algorithm::RsaPssSha512, RSA_PSS_PUBLIC),
        concat!(
            "\"@authority\": example.com\n",
            "\"content-digest\": sha-512=:WZDPaVn/7XgHaAy8pmojAkGWoRx2UFChF41A2svX+TaPm+AbwAgBWnrIiYllu7BNNyealdVLvRwEmTHWXvJwew==:\n",
            "\"@query-param\";name=\"Pet\": dog\n",
            "\"@signature-params\": (\"@authority\" \"content-digest\" \"@query-param\";name=\"Pet\");created=1618884473;keyid=\"test-key-rsa-pss\";tag=\"header-example\"",
        ),
    );
}

const B23_INPUT: &str = "sig-b23=(\"date\" \"@method\" \"@path\" \"@query\" \"@authority\" \"content-type\" \"content-digest\" \"content-length\");created=1618884473;keyid=\"test-key-rsa-pss\"";
const B23_SIGNATURE: &str = "sig-b23=:bbN8oArOxYoyylQQUU6QYwrTuaxLwjAC9fbY2F6SVWvh0yBiMIRGOnMYwZ/5MR6fb0Kh1rIRASVxFkeGt683+qRpRRU5p2voTp768ZrCUb38K0fUxN0O0iC59DzYx8DFll5GmydPxSmme9v6ULbMFkl+V5B1TP/yPViV7KsLNmvKiLJH1pFkh/aYA2HXXZzNBXmIkoQoLd7YfW91kE9o/CCoC1xMy7JA1ipwvKvfrs65ldmlu9bpG6A9BmzhuzF8Eim5f8ui9eH8LZH896+QIF61ka39VBrohr9iyMUJpvRX2Zbhl5ZJzSRxpJyoEZAFL2FUo5fTIztsDZKEgM4cUA==:";

#[test]
fn b23_full_coverage_rsa_pss_sha512() {
    let parts = test_request(B23_INPUT, B23_SIGNATURE);
    assert_known_answer(
        &parts,
        &public(Algorithm::RsaPssSha512, RSA_PSS_PUBLIC),
        concat!(
            "\"date\": Tue, 20 Apr 2021 02:07:55 GMT\n",
            "\"@method\": POST\n",
            "\"@path\": /foo\n",
            "\"@query\": ?param=Value&Pet=dog\n",
            "\"@authority\": example.com\n",
            "\"content-type\": application/json\n",
            "\"content-digest\": sha-512=:WZDPaVn/7XgHaAy8pmojAkGWoRx2UFChF41A2svX+TaPm+AbwAgBWnrIiYllu7BNNyealdVLvRwEmTHWXvJwew==:\n",
            "\"content-length\": 18\n",
            "\"@signature-params\": (\"date\" \"@method\" \"@path\" \"@query\" \"@authority\" \"content-type\" \"content-digest\" \"content-length\");created=1618884473;keyid=\"test-key-rsa-pss\"",
        ),
    );
}

#[test]
fn b25_hmac_sha256() {
    let parts = test_request(
        "sig-b25=(\"date\" \"@authority\" \"content-type\");created=1618884473;keyid=\"test-shared-secret\"",
        "sig-b25=:pxcQw6G3AjtMBQjwo8XzkZf/bws5LelbaMk5rGIGtE8=:",
    );
    assert_known_answer(
        &parts,
        &shared_secret(),
        concat!(
            "\"date\": Tue, 20 Apr 2021 02:07:55 GMT\n",
            "\"@authority\": example.com\n",
            "\"content-type\": application/json\n",
            "\"@signature-params\": (\"date\" \"@authority\" \"content-type\");created=1618884473;keyid=\"test-shared-secret\"",
        ),
    );
}

#[test]
fn b26_ed25519() {
    let parts = test_request(
        "sig-b26=(\"date\" \"@method\" \"@path\" \"@authority\" \"content-type\" \"content-length\");created=1618884473;keyid=\"test-key-ed25519\"",
        "sig-b26=:wqcAqbmYJ2ji2glfAMaRy4gruYYnx2nEFN2HN6jrnDnQCK1u02Gb04v9EDgwUPiu4A0w6vuQv5lIp5WPpBKRCw==:",
    );
    assert_known_answer(
        &parts,
        &public(Algorithm::Ed25519, ED25519_PUBLIC),
        concat!(
            "\"date\": Tue, 20 Apr 2021 02:07:55 GMT\n",
            "\"@method\": POST\n",
            "\"@path\": /foo\n",
            "\"@authority\": example.com\n",
            "\"content-type\": application/json\n",
            "\"content-length\": 18\n",
            "\"@signature-params\": (\"date\" \"@method\" \"@path\" \"@authority\" \"content-type\" \"content-length\");created=1618884473;keyid=\"test-key-ed25519\"",
        ),
    );
}

/// The whole check, as the request path drives it, over B.2.3 (which
/// covers the default components and Content-Digest) and over B.2.6
/// (which covers no Content-Digest although the request has a body).
#[test]
fn the_check_accepts_b23_and_refuses_what_the_route_does_not_allow() {
    let toml = "[server]\nlisten = \"127.0.0.1:0\"\nupstream = \"http://127.0.0.1:9\"\n\
        [[routes]]\nname = \"foo\"\npath = \"/foo\"\nfreshness = { max_skew_secs = 300 }\n\
        signature = { required = true, scheme = \"rfc9421\" }\n\
        [[routes]]\nname = \"tagged\"\npath = \"/foo\"\nfreshness = { max_skew_secs = 300 }\n\
        signature = { required = true, scheme = \"rfc9421\", tag = \"partner\" }\n";
    let config = Config::parse(toml, "t.toml").unwrap();
    let (route, tagged) = (&config.routes[0], &config.routes[1]);
    let rule = |r: &crate::config::Route| r.scheme.rfc9421().unwrap().clone();
    let mut keys = BTreeMap::new();
    for (id, material) in [
        (
            "test-key-rsa-pss",
            public(Algorithm::RsaPssSha512, RSA_PSS_PUBLIC),
        ),
        (
            "test-key-ed25519",
            public(Algorithm::Ed25519, ED25519_PUBLIC),
        ),
    ] {
        keys.insert(
            id.to_owned(),
            Key {
                id: id.to_owned(),
                material,
                inline: false,
            },
        );
    }
    let clock = ManualClock::at_secs(CREATED + 10);
    let now = Now {
        clock: clock.as_ref(),
        fences: &[],
    };
    let run = |route: &crate::config::Route, parts: &Parts, body: &[u8]| {
        let content = crate::checks::Content::new(body);
        let request = Checked {
            parts,
            path: parts.uri.path(),
            body: &content,
            https: false,
        };
        check(&keys, route, &rule(route), &request, now).map(|v| v.map(|v| v.key_id))
    };
    let b23 = test_request(B23_INPUT, B23_SIGNATURE);
    assert_eq!(run(route, &b23, BODY), Ok(Some("test-key-rsa-pss")));
    assert_eq!(
        run(route, &b23, b"{\"hello\": \"other\"}"),
        Err(Rejection::BadContentDigest)
    );
    assert_eq!(
        run(tagged, &b23, BODY),
        Err(Rejection::BadSignature),
        "no signature with the route's tag"
    );
    let alg = test_request(&format!("{B23_INPUT};alg=\"ed25519\""), B23_SIGNATURE);
    assert_eq!(
        run(route, &alg, BODY),
        Err(Rejection::BadSignature),
        "alg must match the key"
    );
    let b26 = test_request(
        "sig-b26=(\"date\" \"@method\" \"@path\" \"@authority\" \"content-type\" \"content-length\");created=1618884473;keyid=\"test-key-ed25519\"",
        "sig-b26=:wqcAqbmYJ2ji2glfAMaRy4gruYYnx2nEFN2HN6jrnDnQCK1u02Gb04v9EDgwUPiu4A0w6vuQv5lIp5WPpBKRCw==:",
    );
    assert_eq!(
        run(route, &b26, BODY),
        Err(Rejection::BadSignature),
        "no @query, no content-digest"
    );
    let unknown = test_request(
        &B23_INPUT.replace("test-key-rsa-pss", "nobody"),
        B23_SIGNATURE,
    );
    assert_eq!(run(route, &unknown, BODY), Err(Rejection::UnknownKey));
    clock.advance(Duration::from_secs(300));
    assert_eq!(run(route, &b23, BODY), Err(Rejection::StaleTimestamp));
    assert!(clock.now().as_secs() > CREATED + 300);
}

/// Scheme `v1` is HMAC only: a `v1` signature never verifies against a
/// public key, whatever value it carries.
#[test]
fn a_v1_signature_never_verifies_against_a_public_key() {
    use crate::checks::signature::{verify, Signed};
    let mut keys = BTreeMap::new();
    let id = "test-key-ed25519".to_owned();
    let material = public(Algorithm::Ed25519, ED25519_PUBLIC);
    keys.insert(
        id.clone(),
        Key {
            id: id.clone(),
            material,
            inline: false,
        },
    );
    let signed = Signed {
        method: "POST",
        host: "example.com",
        path_and_query: "/foo",
        timestamp: "1618884473",
        nonce: "",
        body_sha256: "",
    };
    let empty_key = crate::checks::signature::sign(&Secret::new(Vec::new()), &signed);
    assert_eq!(
        verify(&keys, &id, &empty_key, &signed),
        Err(Rejection::BadSignature)
    );
}
