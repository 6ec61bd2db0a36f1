//! Benchmark helper: the CPU of the signature step alone, v1 against
//! RFC 9421 HMAC, on the hardware (SHA-NI where the CPU has it, which
//! callgrind cannot show), with the routes of bench/replay-guard-bench.toml.
//!
//! `RG_BENCH_SECRET=... cargo run --release --example scheme_check -- [ITERATIONS] [ROUNDS]`
//! (defaults 100,000 and 9). For each route, 256 requests signed as
//! `loadgen` signs them (64-byte bodies, fresh nonces) are checked in turn,
//! ITERATIONS checks per round, rounds interleaved; prints the fastest
//! round's nanoseconds per check of each scheme and their difference, and
//! the same RFC 9421 route with an Ed25519 key (generated here) instead of
//! the HMAC secret.
//! v1's step is its timestamp check plus its signature check (an RFC 9421
//! route checks `created` inside its signature check). Touches no network.

use std::collections::BTreeMap;
use std::hint::black_box;
use std::path::Path;
use std::time::{Duration, Instant};

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair as _};
use http::request::Parts;
use http::{HeaderName, HeaderValue, Request};
use replay_guard::checks::rfc9421::sign::SigningKey;
use replay_guard::checks::{freshness, rfc9421, signature, Content};
use replay_guard::client::{self, Rfc9421Request, SignRequest};
use replay_guard::clock::{Clock, SystemClock};
use replay_guard::config::{
    Algorithm, Config, Key, KeyMaterial, PublicKey, Route, SignatureScheme,
};

const HOST: &str = "127.0.0.1:18082";
const REQUESTS: usize = 256;

fn parts(path: &str, headers: &[(String, String)]) -> Parts {
    let mut request = Request::post(path).header("host", HOST);
    for (name, value) in headers {
        request = request.header(
            HeaderName::from_bytes(name.as_bytes()).expect("a header name"),
            HeaderValue::from_str(value).expect("a header value"),
        );
    }
    request.body(()).expect("a request").into_parts().0
}

fn route<'c>(config: &'c Config, name: &str) -> &'c Route {
    config
        .routes
        .iter()
        .find(|r| r.name == name)
        .unwrap_or_else(|| panic!("bench/replay-guard-bench.toml has no route {name:?}"))
}

fn main() {
    let mut args = std::env::args().skip(1);
    let iterations: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(100_000);
    let rounds: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(9);
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("bench/replay-guard-bench.toml");
    let config = Config::load(&file).unwrap_or_else(|e| panic!("{e} (set RG_BENCH_SECRET)"));
    let v1 = route(&config, "protected");
    let rfc = route(&config, "rfc9421");
    let SignatureScheme::Rfc9421(rule) = &rfc.scheme else {
        panic!("the rfc9421 route is not scheme = \"rfc9421\"");
    };
    let key = config.keys.get("bench-client").expect("the bench key");
    let KeyMaterial::Secret { current, .. } = &key.material else {
        panic!("the bench key is not a secret");
    };
    let signing = SigningKey::Hmac(current.clone());
    let clock = SystemClock;
    let now = clock.now_secs() as i64;
    let body = vec![b'x'; 64];

    let v1_requests: Vec<Parts> = (0..REQUESTS)
        .map(|_| {
            let signed = client::sign(
                current,
                &SignRequest {
                    method: "POST",
                    host: HOST,
                    path_and_query: "/protected",
                    body: &body,
                    timestamp: now.to_string(),
                    nonce: client::new_nonce(),
                    key_id: "bench-client",
                },
            );
            parts("/protected", &signed.headers)
        })
        .collect();
    let rfc_signed = |signing: &SigningKey, key_id: &str| -> Vec<Parts> {
        (0..REQUESTS)
            .map(|_| {
                let nonce = client::new_nonce();
                let signed = client::sign_rfc9421(
                    signing,
                    &Rfc9421Request {
                        method: "POST",
                        host: HOST,
                        path_and_query: "/rfc9421",
                        https: false,
                        body: &body,
                        key_id,
                        created: now,
                        nonce: Some(&nonce),
                        tag: None,
                        label: "sig1",
                        components: &rule.components,
                        headers: &[],
                    },
                )
                .expect("an RFC 9421 signature");
                parts("/rfc9421", &signed.headers)
            })
            .collect()
    };
    let rfc_requests = rfc_signed(&signing, "bench-client");
    let pkcs8 = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).expect("an Ed25519 key");
    let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).expect("an Ed25519 key");
    let spki = pair.public_key().as_der().expect("its SPKI");
    let ed_keys = BTreeMap::from([(
        "bench-ed25519".to_owned(),
        Key {
            id: "bench-ed25519".to_owned(),
            material: KeyMaterial::Public {
                algorithm: Algorithm::Ed25519,
                current: PublicKey::from_spki(Algorithm::Ed25519, spki.as_ref())
                    .expect("an Ed25519 public key"),
                previous: None,
            },
            inline: false,
        },
    )]);
    let ed_requests = rfc_signed(&SigningKey::Ed25519(pair), "bench-ed25519");

    let freshness = v1.freshness.as_ref().expect("the v1 route has freshness");
    let v1_step = |p: &Parts| {
        let fresh = freshness::check(&p.headers, &v1.headers.timestamp, freshness, &clock, &[]);
        // One per request, as the proxy makes it.
        let content = Content::new(&body);
        let key = signature::check(&config.keys, v1, p, "/protected", &content);
        fresh.is_ok() && matches!(key, Ok(Some(_)))
    };
    let now = rfc9421::Now {
        clock: &clock,
        fences: &[],
    };
    let rfc_step_with = |keys: &BTreeMap<String, Key>, p: &Parts| {
        let content = Content::new(&body);
        let request = rfc9421::Request {
            parts: p,
            path: "/rfc9421",
            body: &content,
            https: false,
        };
        matches!(rfc9421::check(keys, rfc, rule, &request, now), Ok(Some(_)))
    };
    let rfc_step = |p: &Parts| rfc_step_with(&config.keys, p);
    let ed_step = |p: &Parts| rfc_step_with(&ed_keys, p);
    assert!(v1_requests.iter().all(v1_step), "every v1 request verifies");
    assert!(
        rfc_requests.iter().all(rfc_step),
        "every RFC 9421 request verifies"
    );
    assert!(
        ed_requests.iter().all(ed_step),
        "every Ed25519 request verifies"
    );

    let time = |step: &dyn Fn(&Parts) -> bool, requests: &[Parts]| -> Duration {
        let start = Instant::now();
        for i in 0..iterations {
            black_box(step(black_box(&requests[i % REQUESTS])));
        }
        start.elapsed()
    };
    let (mut best_v1, mut best_rfc, mut best_ed) = (Duration::MAX, Duration::MAX, Duration::MAX);
    for _ in 0..rounds {
        best_v1 = best_v1.min(time(&v1_step, &v1_requests));
        best_rfc = best_rfc.min(time(&rfc_step, &rfc_requests));
        best_ed = best_ed.min(time(&ed_step, &ed_requests));
    }
    let per = |d: Duration| d.as_nanos() as f64 / iterations as f64;
    println!(
        "signature step, ns per check (fastest of {rounds} rounds of {iterations}): \
         v1 {:.0}, rfc9421 HMAC {:.0} (+{:.0}), rfc9421 Ed25519 {:.0} (+{:.0})",
        per(best_v1),
        per(best_rfc),
        per(best_rfc) - per(best_v1),
        per(best_ed),
        per(best_ed) - per(best_v1)
    );
}
