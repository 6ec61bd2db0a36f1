//! Bearer tokens minted by PyJWT (PyPI, installed by `scripts/test.sh`)
//! through `jwt_client.py`, key sets with their JWKS, and a loopback JWKS
//! server that counts its fetches and can change its answer or go away.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

fn python(args: &[&str], stdin: &str) -> String {
    super::python::run("jwt_client.py", args, stdin, "PyJWT[crypto]")
}

/// RS256, ES256 and EdDSA key pairs (kid `<prefix>-<alg>`) and their JWKS.
pub struct KeySet {
    pub dir: tempfile::TempDir,
    pub prefix: String,
    pub jwks: String,
}

impl KeySet {
    pub fn generate(prefix: &str) -> KeySet {
        let dir = tempfile::tempdir().expect("tempdir");
        let jwks = python(
            &["keygen", dir.path().to_str().expect("utf-8 path"), prefix],
            "",
        );
        KeySet {
            dir,
            prefix: prefix.to_owned(),
            jwks: jwks.trim().to_owned(),
        }
    }

    pub fn kid(&self, alg: &str) -> String {
        format!("{}-{alg}", self.prefix)
    }

    pub fn private_key(&self, alg: &str) -> PathBuf {
        self.dir.path().join(format!("{alg}.key.pem"))
    }

    pub fn public_key(&self, alg: &str) -> PathBuf {
        self.dir.path().join(format!("{alg}.pub.pem"))
    }

    /// A spec for a token signed with `alg`'s private key and its kid.
    pub fn spec(&self, alg: &str, claims: Value) -> Value {
        json!({
            "alg": alg,
            "kid": self.kid(alg),
            "key_file": self.private_key(alg),
            "claims": claims,
        })
    }

    /// One token signed with `alg`'s key.
    pub fn token(&self, alg: &str, claims: Value) -> String {
        mint(&[self.spec(alg, claims)]).remove(0)
    }

    /// This set's JWKS and `other`'s, in one document (a rotation that
    /// adds keys).
    pub fn jwks_with(&self, other: &KeySet) -> String {
        let mut a: Value = serde_json::from_str(&self.jwks).unwrap();
        let b: Value = serde_json::from_str(&other.jwks).unwrap();
        a["keys"]
            .as_array_mut()
            .unwrap()
            .extend(b["keys"].as_array().unwrap().iter().cloned());
        a.to_string()
    }
}

/// Tokens for `specs`, in order (see `jwt_client.py` for the fields).
pub fn mint(specs: &[Value]) -> Vec<String> {
    let tokens: Vec<String> = serde_json::from_str(&python(
        &["mint"],
        &Value::Array(specs.to_vec()).to_string(),
    ))
    .expect("json");
    assert_eq!(tokens.len(), specs.len());
    tokens
}

/// A loopback HTTP (or HTTPS) server answering every GET with the current
/// JWKS.
pub struct JwksServer {
    pub addr: SocketAddr,
    scheme: &'static str,
    body: Arc<Mutex<String>>,
    hits: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl JwksServer {
    pub async fn start(jwks: &str) -> JwksServer {
        Self::start_inner(jwks, None).await
    }

    /// The same over HTTPS, presenting `chain` (leaf first) and its `key`;
    /// `url()` is then `https://127.0.0.1:<port>/…` (the leaf must name
    /// that address).
    pub async fn start_tls(
        jwks: &str,
        chain: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
    ) -> JwksServer {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .unwrap();
        Self::start_inner(jwks, Some(TlsAcceptor::from(Arc::new(config)))).await
    }

    async fn start_inner(jwks: &str, tls: Option<TlsAcceptor>) -> JwksServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let body = Arc::new(Mutex::new(jwks.to_owned()));
        let hits = Arc::new(AtomicUsize::new(0));
        let scheme = if tls.is_some() { "https" } else { "http" };
        let (b, h) = (body.clone(), hits.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    break;
                };
                let (b, h, tls) = (b.clone(), h.clone(), tls.clone());
                tokio::spawn(async move {
                    let service = service_fn(move |_req: Request<Incoming>| {
                        h.fetch_add(1, Ordering::SeqCst);
                        let text = b.lock().unwrap().clone();
                        async move {
                            Ok::<_, Infallible>(
                                Response::builder()
                                    .header("content-type", "application/json")
                                    .body(Full::new(Bytes::from(text)))
                                    .unwrap(),
                            )
                        }
                    });
                    let server = auto::Builder::new(TokioExecutor::new());
                    match tls {
                        None => {
                            let _ = server.serve_connection(TokioIo::new(stream), service).await;
                        }
                        // A client that does not trust the certificate
                        // ends the handshake: nothing is served.
                        Some(tls) => {
                            if let Ok(stream) = tls.accept(stream).await {
                                let _ =
                                    server.serve_connection(TokioIo::new(stream), service).await;
                            }
                        }
                    }
                });
            }
        });
        JwksServer {
            addr,
            scheme,
            body,
            hits,
            task,
        }
    }

    pub fn url(&self) -> String {
        format!("{}://{}/.well-known/jwks.json", self.scheme, self.addr)
    }

    /// Fetches so far.
    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }

    /// Answer `jwks` from now on.
    pub fn serve(&self, jwks: &str) {
        *self.body.lock().unwrap() = jwks.to_owned();
    }

    /// Stop listening: later fetches are refused.
    pub fn stop(&self) {
        self.task.abort();
    }
}
