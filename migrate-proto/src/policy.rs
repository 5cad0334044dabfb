//! When to stop pre-copying memory and freeze: a pure policy over the statistics of the rounds
//! so far. Nothing here measures anything; the engine reports each round.
//!
//! The frozen time predicted after a round is `fixed_cost + dirty_bytes / bandwidth`: the part
//! of a final dump and restore that does not depend on how much memory changed, plus sending
//! what changed during the round. The policy freezes as soon as that fits the budget; it keeps
//! going while rounds shrink the dirty set; when they stop shrinking (or the round limit is
//! reached) it freezes anyway if the prediction is within `give_up_factor` times the budget,
//! saying the budget is missed, and gives up otherwise.

use core::time::Duration;

#[derive(Debug, Clone, PartialEq)]
pub struct PolicyConfig {
    pub max_downtime: Duration,
    /// Frozen time that does not depend on dirty memory (final dump and restore floors).
    pub fixed_cost: Duration,
    pub max_rounds: u32,
    /// A round must cut the dirty bytes by at least this fraction to count as progress.
    pub min_shrink: f64,
    /// Rounds without progress before the policy stops iterating.
    pub stall_rounds: u32,
    /// Freeze over budget up to this multiple of it; beyond, give up.
    pub give_up_factor: f64,
    /// Rounds run before the policy may freeze, whatever the prediction (at most
    /// `max_rounds`; 1 by default).
    pub min_rounds: u32,
}

impl Default for PolicyConfig {
    fn default() -> Self {
        Self {
            max_downtime: Duration::from_millis(2000),
            fixed_cost: Duration::from_millis(500),
            max_rounds: 30,
            min_shrink: 0.1,
            stall_rounds: 2,
            give_up_factor: 10.0,
            min_rounds: 1,
        }
    }
}

/// What the engine measured in one pre-copy round.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RoundStats {
    pub round: u32,
    /// Bytes put on the wire in this round.
    pub sent_bytes: u64,
    /// Bytes of memory that changed while the round ran (what the next round, or the frozen
    /// transfer, must send).
    pub dirty_bytes: u64,
    pub duration: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Decision {
    /// Run another round.
    Continue,
    /// Freeze now; `meets_budget` says whether the prediction fits `max_downtime`.
    Freeze { predicted: Duration, meets_budget: bool },
    /// The dirty rate outruns the link: stop the migration, the container stays.
    GiveUp { predicted: Duration },
}

/// The policy's state: every round so far.
#[derive(Debug, Clone)]
pub struct Convergence {
    cfg: PolicyConfig,
    rounds: Vec<RoundStats>,
    stalled: u32,
}

impl Convergence {
    pub fn new(cfg: PolicyConfig) -> Self {
        Self {
            cfg,
            rounds: Vec::new(),
            stalled: 0,
        }
    }

    pub fn config(&self) -> &PolicyConfig {
        &self.cfg
    }

    pub fn rounds(&self) -> &[RoundStats] {
        &self.rounds
    }

    /// Bytes per second over every round so far (None before any data was timed).
    pub fn bandwidth(&self) -> Option<f64> {
        let bytes: u64 = self.rounds.iter().map(|r| r.sent_bytes).sum();
        let secs: f64 = self.rounds.iter().map(|r| r.duration.as_secs_f64()).sum();
        (secs > 0.0 && bytes > 0).then(|| bytes as f64 / secs)
    }

    /// Bytes dirtied per second during the last round.
    pub fn dirty_rate(&self) -> Option<f64> {
        let r = self.rounds.last()?;
        let secs = r.duration.as_secs_f64();
        (secs > 0.0).then(|| r.dirty_bytes as f64 / secs)
    }

    /// Predicted frozen time if the container were frozen now.
    pub fn predicted_downtime(&self) -> Option<Duration> {
        let r = self.rounds.last()?;
        if r.dirty_bytes == 0 {
            return Some(self.cfg.fixed_cost);
        }
        let bw = self.bandwidth()?;
        Some(self.cfg.fixed_cost + Duration::from_secs_f64(r.dirty_bytes as f64 / bw))
    }

    /// Records a round and decides what comes next.
    pub fn record(&mut self, r: RoundStats) -> Decision {
        let shrank = match self.rounds.last() {
            Some(prev) => (r.dirty_bytes as f64) <= prev.dirty_bytes as f64 * (1.0 - self.cfg.min_shrink),
            None => true,
        };
        self.rounds.push(r);
        self.stalled = if shrank { 0 } else { self.stalled + 1 };
        let Some(predicted) = self.predicted_downtime() else {
            // Nothing was sent and something is dirty: no bandwidth estimate yet.
            return if (self.rounds.len() as u32) < self.cfg.max_rounds {
                Decision::Continue
            } else {
                Decision::GiveUp {
                    predicted: Duration::MAX,
                }
            };
        };
        if (self.rounds.len() as u32) < self.cfg.min_rounds.min(self.cfg.max_rounds) {
            return Decision::Continue;
        }
        if predicted <= self.cfg.max_downtime {
            return Decision::Freeze {
                predicted,
                meets_budget: true,
            };
        }
        let out_of_rounds = self.rounds.len() as u32 >= self.cfg.max_rounds;
        if out_of_rounds || self.stalled >= self.cfg.stall_rounds {
            let limit = self.cfg.max_downtime.as_secs_f64() * self.cfg.give_up_factor;
            if predicted.as_secs_f64() <= limit {
                return Decision::Freeze {
                    predicted,
                    meets_budget: false,
                };
            }
            return Decision::GiveUp { predicted };
        }
        Decision::Continue
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    fn round(n: u32, sent: u64, dirty: u64, ms: u64) -> RoundStats {
        RoundStats {
            round: n,
            sent_bytes: sent,
            dirty_bytes: dirty,
            duration: Duration::from_millis(ms),
        }
    }

    fn cfg(budget_ms: u64) -> PolicyConfig {
        PolicyConfig {
            max_downtime: Duration::from_millis(budget_ms),
            fixed_cost: Duration::from_millis(200),
            ..PolicyConfig::default()
        }
    }

    #[test]
    fn idle_container_freezes_after_the_first_round() {
        let mut c = Convergence::new(cfg(1000));
        // 512 MiB in 1 s, nothing dirtied: freeze, with only the fixed cost predicted.
        assert_eq!(
            c.record(round(1, 512 * MIB, 0, 1000)),
            Decision::Freeze {
                predicted: Duration::from_millis(200),
                meets_budget: true
            }
        );
        assert_eq!(c.bandwidth(), Some(512.0 * MIB as f64));
    }

    #[test]
    fn a_minimum_of_rounds_is_run_before_freezing() {
        let mut c = Convergence::new(PolicyConfig {
            min_rounds: 3,
            ..cfg(1000)
        });
        assert_eq!(c.record(round(1, 512 * MIB, 0, 1000)), Decision::Continue);
        assert_eq!(c.record(round(2, MIB, 0, 10)), Decision::Continue);
        assert!(matches!(
            c.record(round(3, MIB, 0, 10)),
            Decision::Freeze { meets_budget: true, .. }
        ));
        // Never past the round limit.
        let mut c = Convergence::new(PolicyConfig {
            min_rounds: 5,
            max_rounds: 1,
            ..cfg(1000)
        });
        assert!(matches!(
            c.record(round(1, 512 * MIB, 0, 1000)),
            Decision::Freeze { .. }
        ));
    }

    #[test]
    fn shrinking_dirty_set_converges_within_budget() {
        let mut c = Convergence::new(cfg(450));
        // 100 MiB/s link; dirty set shrinks each round. After round 2: 0.2 + 0.3 s > 0.45 s.
        assert_eq!(c.record(round(1, 400 * MIB, 100 * MIB, 4000)), Decision::Continue);
        assert_eq!(c.record(round(2, 100 * MIB, 30 * MIB, 1000)), Decision::Continue);
        match c.record(round(3, 30 * MIB, 10 * MIB, 300)) {
            Decision::Freeze {
                predicted,
                meets_budget: true,
            } => assert!(predicted <= Duration::from_millis(450), "{predicted:?}"),
            other => panic!("{other:?}"),
        }
        assert_eq!(c.rounds().len(), 3);
        let rate = c.dirty_rate().unwrap();
        assert!((rate - 10.0 * MIB as f64 / 0.3).abs() < 1.0);
    }

    #[test]
    fn stalled_rounds_freeze_over_budget_and_say_so() {
        let mut c = Convergence::new(cfg(300));
        // 100 MiB/s; the container dirties 50 MiB per round no matter what: 0.7 s predicted.
        assert_eq!(c.record(round(1, 100 * MIB, 50 * MIB, 1000)), Decision::Continue);
        assert_eq!(c.record(round(2, 50 * MIB, 50 * MIB, 500)), Decision::Continue);
        match c.record(round(3, 50 * MIB, 50 * MIB, 500)) {
            Decision::Freeze {
                predicted,
                meets_budget: false,
            } => assert!(predicted > Duration::from_millis(300)),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn dirtying_faster_than_the_link_gives_up() {
        let mut c = Convergence::new(cfg(100));
        // 10 MiB/s link, 200 MiB dirty per round: 20 s predicted, far above 10 x 100 ms.
        assert_eq!(c.record(round(1, 10 * MIB, 200 * MIB, 1000)), Decision::Continue);
        assert_eq!(c.record(round(2, 10 * MIB, 200 * MIB, 1000)), Decision::Continue);
        assert!(matches!(
            c.record(round(3, 10 * MIB, 200 * MIB, 1000)),
            Decision::GiveUp { .. }
        ));
    }

    #[test]
    fn round_limit_is_respected() {
        let mut c = Convergence::new(PolicyConfig {
            max_rounds: 2,
            stall_rounds: 100,
            ..cfg(100)
        });
        assert_eq!(c.record(round(1, 100 * MIB, 90 * MIB, 1000)), Decision::Continue);
        // Still shrinking, but out of rounds: 0.2 + 0.5 s = 0.7 s <= 10 x 0.1 s, so freeze.
        assert!(matches!(
            c.record(round(2, 100 * MIB, 50 * MIB, 1000)),
            Decision::Freeze {
                meets_budget: false,
                ..
            }
        ));
    }

    #[test]
    fn no_bandwidth_yet_continues() {
        let mut c = Convergence::new(cfg(100));
        assert_eq!(c.record(round(1, 0, MIB, 0)), Decision::Continue);
        assert_eq!(c.predicted_downtime(), None);
    }
}
