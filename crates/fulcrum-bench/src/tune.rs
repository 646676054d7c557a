//! `fulcrum tune`: find the engine knobs with the highest goodput under a
//! stated SLO, on a given workload and load, in bounded time.
//!
//! The search is deliberately plain, because each probe costs tens of
//! seconds of real load: a coarse grid (every policy × a geometric ladder
//! of batch-size caps), then rounds of refinement around the best so far —
//! halve and double `max_num_seqs` (and, for `chunked`, the step budget
//! `max_batched_tokens`), then the same at a factor √2. Goodput is noisy at
//! the percent level, so configurations within [`GOODPUT_TIE`] of the best
//! goodput count as tied, and among those the one with the most headroom
//! under the SLO wins (the lowest worst ratio of p99 to bound): the same
//! goodput, less likely to break on a worse day.
//!
//! Time is bounded by a budget: a probe starts only if the longest probe so
//! far still fits, and the caller gets the time left with each probe so it
//! can cut a run short. The search itself is a pure function of the probe
//! results and the clock, tested with a fake of both.

use std::fmt::Write as _;
use std::time::Duration;

use fulcrum_engine::engine::DEFAULT_MAX_BATCHED_TOKENS;
use fulcrum_engine::{EngineOptions, Policy};
use serde::Serialize;

use crate::error::BenchError;
use crate::report::RunSummary;
use crate::slo::Slo;

/// Relative goodput difference below which two configurations tie.
pub const GOODPUT_TIE: f64 = 0.03;
/// Refinement factors, one round each.
const REFINE_FACTORS: [f64; 2] = [2.0, std::f64::consts::SQRT_2];
/// Step budgets are multiples of this (a KV block's worth of tokens).
const BATCHED_TOKENS_QUANTUM: usize = 16;

/// The knobs one probe sets.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Candidate {
    #[serde(serialize_with = "serialize_policy")]
    pub policy: Policy,
    pub max_num_seqs: usize,
    /// `None`: the engine's default for the policy.
    pub max_batched_tokens: Option<usize>,
}

fn serialize_policy<S: serde::Serializer>(policy: &Policy, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(policy.name())
}

impl Candidate {
    pub fn label(&self) -> String {
        match self.max_batched_tokens {
            Some(m) => format!("{} seqs={} mbt={m}", self.policy, self.max_num_seqs),
            None => format!("{} seqs={}", self.policy, self.max_num_seqs),
        }
    }

    /// `base` with this candidate's knobs.
    pub fn apply(&self, base: &EngineOptions) -> EngineOptions {
        EngineOptions {
            policy: self.policy,
            max_num_seqs: self.max_num_seqs,
            max_batched_tokens: self.max_batched_tokens,
            ..base.clone()
        }
    }

    /// The `fulcrum serve` flags that set these knobs.
    pub fn serve_flags(&self) -> String {
        let mut flags = format!(
            "--policy {} --max-num-seqs {}",
            self.policy, self.max_num_seqs
        );
        if let Some(m) = self.max_batched_tokens {
            let _ = write!(flags, " --max-batched-tokens {m}");
        }
        flags
    }
}

/// Where the search looks.
#[derive(Clone, Debug, PartialEq)]
pub struct TuneSpace {
    pub policies: Vec<Policy>,
    /// The coarse ladder of batch-size caps, tried with every policy.
    pub max_num_seqs: Vec<usize>,
    /// Refinement never goes above this cap.
    pub max_num_seqs_limit: usize,
    /// Refinement of `chunked`'s step budget stays in this range.
    pub min_batched_tokens: usize,
    pub max_batched_tokens_limit: usize,
}

impl Default for TuneSpace {
    fn default() -> TuneSpace {
        TuneSpace {
            policies: Policy::ALL.to_vec(),
            max_num_seqs: vec![1, 4, 16, 64],
            max_num_seqs_limit: 256,
            min_batched_tokens: 128,
            max_batched_tokens_limit: 8192,
        }
    }
}

impl TuneSpace {
    pub fn validate(&self) -> Result<(), BenchError> {
        if self.policies.is_empty() {
            return Err(BenchError::config(
                "--policy",
                "give at least one policy to search",
            ));
        }
        if self.max_num_seqs.is_empty() || self.max_num_seqs.contains(&0) {
            return Err(BenchError::config(
                "--max-num-seqs",
                "give batch-size caps of at least 1",
            ));
        }
        if let Some(&too_big) = self
            .max_num_seqs
            .iter()
            .find(|&&n| n > self.max_num_seqs_limit)
        {
            return Err(BenchError::config(
                "--max-num-seqs",
                format!(
                    "{too_big} is above the search limit {}",
                    self.max_num_seqs_limit
                ),
            ));
        }
        Ok(())
    }

    /// Coarse candidates, the middle of the ladder first (so a budget cut
    /// short still covers every policy at a sensible size).
    fn coarse(&self) -> Vec<Candidate> {
        let mut ladder = self.max_num_seqs.clone();
        ladder.sort_unstable();
        ladder.dedup();
        let middle = (ladder[0] as f64 * ladder[ladder.len() - 1] as f64)
            .sqrt()
            .ln();
        ladder.sort_by(|a, b| {
            ((*a as f64).ln() - middle)
                .abs()
                .total_cmp(&((*b as f64).ln() - middle).abs())
        });
        let mut out = Vec::new();
        for max_num_seqs in ladder {
            for &policy in &self.policies {
                out.push(Candidate {
                    policy,
                    max_num_seqs,
                    max_batched_tokens: None,
                });
            }
        }
        out
    }

    /// Neighbours of `best` at `factor`: its batch-size cap divided and
    /// multiplied, and for `chunked` its step budget likewise.
    fn neighbours(&self, best: &Candidate, factor: f64) -> Vec<Candidate> {
        let mut out = Vec::new();
        let seqs = best.max_num_seqs as f64;
        for n in [seqs / factor, seqs * factor] {
            let n = (n.round() as usize).clamp(1, self.max_num_seqs_limit);
            let budget = best.max_batched_tokens.map(|m| m.max(n));
            out.push(Candidate {
                max_num_seqs: n,
                max_batched_tokens: budget,
                ..*best
            });
        }
        if best.policy.is_chunked() {
            let current = best
                .max_batched_tokens
                .unwrap_or(DEFAULT_MAX_BATCHED_TOKENS) as f64;
            for m in [current / factor, current * factor] {
                let m =
                    (m / BATCHED_TOKENS_QUANTUM as f64).round() as usize * BATCHED_TOKENS_QUANTUM;
                let m = m
                    .clamp(self.min_batched_tokens, self.max_batched_tokens_limit)
                    .max(best.max_num_seqs);
                let budget = (m != DEFAULT_MAX_BATCHED_TOKENS).then_some(m);
                out.push(Candidate {
                    max_batched_tokens: budget,
                    ..*best
                });
            }
        }
        out.retain(|c| c != best);
        out
    }
}

/// One probe and what it measured.
#[derive(Clone, Debug, Serialize)]
pub struct Trial {
    pub candidate: Candidate,
    /// `coarse` or `refine`.
    pub stage: &'static str,
    pub summary: RunSummary,
    /// Wall time of the probe (engine start and wind-down included).
    pub wall_s: f64,
}

impl Trial {
    fn goodput(&self) -> f64 {
        self.summary.goodput.unwrap_or(0.0)
    }

    /// Share of the requests sent that met the SLO.
    pub fn attainment(&self) -> f64 {
        let sent = self.summary.completed + self.summary.failed;
        if sent == 0 {
            return 0.0;
        }
        (self.goodput() * self.summary.duration_s / sent as f64).clamp(0.0, 1.0)
    }
}

/// The worst ratio of a p99 latency to its SLO bound (below 1: every bound
/// met at p99). Infinite when a bounded metric has no data.
pub fn slo_headroom(summary: &RunSummary, slo: &Slo) -> f64 {
    let ratio = |bound: Option<f64>, p99: Option<f64>| match (bound, p99) {
        (None, _) => 0.0,
        (Some(b), Some(v)) => v / b,
        (Some(_), None) => f64::INFINITY,
    };
    ratio(slo.ttft_ms, summary.ttft_ms.map(|l| l.p99))
        .max(ratio(slo.tpot_ms, summary.tpot_ms.map(|l| l.p99)))
        .max(ratio(slo.e2e_ms, summary.e2e_ms.map(|l| l.p99)))
}

/// The search's result.
#[derive(Clone, Debug, Serialize)]
pub struct TuneOutcome {
    #[serde(serialize_with = "serialize_slo")]
    pub slo: Slo,
    pub trials: Vec<Trial>,
    /// Index into `trials` of the recommendation; `None` when no probe had
    /// any request meet the SLO.
    pub best: Option<usize>,
    /// The budget ran out before the search was done.
    pub is_budget_exhausted: bool,
}

fn serialize_slo<S: serde::Serializer>(slo: &Slo, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(slo)
}

impl TuneOutcome {
    pub fn best_trial(&self) -> Option<&Trial> {
        self.best.map(|i| &self.trials[i])
    }

    /// Every probe in order, the recommendation marked `*`.
    pub fn to_table(&self) -> String {
        let width = self
            .trials
            .iter()
            .map(|t| t.candidate.label().len())
            .max()
            .unwrap_or(0)
            .max(13);
        let mut t = String::new();
        let header = format!(
            "  {:<width$} {:>7} {:>10} {:>8} {:>9} {:>9} {:>9}",
            "configuration", "stage", "goodput/s", "met SLO", "out tok/s", "TTFT p99", "TPOT p99"
        );
        let rule = "─".repeat(header.chars().count());
        let _ = writeln!(t, "{header}\n{rule}");
        for (i, trial) in self.trials.iter().enumerate() {
            let s = &trial.summary;
            let p99 = |l: Option<crate::LatencySummary>| {
                l.map_or_else(|| "—".to_string(), |l| format!("{:.0}", l.p99))
            };
            let _ = writeln!(
                t,
                "{} {:<width$} {:>7} {:>10.2} {:>7.0}% {:>9.1} {:>9} {:>9}",
                if self.best == Some(i) { '*' } else { ' ' },
                trial.candidate.label(),
                trial.stage,
                trial.goodput(),
                trial.attainment() * 100.0,
                s.output_throughput,
                p99(s.ttft_ms),
                p99(s.tpot_ms),
            );
        }
        let _ = write!(
            t,
            "{rule}\nlatencies in ms; goodput = requests/s meeting {}",
            self.slo
        );
        t
    }
}

/// Picks the recommendation: the most SLO headroom among the trials whose
/// goodput ties the best, then the highest throughput.
fn pick_best(trials: &[Trial], slo: &Slo) -> Option<usize> {
    let top = trials.iter().map(Trial::goodput).fold(0.0, f64::max);
    if top <= 0.0 {
        return None;
    }
    (0..trials.len())
        .filter(|&i| trials[i].goodput() >= top * (1.0 - GOODPUT_TIE))
        .min_by(|&a, &b| {
            let (ta, tb) = (&trials[a], &trials[b]);
            slo_headroom(&ta.summary, slo)
                .total_cmp(&slo_headroom(&tb.summary, slo))
                .then(
                    tb.summary
                        .output_throughput
                        .total_cmp(&ta.summary.output_throughput),
                )
        })
}

/// Searches `space`. `elapsed` reads the time since the search began;
/// `probe` runs one candidate given the time left and returns its summary.
pub fn search(
    space: &TuneSpace,
    slo: &Slo,
    budget: Duration,
    elapsed: &mut dyn FnMut() -> Duration,
    probe: &mut dyn FnMut(&Candidate, Duration) -> Result<RunSummary, BenchError>,
) -> Result<TuneOutcome, BenchError> {
    space.validate()?;
    if slo.is_empty() {
        return Err(BenchError::config(
            "--slo",
            "tune needs a latency target, e.g. `ttft=2s,tpot=100ms`",
        ));
    }
    if budget.is_zero() {
        return Err(BenchError::config("--budget-s", "must be longer than zero"));
    }
    let mut outcome = TuneOutcome {
        slo: *slo,
        trials: Vec::new(),
        best: None,
        is_budget_exhausted: false,
    };
    let mut run = |candidate: Candidate,
                   stage: &'static str,
                   outcome: &mut TuneOutcome|
     -> Result<bool, BenchError> {
        if outcome.trials.iter().any(|t| t.candidate == candidate) {
            return Ok(true);
        }
        let longest = outcome.trials.iter().map(|t| t.wall_s).fold(0.0, f64::max);
        let started = elapsed();
        if started.as_secs_f64() + longest > budget.as_secs_f64() || started >= budget {
            outcome.is_budget_exhausted = true;
            return Ok(false);
        }
        let summary = probe(&candidate, budget - started)?;
        let wall_s = (elapsed() - started).as_secs_f64();
        outcome.trials.push(Trial {
            candidate,
            stage,
            summary,
            wall_s,
        });
        Ok(true)
    };
    for candidate in space.coarse() {
        if !run(candidate, "coarse", &mut outcome)? {
            break;
        }
    }
    for factor in REFINE_FACTORS {
        if outcome.is_budget_exhausted {
            break;
        }
        let Some(best) = pick_best(&outcome.trials, slo) else {
            break;
        };
        let centre = outcome.trials[best].candidate;
        for candidate in space.neighbours(&centre, factor) {
            if !run(candidate, "refine", &mut outcome)? {
                break;
            }
        }
    }
    outcome.best = pick_best(&outcome.trials, slo);
    Ok(outcome)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::RequestRecord;
    use std::cell::Cell;

    /// A summary of ten requests over one second, each with these latencies.
    fn summary(met: usize, ttft: f64, tpot: f64, tokens_per_request: u64, slo: &Slo) -> RunSummary {
        let records: Vec<RequestRecord> = (0..10)
            .map(|i| RequestRecord {
                // The first `met` requests meet a 1 s TTFT bound, the rest miss it.
                ttft_ms: Some(if i < met { ttft } else { 5000.0 }),
                tpot_ms: Some(tpot),
                e2e_ms: ttft + tpot,
                prompt_tokens: 10,
                output_tokens: tokens_per_request,
                ..RequestRecord::default()
            })
            .collect();
        RunSummary::from_records(&records, Duration::from_secs(1), slo)
    }

    /// A synthetic machine: goodput peaks for chunked at 24 sequences with a
    /// budget of half the default; every probe takes `probe_s` of the fake clock.
    fn fake_probe(
        slo: Slo,
        probe_s: f64,
        clock: &Cell<f64>,
    ) -> impl FnMut(&Candidate, Duration) -> Result<RunSummary, BenchError> + '_ {
        move |c, left| {
            assert!(left.as_secs_f64() > 0.0);
            clock.set(clock.get() + probe_s);
            let distance = ((c.max_num_seqs as f64).ln() - 24f64.ln()).abs()
                + ((c.max_batched_tokens.unwrap_or(DEFAULT_MAX_BATCHED_TOKENS) as f64).ln()
                    - (DEFAULT_MAX_BATCHED_TOKENS as f64 / 2.0).ln())
                .abs()
                    * 0.5;
            let met = if c.policy == Policy::Chunked {
                (10.0 - 4.0 * distance).clamp(0.0, 10.0)
            } else {
                2.0
            };
            Ok(summary(
                met.round() as usize,
                200.0 + distance * 100.0,
                20.0,
                c.max_num_seqs as u64,
                &slo,
            ))
        }
    }

    #[test]
    fn coarse_then_refine_finds_the_peak() {
        let slo: Slo = "ttft=1s".parse().unwrap();
        let clock = Cell::new(0.0);
        let mut elapsed = || Duration::from_secs_f64(clock.get());
        let mut probe = fake_probe(slo, 1.0, &clock);
        let outcome = search(
            &TuneSpace::default(),
            &slo,
            Duration::from_secs(1000),
            &mut elapsed,
            &mut probe,
        )
        .unwrap();
        assert!(!outcome.is_budget_exhausted);
        let coarse = outcome
            .trials
            .iter()
            .filter(|t| t.stage == "coarse")
            .count();
        assert_eq!(coarse, 16, "4 policies × 4 caps");
        let best = outcome.best_trial().unwrap();
        assert_eq!(best.candidate.policy, Policy::Chunked);
        assert!(
            (16..=32).contains(&best.candidate.max_num_seqs),
            "{:?}",
            best.candidate
        );
        assert_eq!(
            best.candidate.max_batched_tokens,
            Some(DEFAULT_MAX_BATCHED_TOKENS / 2),
            "{}",
            outcome.to_table()
        );
        let labels: Vec<String> = outcome.trials.iter().map(|t| t.candidate.label()).collect();
        let mut unique = labels.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(
            unique.len(),
            labels.len(),
            "no candidate probed twice: {labels:?}"
        );
        assert!(outcome
            .to_table()
            .contains(&format!("* {}", best.candidate.label())));
    }

    #[test]
    fn the_budget_bounds_the_search() {
        let slo: Slo = "ttft=1s".parse().unwrap();
        let clock = Cell::new(0.0);
        let mut elapsed = || Duration::from_secs_f64(clock.get());
        let mut probe = fake_probe(slo, 10.0, &clock);
        let outcome = search(
            &TuneSpace::default(),
            &slo,
            Duration::from_secs(45),
            &mut elapsed,
            &mut probe,
        )
        .unwrap();
        assert!(outcome.is_budget_exhausted);
        assert_eq!(
            outcome.trials.len(),
            4,
            "probes of 10 s start only while one more fits in 45 s"
        );
        assert!(clock.get() <= 45.0);
        let policies: Vec<Policy> = outcome.trials.iter().map(|t| t.candidate.policy).collect();
        assert_eq!(
            policies,
            Policy::ALL,
            "every policy first, at the middle cap"
        );
        assert!(outcome
            .trials
            .iter()
            .all(|t| t.candidate.max_num_seqs == 4 || t.candidate.max_num_seqs == 16));
    }

    #[test]
    fn ties_go_to_the_most_headroom_and_no_goodput_means_no_pick() {
        let slo: Slo = "ttft=1s,tpot=100ms".parse().unwrap();
        let trial = |seqs, met, ttft, tpot| Trial {
            candidate: Candidate {
                policy: Policy::Chunked,
                max_num_seqs: seqs,
                max_batched_tokens: None,
            },
            stage: "coarse",
            summary: summary(met, ttft, tpot, 10, &slo),
            wall_s: 1.0,
        };
        let trials = vec![
            trial(4, 10, 900.0, 50.0),
            trial(8, 10, 300.0, 60.0),
            trial(16, 9, 100.0, 10.0),
        ];
        assert_eq!(
            pick_best(&trials, &slo),
            Some(1),
            "same goodput, TTFT p99 at 30% of the bound beats 90%"
        );
        assert!(
            (slo_headroom(&trials[1].summary, &slo) - 0.6).abs() < 1e-3,
            "TPOT at 60% is the tighter bound"
        );
        let none = vec![trial(4, 0, 100.0, 10.0)];
        assert_eq!(pick_best(&none, &slo), None);
        assert_eq!(trials[2].attainment(), 0.9);
    }

    #[test]
    fn neighbours_stay_in_range_and_only_chunked_moves_its_budget() {
        let space = TuneSpace::default();
        let c = Candidate {
            policy: Policy::Chunked,
            max_num_seqs: 1,
            max_batched_tokens: None,
        };
        let n = space.neighbours(&c, 2.0);
        assert_eq!(
            n.iter().map(Candidate::label).collect::<Vec<_>>(),
            [
                "chunked seqs=2".to_string(),
                format!("chunked seqs=1 mbt={}", DEFAULT_MAX_BATCHED_TOKENS / 2),
                format!("chunked seqs=1 mbt={}", DEFAULT_MAX_BATCHED_TOKENS * 2),
            ]
        );
        let s = Candidate {
            policy: Policy::Static,
            max_num_seqs: 256,
            max_batched_tokens: None,
        };
        assert_eq!(
            space
                .neighbours(&s, 2.0)
                .iter()
                .map(Candidate::label)
                .collect::<Vec<_>>(),
            ["static seqs=128"]
        );
        assert_eq!(
            Candidate {
                policy: Policy::Chunked,
                max_num_seqs: 8,
                max_batched_tokens: Some(512)
            }
            .serve_flags(),
            "--policy chunked --max-num-seqs 8 --max-batched-tokens 512"
        );
    }

    #[test]
    fn bad_searches_are_refused() {
        let slo: Slo = "ttft=1s".parse().unwrap();
        let mut elapsed = || Duration::ZERO;
        let mut probe =
            |_: &Candidate, _: Duration| -> Result<RunSummary, BenchError> { unreachable!() };
        let mut err = |space: &TuneSpace, slo: &Slo, budget| {
            search(space, slo, budget, &mut elapsed, &mut probe)
                .unwrap_err()
                .to_string()
        };
        let space = TuneSpace::default();
        assert!(err(&space, &Slo::default(), Duration::from_secs(1)).starts_with("invalid --slo"));
        assert_eq!(
            err(&space, &slo, Duration::ZERO),
            "invalid --budget-s: must be longer than zero"
        );
        let empty = TuneSpace {
            policies: vec![],
            ..TuneSpace::default()
        };
        assert_eq!(
            err(&empty, &slo, Duration::from_secs(1)),
            "invalid --policy: give at least one policy to search"
        );
        let big = TuneSpace {
            max_num_seqs: vec![512],
            ..TuneSpace::default()
        };
        assert_eq!(
            err(&big, &slo, Duration::from_secs(1)),
            "invalid --max-num-seqs: 512 is above the search limit 256"
        );
    }
}
