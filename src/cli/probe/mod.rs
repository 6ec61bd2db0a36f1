//! `replay-guard probe`: a black-box check of a live deployment (SPEC §8).
//! It sends, to the one URL it is given, the requests an attacker would —
//! broken replay headers, other methods and path spellings, ambiguous
//! framing and, only with `--allow-execute N`, a valid request followed by
//! its replays — judges each answer and exits 0 (all refused), 1
//! (something got through) or 2 (unreachable, undecided or bad usage).
//!
//! Layout: [`profile`] turns the flags (and `--config`/`--route`) into how
//! a client writes its requests; [`request`] builds exact request bytes;
//! [`attacks`] is the attack list; [`execute`] the budgeted requests that
//! are meant to execute; [`send`] the one-connection-per-request sending;
//! [`report`] the verdicts, table and JSON.
//!
//! This command must never contact any host but the URL's, never send a
//! request meant to execute without `--allow-execute` (nor more than N),
//! never loop without a bound, and never print a secret.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;

mod attacks;
mod execute;
mod profile;
mod report;
mod request;
mod send;

use attacks::Plan;
use execute::Phase;
use report::{judge, Finding, Report};
use request::Base;
use send::Target;

/// Arguments of `probe`.
#[derive(Debug, Args)]
pub struct ProbeArgs {
    /// The protected endpoint, e.g. https://api.example.com/payments (http or https).
    #[arg(long)]
    pub url: String,
    /// The endpoint's method.
    #[arg(long, default_value = "POST")]
    pub method: String,
    /// Request body as a string.
    #[arg(long, conflicts_with = "body_file")]
    pub body: Option<String>,
    /// File holding the request body.
    #[arg(long)]
    pub body_file: Option<PathBuf>,
    /// An extra header on every request, 'Name: value' (repeatable), e.g. authorization.
    #[arg(long = "header", value_name = "'NAME: value'")]
    pub headers: Vec<String>,
    /// The deployment's replay-guard configuration (with --route).
    #[arg(long, requires = "route")]
    pub config: Option<PathBuf>,
    /// The route of --config that protects the URL.
    #[arg(long, requires = "config")]
    pub route: Option<String>,
    /// Key id to sign with (default: the config's key, when the route signs).
    #[arg(long)]
    pub key_id: Option<String>,
    /// Environment variable holding the --key-id's secret.
    #[arg(long, requires = "key_id", conflicts_with = "private_key_file")]
    pub secret_env: Option<String>,
    /// PEM private key of the --key-id, for an RFC 9421 route whose key is a public key (with --algorithm).
    #[arg(long, requires_all = ["key_id", "algorithm"])]
    pub private_key_file: Option<PathBuf>,
    /// The private key's algorithm: ed25519, ecdsa-p256-sha256, rsa-pss-sha512 or rsa-v1_5-sha256.
    #[arg(long, requires = "private_key_file")]
    pub algorithm: Option<String>,
    /// Send requests meant to execute (a valid one, its replays, a storm): at most N of them.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub allow_execute: Option<u32>,
    /// Bound on each exchange (connect, send, answer), milliseconds.
    #[arg(long, default_value_t = 5000, value_parser = clap::value_parser!(u64).range(1..=600_000))]
    pub timeout_ms: u64,
    /// Print the report as JSON on stdout (for CI).
    #[arg(long)]
    pub json: bool,
    /// Print every request that would be sent, and send nothing.
    #[arg(long)]
    pub dry_run: bool,
}

/// Bad usage or an unreachable target: exit 2, with a message.
fn fail(message: impl std::fmt::Display) -> ExitCode {
    eprintln!("probe: {message}");
    ExitCode::from(2)
}

/// Run `probe`.
pub async fn run(args: ProbeArgs) -> Result<(), ExitCode> {
    let built = profile::build(&args).map_err(fail)?;
    let base = built.base;
    let plan = attacks::plan(&base, built.bypasses_pointless.as_deref());
    let phase = args.allow_execute.map(|n| Phase::plan(&base, n));
    warn(&args, &plan, phase.as_ref());
    for note in &built.notes {
        eprintln!("probe: {note}");
    }
    if args.dry_run {
        dry_run(&args, &plan, phase.as_ref());
        return Ok(());
    }
    let uri: http::Uri = args.url.parse().map_err(fail)?;
    let target = Target::new(&uri, Duration::from_millis(args.timeout_ms)).map_err(fail)?;
    target
        .reachable()
        .await
        .map_err(|e| fail(format!("cannot reach {}: {e}", target.address())))?;
    let report = probe(
        &args,
        &target,
        &plan,
        phase.as_ref(),
        built.profile_text,
        built.route,
    )
    .await;
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report.json()).unwrap_or_default()
        );
    } else {
        print!("{}", report.text());
    }
    match report.exit_code() {
        0 => Ok(()),
        code => Err(ExitCode::from(code)),
    }
}

/// Send every attack, then the execution phase; judge with the upstream's
/// answer shape once it is known.
async fn probe(
    args: &ProbeArgs,
    target: &Target,
    plan: &Plan,
    phase: Option<&Phase>,
    profile: String,
    route: Option<String>,
) -> Report {
    let mut sent = Vec::with_capacity(plan.attacks.len());
    for attack in &plan.attacks {
        let outcome = target
            .exchange(&attack.draft.to_bytes(), attack.draft.is_head())
            .await;
        sent.push((attack, outcome));
    }
    let executed = match phase {
        Some(phase) => Some(execute::run(phase, target).await),
        None => None,
    };
    let baseline = executed.as_ref().and_then(|e| e.baseline.as_ref());
    let mut findings: Vec<Finding> = sent
        .iter()
        .map(|(attack, outcome)| {
            let judged = judge(outcome, &attack.missing, baseline);
            Finding::new(
                &attack.id,
                &attack.title,
                attack.draft.line(),
                outcome,
                judged,
            )
        })
        .collect();
    let mut valid = None;
    if let Some(executed) = executed {
        findings.extend(executed.findings);
        valid = Some(executed.valid);
    }
    let skipped = plan
        .skipped
        .iter()
        .chain(phase.into_iter().flat_map(|p| p.skipped.iter()));
    findings.extend(skipped.map(|s| Finding::skipped(&s.id, &s.title, &s.why)));
    if args.allow_execute.is_none() {
        let why = "requests meant to execute are sent only with --allow-execute N";
        findings.push(Finding::skipped(
            "replays",
            "valid request, replay, retry, storm",
            why,
        ));
    }
    Report {
        url: args.url.clone(),
        profile,
        route,
        baseline: valid,
        findings,
    }
}

/// The warning printed before anything is sent.
fn warn(args: &ProbeArgs, plan: &Plan, phase: Option<&Phase>) {
    let verb = if args.dry_run { "would send" } else { "sends" };
    eprintln!(
        "probe: WARNING: {verb} {} attack requests to {}. A protected deployment refuses every one; \
         on an unprotected one each may EXECUTE (once). Run with --dry-run first to see them.",
        plan.attacks.len(),
        args.url
    );
    match phase {
        Some(phase) => eprintln!(
            "probe: --allow-execute {}: also {verb} {} requests meant to execute (a valid one, its replays, a storm), \
             never more than that budget.",
            args.allow_execute.unwrap_or(0),
            phase.requests(),
        ),
        None => eprintln!("probe: no request meant to execute is sent (replay checks need --allow-execute N)."),
    }
}

/// `--dry-run`: every request, exactly as it would be sent.
fn dry_run(args: &ProbeArgs, plan: &Plan, phase: Option<&Phase>) {
    let mut all: Vec<(String, &request::Draft)> = plan
        .attacks
        .iter()
        .map(|a| (format!("{}: {}", a.id, a.title), &a.draft))
        .collect();
    if let Some(phase) = phase {
        all.extend(phase.drafts());
    }
    if args.json {
        let requests: Vec<serde_json::Value> = all
            .iter()
            .map(|(what, draft)| {
                serde_json::json!({
                    "what": what,
                    "request": draft.line(),
                    "bytes": String::from_utf8_lossy(&draft.to_bytes()),
                })
            })
            .collect();
        let document =
            serde_json::json!({ "url": args.url, "dry_run": true, "requests": requests });
        println!(
            "{}",
            serde_json::to_string_pretty(&document).unwrap_or_default()
        );
        return;
    }
    for (what, draft) in all {
        println!("### {what}");
        println!(
            "{}",
            String::from_utf8_lossy(&draft.to_bytes()).replace("\r\n", "\n")
        );
    }
    println!("(dry run: nothing was sent)");
}

/// What [`profile::build`] gives: the base request and how it was chosen.
pub struct Built {
    /// What every request shares.
    pub base: Base,
    /// `route NAME from FILE`, or the generic profile.
    pub profile_text: String,
    /// The route name.
    pub route: Option<String>,
    /// Why bare-request bypasses prove nothing on this route, if so.
    pub bypasses_pointless: Option<String>,
    /// Things the operator should know (printed on stderr).
    pub notes: Vec<String>,
}
