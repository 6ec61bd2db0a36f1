//! `replay-guard check`: print the compiled route table.

use std::fmt::Write as _;

use replay_guard::config::{Config, RateScope, Route, StoreKind};

fn checks(route: &Route) -> String {
    let mut parts = Vec::new();
    if let Some(rate) = &route.rate_limit {
        let scope = match rate.scope {
            RateScope::Instance => "",
            RateScope::Cluster => " cluster",
        };
        parts.push(format!(
            "rate({}/{}s burst {}{scope})",
            rate.quota, rate.window_secs, rate.burst
        ));
    }
    if let Some(f) = &route.freshness {
        parts.push(format!(
            "freshness({} ±{}s)",
            f.format,
            f.max_skew.as_secs()
        ));
    }
    if let Some(required) = route.signature {
        let optional = if required { "" } else { "optional, " };
        parts.push(match route.scheme.rfc9421() {
            None if required => "signature".into(),
            None => "signature(optional)".into(),
            Some(rule) => {
                let names: Vec<&str> = rule.components.iter().map(|c| c.name()).collect();
                let tag = rule
                    .tag
                    .as_ref()
                    .map(|t| format!("; tag {t}"))
                    .unwrap_or_default();
                format!("signature({optional}rfc9421: {}{tag})", names.join(" "))
            }
        });
    }
    if let Some(required) = route.nonce {
        parts.push(if required {
            "nonce".into()
        } else {
            "nonce(optional)".into()
        });
    }
    if let Some(i) = &route.idempotency {
        parts.push(format!(
            "idempotency({}ttl {}s, lease {}s)",
            if i.required { "" } else { "optional, " },
            i.ttl.as_secs(),
            i.lease.as_secs()
        ));
    }
    if let Some(hook) = &route.webhook {
        let window = if hook.provider.has_timestamp() {
            format!("±{}s, ", hook.tolerance.as_secs())
        } else {
            "no timestamp, ".into()
        };
        parts.push(format!(
            "webhook({}: {window}dedupe {}s)",
            hook.provider,
            hook.dedupe.ttl.as_secs()
        ));
    }
    if parts.is_empty() {
        return "pass-through".into();
    }
    if route.mode == replay_guard::config::Mode::Report {
        parts.push("[REPORT ONLY]".into());
    }
    parts.join(" ")
}

/// Every warning `check` prints: the config's own (positioned), and the
/// inline-secret warning that `run` logs at startup for each such key.
pub fn warnings(config: &Config) -> Vec<String> {
    let mut out = config.warnings.clone();
    for key in config.keys.values().filter(|k| k.inline) {
        out.push(format!(
            "{}: warning: key {:?}: the secret is written inline in the config file: use secret_env or secret_file outside demos",
            config.source, key.id
        ));
    }
    out
}

/// The human-readable route table `check` prints.
pub fn route_table(config: &Config) -> String {
    let mut out = String::new();
    let s = &config.server;
    let _ = writeln!(out, "config OK: {}", config.source);
    let _ = writeln!(
        out,
        "listen {}  admin {}  upstream {}  timeout {}ms  max_body {}B  unmatched {}",
        s.listen,
        s.admin_listen
            .map_or_else(|| "off".to_owned(), |a| a.to_string()),
        s.upstream,
        s.upstream_timeout.as_millis(),
        s.max_body_bytes,
        format!("{:?}", s.unmatched).to_lowercase()
    );
    let store = match config.store.kind {
        StoreKind::Memory => format!("memory (max_entries {})", config.store.max_entries),
        StoreKind::Dynamodb => config.store.dynamodb.as_ref().map_or_else(
            || "dynamodb".to_owned(),
            |d| format!("dynamodb table {} region {}", d.table, d.region),
        ),
    };
    let on_error = format!("{:?}", config.store.on_error).to_lowercase();
    let _ = writeln!(out, "store {store}  on_error {on_error}");
    if let Some(tls) = &s.tls {
        let mtls = match &tls.client_auth {
            Some(auth) => format!(
                "client certificates {} (CA {})",
                if auth.required {
                    "required"
                } else {
                    "optional"
                },
                auth.ca_file.display()
            ),
            None => "no client certificates".to_owned(),
        };
        let _ = writeln!(out, "tls {}  {mtls}", tls.cert_file.display());
    }
    if let Some(jwt) = &config.jwt {
        let algorithms: Vec<String> = jwt.algorithms.iter().map(|a| format!("{a:?}")).collect();
        let keys = match (&jwt.jwks, &jwt.file_keys) {
            (Some(replay_guard::config::JwksSource::File(path)), Some(keys)) => {
                format!("jwks_file {} ({} keys)", path.display(), keys.keys.len())
            }
            (Some(replay_guard::config::JwksSource::Url(url)), _) => format!("jwks_url {url}"),
            _ => String::new(),
        };
        let secret = if jwt.secret.is_some() {
            " secret_env"
        } else {
            ""
        };
        let _ = writeln!(
            out,
            "jwt header {}  issuer {}  audiences [{}]  algorithms [{}]  {keys}{secret}  refresh {}s  leeway {}s",
            jwt.header,
            jwt.issuer.as_deref().unwrap_or("(any)"),
            jwt.audiences.join(", "),
            algorithms.join(", "),
            jwt.refresh.as_secs(),
            jwt.leeway_secs
        );
    }
    let keys: Vec<&str> = config.keys.keys().map(String::as_str).collect();
    let _ = writeln!(out, "keys [{}]", keys.join(", "));
    let _ = writeln!(out, "routes (first match wins):");
    let _ = writeln!(
        out,
        "  {:<3} {:<20} {:<12} {:<24} {:<16} checks",
        "#", "name", "methods", "path", "identity"
    );
    for (i, route) in config.routes.iter().enumerate() {
        let methods = route.methods.as_ref().map_or_else(
            || "*".to_owned(),
            |m| m.iter().map(|m| m.as_str()).collect::<Vec<_>>().join(","),
        );
        let _ = writeln!(
            out,
            "  {:<3} {:<20} {:<12} {:<24} {:<16} {}",
            i + 1,
            route.name,
            methods,
            route.path.to_string(),
            route.identity.to_string(),
            checks(route)
        );
    }
    let _ = writeln!(
        out,
        "  -   (unmatched)          *            *                        -                {}",
        match s.unmatched {
            replay_guard::config::Unmatched::Forward => "forward unchecked",
            replay_guard::config::Unmatched::Reject => "reject 404 route_not_allowed",
        }
    );
    if config.store.kind == StoreKind::Memory {
        for route in &config.routes {
            if route
                .rate_limit
                .is_some_and(|r| r.scope == RateScope::Cluster)
            {
                let _ = writeln!(
                    out,
                    "warning: route {}: rate_limit scope = \"cluster\" on the memory store is the same as \"instance\" (each replica has its own budget); use [store] kind = \"dynamodb\" to share it",
                    route.name
                );
            }
        }
    }
    out
}
