//! Verdicts and their presentation: each answer judged **refused**, **got
//! through** or **inconclusive** with its evidence (status, replay-guard's
//! `reason`, milliseconds), the summary table for people, the JSON document
//! for CI, and the exit code (0 all refused, 1 something got through, 2
//! the probe could not decide).
//!
//! This module only judges and formats what was already received; it must
//! never send a request, and never print a secret (requests are shown by
//! their request line only).

use serde_json::{json, Value};

use super::attacks::is_bypass;
use super::send::{Outcome, Response};

/// What one attack showed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The target refused it (4xx/5xx, or a stored answer replayed).
    Refused,
    /// It reached the upstream (2xx/3xx, or an answer like the upstream's).
    GotThrough,
    /// No verdict: timeout, reset, or an answer that cannot tell.
    Inconclusive,
    /// Not sent: it does not apply to this target or these flags.
    Skipped,
}

impl Verdict {
    /// The word in the table.
    pub fn word(self) -> &'static str {
        match self {
            Verdict::Refused => "refused",
            Verdict::GotThrough => "GOT THROUGH",
            Verdict::Inconclusive => "inconclusive",
            Verdict::Skipped => "skipped",
        }
    }

    /// The value in the JSON document.
    pub fn key(self) -> &'static str {
        match self {
            Verdict::Refused => "refused",
            Verdict::GotThrough => "got_through",
            Verdict::Inconclusive => "inconclusive",
            Verdict::Skipped => "skipped",
        }
    }
}

/// One judged attack (or the valid request), with its evidence.
#[derive(Debug, Clone)]
pub struct Finding {
    /// Stable id.
    pub id: String,
    /// What was sent, in a few words.
    pub title: String,
    /// `METHOD target` (empty when skipped).
    pub request: String,
    /// The verdict.
    pub verdict: Verdict,
    /// Status of the answer, if any.
    pub status: Option<u16>,
    /// replay-guard's problem+json `reason`, if any.
    pub reason: Option<String>,
    /// Time to the answer (or the failure).
    pub ms: Option<u64>,
    /// The answer carried `Idempotent-Replayed: true` (a stored answer).
    pub stored: bool,
    /// Got through: the missing defence; refused: how; inconclusive: why;
    /// skipped: why not sent.
    pub note: String,
}

impl Finding {
    /// A finding from an outcome and its verdict.
    pub fn new(
        id: &str,
        title: &str,
        request: String,
        outcome: &Outcome,
        judged: (Verdict, String),
    ) -> Finding {
        let (status, reason, stored) = match outcome {
            Outcome::Answered { response, .. } => (
                Some(response.status),
                response.reason(),
                response.header("idempotent-replayed") == Some("true"),
            ),
            Outcome::Failed { .. } => (None, None, false),
        };
        Finding {
            id: id.to_owned(),
            title: title.to_owned(),
            request,
            verdict: judged.0,
            status,
            reason,
            ms: Some(outcome.ms()),
            stored,
            note: judged.1,
        }
    }

    /// A finding for an attack that was not sent.
    pub fn skipped(id: &str, title: &str, why: &str) -> Finding {
        Finding {
            id: id.to_owned(),
            title: title.to_owned(),
            request: String::new(),
            verdict: Verdict::Skipped,
            status: None,
            reason: None,
            ms: None,
            stored: false,
            note: why.to_owned(),
        }
    }

    fn answer(&self) -> String {
        match (self.status, &self.reason) {
            (Some(status), Some(reason)) => format!("{status} {reason}"),
            (Some(status), None) if self.stored => format!("{status} stored answer"),
            (Some(status), None) => status.to_string(),
            (None, _) if self.verdict == Verdict::Skipped => "-".into(),
            (None, _) => "no answer".into(),
        }
    }

    fn to_json(&self) -> Value {
        json!({
            "id": self.id,
            "attack": self.title,
            "request": (!self.request.is_empty()).then_some(&self.request),
            "verdict": self.verdict.key(),
            "status": self.status,
            "reason": self.reason,
            "ms": self.ms,
            "stored_answer": self.stored,
            "note": self.note,
        })
    }
}

/// Judge one answer to a request that a protected deployment refuses.
/// `missing` is the sentence for "got through"; `baseline` is the answer
/// to the valid request, when one was sent (an error answer shaped like it
/// came from the upstream, not from a guard).
pub fn judge(outcome: &Outcome, missing: &str, baseline: Option<&Response>) -> (Verdict, String) {
    let response = match outcome {
        Outcome::Failed { error, .. } => return (Verdict::Inconclusive, error.clone()),
        Outcome::Answered { response, .. } => response,
    };
    if response.header("idempotent-replayed") == Some("true") {
        return (
            Verdict::Refused,
            "a stored answer, replayed: not executed".into(),
        );
    }
    if response.status < 400 {
        return (Verdict::GotThrough, missing.to_owned());
    }
    if response.reason().is_none() && baseline.is_some_and(|b| shaped_alike(response, b)) {
        return (
            Verdict::GotThrough,
            format!("{missing} (the {} answer is shaped like the upstream's answer to the valid request)", response.status),
        );
    }
    let note = match response.reason() {
        Some(_) => String::new(),
        None => "refused without a problem+json reason: by the upstream or another layer, not by replay-guard's checks".into(),
    };
    (Verdict::Refused, note)
}

/// Same error status and content type as the upstream's own answer.
fn shaped_alike(response: &Response, baseline: &Response) -> bool {
    baseline.status >= 400
        && response.status == baseline.status
        && response.header("content-type") == baseline.header("content-type")
}

/// Everything one run found.
#[derive(Debug, Clone)]
pub struct Report {
    /// The URL probed.
    pub url: String,
    /// `route NAME from FILE`, or how the generic profile was chosen.
    pub profile: String,
    /// The route name, with `--config`/`--route`.
    pub route: Option<String>,
    /// The valid request, with `--allow-execute`.
    pub baseline: Option<Finding>,
    /// Every attack, in the order sent (skipped ones last).
    pub findings: Vec<Finding>,
}

impl Report {
    fn count(&self, verdict: Verdict) -> usize {
        self.findings
            .iter()
            .filter(|f| f.verdict == verdict)
            .count()
    }

    /// 1 when something got through, else 2 when something was
    /// inconclusive, else 0.
    pub fn exit_code(&self) -> u8 {
        if self.count(Verdict::GotThrough) > 0 {
            1
        } else if self.count(Verdict::Inconclusive) > 0 {
            2
        } else {
            0
        }
    }

    /// The JSON document (`--json`).
    pub fn json(&self) -> Value {
        let verdict = match self.exit_code() {
            0 => "refused",
            1 => "got_through",
            _ => "inconclusive",
        };
        json!({
            "url": self.url,
            "profile": self.profile,
            "route": self.route,
            "verdict": verdict,
            "exit_code": self.exit_code(),
            "summary": {
                "refused": self.count(Verdict::Refused),
                "got_through": self.count(Verdict::GotThrough),
                "inconclusive": self.count(Verdict::Inconclusive),
                "skipped": self.count(Verdict::Skipped),
            },
            "valid_request": self.baseline.as_ref().map(Finding::to_json),
            "attacks": self.findings.iter().map(Finding::to_json).collect::<Vec<_>>(),
        })
    }

    /// The table and the summary, for people.
    pub fn text(&self) -> String {
        let mut out = format!("replay-guard probe {} ({})\n\n", self.url, self.profile);
        if let Some(valid) = &self.baseline {
            let done = if valid.verdict == Verdict::GotThrough {
                "executed"
            } else {
                "NOT accepted"
            };
            out.push_str(&format!(
                "valid request: {} -> {} ({} ms): {done}\n\n",
                valid.request,
                valid.answer(),
                valid.ms.unwrap_or(0)
            ));
        }
        out.push_str(&format!(
            "{:<40} {:<34} {:<26} {:>6}  verdict\n",
            "attack", "request", "answer", "ms"
        ));
        for f in self
            .findings
            .iter()
            .filter(|f| f.verdict != Verdict::Skipped)
        {
            out.push_str(&format!(
                "{:<40} {:<34} {:<26} {:>6}  {}\n",
                clip(&f.title, 40),
                clip(&f.request, 34),
                clip(&f.answer(), 26),
                f.ms.unwrap_or(0),
                f.verdict.word()
            ));
        }
        self.sections(&mut out);
        out
    }

    /// Whether a bare request to the URL itself got through: then every
    /// bypass getting through says nothing new, and is listed in one line.
    fn unprotected(&self) -> bool {
        self.findings
            .iter()
            .any(|f| f.id == "no-replay-headers" && f.verdict == Verdict::GotThrough)
    }

    fn sections(&self, out: &mut String) {
        let unprotected = self.unprotected();
        let folded =
            |f: &Finding| unprotected && f.verdict == Verdict::GotThrough && is_bypass(&f.id);
        let list = |verdict: Verdict, heading: &str, out: &mut String| {
            let items: Vec<&Finding> = self
                .findings
                .iter()
                .filter(|f| f.verdict == verdict && !folded(f))
                .collect();
            if items.is_empty() {
                return;
            }
            out.push_str(&format!("\n{heading} ({}):\n", items.len()));
            for f in items {
                let evidence = match f.verdict {
                    Verdict::Skipped => String::new(),
                    _ => format!(
                        "  [{} -> {}, {} ms]",
                        f.request,
                        f.answer(),
                        f.ms.unwrap_or(0)
                    ),
                };
                out.push_str(&format!("  - {}: {}{evidence}\n", f.title, f.note));
            }
        };
        list(Verdict::GotThrough, "Got through: missing defences", out);
        let bypasses: Vec<&str> = self
            .findings
            .iter()
            .filter(|f| folded(f))
            .map(|f| match f.id.as_str() {
                "duplicate-host" | "cl-te" => f.title.as_str(),
                _ => f.request.as_str(),
            })
            .collect();
        if !bypasses.is_empty() {
            out.push_str(&format!(
                "  - and {} bypass requests (other methods, path spellings, framing) reached it too, \
                 as expected where the URL itself checks nothing: {}\n",
                bypasses.len(),
                bypasses.join(", ")
            ));
        }
        list(Verdict::Inconclusive, "Inconclusive", out);
        list(Verdict::Skipped, "Skipped", out);
        let code = self.exit_code();
        out.push_str(&format!(
            "\nsummary: {} refused, {} got through, {} inconclusive, {} skipped -> {}\n",
            self.count(Verdict::Refused),
            self.count(Verdict::GotThrough),
            self.count(Verdict::Inconclusive),
            self.count(Verdict::Skipped),
            match code {
                0 => "every attack was refused (exit 0)",
                1 => "something got through (exit 1)",
                _ => "not every attack could be judged (exit 2)",
            }
        ));
    }
}

fn clip(text: &str, width: usize) -> String {
    if text.chars().count() <= width {
        return text.to_owned();
    }
    let mut clipped: String = text.chars().take(width.saturating_sub(1)).collect();
    clipped.push('…');
    clipped
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answered(status: u16, headers: &[(&str, &str)], body: &str) -> Outcome {
        Outcome::Answered {
            response: Response {
                status,
                headers: headers
                    .iter()
                    .map(|(n, v)| ((*n).into(), (*v).into()))
                    .collect(),
                body: body.as_bytes().to_vec(),
            },
            ms: 3,
        }
    }

    #[test]
    fn verdicts() {
        let problem = answered(
            400,
            &[("content-type", "application/problem+json")],
            r#"{"reason":"missing_timestamp"}"#,
        );
        assert_eq!(judge(&problem, "m", None).0, Verdict::Refused);
        assert_eq!(
            judge(&answered(200, &[], "{}"), "m", None),
            (Verdict::GotThrough, "m".into())
        );
        assert_eq!(
            judge(&answered(302, &[], ""), "m", None).0,
            Verdict::GotThrough
        );
        let stored = answered(200, &[("idempotent-replayed", "true")], "{}");
        assert_eq!(judge(&stored, "m", None).0, Verdict::Refused);
        let failed = Outcome::Failed {
            error: "no answer within 5 ms".into(),
            ms: 5,
        };
        assert_eq!(judge(&failed, "m", None).0, Verdict::Inconclusive);
        // The upstream answers 422 to everything: an attack answered the
        // same way reached it.
        let upstream = answered(422, &[("content-type", "text/plain")], "bad amount");
        let Outcome::Answered {
            response: baseline, ..
        } = &upstream
        else {
            unreachable!()
        };
        assert_eq!(judge(&upstream, "m", Some(baseline)).0, Verdict::GotThrough);
        assert_eq!(judge(&problem, "m", Some(baseline)).0, Verdict::Refused);
    }
}
