//! Validation of a `[[keys]]` entry with `public_key_file`: the algorithm
//! it names and the PEM `SubjectPublicKeyInfo` ("BEGIN PUBLIC KEY") files,
//! current and previous, parsed for that algorithm by `aws-lc-rs` so that a
//! bad key fails `check` instead of every request.
//!
//! This module must never read a file except through the injected
//! [`Environment`], and never accept a key for an algorithm it was not
//! parsed for.

use std::path::PathBuf;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::SubjectPublicKeyInfoDer;
use toml::Spanned;

use super::Problems;
use crate::config::raw::RawKey;
use crate::config::{Algorithm, Environment, KeyMaterial, PublicKey};

/// The public-key material of an entry; `None` (reported) when the
/// algorithm or a key file is wrong.
pub(super) fn material(
    key: &RawKey,
    id: &str,
    env: &dyn Environment,
    p: &mut Problems<'_>,
) -> Option<KeyMaterial> {
    for (present, name) in [
        (
            key.secret_encoding.as_ref().map(Spanned::span),
            "secret_encoding",
        ),
        (
            key.previous_secret_env.as_ref().map(Spanned::span),
            "previous_secret_env",
        ),
        (
            key.previous_secret_file.as_ref().map(Spanned::span),
            "previous_secret_file",
        ),
    ] {
        if let Some(span) = present {
            p.at(span, format!("{name} is for secret keys; key {id:?} has a public_key_file (rotate it with previous_public_key_file)"));
        }
    }
    let algorithm = asymmetric_algorithm(key, id, p)?;
    let file = key.public_key_file.as_ref()?;
    let current = load(file, algorithm, env, p);
    let previous = match &key.previous_public_key_file {
        Some(previous) => Some(load(previous, algorithm, env, p)?),
        None => None,
    };
    Some(KeyMaterial::Public {
        algorithm,
        current: current?,
        previous,
    })
}

/// The entry's `algorithm`, which a public key must name.
fn asymmetric_algorithm(key: &RawKey, id: &str, p: &mut Problems<'_>) -> Option<Algorithm> {
    let choices = "\"ed25519\", \"ecdsa-p256-sha256\", \"rsa-pss-sha512\" or \"rsa-v1_5-sha256\"";
    let Some(value) = &key.algorithm else {
        p.at(
            key.id.span(),
            format!("key {id:?} has a public_key_file and needs algorithm = {choices}"),
        );
        return None;
    };
    match Algorithm::from_name(value.get_ref()) {
        Some(Algorithm::HmacSha256) => {
            p.at(value.span(), format!("hmac-sha256 keys are secrets (secret_env or secret_file), not public_key_file; for a public key write algorithm = {choices}"));
            None
        }
        Some(algorithm) => Some(algorithm),
        None => {
            p.at(
                value.span(),
                format!(
                    "algorithm {:?} is unknown; write {choices}",
                    value.get_ref()
                ),
            );
            None
        }
    }
}

/// One PEM file's public key, parsed for `algorithm`.
fn load(
    file: &Spanned<PathBuf>,
    algorithm: Algorithm,
    env: &dyn Environment,
    p: &mut Problems<'_>,
) -> Option<PublicKey> {
    let path = file.get_ref().display();
    let bytes = super::read_file(file, "public key file", env, p)?;
    let Ok(der) = SubjectPublicKeyInfoDer::from_pem_slice(&bytes) else {
        p.at(file.span(), format!(
            "{path} holds no PEM public key (\"-----BEGIN PUBLIC KEY-----\", SubjectPublicKeyInfo); export one with `openssl pkey -in PRIVATE.pem -pubout`"
        ));
        return None;
    };
    let key = PublicKey::from_spki(algorithm, der.as_ref());
    if key.is_none() {
        p.at(file.span(), format!(
            "{path} is not a valid {algorithm} public key (RSA keys need 2048 to 8192 bits; ECDSA keys the P-256 curve)"
        ));
    }
    key
}

#[cfg(test)]
mod tests {
    use crate::config::{Algorithm, Config, KeyMaterial};

    const SERVER: &str = "[server]\nlisten = \"127.0.0.1:0\"\nupstream = \"http://127.0.0.1:9\"\n";

    /// RFC 9421 Appendix B.1.4 `test-key-ed25519`, public half.
    const ED25519: &str = "-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEAJrQLj5P/89iXES9+vFgrIy29clF9CC/oPPsw3c5D0bs=\n-----END PUBLIC KEY-----\n";

    fn errors(text: &str) -> Vec<String> {
        Config::parse(&format!("{SERVER}{text}"), "t.toml")
            .expect_err("invalid")
            .errors
    }

    #[test]
    fn public_keys_and_encoded_secrets_load() {
        let dir = tempfile::tempdir().unwrap();
        let pem = dir.path().join("ed.pub.pem");
        std::fs::write(&pem, ED25519).unwrap();
        let text = format!(
            "{SERVER}[[keys]]\nid = \"ed\"\npublic_key_file = {:?}\nprevious_public_key_file = {:?}\nalgorithm = \"ed25519\"\n\
             [[keys]]\nid = \"mac\"\nsecret = \"dGVzdA==\"\nsecret_encoding = \"base64\"\n",
            pem.to_str().unwrap(),
            pem.to_str().unwrap()
        );
        let config = Config::parse(&text, "t.toml").unwrap();
        let KeyMaterial::Public {
            algorithm,
            previous,
            ..
        } = &config.keys["ed"].material
        else {
            panic!("a public key");
        };
        assert_eq!(*algorithm, Algorithm::Ed25519);
        assert!(previous.is_some());
        assert_eq!(config.keys["ed"].secrets().count(), 0, "no HMAC secret");
        let mac: Vec<&[u8]> = config.keys["mac"].secrets().map(|s| s.expose()).collect();
        assert_eq!(mac, [&b"test"[..]], "base64-decoded");
        assert!(
            !format!("{:?}", config.keys).contains("dGVzdA"),
            "Debug shows no secret"
        );
    }

    #[test]
    fn every_key_problem_is_reported_with_a_hint() {
        let dir = tempfile::tempdir().unwrap();
        let garbage = dir.path().join("garbage.pem");
        std::fs::write(&garbage, "not a key").unwrap();
        let ed = dir.path().join("ed.pem");
        std::fs::write(&ed, ED25519).unwrap();
        let (garbage, ed) = (garbage.to_str().unwrap(), ed.to_str().unwrap());
        let text = format!(
            "[[keys]]\nid = \"a\"\npublic_key_file = {ed:?}\n\
             [[keys]]\nid = \"b\"\npublic_key_file = {garbage:?}\nalgorithm = \"ed25519\"\n\
             [[keys]]\nid = \"c\"\npublic_key_file = {ed:?}\nalgorithm = \"rsa-pss-sha512\"\n\
             [[keys]]\nid = \"d\"\nsecret = \"x\"\nalgorithm = \"ed25519\"\n\
             [[keys]]\nid = \"e\"\nsecret = \"%%%\"\nsecret_encoding = \"base64\"\n\
             [[keys]]\nid = \"f\"\nsecret = \"x\"\nsecret_encoding = \"hex\"\n\
             [[keys]]\nid = \"g\"\npublic_key_file = {ed:?}\nalgorithm = \"ed448\"\n\
             [[keys]]\nid = \"h\"\npublic_key_file = {ed:?}\nalgorithm = \"ed25519\"\nsecret_encoding = \"utf8\"\n\
             [[keys]]\nid = \"i\"\npublic_key_file = \"/nonexistent/key.pem\"\nalgorithm = \"ed25519\"\n"
        );
        let errors = errors(&text);
        for needle in [
            "t.toml:5:6: key \"a\" has a public_key_file and needs algorithm",
            "holds no PEM public key",
            "is not a valid rsa-pss-sha512 public key",
            "its algorithm is \"hmac-sha256\"",
            "is not valid base64",
            "secret_encoding \"hex\" is unknown",
            "algorithm \"ed448\" is unknown",
            "secret_encoding is for secret keys",
            "cannot read public key file /nonexistent/key.pem",
        ] {
            assert!(
                errors.iter().any(|e| e.contains(needle)),
                "{needle}:\n{}",
                errors.join("\n")
            );
        }
        assert!(
            !errors.iter().any(|e| e.contains("%%%")),
            "no secret value in a message"
        );
    }

    #[test]
    fn rfc9421_route_problems_are_reported_at_once() {
        let route = |sig: &str, extra: &str| {
            format!("[[routes]]\nname = \"r{}\"\npath = \"/r\"\nfreshness = {{ max_skew_secs = 60 }}\n{extra}signature = {sig}\n", sig.len())
        };
        let text = [
            route("{ scheme = \"rfc9999\" }", ""),
            route("{ tag = \"x\" }", ""),
            route(
                "{ scheme = \"rfc9421\", components = [\"@authority\"] }",
                "",
            ),
            route(
                "{ scheme = \"rfc9421\", components = [\"@method\", \"@path\", \"@status\"] }",
                "",
            ),
            route("{ scheme = \"rfc9421\", label = \"Sig\" }", ""),
            route(
                "{ required = false, scheme = \"rfc9421\" }",
                "nonce = { required = true }\n",
            ),
        ]
        .concat();
        let errors = errors(&text);
        for needle in [
            "scheme \"rfc9999\" is unknown",
            "tag is for scheme = \"rfc9421\"",
            "components must include \"@method\" and one of",
            "\"@status\" is not supported on requests",
            "label must be an RFC 8941 key",
            "nonce needs signature = { required = true",
        ] {
            assert!(
                errors.iter().any(|e| e.contains(needle)),
                "{needle}:\n{}",
                errors.join("\n")
            );
        }
        let ok = Config::parse(
            &format!("{SERVER}{}", route("{ scheme = \"rfc9421\", components = [\"@method\", \"@target-uri\", \"@query-param;name=\\\"id\\\"\", \"content-type\"], tag = \"t\", label = \"sig1\" }", "nonce = { required = true }\n")),
            "t.toml",
        )
        .unwrap();
        let rule = ok.routes[0].scheme.rfc9421().unwrap();
        assert_eq!(
            rule.accept_signature,
            r#"sig1=("@method" "@target-uri" "@query-param";name="id" "content-type");created;nonce;tag="t""#
        );
    }
}
