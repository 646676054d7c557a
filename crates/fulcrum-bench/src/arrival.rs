//! When requests arrive.
//!
//! Real traffic is neither a closed loop nor a metronome. Inter-arrival gaps
//! are drawn from Gamma(shape = B, scale = 1 / (R·B)): the mean gap is 1/R
//! whatever the burstiness B, and the variance is 1 / (R²·B). B = 1 is a
//! Poisson process (exponential gaps); B < 1 is burstier (clumps and lulls),
//! B > 1 smoother, approaching fixed gaps. An infinite rate sends everything
//! at once, which with a concurrency cap is the classic closed loop.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Gamma};
use serde::{Serialize, Serializer};

use crate::error::BenchError;

/// Target arrival rate in requests per second, or everything at once.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum RequestRate {
    Infinite,
    PerSecond(f64),
}

impl FromStr for RequestRate {
    type Err = String;

    fn from_str(s: &str) -> Result<RequestRate, String> {
        let s = s.trim();
        if matches!(s.to_ascii_lowercase().as_str(), "inf" | "infinity") {
            return Ok(RequestRate::Infinite);
        }
        match s.parse::<f64>() {
            Ok(r) if r > 0.0 && r.is_finite() => Ok(RequestRate::PerSecond(r)),
            Ok(_) => Err(format!(
                "`{s}` must be a positive number of requests per second, or `inf`"
            )),
            Err(_) => Err(format!(
                "`{s}` is not a number of requests per second (or `inf`)"
            )),
        }
    }
}

impl fmt::Display for RequestRate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RequestRate::Infinite => f.write_str("inf"),
            RequestRate::PerSecond(r) => write!(f, "{r}"),
        }
    }
}

/// JSON has no infinity: a number, or the string `"inf"`.
impl Serialize for RequestRate {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            RequestRate::Infinite => s.serialize_str("inf"),
            RequestRate::PerSecond(r) => s.serialize_f64(*r),
        }
    }
}

/// A seeded source of inter-arrival gaps.
pub struct ArrivalProcess {
    gaps: Option<Gamma<f64>>,
    rng: ChaCha8Rng,
}

impl ArrivalProcess {
    pub fn new(
        rate: RequestRate,
        burstiness: f64,
        seed: u64,
    ) -> Result<ArrivalProcess, BenchError> {
        if !(burstiness > 0.0 && burstiness.is_finite()) {
            return Err(BenchError::config(
                "--burstiness",
                format!("{burstiness} must be a positive number (1 = Poisson)"),
            ));
        }
        let gaps = match rate {
            RequestRate::Infinite => None,
            RequestRate::PerSecond(r) => {
                Some(Gamma::new(burstiness, 1.0 / (r * burstiness)).map_err(|e| {
                    BenchError::config(
                        "--request-rate",
                        format!("{r} req/s with burstiness {burstiness}: {e}"),
                    )
                })?)
            }
        };
        Ok(ArrivalProcess {
            gaps,
            rng: ChaCha8Rng::seed_from_u64(seed),
        })
    }

    /// The gap between the previous request and the next one, in seconds.
    pub fn next_gap_s(&mut self) -> f64 {
        match &self.gaps {
            None => 0.0,
            Some(gamma) => gamma.sample(&mut self.rng),
        }
    }

    pub fn next_gap(&mut self) -> Duration {
        Duration::from_secs_f64(self.next_gap_s())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Sample mean and (unbiased) variance of `n` gaps.
    fn moments(rate: f64, burstiness: f64, seed: u64, n: usize) -> (f64, f64) {
        let mut p = ArrivalProcess::new(RequestRate::PerSecond(rate), burstiness, seed).unwrap();
        let gaps: Vec<f64> = (0..n).map(|_| p.next_gap_s()).collect();
        let mean = gaps.iter().sum::<f64>() / n as f64;
        let var = gaps.iter().map(|g| (g - mean).powi(2)).sum::<f64>() / (n - 1) as f64;
        (mean, var)
    }

    #[test]
    fn mean_is_one_over_rate_and_variance_shrinks_with_burstiness() {
        let (rate, n) = (4.0, 200_000);
        for b in [0.25, 0.5, 1.0, 2.0, 8.0] {
            let (mean, var) = moments(rate, b, 42, n);
            let want_var = 1.0 / (rate * rate * b);
            // Standard error of the mean is sqrt(var/n) ≈ 0.5% here; of the
            // variance a few % for the heavy-tailed small shapes.
            assert!(
                (mean - 1.0 / rate).abs() < 0.01 / rate,
                "B={b}: mean {mean}"
            );
            assert!(
                (var / want_var - 1.0).abs() < 0.05,
                "B={b}: variance {var}, want {want_var}"
            );
        }
    }

    #[test]
    fn poisson_gaps_have_coefficient_of_variation_one() {
        let (mean, var) = moments(10.0, 1.0, 1, 100_000);
        assert!((var.sqrt() / mean - 1.0).abs() < 0.02);
    }

    #[test]
    fn seeded_and_reproducible() {
        let draw = |seed| {
            let mut p = ArrivalProcess::new(RequestRate::PerSecond(2.0), 0.5, seed).unwrap();
            (0..5).map(|_| p.next_gap_s()).collect::<Vec<_>>()
        };
        assert_eq!(draw(3), draw(3));
        assert_ne!(draw(3), draw(4));
    }

    #[test]
    fn infinite_rate_sends_at_once() {
        let mut p = ArrivalProcess::new(RequestRate::Infinite, 1.0, 0).unwrap();
        assert_eq!(p.next_gap(), Duration::ZERO);
    }

    #[test]
    fn rates_parse_and_bad_values_are_refused() {
        assert_eq!("inf".parse::<RequestRate>(), Ok(RequestRate::Infinite));
        assert_eq!(
            "2.5".parse::<RequestRate>(),
            Ok(RequestRate::PerSecond(2.5))
        );
        assert!("0".parse::<RequestRate>().unwrap_err().contains("positive"));
        assert!("fast"
            .parse::<RequestRate>()
            .unwrap_err()
            .contains("not a number"));
        let err = ArrivalProcess::new(RequestRate::Infinite, 0.0, 0)
            .err()
            .unwrap()
            .to_string();
        assert_eq!(
            err,
            "invalid --burstiness: 0 must be a positive number (1 = Poisson)"
        );
    }
}
