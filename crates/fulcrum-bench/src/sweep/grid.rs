//! The grid a sweep walks: lists of knob values, every combination one
//! configuration ([`SweepPoint`]).
//!
//! A grid is checked whole before anything runs — empty lists, repeated
//! values, zero batch sizes, grids too large to finish — so a typo is an
//! error in the first second, not after twenty minutes of measuring.

use fulcrum_engine::{EngineOptions, Policy};

use crate::arrival::RequestRate;
use crate::error::BenchError;
use crate::load::LoadSpec;

/// More configurations than anyone means to run on one machine.
pub const MAX_SWEEP_POINTS: usize = 256;

/// The knobs a sweep varies.
#[derive(Clone, Debug, PartialEq)]
pub struct SweepGrid {
    pub policies: Vec<Policy>,
    pub max_num_seqs: Vec<usize>,
    /// `None`: the engine's default step budget for the policy.
    pub max_batched_tokens: Vec<Option<usize>>,
    pub request_rates: Vec<RequestRate>,
}

/// One configuration of a sweep: the engine knobs and the load offered.
#[derive(Clone, Debug, PartialEq)]
pub struct SweepPoint {
    /// Names the values that vary across the grid (`chunked seqs=8`).
    pub label: String,
    pub options: EngineOptions,
    pub load: LoadSpec,
}

impl SweepGrid {
    /// One value per knob: the base configuration alone.
    pub fn single(options: &EngineOptions, load: &LoadSpec) -> SweepGrid {
        SweepGrid {
            policies: vec![options.policy],
            max_num_seqs: vec![options.max_num_seqs],
            max_batched_tokens: vec![options.max_batched_tokens],
            request_rates: vec![load.request_rate],
        }
    }

    pub fn validate(&self) -> Result<(), BenchError> {
        check_list("--policy", &self.policies, |p| p.to_string())?;
        check_list("--max-num-seqs", &self.max_num_seqs, |n| n.to_string())?;
        check_list("--max-batched-tokens", &self.max_batched_tokens, |n| {
            n.map_or_else(|| "default".to_string(), |n| n.to_string())
        })?;
        check_list("--request-rate", &self.request_rates, |r| r.to_string())?;
        if self.max_num_seqs.contains(&0) {
            return Err(BenchError::config(
                "--max-num-seqs",
                "values must be at least 1",
            ));
        }
        if self.max_batched_tokens.contains(&Some(0)) {
            return Err(BenchError::config(
                "--max-batched-tokens",
                "values must be at least 1",
            ));
        }
        let num_points = self.num_points();
        if num_points > MAX_SWEEP_POINTS {
            return Err(BenchError::config(
                "--policy/--max-num-seqs/--max-batched-tokens/--request-rate",
                format!("the grid has {num_points} configurations; at most {MAX_SWEEP_POINTS} are run in one sweep"),
            ));
        }
        Ok(())
    }

    pub fn num_points(&self) -> usize {
        [
            self.policies.len(),
            self.max_num_seqs.len(),
            self.max_batched_tokens.len(),
            self.request_rates.len(),
        ]
        .iter()
        .fold(1usize, |n, &k| n.saturating_mul(k))
    }

    /// Every combination over `base` (the knobs not in the grid) and `load`
    /// (everything but the rate), policies outermost.
    pub fn points(
        &self,
        base: &EngineOptions,
        load: &LoadSpec,
    ) -> Result<Vec<SweepPoint>, BenchError> {
        self.validate()?;
        let mut points = Vec::with_capacity(self.num_points());
        for &policy in &self.policies {
            for &max_num_seqs in &self.max_num_seqs {
                for &max_batched_tokens in &self.max_batched_tokens {
                    for &request_rate in &self.request_rates {
                        let options = EngineOptions {
                            policy,
                            max_num_seqs,
                            max_batched_tokens,
                            ..base.clone()
                        };
                        let load = LoadSpec {
                            request_rate,
                            ..load.clone()
                        };
                        let label = self.label(&options, request_rate);
                        points.push(SweepPoint {
                            label,
                            options,
                            load,
                        });
                    }
                }
            }
        }
        Ok(points)
    }

    /// The values of the knobs that vary; the policy when none does.
    fn label(&self, options: &EngineOptions, rate: RequestRate) -> String {
        let mut parts = Vec::new();
        if self.policies.len() > 1 {
            parts.push(options.policy.to_string());
        }
        if self.max_num_seqs.len() > 1 {
            parts.push(format!("seqs={}", options.max_num_seqs));
        }
        if self.max_batched_tokens.len() > 1 {
            parts.push(format!(
                "mbt={}",
                options
                    .max_batched_tokens
                    .map_or("default".into(), |n| n.to_string())
            ));
        }
        if self.request_rates.len() > 1 {
            parts.push(format!("rate={rate}"));
        }
        if parts.is_empty() {
            parts.push(options.policy.to_string());
        }
        parts.join(" ")
    }
}

fn check_list<T: PartialEq>(
    flag: &'static str,
    values: &[T],
    show: impl Fn(&T) -> String,
) -> Result<(), BenchError> {
    if values.is_empty() {
        return Err(BenchError::config(flag, "give at least one value"));
    }
    for (i, v) in values.iter().enumerate() {
        if values[..i].contains(v) {
            return Err(BenchError::config(
                flag,
                format!("`{}` is listed twice", show(v)),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grid() -> SweepGrid {
        SweepGrid {
            policies: vec![Policy::Static, Policy::Chunked],
            max_num_seqs: vec![1, 8],
            max_batched_tokens: vec![None],
            request_rates: vec![RequestRate::PerSecond(2.0)],
        }
    }

    #[test]
    fn every_combination_labelled_by_what_varies() {
        let points = grid()
            .points(&EngineOptions::default(), &LoadSpec::default())
            .unwrap();
        let labels: Vec<&str> = points.iter().map(|p| p.label.as_str()).collect();
        assert_eq!(
            labels,
            [
                "static seqs=1",
                "static seqs=8",
                "chunked seqs=1",
                "chunked seqs=8"
            ]
        );
        assert_eq!(points[1].options.policy, Policy::Static);
        assert_eq!(points[1].options.max_num_seqs, 8);
        assert_eq!(points[1].load.request_rate, RequestRate::PerSecond(2.0));

        let rates = SweepGrid {
            request_rates: vec![RequestRate::PerSecond(0.5), RequestRate::Infinite],
            max_batched_tokens: vec![Some(512), None],
            ..SweepGrid::single(&EngineOptions::default(), &LoadSpec::default())
        };
        let labels: Vec<String> = rates
            .points(&EngineOptions::default(), &LoadSpec::default())
            .unwrap()
            .into_iter()
            .map(|p| p.label)
            .collect();
        assert_eq!(
            labels,
            [
                "mbt=512 rate=0.5",
                "mbt=512 rate=inf",
                "mbt=default rate=0.5",
                "mbt=default rate=inf"
            ]
        );
        let single = SweepGrid::single(&EngineOptions::default(), &LoadSpec::default());
        assert_eq!(
            single
                .points(&EngineOptions::default(), &LoadSpec::default())
                .unwrap()[0]
                .label,
            "chunked"
        );
    }

    #[test]
    fn bad_grids_are_refused_before_anything_runs() {
        let err = |g: SweepGrid| g.validate().unwrap_err().to_string();
        assert_eq!(
            err(SweepGrid {
                policies: vec![],
                ..grid()
            }),
            "invalid --policy: give at least one value"
        );
        assert_eq!(
            err(SweepGrid {
                max_num_seqs: vec![4, 8, 4],
                ..grid()
            }),
            "invalid --max-num-seqs: `4` is listed twice"
        );
        assert_eq!(
            err(SweepGrid {
                max_num_seqs: vec![0, 8],
                ..grid()
            }),
            "invalid --max-num-seqs: values must be at least 1"
        );
        assert_eq!(
            err(SweepGrid {
                max_batched_tokens: vec![Some(0)],
                ..grid()
            }),
            "invalid --max-batched-tokens: values must be at least 1"
        );
        let huge = SweepGrid {
            max_num_seqs: (1..=200).collect(),
            ..grid()
        };
        assert!(err(huge).contains("the grid has 400 configurations; at most 256"));
    }
}
