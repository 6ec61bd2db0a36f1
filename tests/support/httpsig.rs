//! Requests signed by an RFC 9421 implementation nobody here wrote:
//! pyauth's `http-message-signatures` from PyPI (installed by
//! `scripts/test.sh`), driven through `rfc9421_client.py`. Key pairs for
//! every asymmetric algorithm are generated once per test process.

use std::path::Path;
use std::sync::OnceLock;

use serde_json::{json, Value};

use super::client::Req;

fn python(args: &[&str], stdin: &str) -> String {
    super::python::run(
        "rfc9421_client.py",
        args,
        stdin,
        "http-message-signatures and cryptography",
    )
}

/// A directory with `<algorithm>.key.pem` (PKCS#8) and `<algorithm>.pub.pem`
/// (SPKI) for every asymmetric algorithm, made by Python's `cryptography`.
pub fn keys_dir() -> &'static Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = tempfile::tempdir().expect("tempdir");
        python(&["keygen", dir.path().to_str().expect("utf-8 path")], "");
        dir
    })
    .path()
}

/// One request for the library to sign.
#[derive(Debug, Clone)]
pub struct Spec {
    pub json: Value,
}

impl Spec {
    /// Sign `req` as sent to `host` with `algorithm`'s test key (the HMAC
    /// key is `secret_b64`), `created`, covering `components`.
    pub fn new(
        req: &Req,
        host: &str,
        algorithm: &str,
        key_id: &str,
        created: u64,
        components: &[&str],
    ) -> Spec {
        let mut json = json!({
            "method": req.method.as_str(),
            "url": format!("http://{host}{}", req.path),
            "headers": req.headers,
            "body": String::from_utf8(req.body.to_vec()).expect("text body"),
            "algorithm": algorithm,
            "key_id": key_id,
            "created": created,
            "components": components,
            "label": "sig1",
        });
        if algorithm != "hmac-sha256" {
            json["private_key_file"] = json!(keys_dir().join(format!("{algorithm}.key.pem")));
        }
        Spec { json }
    }

    pub fn set(mut self, key: &str, value: impl Into<Value>) -> Spec {
        self.json[key] = value.into();
        self
    }
}

/// The headers the library adds to each request, in order.
pub fn sign_all(specs: &[Spec]) -> Vec<Vec<(String, String)>> {
    let input = Value::Array(specs.iter().map(|s| s.json.clone()).collect());
    let out: Vec<Vec<(String, String)>> =
        serde_json::from_str(&python(&["sign"], &input.to_string())).expect("json");
    assert_eq!(out.len(), specs.len());
    out
}

/// `req` with the headers the library added for `spec`.
pub fn signed(req: Req, spec: Spec) -> Req {
    let headers = sign_all(&[spec]).remove(0);
    headers
        .into_iter()
        .fold(req, |req, (name, value)| req.header(&name, value))
}
