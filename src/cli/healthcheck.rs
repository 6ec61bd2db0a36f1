//! `replay-guard healthcheck`: exit 0 when the admin listener answers
//! `/healthz` with 200. For container `HEALTHCHECK`s on images without curl.
//!
//! The address comes from `--url`, or else from the config file's
//! `[server] admin_listen` (`--config`, default `$REPLAY_GUARD_CONFIG`), so
//! a health check follows the configured port instead of assuming 9901. A
//! wildcard listener (`0.0.0.0`, `[::]`) is asked on loopback. Only
//! `admin_listen` is read from the file: no secret is loaded, nothing is
//! validated, and nothing but that one loopback-or-configured address is
//! contacted.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use bytes::Bytes;
use clap::Args;
use http_body_util::Empty;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

/// Where `healthcheck` asks when neither `--url` nor a config names it.
const DEFAULT_URL: &str = "http://127.0.0.1:9901/healthz";

/// Arguments of `healthcheck`.
#[derive(Debug, Args)]
pub struct HealthcheckArgs {
    /// URL to probe (default: /healthz on the config's admin_listen, else
    /// http://127.0.0.1:9901/healthz).
    #[arg(long)]
    pub url: Option<String>,
    /// Configuration file whose [server] admin_listen is probed (`--url`
    /// wins when both are given).
    #[arg(long, env = "REPLAY_GUARD_CONFIG")]
    pub config: Option<PathBuf>,
}

/// The URL to probe: `--url`, or `/healthz` on the config's admin
/// listener, or the default.
fn url(args: &HealthcheckArgs) -> Result<String, String> {
    if let Some(url) = &args.url {
        return Ok(url.clone());
    }
    let Some(path) = &args.config else {
        return Ok(DEFAULT_URL.to_owned());
    };
    let admin = admin_listen(path)?;
    Ok(format!("http://{}/healthz", loopback_for(admin)))
}

/// `[server] admin_listen` of the file at `path`.
fn admin_listen(path: &Path) -> Result<SocketAddr, String> {
    let file = path.display();
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("{file}: cannot read the config file: {e}"))?;
    let doc: toml::Table = text
        .parse()
        .map_err(|e: toml::de::Error| format!("{file}: {}", e.message()))?;
    let admin = doc
        .get("server")
        .and_then(|s| s.get("admin_listen"))
        .ok_or_else(|| {
            format!("{file}: [server] has no admin_listen, so there is no /healthz to ask")
        })?;
    admin
        .as_str()
        .and_then(|a| a.parse().ok())
        .ok_or_else(|| format!("{file}: admin_listen is not an IP:port"))
}

/// The address a local client uses for a listener: loopback for a
/// wildcard bind.
fn loopback_for(addr: SocketAddr) -> SocketAddr {
    let ip = match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    SocketAddr::new(ip, addr.port())
}

/// Probe the URL once, with a 2-second timeout.
pub async fn run(args: &HealthcheckArgs) -> Result<(), ExitCode> {
    let url = url(args).map_err(|e| {
        eprintln!("healthcheck: {e}");
        ExitCode::from(1)
    })?;
    let uri = url.parse().map_err(|_| {
        eprintln!("--url {url:?} is not a URL");
        ExitCode::from(1)
    })?;
    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    match tokio::time::timeout(Duration::from_secs(2), client.get(uri)).await {
        Ok(Ok(response)) if response.status().is_success() => Ok(()),
        Ok(Ok(response)) => {
            eprintln!("unhealthy: {url}: {}", response.status());
            Err(ExitCode::from(2))
        }
        Ok(Err(e)) => {
            eprintln!("unhealthy: {url}: {e}");
            Err(ExitCode::from(2))
        }
        Err(_) => {
            eprintln!("unhealthy: {url}: no answer within 2 s");
            Err(ExitCode::from(2))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcard_listeners_are_asked_on_loopback() {
        let addr = |s: &str| s.parse::<SocketAddr>().unwrap();
        assert_eq!(loopback_for(addr("0.0.0.0:9911")), addr("127.0.0.1:9911"));
        assert_eq!(loopback_for(addr("[::]:9911")), addr("[::1]:9911"));
        assert_eq!(loopback_for(addr("10.1.2.3:9911")), addr("10.1.2.3:9911"));
    }
}
