//! The requests meant to execute, sent only with `--allow-execute N`:
//! one valid request, then its byte-for-byte replay, a retry with a fresh
//! nonce but the same `Idempotency-Key` (which must get the stored answer),
//! and a storm of concurrent copies of one new request (at most one may
//! execute).
//!
//! The budget is counted in requests, not in hoped-for refusals: this
//! phase sends at most N requests in all, so even a target that refuses
//! nothing executes at most N of them. This module must never send more
//! than its budget, nor anything but to its one target.

use super::attacks::Skip;
use super::report::{judge, Finding, Verdict};
use super::request::{Base, Draft, Fresh};
use super::send::{Outcome, Response, Target};

/// The largest storm, whatever the budget.
pub const MAX_STORM: usize = 16;

/// What the execution phase will send for a budget.
#[derive(Debug, Clone)]
pub struct Phase {
    /// The valid request.
    pub valid: Draft,
    /// Whether its byte-for-byte replay is sent.
    pub replay: bool,
    /// The retry with the same idempotency key.
    pub retry: Option<Draft>,
    /// One new request and how many concurrent copies of it.
    pub storm: Option<(Draft, usize)>,
    /// What the budget (or the route) leaves out.
    pub skipped: Vec<Skip>,
}

fn skip(id: &str, title: &str, why: String) -> Skip {
    Skip {
        id: id.to_owned(),
        title: title.to_owned(),
        why,
    }
}

impl Phase {
    /// The requests for `budget` (≥ 1) executions.
    pub fn plan(base: &Base, budget: u32) -> Phase {
        let first = Fresh::now();
        let valid = base.fresh(&first);
        let mut left = budget.saturating_sub(1) as usize;
        let mut skipped = Vec::new();
        let replay = left >= 1;
        if replay {
            left -= 1;
        } else {
            skipped.push(skip(
                "replay",
                "byte-for-byte replay",
                "needs --allow-execute 2 or more".into(),
            ));
        }
        let retry = if !base.profile.idempotency {
            skipped.push(skip(
                "idempotent-retry",
                "retry with the same Idempotency-Key",
                "the route has no idempotency rule".into(),
            ));
            None
        } else if left >= 1 {
            left -= 1;
            let retry = Fresh {
                idempotency_key: first.idempotency_key.clone(),
                ..Fresh::now()
            };
            Some(base.fresh(&retry))
        } else {
            skipped.push(skip(
                "idempotent-retry",
                "retry with the same Idempotency-Key",
                "needs a larger --allow-execute".into(),
            ));
            None
        };
        let storm = if left >= 2 {
            Some((base.fresh(&Fresh::now()), left.min(MAX_STORM)))
        } else {
            skipped.push(skip(
                "storm",
                "storm of concurrent copies",
                format!(
                    "needs --allow-execute {} or more",
                    budget as usize - left + 2
                ),
            ));
            None
        };
        Phase {
            valid,
            replay,
            retry,
            storm,
            skipped,
        }
    }

    /// How many requests this phase sends (never more than its budget).
    pub fn requests(&self) -> usize {
        1 + usize::from(self.replay)
            + usize::from(self.retry.is_some())
            + self.storm.as_ref().map_or(0, |s| s.1)
    }

    /// Every request, for `--dry-run`: (what, request).
    pub fn drafts(&self) -> Vec<(String, &Draft)> {
        let mut out = vec![("valid request".to_owned(), &self.valid)];
        if self.replay {
            out.push((
                "byte-for-byte replay of the valid request (the same bytes again)".into(),
                &self.valid,
            ));
        }
        if let Some(retry) = &self.retry {
            out.push(("retry: fresh nonce, same Idempotency-Key".into(), retry));
        }
        if let Some((storm, copies)) = &self.storm {
            out.push((format!("storm: {copies} concurrent copies of"), storm));
        }
        out
    }
}

/// What the phase showed: the valid request and the replay findings.
pub struct Executed {
    /// The valid request.
    pub valid: Finding,
    /// Its answer, when it was executed (the upstream's answer shape).
    pub baseline: Option<Response>,
    /// Replay, retry and storm.
    pub findings: Vec<Finding>,
}

/// Send the phase: the valid request first; the rest only if it executed.
pub async fn run(phase: &Phase, target: &Target) -> Executed {
    let bytes = phase.valid.to_bytes();
    let outcome = target.exchange(&bytes, phase.valid.is_head()).await;
    let executed = matches!(&outcome, Outcome::Answered { response, .. }
        if response.status < 400 && response.header("idempotent-replayed").is_none());
    let valid_verdict = if executed {
        Verdict::GotThrough
    } else {
        Verdict::Refused
    };
    let valid = Finding::new(
        "valid-request",
        "valid request",
        phase.valid.line(),
        &outcome,
        (valid_verdict, String::new()),
    );
    let Outcome::Answered {
        response: baseline, ..
    } = outcome.clone()
    else {
        return not_accepted(phase, valid, None);
    };
    if !executed {
        return not_accepted(phase, valid, Some(baseline));
    }
    let mut findings = Vec::new();
    if phase.replay {
        let outcome = target.exchange(&bytes, phase.valid.is_head()).await;
        let judged = judge_repeat(&outcome, &baseline, "accepts a byte-for-byte replay");
        findings.push(Finding::new(
            "replay",
            "byte-for-byte replay",
            phase.valid.line(),
            &outcome,
            judged,
        ));
    }
    if let Some(retry) = &phase.retry {
        let outcome = target.exchange(&retry.to_bytes(), retry.is_head()).await;
        let judged = judge_repeat(&outcome, &baseline, "executed a retry with the same Idempotency-Key a second time instead of answering the stored response");
        findings.push(Finding::new(
            "idempotent-retry",
            "retry, same Idempotency-Key",
            retry.line(),
            &outcome,
            judged,
        ));
    }
    if let Some((storm, copies)) = &phase.storm {
        findings.push(run_storm(storm, *copies, target).await);
    }
    Executed {
        valid,
        baseline: Some(baseline),
        findings,
    }
}

/// The valid request was not accepted: the replays would prove nothing.
fn not_accepted(phase: &Phase, valid: Finding, baseline: Option<Response>) -> Executed {
    let why = format!(
        "not sent: the valid request was not accepted ({}); give the headers, --config/--route or key the target expects",
        valid.reason.clone().or(valid.status.map(|s| s.to_string())).unwrap_or_else(|| valid.note.clone())
    );
    let mut findings = Vec::new();
    for (id, title, sent) in [
        ("replay", "byte-for-byte replay", phase.replay),
        (
            "idempotent-retry",
            "retry, same Idempotency-Key",
            phase.retry.is_some(),
        ),
        ("storm", "storm of concurrent copies", phase.storm.is_some()),
    ] {
        if sent {
            let mut finding = Finding::skipped(id, title, &why);
            finding.verdict = Verdict::Inconclusive;
            findings.push(finding);
        }
    }
    Executed {
        valid,
        baseline,
        findings,
    }
}

/// Judge a request that repeats the valid one: an identical 2xx answer
/// without `Idempotent-Replayed` cannot tell a stored answer from a second
/// execution.
fn judge_repeat(outcome: &Outcome, baseline: &Response, missing: &str) -> (Verdict, String) {
    if let Outcome::Answered { response, .. } = outcome {
        let marked = response.header("idempotent-replayed").is_some();
        if response.status < 400
            && !marked
            && response.body == baseline.body
            && response.status == baseline.status
        {
            return (
                Verdict::Inconclusive,
                "the same answer as the valid request, without Idempotent-Replayed: a stored answer, or a second execution with the same result".into(),
            );
        }
    }
    judge(outcome, missing, Some(baseline))
}

/// `copies` concurrent copies of one request: at most one may execute.
async fn run_storm(draft: &Draft, copies: usize, target: &Target) -> Finding {
    let bytes = std::sync::Arc::new(draft.to_bytes());
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..copies {
        let (target, bytes, head) = (target.clone(), bytes.clone(), draft.is_head());
        tasks.spawn(async move { target.exchange(&bytes, head).await });
    }
    let mut outcomes = Vec::with_capacity(copies);
    while let Some(done) = tasks.join_next().await {
        if let Ok(outcome) = done {
            outcomes.push(outcome);
        }
    }
    let executed = outcomes
        .iter()
        .filter(|o| matches!(o, Outcome::Answered { response, .. } if response.status < 400 && response.header("idempotent-replayed").is_none()))
        .count();
    let unanswered = copies
        - outcomes
            .iter()
            .filter(|o| matches!(o, Outcome::Answered { .. }))
            .count();
    let title = format!("storm: {copies} concurrent copies");
    let judged = if executed > 1 {
        (Verdict::GotThrough, format!("executed {executed} of {copies} concurrent copies of one request (no atomic nonce claim)"))
    } else if unanswered > 0 {
        (
            Verdict::Inconclusive,
            format!("{unanswered} of {copies} copies got no answer"),
        )
    } else {
        (
            Verdict::Refused,
            format!("{executed} of {copies} executed, the others refused"),
        )
    };
    // Evidence: a refusal, when there is one, else any answer.
    let shown = outcomes
        .iter()
        .find(|o| matches!(o, Outcome::Answered { response, .. } if response.status >= 400))
        .or(outcomes.first())
        .cloned()
        .unwrap_or(Outcome::Failed {
            error: "no answer".into(),
            ms: 0,
        });
    let mut finding = Finding::new("storm", &title, draft.line(), &shown, judged);
    finding.ms = outcomes.iter().map(Outcome::ms).max();
    finding
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::probe::request::{Names, Profile};
    use replay_guard::config::TimestampFormat;

    fn base(idempotency: bool) -> Base {
        Base {
            scheme: "http".into(),
            authority: "127.0.0.1:8080".into(),
            host: "127.0.0.1:8080".into(),
            method: "POST".into(),
            path: "/payments".into(),
            query: String::new(),
            signed_path_and_query: "/payments".into(),
            body: b"{}".to_vec(),
            extra: Vec::new(),
            profile: Profile {
                names: Names::default(),
                format: TimestampFormat::Unix,
                stale_secs: 3600,
                nonce: true,
                idempotency,
                signing: None,
                scheme: Default::default(),
            },
        }
    }

    #[test]
    fn the_phase_never_sends_more_than_its_budget() {
        for idempotency in [false, true] {
            for budget in 1..=40 {
                let phase = Phase::plan(&base(idempotency), budget);
                assert!(
                    phase.requests() <= budget as usize,
                    "{budget}: {}",
                    phase.requests()
                );
                assert_eq!(phase.replay, budget >= 2);
                assert!(phase
                    .storm
                    .as_ref()
                    .is_none_or(|s| (2..=MAX_STORM).contains(&s.1)));
            }
        }
        let full = Phase::plan(&base(true), 5);
        assert_eq!(
            (full.retry.is_some(), full.storm.map(|s| s.1)),
            (true, Some(2))
        );
    }
}
