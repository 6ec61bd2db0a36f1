//! TOML fragments for test configs, so a suite states its routes in one
//! line each instead of repeating `[[routes]]` blocks:
//!
//! ```ignore
//! let routes = config::routes([
//!     config::create_payment(),
//!     Route::post("charge", "/charges").identity("header:X-Client").idempotency("{ required = true }"),
//!     config::public(),
//! ]);
//! ```

use std::fmt;

/// One `[[routes]]` table; each setter adds (or replaces) one `key = value`
/// line, with the value written as TOML.
#[derive(Debug, Clone)]
pub struct Route {
    fields: Vec<(&'static str, String)>,
}

impl Route {
    /// A route for every method.
    pub fn any(name: &str, path: &str) -> Route {
        Route { fields: Vec::new() }
            .set("name", format!("{name:?}"))
            .set("path", format!("{path:?}"))
    }

    /// A `methods = ["POST"]` route.
    pub fn post(name: &str, path: &str) -> Route {
        let route = Route::any(name, path);
        route.set("methods", r#"["POST"]"#)
    }

    /// `identity = "…"`, e.g. `"header:X-Client"` or `"key_id"`.
    pub fn identity(self, identity: &str) -> Route {
        self.set("identity", format!("{identity:?}"))
    }

    /// `freshness = { max_skew_secs = N }`.
    pub fn freshness(self, max_skew_secs: u64) -> Route {
        self.set(
            "freshness",
            format!("{{ max_skew_secs = {max_skew_secs} }}"),
        )
    }

    /// `nonce = { required = true }`.
    pub fn nonce(self) -> Route {
        self.set("nonce", "{ required = true }")
    }

    /// `signature = { required = true }`.
    pub fn signature(self) -> Route {
        self.set("signature", "{ required = true }")
    }

    /// `idempotency = <table>`, the inline table as written.
    pub fn idempotency(self, table: &str) -> Route {
        self.set("idempotency", table)
    }

    /// `rate_limit = <table>`, the inline table as written.
    pub fn rate_limit(self, table: &str) -> Route {
        self.set("rate_limit", table)
    }

    /// Any other `key = value` line; `value` is TOML.
    pub fn set(mut self, key: &'static str, value: impl Into<String>) -> Route {
        let value = value.into();
        match self.fields.iter_mut().find(|(k, _)| *k == key) {
            Some(field) => field.1 = value,
            None => self.fields.push((key, value)),
        }
        self
    }
}

impl fmt::Display for Route {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "[[routes]]")?;
        for (key, value) in &self.fields {
            writeln!(f, "{key} = {value}")?;
        }
        Ok(())
    }
}

/// The payment route several suites share: `POST /payments`, identity
/// from `X-Client`, 120 s skew, nonce required.
pub fn create_payment() -> Route {
    Route::post("create-payment", "/payments")
        .identity("header:X-Client")
        .freshness(120)
        .nonce()
}

/// `GET`/`POST`/… `/orders/{id}` with an RFC 3339 timestamp (60 s skew)
/// and no nonce.
pub fn orders() -> Route {
    Route::any("orders", "/orders/{id}")
        .set("freshness", r#"{ max_skew_secs = 60, format = "rfc3339" }"#)
}

/// The key id and secret of `billing-svc` in [`guarded`].
pub const BILLING: (&str, &str) = ("billing-svc", "s3cr3t-billing");

/// The hostile-input suites' config: billing-svc's key, two routes with
/// replay checks (`/payments`, and `/signed` with `identity = "key_id"`
/// and a signature), an idempotent one (`/charges`) and a pass-through.
pub fn guarded() -> String {
    let signed = Route::post("signed", "/signed")
        .identity("key_id")
        .freshness(120)
        .nonce()
        .signature();
    let charge = Route::post("charge", "/charges")
        .identity("header:X-Client")
        .idempotency("{ required = true, ttl_secs = 86400, lease_secs = 60 }");
    let routes = routes([create_payment(), signed, charge, public()]);
    format!("{}\n{routes}", key(BILLING.0, BILLING.1))
}

/// Payments with a nonce ([`create_payment`]), orders with an RFC 3339
/// timestamp only ([`orders`]), and a pass-through ([`public`]).
pub fn payments_and_orders() -> String {
    routes([create_payment(), orders(), public()])
}

/// A pass-through route without checks: any method on `/public/{*rest}`.
pub fn public() -> Route {
    Route::any("public", "/public/{*rest}")
}

/// Routes as one TOML text, a blank line between them.
pub fn routes(routes: impl IntoIterator<Item = Route>) -> String {
    let tables: Vec<String> = routes.into_iter().map(|r| r.to_string()).collect();
    tables.join("\n")
}

/// A `[[keys]]` table with an inline secret.
pub fn key(id: &str, secret: &str) -> String {
    format!("[[keys]]\nid = {id:?}\nsecret = {secret:?}\n")
}

/// A `[[keys]]` table whose secret is read from the environment variable
/// `secret_env`.
pub fn key_env(id: &str, secret_env: &str) -> String {
    format!("[[keys]]\nid = {id:?}\nsecret_env = {secret_env:?}\n")
}

/// The `[store]` tables for DynamoDB `table` at `endpoint` (us-east-1).
pub fn dynamo_store(endpoint: &str, table: &str, timeout_ms: u64, on_error: &str) -> String {
    format!(
        "[store]\nkind = \"dynamodb\"\non_error = \"{on_error}\"\n[store.dynamodb]\ntable = \"{table}\"\nregion = \"us-east-1\"\nendpoint_url = \"{endpoint}\"\ntimeout_ms = {timeout_ms}\n"
    )
}

/// The problems `Config::parse` reports for a minimal `[server]` followed
/// by `tables` (file `t.toml`: `[server]` takes lines 1–3), none when valid.
pub fn problems(tables: &str) -> Vec<String> {
    let toml =
        format!("[server]\nlisten = \"127.0.0.1:0\"\nupstream = \"http://127.0.0.1:9\"\n{tables}");
    match replay_guard::config::Config::parse(&toml, "t.toml") {
        Ok(_) => Vec::new(),
        Err(e) => e.errors,
    }
}
