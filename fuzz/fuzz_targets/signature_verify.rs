//! Signature header parsing and verification: never panics, never accepts
//! a header that does not carry the correct HMAC for the key's current or
//! previous secret, and always accepts the correct value however it is
//! surrounded (as long as no other `v1=` value comes before it).
#![no_main]

use std::collections::BTreeMap;

use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;
use replay_guard::checks::signature::{sha256_hex, sign, verify, Signed};
use replay_guard::config::{Key, Secret};

#[derive(Debug, Arbitrary)]
struct Input<'a> {
    key_id: &'a str,
    header: &'a str,
    method: &'a str,
    host: &'a str,
    path_and_query: &'a str,
    timestamp: &'a str,
    nonce: &'a str,
    body: &'a [u8],
    /// Surround the correct signature with this text (when set).
    embed: Option<(&'a str, &'a str, bool)>,
}

fn keys() -> BTreeMap<String, Key> {
    let mut keys = BTreeMap::new();
    keys.insert(
        "billing-svc".to_owned(),
        Key {
            id: "billing-svc".into(),
            current: Secret::new(b"s3cr3t-billing".to_vec()),
            previous: Some(Secret::new(b"old-secret".to_vec())),
            inline: false,
        },
    );
    keys
}

fuzz_target!(|input: Input<'_>| {
    let keys = keys();
    let body_sha256 = sha256_hex(input.body);
    let parts = Signed {
        method: input.method,
        host: input.host,
        path_and_query: input.path_and_query,
        timestamp: input.timestamp,
        nonce: input.nonce,
        body_sha256: &body_sha256,
    };
    let key = &keys["billing-svc"];
    let good = [
        sign(&key.current, &parts),
        sign(key.previous.as_ref().unwrap(), &parts),
    ];
    let header = match input.embed {
        Some((before, after, use_previous)) => {
            let valid = &good[usize::from(use_previous)];
            format!("{before},{valid},{after}")
        }
        None => input.header.to_owned(),
    };
    let carries_valid = good
        .iter()
        .any(|g| header.split(',').any(|part| part.trim() == g.as_str()));
    match verify(&keys, input.key_id, &header, &parts) {
        Ok(id) => {
            assert_eq!(id, "billing-svc");
            assert_eq!(input.key_id, "billing-svc");
            assert!(
                carries_valid,
                "accepted a header without the HMAC: {header:?}"
            );
        }
        Err(_) => {
            if let Some((before, _, _)) = input.embed {
                if input.key_id == "billing-svc" && !before.contains("v1=") {
                    panic!("refused a correct signature: {header:?}");
                }
            }
        }
    }
});
