//! `replay-guard healthcheck`: exit 0 when the admin listener answers
//! `/healthz` with 200. For container `HEALTHCHECK`s on images without curl.

use std::process::ExitCode;
use std::time::Duration;

use bytes::Bytes;
use clap::Args;
use http_body_util::Empty;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

/// Arguments of `healthcheck`.
#[derive(Debug, Args)]
pub struct HealthcheckArgs {
    /// URL to probe.
    #[arg(long, default_value = "http://127.0.0.1:9901/healthz")]
    pub url: String,
}

/// Probe the URL once, with a 2-second timeout.
pub async fn run(args: &HealthcheckArgs) -> Result<(), ExitCode> {
    let uri = args.url.parse().map_err(|_| {
        eprintln!("--url {:?} is not a URL", args.url);
        ExitCode::from(1)
    })?;
    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    match tokio::time::timeout(Duration::from_secs(2), client.get(uri)).await {
        Ok(Ok(response)) if response.status().is_success() => Ok(()),
        Ok(Ok(response)) => {
            eprintln!("unhealthy: {}", response.status());
            Err(ExitCode::from(2))
        }
        Ok(Err(e)) => {
            eprintln!("unhealthy: {e}");
            Err(ExitCode::from(2))
        }
        Err(_) => {
            eprintln!("unhealthy: no answer within 2 s");
            Err(ExitCode::from(2))
        }
    }
}
