//! Validation of `[server]` and `[store]`: addresses, the upstream URL,
//! trusted proxies, limits, timeouts and the store settings.
//!
//! This module must never perform I/O: the AWS region is read only through
//! the injected [`Environment`], and no address is resolved or connected
//! to — it checks what is written.

use std::net::SocketAddr;

use http::Method;
use std::time::Duration;

use http::Uri;
use ipnet::IpNet;
use toml::Spanned;

use super::{millis, size, Problems};
use crate::config::raw::{RawDynamo, RawServer, RawStore};
use crate::config::{
    AccessField, AccessLogFields, DynamoConfig, Environment, Server, StoreConfig, StoreKind,
    TlsFiles, Upstream,
};

/// `[server]`; `None` when `listen` or `upstream` is invalid.
pub(super) fn validate_server(raw: RawServer, p: &mut Problems<'_>) -> Option<Server> {
    let listen = parse_socket_addr(&raw.listen, "listen", p);
    let admin_listen = raw
        .admin_listen
        .as_ref()
        .and_then(|a| parse_socket_addr(a, "admin_listen", p));
    let upstream = parse_upstream(&raw.upstream, p);
    let trusted_proxies = parse_trusted_proxies(&raw.trusted_proxies, p);
    let max_body_bytes = size(p.at_least_or(&raw.max_body_bytes, 1, 1024 * 1024, "max_body_bytes"));
    let max_connections = size(p.at_least_or(&raw.max_connections, 1, 10_000, "max_connections"));
    let workers = workers(&raw.workers, p);
    let max_uri_bytes = size(p.at_least_or(&raw.max_uri_bytes, 16, 8192, "max_uri_bytes"));
    let tls = raw.tls.map(|t| {
        let t = t.into_inner();
        TlsFiles {
            cert_file: t.cert_file,
            key_file: t.key_file,
            // Read with the environment, by validate_client_auth.
            client_auth: None,
        }
    });
    // The timeouts are checked (and reported) only once both addresses are
    // valid, as they always were.
    let (listen, upstream) = (listen?, upstream?);
    Some(Server {
        listen,
        admin_listen,
        upstream,
        upstream_timeout: millis(&raw.upstream_timeout_ms, 30_000, "upstream_timeout_ms", p),
        upstream_connect_timeout: millis(
            &raw.upstream_connect_timeout_ms,
            2_000,
            "upstream_connect_timeout_ms",
            p,
        ),
        max_body_bytes,
        unmatched: raw.unmatched,
        trusted_proxies,
        shutdown_grace: Duration::from_secs(raw.shutdown_grace_secs.unwrap_or(20)),
        max_connections,
        workers,
        max_uri_bytes,
        header_read_timeout: millis(
            &raw.header_read_timeout_ms,
            10_000,
            "header_read_timeout_ms",
            p,
        ),
        tls,
        access_log: raw.access_log,
        access_log_fields: access_log_fields(raw.access_log_fields.as_deref(), p),
        watch_config: raw.watch_config.unwrap_or(true),
        case_insensitive_paths: raw.case_insensitive_paths,
        extension_methods: extension_methods(&raw.extension_methods, p),
    })
}

/// `access_log_fields`: known field names (the default set when absent).
fn access_log_fields(raw: Option<&[Spanned<String>]>, p: &mut Problems<'_>) -> AccessLogFields {
    let Some(raw) = raw else {
        return AccessLogFields::default();
    };
    let fields = raw.iter().filter_map(|name| {
        let field = AccessField::from_name(name.get_ref());
        if field.is_none() {
            let known: Vec<&str> = AccessField::ALL.iter().map(|f| f.name()).collect();
            let near = known
                .iter()
                .min_by_key(|k| strsim::damerau_levenshtein(name.get_ref(), k))
                .filter(|k| strsim::damerau_levenshtein(name.get_ref(), k) <= 2)
                .map(|k| format!(" (did you mean {k:?}?)"))
                .unwrap_or_default();
            p.at(
                name.span(),
                format!(
                    "{:?} is not an access log field{near}; write some of {}",
                    name.get_ref(),
                    known.join(", ")
                ),
            );
        }
        field
    });
    AccessLogFields::of(fields.collect::<Vec<_>>())
}

/// `extension_methods`: method tokens (RFC 9110 §9.1), upper-cased.
fn extension_methods(raw: &[Spanned<String>], p: &mut Problems<'_>) -> Vec<String> {
    raw.iter()
        .filter_map(|name| {
            let upper = name.get_ref().to_ascii_uppercase();
            if Method::from_bytes(upper.as_bytes()).is_ok() && !upper.is_empty() {
                Some(upper)
            } else {
                p.at(
                    name.span(),
                    format!(
                        "{:?} is not a method token; write letters, e.g. \"PURGE\"",
                        name.get_ref()
                    ),
                );
                None
            }
        })
        .collect()
}

fn parse_socket_addr(
    value: &Spanned<String>,
    key: &str,
    problems: &mut Problems<'_>,
) -> Option<SocketAddr> {
    match value.get_ref().parse::<SocketAddr>() {
        Ok(addr) => Some(addr),
        Err(_) => {
            problems.at(
                value.span(),
                format!(
                    "{key} = {:?} is not an IP:port; write for example \"127.0.0.1:8080\" or \"[::1]:8080\"",
                    value.get_ref()
                ),
            );
            None
        }
    }
}

/// `upstream`: an http(s) URL with a host and no path or query.
fn parse_upstream(value: &Spanned<String>, p: &mut Problems<'_>) -> Option<Upstream> {
    match value.get_ref().parse::<Uri>() {
        Ok(uri) => match (uri.scheme(), uri.authority()) {
            (Some(scheme), Some(authority))
                if (scheme == &http::uri::Scheme::HTTP || scheme == &http::uri::Scheme::HTTPS)
                    && matches!(uri.path(), "" | "/")
                    && uri.query().is_none() =>
            {
                Some(Upstream {
                    scheme: scheme.clone(),
                    authority: authority.clone(),
                })
            }
            _ => {
                p.at(
                    value.span(),
                    "upstream must be an http:// or https:// URL with a host and port and no path, e.g. \"http://127.0.0.1:9000\"",
                );
                None
            }
        },
        Err(_) => {
            p.at(
                value.span(),
                "upstream is not a URL; write for example \"http://127.0.0.1:9000\"",
            );
            None
        }
    }
}

/// `trusted_proxies`: IPs or CIDRs; bad entries are reported and skipped.
fn parse_trusted_proxies(entries: &[Spanned<String>], p: &mut Problems<'_>) -> Vec<IpNet> {
    let mut trusted_proxies = Vec::new();
    for entry in entries {
        let text = entry.get_ref();
        let parsed = text
            .parse::<IpNet>()
            .or_else(|_| text.parse::<std::net::IpAddr>().map(IpNet::from));
        match parsed {
            Ok(net) => trusted_proxies.push(net),
            Err(_) => p.at(
                entry.span(),
                format!("trusted_proxies entry {text:?} is not an IP or CIDR; write e.g. \"10.0.0.0/8\" or \"127.0.0.1\""),
            ),
        }
    }
    trusted_proxies
}

/// `workers`: 1 to 1024, one per CPU when absent.
fn workers(value: &Option<Spanned<u64>>, p: &mut Problems<'_>) -> usize {
    match value {
        Some(v) if *v.get_ref() == 0 || *v.get_ref() > 1024 => {
            p.at(
                v.span(),
                "workers must be between 1 and 1024; leave it out for one per CPU",
            );
            1
        }
        Some(v) => usize::try_from(*v.get_ref()).unwrap_or(1),
        None => std::thread::available_parallelism().map_or(1, usize::from),
    }
}

/// `[store]`; `None` when `kind = "dynamodb"` has no usable
/// `[store.dynamodb]`.
pub(super) fn validate_store(
    raw: RawStore,
    env: &dyn Environment,
    p: &mut Problems<'_>,
) -> Option<StoreConfig> {
    let max_entries = size(p.at_least_or(&raw.memory.max_entries, 1, 1_000_000, "max_entries"));
    let dynamodb = match (raw.kind, raw.dynamodb) {
        (StoreKind::Dynamodb, None) => {
            p.whole(
                "store.kind = \"dynamodb\" needs a [store.dynamodb] table with table and region",
            );
            None
        }
        (_, Some(dynamo)) => validate_dynamo(raw.kind, dynamo, env, p),
        (StoreKind::Memory, None) => None,
    };
    let key_hash_secret = raw
        .key_hash_secret_env
        .as_ref()
        .and_then(|name| super::keys::read_secret_env(name, env, p));
    if raw.kind == StoreKind::Dynamodb && dynamodb.is_none() {
        return None;
    }
    Some(StoreConfig {
        kind: raw.kind,
        on_error: raw.on_error,
        key_hash_secret,
        max_entries,
        restart_fence: raw.kind == StoreKind::Memory && raw.memory.restart_fence.unwrap_or(true),
        clock_margin: Duration::from_secs(raw.clock_margin_secs.unwrap_or(5)),
        dynamodb,
    })
}

/// A written `[store.dynamodb]` table (checked whatever the store kind; a
/// missing region is an error only for `kind = "dynamodb"`).
fn validate_dynamo(
    kind: StoreKind,
    dynamo: Spanned<RawDynamo>,
    env: &dyn Environment,
    p: &mut Problems<'_>,
) -> Option<DynamoConfig> {
    let span = dynamo.span();
    let dynamo = dynamo.into_inner();
    let region = dynamo
        .region
        .or_else(|| env.var("AWS_REGION"))
        .or_else(|| env.var("AWS_DEFAULT_REGION"));
    if let Some(endpoint) = &dynamo.endpoint_url {
        if endpoint
            .get_ref()
            .parse::<Uri>()
            .map_or(true, |u| u.scheme().is_none())
        {
            p.at(
                endpoint.span(),
                "endpoint_url must be a URL, e.g. \"http://127.0.0.1:8000\"",
            );
        }
    }
    let table_ok = (3..=255).contains(&dynamo.table.len())
        && dynamo
            .table
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
    if !table_ok {
        // The store refuses it at startup; say so here.
        p.at(
            span.clone(),
            format!(
                "[store.dynamodb] table {:?} is not a DynamoDB table name: write 3-255 letters, digits, '_', '-' or '.', e.g. table = \"replay-guard\"",
                dynamo.table
            ),
        );
    }
    match region {
        Some(region) if !region.is_empty() => Some(DynamoConfig {
            table: dynamo.table,
            region,
            endpoint_url: dynamo.endpoint_url.map(Spanned::into_inner),
            timeout: millis(&dynamo.timeout_ms, 250, "timeout_ms", p),
        }),
        _ => {
            if kind == StoreKind::Dynamodb {
                p.at(span, "[store.dynamodb] has no region: write region = \"us-east-1\" (or set AWS_REGION)");
            }
            None
        }
    }
}
