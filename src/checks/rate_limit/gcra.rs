//! The generic cell rate algorithm (GCRA) as pure arithmetic on one
//! identity's theoretical arrival time (TAT), in nanoseconds on the proxy's
//! clock: whether a request is admitted, what the bucket holds afterwards,
//! and how a cell is given back.
//!
//! One cell is emitted every `period`; a full bucket holds `burst` cells,
//! i.e. a request is admitted while `tat - now <= period × (burst - 1)`.
//! Kept apart from the keyed state so that a shared (cluster) state can use
//! the same arithmetic. This module must never read a clock or keep state.

/// A GCRA rule in nanoseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gcra {
    /// Nanoseconds between two cells.
    pub period: u64,
    /// Cells a full bucket holds (at least 1).
    pub burst: u64,
}

/// The outcome of one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Admitted: the new TAT and the cells left for requests right now.
    Admit {
        /// The TAT to store.
        tat: u64,
        /// Further requests the bucket admits at this instant.
        remaining: u64,
    },
    /// Refused: nanoseconds until a cell is available (the TAT is kept).
    Refuse {
        /// Wait before a request would pass.
        wait: u64,
    },
}

impl Gcra {
    /// How far ahead of `now` the TAT may run.
    fn tolerance(self) -> u64 {
        self.period.saturating_mul(self.burst.saturating_sub(1))
    }

    /// Decide one request at `now`, given the stored TAT (`None`: a full
    /// bucket).
    pub fn decide(self, tat: Option<u64>, now: u64) -> Decision {
        let tat = tat.map_or(now, |tat| tat.max(now));
        let ahead = tat - now;
        if ahead > self.tolerance() {
            return Decision::Refuse {
                wait: ahead - self.tolerance(),
            };
        }
        let tat = tat.saturating_add(self.period);
        let used = (tat - now).div_ceil(self.period.max(1));
        Decision::Admit {
            tat,
            remaining: self.burst.saturating_sub(used),
        }
    }

    /// Give back the cell an admitted request took: the TAT moves back one
    /// period, never before `now` (a bucket never holds more than `burst`).
    /// `None` when the bucket is full again.
    pub fn refund(self, tat: u64, now: u64) -> Option<u64> {
        let tat = tat.saturating_sub(self.period);
        (tat > now).then_some(tat)
    }

    /// Whether a stored TAT means a full bucket at `now` (it can be
    /// forgotten).
    pub fn is_full(self, tat: u64, now: u64) -> bool {
        tat <= now
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: u64 = 1_000_000_000;

    #[test]
    fn a_burst_passes_then_one_cell_per_period() {
        let rule = Gcra {
            period: SEC,
            burst: 3,
        };
        let mut tat = None;
        for remaining in [2, 1, 0] {
            match rule.decide(tat, 100 * SEC) {
                Decision::Admit {
                    tat: t,
                    remaining: r,
                } => {
                    assert_eq!(r, remaining);
                    tat = Some(t);
                }
                refused => panic!("refused inside the burst: {refused:?}"),
            }
        }
        assert_eq!(rule.decide(tat, 100 * SEC), Decision::Refuse { wait: SEC });
        assert_eq!(
            rule.decide(tat, 100 * SEC + SEC / 2),
            Decision::Refuse { wait: SEC / 2 }
        );
        assert!(matches!(
            rule.decide(tat, 101 * SEC),
            Decision::Admit { remaining: 0, .. }
        ));
    }

    #[test]
    fn a_refund_gives_back_exactly_one_cell_and_never_overfills() {
        let rule = Gcra {
            period: SEC,
            burst: 2,
        };
        let now = 50 * SEC;
        let Decision::Admit { tat: one, .. } = rule.decide(None, now) else {
            panic!()
        };
        let Decision::Admit { tat: two, .. } = rule.decide(Some(one), now) else {
            panic!()
        };
        assert!(matches!(
            rule.decide(Some(two), now),
            Decision::Refuse { .. }
        ));
        let back = rule.refund(two, now);
        assert_eq!(back, Some(one));
        assert!(matches!(
            rule.decide(back, now),
            Decision::Admit { remaining: 0, .. }
        ));
        assert_eq!(rule.refund(one, now), None, "a full bucket again");
        assert_eq!(rule.refund(now, now + SEC), None);
    }
}
