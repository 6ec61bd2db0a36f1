//! mTLS and `identity = "client_cert"` end to end (SPEC §2.1, §3.1): a CA
//! and client certificates made in the test (rcgen), the real proxy's TLS
//! listener, a rustls client. Required vs optional client certificates, a
//! certificate from another CA refused, the verified identity passed to
//! the upstream (a client's copy dropped), different certificates in
//! different nonce and idempotency scopes, and a reload that picks up a
//! new CA file.

mod support;

use std::sync::Arc;

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full};
use rcgen::SanType;
use rustls::pki_types::PrivateKeyDer;
use support::ca::{Ca, Leaf as Client};
use support::client::{nonce, Reply, Req};
use support::proxy::{TestProxy, T0};
use support::upstream::Upstream;

const IDENTITY_HEADER: &str = "x-replay-guard-client-cert-identity";

fn uri(text: &str) -> SanType {
    SanType::URI(text.try_into().unwrap())
}

fn dns(text: &str) -> SanType {
    SanType::DnsName(text.try_into().unwrap())
}

/// The proxy's own certificate (for `localhost`), its files, and the CA
/// file, in one directory.
struct Files {
    dir: tempfile::TempDir,
    server: rcgen::CertifiedKey,
}

impl Files {
    fn new(ca: &Ca) -> Files {
        let dir = tempfile::tempdir().unwrap();
        let server = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
        std::fs::write(dir.path().join("server.pem"), server.cert.pem()).unwrap();
        std::fs::write(
            dir.path().join("server.key"),
            server.key_pair.serialize_pem(),
        )
        .unwrap();
        let files = Files { dir, server };
        files.write_ca(ca);
        files
    }

    fn write_ca(&self, ca: &Ca) {
        std::fs::write(self.dir.path().join("clients-ca.pem"), ca.pem()).unwrap();
    }

    fn tls_toml(&self, client_auth: &str) -> String {
        let path = |name: &str| self.dir.path().join(name).display().to_string();
        format!(
            "[server.tls]\ncert_file = {:?}\nkey_file = {:?}\nclient_ca_file = {:?}\nclient_auth = \"{client_auth}\"\n",
            path("server.pem"),
            path("server.key"),
            path("clients-ca.pem")
        )
    }

    /// A rustls client trusting the proxy's certificate, presenting
    /// `client` when given.
    fn client_config(&self, client: Option<&Client>) -> rustls::ClientConfig {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.server.cert.der().clone()).unwrap();
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots);
        match client {
            Some(client) => builder
                .with_client_auth_cert(
                    client.chain.clone(),
                    PrivateKeyDer::try_from(client.key.clone()).unwrap(),
                )
                .unwrap(),
            None => builder.with_no_client_auth(),
        }
    }
}

const ROUTES: &str = r#"
[[routes]]
name = "orders"
methods = ["POST"]
path = "/orders"
identity = "client_cert"
freshness = { max_skew_secs = 300 }
nonce = { required = true }
idempotency = { required = false, ttl_secs = 86400, lease_secs = 60 }

[[routes]]
name = "public"
path = "/public/{*rest}"
"#;

/// Send `req` over a new TLS connection; `Err` when the handshake or the
/// exchange fails.
async fn send(proxy: &TestProxy, config: rustls::ClientConfig, req: &Req) -> Result<Reply, String> {
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(config)
        .https_only()
        .enable_http1()
        .build();
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build::<_, Full<Bytes>>(connector);
    let mut builder = Request::builder().method(req.method.clone()).uri(format!(
        "https://localhost:{}{}",
        proxy.addr.port(),
        req.path
    ));
    for (name, value) in &req.headers {
        builder = builder.header(name.as_str(), value.as_str());
    }
    let request = builder.body(Full::new(req.body.clone())).unwrap();
    let response = client
        .request(request)
        .await
        .map_err(|e| format!("{e:?}"))?;
    let (parts, body) = response.into_parts();
    let body = body.collect().await.map_err(|e| e.to_string())?.to_bytes();
    Ok(Reply {
        status: parts.status,
        headers: parts.headers,
        body,
    })
}

fn order(i: usize) -> Req {
    Req::post("/orders").fresh(T0, &nonce(i)).body("{}")
}

#[tokio::test]
async fn optional_client_certificates_scope_by_their_names_and_reach_the_upstream() {
    let ca = Ca::new("clients CA");
    let files = Files::new(&ca);
    let (upstream, proxy) =
        TestProxy::with_upstream("", &format!("{}{ROUTES}", files.tls_toml("optional"))).await;
    let billing = ca.client(
        vec![dns("billing.internal"), uri("spiffe://example.org/billing")],
        "billing",
    );
    let shipping = ca.client(vec![dns("shipping.internal")], "shipping");
    let (billing, shipping) = (
        files.client_config(Some(&billing)),
        files.client_config(Some(&shipping)),
    );

    // No certificate: let in, but a client_cert route cannot tell who it
    // is; a route without checks is forwarded, without the header even
    // when the client sends one.
    let anonymous = files.client_config(None);
    let reply = send(&proxy, anonymous.clone(), &order(1)).await.unwrap();
    assert_eq!(reply.status_reason(), (400, "missing_identity".to_owned()));
    let forged = Req::get("/public/x").header(IDENTITY_HEADER, "spiffe://example.org/admin");
    let reply = send(&proxy, anonymous, &forged).await.unwrap();
    assert_eq!(reply.status, 200);
    assert_eq!(upstream.count(), 1);
    assert!(!upstream.seen()[0].headers.contains_key(IDENTITY_HEADER));

    // Two certificates, one nonce: two scopes. The upstream gets each
    // one's verified name (first URI SAN, else first DNS SAN), never the
    // client's own copy.
    let req = order(2).header(IDENTITY_HEADER, "spiffe://example.org/admin");
    assert_eq!(
        send(&proxy, billing.clone(), &req).await.unwrap().status,
        200
    );
    assert_eq!(
        send(&proxy, shipping.clone(), &req).await.unwrap().status,
        200
    );
    let seen = upstream.seen();
    let names: Vec<Vec<&str>> = seen[1..]
        .iter()
        .map(|s| {
            s.headers
                .get_all(IDENTITY_HEADER)
                .iter()
                .map(|v| v.to_str().unwrap())
                .collect()
        })
        .collect();
    assert_eq!(
        names,
        [
            vec!["spiffe://example.org/billing"],
            vec!["shipping.internal"]
        ]
    );
    // The same certificate again with that nonce: a replay, on a new
    // connection too.
    let reply = send(&proxy, billing.clone(), &order(2)).await.unwrap();
    assert_eq!(reply.status_reason(), (409, "replayed_nonce".to_owned()));

    // One idempotency key, two certificates: two operations; a retry by
    // the first gets its stored answer.
    let idem = |i: usize| order(i).header("Idempotency-Key", "op-1");
    let first = send(&proxy, billing.clone(), &idem(10)).await.unwrap();
    first.assert_not_replayed();
    let other = send(&proxy, shipping.clone(), &idem(11)).await.unwrap();
    other.assert_not_replayed();
    proxy.until_recorded(2).await;
    let retry = send(&proxy, billing.clone(), &idem(12)).await.unwrap();
    retry.assert_replayed();
    assert_eq!(retry.body, first.body);
    assert_eq!(upstream.count(), 5);

    // A certificate from another CA is refused by the handshake.
    let stranger = Ca::new("other CA").client(vec![uri("spiffe://example.org/billing")], "billing");
    let result = send(&proxy, files.client_config(Some(&stranger)), &order(20)).await;
    assert!(
        result.is_err(),
        "another CA's certificate got an answer: {result:?}"
    );
    assert_eq!(upstream.count(), 5, "nothing more reached the upstream");
    proxy.shutdown().await;
}

#[tokio::test]
async fn required_client_certificates_refuse_anyone_else_at_the_handshake() {
    let ca = Ca::new("clients CA");
    let files = Files::new(&ca);
    let (upstream, proxy) =
        TestProxy::with_upstream("", &format!("{}{ROUTES}", files.tls_toml("required"))).await;
    let result = send(&proxy, files.client_config(None), &Req::get("/public/x")).await;
    assert!(result.is_err(), "no certificate got an answer: {result:?}");
    let stranger = Ca::new("other CA").client(vec![dns("billing.internal")], "billing");
    let result = send(&proxy, files.client_config(Some(&stranger)), &order(1)).await;
    assert!(
        result.is_err(),
        "another CA's certificate got an answer: {result:?}"
    );
    assert_eq!(upstream.count(), 0);
    // A certificate with no SAN is known by its subject CN.
    let cn_only = ca.client(vec![], "legacy-client");
    let reply = send(&proxy, files.client_config(Some(&cn_only)), &order(2))
        .await
        .unwrap();
    assert_eq!(reply.status, 200, "{:?}", reply.body);
    assert_eq!(upstream.seen()[0].headers[IDENTITY_HEADER], "legacy-client");
    proxy.shutdown().await;
}

#[tokio::test]
async fn reload_picks_up_a_new_client_ca_file() {
    let (old_ca, new_ca) = (Ca::new("old CA"), Ca::new("new CA"));
    let files = Files::new(&old_ca);
    let upstream = Upstream::start().await;
    let config = files.dir.path().join("replay-guard.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\nupstream = \"{}\"\n{}{ROUTES}",
            upstream.url(),
            files.tls_toml("required")
        ),
    )
    .unwrap();
    let proxy = TestProxy::start_file(&config).await;
    let old_client = files.client_config(Some(&old_ca.client(vec![dns("a.internal")], "a")));
    let new_client = files.client_config(Some(&new_ca.client(vec![dns("b.internal")], "b")));
    assert_eq!(
        send(&proxy, old_client.clone(), &order(1))
            .await
            .unwrap()
            .status,
        200
    );
    assert!(send(&proxy, new_client.clone(), &order(2)).await.is_err());

    // A CA file that does not parse: reload refuses it, naming the file,
    // and the old CA still applies.
    let ca_path = files.dir.path().join("clients-ca.pem");
    std::fs::write(
        &ca_path,
        "-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    let errors = replay_guard::config::Config::load(&config)
        .unwrap_err()
        .errors;
    assert!(
        errors
            .iter()
            .any(|e| e.contains(&ca_path.display().to_string())),
        "{errors:?}"
    );
    let reload = Req::post("/reload").send(proxy.admin.unwrap()).await;
    assert_ne!(reload.status, 200);
    assert_eq!(
        send(&proxy, old_client.clone(), &order(3))
            .await
            .unwrap()
            .status,
        200
    );

    files.write_ca(&new_ca);
    let reload = Req::post("/reload").send(proxy.admin.unwrap()).await;
    assert_eq!(reload.status, 200, "{:?}", reload.body);
    assert_eq!(
        send(&proxy, new_client, &order(4)).await.unwrap().status,
        200
    );
    assert!(
        send(&proxy, old_client, &order(5)).await.is_err(),
        "the old CA is gone"
    );
    assert_eq!(upstream.count(), 3);
    proxy.shutdown().await;
}

#[test]
fn check_refuses_an_unreadable_ca_file_and_client_cert_without_mtls() {
    let parse = support::config::problems;
    let errors = parse("[server.tls]\ncert_file = \"/x.pem\"\nkey_file = \"/x.key\"\nclient_ca_file = \"/nonexistent/ca.pem\"\n");
    assert!(
        errors.iter().any(|e| e.starts_with("t.toml:7:18:")
            && e.contains("cannot read client CA file /nonexistent/ca.pem")),
        "{errors:?}"
    );
    let errors = parse("[server.tls]\ncert_file = \"/x.pem\"\nkey_file = \"/x.key\"\nclient_auth = \"sometimes\"\n");
    assert!(
        errors
            .iter()
            .any(|e| e.contains("\"required\" or \"optional\"")),
        "{errors:?}"
    );
    let errors = parse("[[routes]]\nname = \"r\"\npath = \"/r\"\nidentity = \"client_cert\"\nrate_limit = { per_second = 1 }\n");
    assert!(
        errors
            .iter()
            .any(|e| e.contains("needs [server.tls] client_ca_file")),
        "{errors:?}"
    );
}
