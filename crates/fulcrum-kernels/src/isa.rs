//! Run-time choice of the instruction set the kernels use.
//!
//! Chosen once, at first use, from CPU feature detection; `FULCRUM_ISA`
//! (`scalar`, `avx2`, `avx512`, `neon`) forces a lower one for tests and
//! side-by-side comparisons. Asking for an ISA the CPU lacks falls back to the
//! best available one below it, never to illegal instructions.

use std::sync::OnceLock;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Isa {
    /// Portable Rust, always available: the numerical reference.
    Scalar,
    /// x86-64 AVX2 + FMA + F16C.
    Avx2,
    /// x86-64 AVX-512 F/BW/VL with VNNI (`vpdpbusd`).
    Avx512,
    /// aarch64 NEON with the dot-product extension.
    Neon,
}

impl Isa {
    pub fn name(self) -> &'static str {
        match self {
            Isa::Scalar => "scalar",
            Isa::Avx2 => "avx2",
            Isa::Avx512 => "avx512",
            Isa::Neon => "neon",
        }
    }

    pub fn parse(s: &str) -> Option<Isa> {
        match s.trim().to_ascii_lowercase().as_str() {
            "scalar" | "generic" => Some(Isa::Scalar),
            "avx2" => Some(Isa::Avx2),
            "avx512" | "avx-512" => Some(Isa::Avx512),
            "neon" => Some(Isa::Neon),
            _ => None,
        }
    }

    /// Whether this CPU can run code for `self`.
    pub fn is_supported(self) -> bool {
        match self {
            Isa::Scalar => true,
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => {
                is_x86_feature_detected!("avx2")
                    && is_x86_feature_detected!("fma")
                    && is_x86_feature_detected!("f16c")
            }
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => {
                Isa::Avx2.is_supported()
                    && is_x86_feature_detected!("avx512f")
                    && is_x86_feature_detected!("avx512bw")
                    && is_x86_feature_detected!("avx512vl")
                    && is_x86_feature_detected!("avx512vnni")
            }
            #[cfg(target_arch = "aarch64")]
            Isa::Neon => {
                std::arch::is_aarch64_feature_detected!("neon")
                    && std::arch::is_aarch64_feature_detected!("dotprod")
            }
            #[allow(unreachable_patterns)]
            _ => false,
        }
    }

    /// The best ISA this CPU supports.
    pub fn best_supported() -> Isa {
        [Isa::Avx512, Isa::Avx2, Isa::Neon]
            .into_iter()
            .find(|i| i.is_supported())
            .unwrap_or(Isa::Scalar)
    }

    /// Every ISA this CPU supports (for tests that compare paths).
    pub fn all_supported() -> Vec<Isa> {
        [Isa::Scalar, Isa::Avx2, Isa::Avx512, Isa::Neon]
            .into_iter()
            .filter(|i| i.is_supported())
            .collect()
    }

    /// The ISA the kernels use in this process: `FULCRUM_ISA` if set and
    /// supported (or the best supported one below it), else the best supported.
    pub fn active() -> Isa {
        static ACTIVE: OnceLock<Isa> = OnceLock::new();
        *ACTIVE.get_or_init(|| match std::env::var("FULCRUM_ISA").ok().as_deref().map(Isa::parse) {
            Some(Some(want)) => {
                if want.is_supported() {
                    want
                } else {
                    let fallback = Isa::all_supported().into_iter().filter(|i| *i <= want).max().unwrap_or(Isa::Scalar);
                    eprintln!("fulcrum: FULCRUM_ISA={} is not supported by this CPU; using {}", want.name(), fallback.name());
                    fallback
                }
            }
            Some(None) => {
                eprintln!("fulcrum: ignoring unknown FULCRUM_ISA value (use scalar, avx2, avx512 or neon)");
                Isa::best_supported()
            }
            None => Isa::best_supported(),
        })
    }
}

impl std::fmt::Display for Isa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scalar_is_always_supported_and_active_is_supported() {
        assert!(Isa::Scalar.is_supported());
        assert!(Isa::active().is_supported());
        assert_eq!(Isa::parse("AVX512"), Some(Isa::Avx512));
        assert_eq!(Isa::parse("sse"), None);
    }
}
