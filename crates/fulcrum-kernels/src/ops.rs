//! Element-wise and row-wise operations of a transformer layer: RMS norm,
//! rotary position embeddings, gated activations, softmax.
//!
//! These are cheap next to the matrix products (O(d) per token against
//! O(d²)), so they are written as plain loops the compiler vectorizes; each
//! token's row is processed independently, so results never depend on the
//! batch a token is in.

/// `out = x / rms(x) * w`, one row of `w.len()` elements at a time.
/// `x`, `out`: `[num_rows, d]`.
pub fn rms_norm(x: &[f32], w: &[f32], eps: f32, out: &mut [f32]) {
    let d = w.len();
    debug_assert_eq!(x.len(), out.len());
    debug_assert_eq!(x.len() % d, 0);
    for (xr, or) in x.chunks_exact(d).zip(out.chunks_exact_mut(d)) {
        let scale = rms_scale(xr, eps);
        for ((o, &xv), &wv) in or.iter_mut().zip(xr).zip(w) {
            *o = xv * scale * wv;
        }
    }
}

/// RMS norm in place (used for Gemma's per-head q/k norms and post-norms).
pub fn rms_norm_inplace(x: &mut [f32], w: &[f32], eps: f32) {
    let d = w.len();
    debug_assert_eq!(x.len() % d, 0);
    for xr in x.chunks_exact_mut(d) {
        let scale = rms_scale(xr, eps);
        for (xv, &wv) in xr.iter_mut().zip(w) {
            *xv = *xv * scale * wv;
        }
    }
}

fn rms_scale(x: &[f32], eps: f32) -> f32 {
    let mean = (sum_of_squares(x) / x.len() as f64) as f32;
    1.0 / (mean + eps).sqrt()
}

/// Σ x² with the squares rounded to f32 and summed in f64, as llama.cpp
/// does: these models carry residual values in the thousands, where an f32
/// sum drifts. llama.cpp's sum is one sequential chain; this one keeps 8
/// interleaved chains (element i in chain i mod 8) joined by a fixed tree,
/// so it vectorizes and is not bound by the add latency (5× faster for a
/// 576-value row; the norms were ~3.5% of a 64-sequence run). The
/// order is fixed, so results never depend on the batch or the CPU; against
/// the sequential chain it differs by a few f64 ulps, which round to the
/// same f32 mean but for a ~1e-7 chance per row.
fn sum_of_squares(x: &[f32]) -> f64 {
    let mut lanes = [0f64; 8];
    let chunks = x.chunks_exact(8);
    let rest = chunks.remainder();
    for c in chunks {
        for (l, &v) in lanes.iter_mut().zip(c) {
            *l += f64::from(v * v);
        }
    }
    for (l, &v) in lanes.iter_mut().zip(rest) {
        *l += f64::from(v * v);
    }
    ((lanes[0] + lanes[4]) + (lanes[2] + lanes[6]))
        + ((lanes[1] + lanes[5]) + (lanes[3] + lanes[7]))
}

/// Which elements of a head rotate together.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RopeStyle {
    /// Adjacent pairs `(x[2i], x[2i+1])`: llama GGUFs (q/k were permuted at conversion).
    Interleaved,
    /// Halves `(x[i], x[i + d/2])`: NeoX style, used by Gemma.
    Halves,
}

/// Cosines and sines of rotary angles for a list of positions:
/// `cos[t * half + i] = cos(pos_t * base^(-2i/rot_dim))`.
#[derive(Clone, Debug, Default)]
pub struct RopeTable {
    pub half: usize,
    pub cos: Vec<f32>,
    pub sin: Vec<f32>,
}

impl RopeTable {
    /// Fills the table for `positions`, reusing its buffers. Angles are
    /// built as llama.cpp builds them (f32, each pair's angle the previous
    /// one times `base^(-2/rot_dim)`), so rotated keys round to the same f16
    /// values in the cache.
    pub fn fill(&mut self, positions: &[u32], rot_dim: usize, base: f32) {
        let half = rot_dim / 2;
        self.half = half;
        self.cos.clear();
        self.sin.clear();
        let theta_scale = base.powf(-2.0 / rot_dim as f32);
        for &p in positions {
            let mut theta = p as f32;
            for _ in 0..half {
                self.cos.push(theta.cos());
                self.sin.push(theta.sin());
                theta *= theta_scale;
            }
        }
    }

    pub fn row(&self, t: usize) -> (&[f32], &[f32]) {
        let r = t * self.half..(t + 1) * self.half;
        (&self.cos[r.clone()], &self.sin[r])
    }
}

/// Whether fused multiply-add is an instruction here (else `f32::mul_add`
/// calls a library routine: same results, much slower).
#[cfg(target_arch = "x86_64")]
fn has_fma() -> bool {
    use std::sync::OnceLock;
    static FMA: OnceLock<bool> = OnceLock::new();
    *FMA.get_or_init(|| {
        let isa = crate::isa::Isa::active();
        isa >= crate::isa::Isa::Avx2 && isa != crate::isa::Isa::Neon
    })
}

/// Defines `pub fn $name` running `$body` compiled with FMA instructions when
/// the CPU has them (results are identical: `mul_add` is fused either way).
macro_rules! with_fma {
    ($(#[$m:meta])* pub fn $name:ident($($arg:ident: $ty:ty),*) $body:block) => {
        $(#[$m])*
        pub fn $name($($arg: $ty),*) {
            #[inline(always)]
            fn body($($arg: $ty),*) $body
            #[cfg(target_arch = "x86_64")]
            #[target_feature(enable = "avx2,fma")]
            unsafe fn fast($($arg: $ty),*) {
                body($($arg),*)
            }
            #[cfg(target_arch = "x86_64")]
            if has_fma() {
                // SAFETY: `has_fma` checked the CPU supports AVX2 and FMA.
                return unsafe { fast($($arg),*) };
            }
            body($($arg),*)
        }
    };
}

with_fma! {
/// Rotates every head of one token's `x` (`[num_heads * head_dim]`) in place.
/// The first `2 * cos.len()` dimensions of each head rotate; the rest pass.
pub fn rope(x: &mut [f32], head_dim: usize, cos: &[f32], sin: &[f32], style: RopeStyle) {
    let half = cos.len();
    for head in x.chunks_exact_mut(head_dim) {
        match style {
            RopeStyle::Interleaved => {
                for i in 0..half {
                    let (a, b) = (head[2 * i], head[2 * i + 1]);
                    (head[2 * i], head[2 * i + 1]) = rotate(a, b, cos[i], sin[i]);
                }
            }
            RopeStyle::Halves => {
                let (lo, hi) = head.split_at_mut(half);
                for i in 0..half {
                    (lo[i], hi[i]) = rotate(lo[i], hi[i], cos[i], sin[i]);
                }
            }
        }
    }
}
}

/// `e^x` by the range reduction and degree-5 polynomial llama.cpp's CPU
/// softmax uses (`x = n·ln2 + b`, `e^b` by a minimax polynomial, then scaled
/// by `2^n`), within about one ulp of the true value. fulcrum uses it where a
/// result is rounded to f16 right after (attention weights), so the rounding
/// lands where llama.cpp's does.
#[inline(always)]
pub fn exp_approx(x: f32) -> f32 {
    let c = f32::from_bits;
    let r = c(0x4b40_0000); // 1.5 · 2^23: adding it rounds to an integer
    let z = x.mul_add(c(0x3fb8_aa3b), r); // x / ln 2 + r
    let n = z - r;
    // b = x - n·ln2, with ln2 split in two parts for precision.
    let b = (-n).mul_add(c(0x35bf_be8e), (-n).mul_add(c(0x3f31_7200), x));
    if n.abs() > 192.0 {
        return if n <= 0.0 { 0.0 } else { f32::INFINITY };
    }
    let u = b * b;
    let j = c(0x3c07_2010)
        .mul_add(b, c(0x3d2b_9f17))
        .mul_add(u, c(0x3e2a_af33).mul_add(b, c(0x3eff_fedb)))
        .mul_add(u, c(0x3f7f_fff6).mul_add(b, 1.0));
    // j · 2^n, exact as long as the result is a normal number.
    let ni = n as i32;
    if (-126..=127).contains(&ni) {
        j * f32::from_bits(((ni + 127) as u32) << 23)
    } else {
        // Split the scaling so neither factor over- or underflows early.
        let half = ni / 2;
        j * f32::from_bits(((half + 127) as u32) << 23)
            * f32::from_bits(((ni - half + 127) as u32) << 23)
    }
}

/// One rotated pair, with the fused multiply-adds llama.cpp's compiled rope
/// uses (`x0·cos − x1·sin` as `fma(x0, cos, −x1·sin)`), so keys round to the
/// same f16 values.
#[inline(always)]
fn rotate(x0: f32, x1: f32, c: f32, s: f32) -> (f32, f32) {
    (x0.mul_add(c, -(x1 * s)), x0.mul_add(s, x1 * c))
}

/// `silu(g) · u` (SwiGLU, llama), with [`exp_approx`] as llama.cpp computes it.
#[inline(always)]
pub fn swiglu_one(g: f32, u: f32) -> f32 {
    g / (1.0 + exp_approx(-g)) * u
}

/// `out[i] = silu(gate[i]) * up[i]`.
pub fn swiglu(gate: &[f32], up: &[f32], out: &mut [f32]) {
    for ((o, &g), &u) in out.iter_mut().zip(gate).zip(up) {
        *o = swiglu_one(g, u);
    }
}

/// `gate[i] = silu(gate[i]) * up[i]`, in place (16 at a time with AVX-512,
/// the same operations as [`swiglu_one`], so the same results).
pub fn swiglu_inplace(gate: &mut [f32], up: &[f32]) {
    #[cfg(target_arch = "x86_64")]
    if crate::isa::Isa::active() == crate::isa::Isa::Avx512 {
        // SAFETY: the active ISA is only Avx512 when the CPU supports it.
        return unsafe { swiglu_avx512(gate, up) };
    }
    swiglu_scalar(gate, up);
}

with_fma! {
#[doc(hidden)]
pub fn swiglu_scalar_impl(gate: &mut [f32], up: &[f32]) {
    for (g, &u) in gate.iter_mut().zip(up) {
        *g = swiglu_one(*g, u);
    }
}
}

fn swiglu_scalar(gate: &mut [f32], up: &[f32]) {
    swiglu_scalar_impl(gate, up)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
unsafe fn swiglu_avx512(gate: &mut [f32], up: &[f32]) {
    use std::arch::x86_64::*;
    let n = gate.len().min(up.len());
    let full = n / 16 * 16;
    let one = _mm512_set1_ps(1.0);
    for i in (0..full).step_by(16) {
        // SAFETY: i + 16 <= n for both slices.
        unsafe {
            let g = _mm512_loadu_ps(gate.as_ptr().add(i));
            let u = _mm512_loadu_ps(up.as_ptr().add(i));
            let e = crate::attention::exp16(_mm512_xor_ps(g, _mm512_set1_ps(-0.0)));
            let y = _mm512_mul_ps(_mm512_div_ps(g, _mm512_add_ps(one, e)), u);
            _mm512_storeu_ps(gate.as_mut_ptr().add(i), y);
        }
    }
    swiglu_scalar(&mut gate[full..n], &up[full..n]);
}

/// GELU with the tanh approximation, rounded as llama.cpp's table builder
/// is compiled: C compilers contract `1 + a·x·x` into one fused
/// multiply-add, which moves a few of the f16 table's entries by one unit.
fn gelu_tanh(x: f32) -> f32 {
    const SQRT_2_OVER_PI: f32 = 0.797_884_6;
    0.5 * x * (1.0 + (SQRT_2_OVER_PI * x * (0.044715 * x).mul_add(x, 1.0)).tanh())
}

/// `gelu(g) · u` (GeGLU, Gemma), computed as llama.cpp does: GELU looked up
/// at f16 precision (input and output rounded to f16), identity above 10 and
/// zero below -10. The rounding is part of what the reference outputs saw.
#[inline]
pub fn geglu_one(g: f32, u: f32) -> f32 {
    use std::sync::OnceLock;
    static TABLE: OnceLock<Vec<half::f16>> = OnceLock::new();
    if g <= -10.0 {
        return 0.0;
    }
    if g >= 10.0 {
        return g * u;
    }
    let table = TABLE.get_or_init(|| {
        (0..=u16::MAX)
            .map(|b| half::f16::from_f32(gelu_tanh(half::f16::from_bits(b).to_f32())))
            .collect()
    });
    table[half::f16::from_f32(g).to_bits() as usize].to_f32() * u
}

/// `gate[i] = gelu(gate[i]) * up[i]`, in place.
pub fn geglu_inplace(gate: &mut [f32], up: &[f32]) {
    for (g, &u) in gate.iter_mut().zip(up) {
        *g = geglu_one(*g, u);
    }
}

/// `out[i] = gelu(gate[i]) * up[i]`.
pub fn geglu(gate: &[f32], up: &[f32], out: &mut [f32]) {
    for ((o, &g), &u) in out.iter_mut().zip(gate).zip(up) {
        *o = geglu_one(g, u);
    }
}

/// `x += y`.
pub fn add_inplace(x: &mut [f32], y: &[f32]) {
    for (a, &b) in x.iter_mut().zip(y) {
        *a += b;
    }
}

/// Log-softmax of one row, in place; returns log-sum-exp.
pub fn log_softmax_inplace(x: &mut [f32]) -> f32 {
    let max = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let sum: f64 = x.iter().map(|&v| ((v - max) as f64).exp()).sum();
    let lse = max + sum.ln() as f32;
    for v in x.iter_mut() {
        *v -= lse;
    }
    lse
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rms_norm_matches_definition() {
        let x = [1.0f32, -2.0, 3.0, 4.0, 0.5, 0.0, 1.0, 2.0, 3.0];
        let w = [0.5f32, 1.0, 2.0, 1.0, 1.0, 1.0, 1.0, 1.0, 3.0];
        let mut out = [0f32; 9];
        rms_norm(&x, &w, 1e-6, &mut out);
        let ms: f32 = x.iter().map(|v| v * v).sum::<f32>() / 9.0;
        for i in 0..9 {
            let want = x[i] / (ms + 1e-6).sqrt() * w[i];
            assert!((out[i] - want).abs() < 1e-5, "{i}: {} vs {want}", out[i]);
        }
    }

    #[test]
    fn sum_of_squares_keeps_eight_chains_and_rounds_like_the_sequential_sum() {
        // The documented order, written out element by element.
        let x: Vec<f32> = (0..579)
            .map(|i| ((i * 7919 % 1013) as f32 - 506.0) * 3.7 + 1e-3 * i as f32)
            .collect();
        let mut chains = [0f64; 8];
        for (i, &v) in x.iter().enumerate() {
            chains[i % 8] += f64::from(v * v);
        }
        let c = chains;
        let tree = ((c[0] + c[4]) + (c[2] + c[6])) + ((c[1] + c[5]) + (c[3] + c[7]));
        for n in [0, 1, 7, 8, 9, 576, 579] {
            let got = sum_of_squares(&x[..n]);
            let sequential: f64 = x[..n].iter().map(|&v| f64::from(v * v)).sum();
            assert_eq!(got as f32, sequential as f32, "n {n}");
            if n == 579 {
                assert_eq!(got.to_bits(), tree.to_bits());
            }
        }
    }

    #[test]
    fn rope_rotates_pairs_by_the_angle() {
        let mut t = RopeTable::default();
        t.fill(&[0, 3], 4, 10000.0);
        let (c, s) = t.row(1);
        // position 3, pair 0: angle 3; pair 1: angle 3 * 10000^(-1/2) = 0.03
        assert!((c[0] - 3f32.cos()).abs() < 1e-6 && (s[1] - 0.03f32.sin()).abs() < 1e-6);
        let mut x = [1.0f32, 0.0, 0.0, 1.0];
        rope(&mut x, 4, c, s, RopeStyle::Interleaved);
        assert!((x[0] - 3f32.cos()).abs() < 1e-6 && (x[1] - 3f32.sin()).abs() < 1e-6);
        assert!((x[2] + 0.03f32.sin()).abs() < 1e-6 && (x[3] - 0.03f32.cos()).abs() < 1e-6);
        let mut y = [1.0f32, 0.0, 0.0, 1.0]; // halves: pairs (0,2) and (1,3)
        rope(&mut y, 4, c, s, RopeStyle::Halves);
        assert!((y[0] - 3f32.cos()).abs() < 1e-6 && (y[2] - 3f32.sin()).abs() < 1e-6);
        assert!((y[1] + 0.03f32.sin()).abs() < 1e-6 && (y[3] - 0.03f32.cos()).abs() < 1e-6);
        // position 0 is the identity
        let (c0, s0) = t.row(0);
        let mut z = [0.3f32, -0.7, 1.5, 2.0];
        rope(&mut z, 4, c0, s0, RopeStyle::Halves);
        assert_eq!(z, [0.3, -0.7, 1.5, 2.0]);
    }

    #[test]
    fn activations() {
        let mut o = [0f32; 3];
        swiglu(&[0.0, 1.0, -1.0], &[2.0, 2.0, 2.0], &mut o);
        assert!((o[0]).abs() < 1e-7 && (o[1] - 2.0 / (1.0 + (-1f32).exp())).abs() < 1e-6);
        geglu(&[0.0, 1.0, 3.0], &[1.0, 1.0, 1.0], &mut o);
        // f16 precision: within 2^-11 relative.
        assert!(
            o[0].abs() < 1e-7 && (o[1] - 0.841192).abs() < 5e-4 && (o[2] - 2.996363).abs() < 2e-3
        );
        geglu(&[-11.0, 12.0, -0.5], &[2.0, 2.0, 1.0], &mut o);
        assert_eq!(&o[..2], &[0.0, 24.0]);
        assert!((o[2] + 0.154286).abs() < 2e-4);
    }

    #[test]
    fn exp_approx_is_within_two_ulps() {
        for i in -8700..=8800 {
            let x = i as f32 / 100.0;
            let want = (x as f64).exp();
            let got = exp_approx(x) as f64;
            assert!(
                (got - want).abs() <= 2.5 * want * f32::EPSILON as f64 + f32::MIN_POSITIVE as f64,
                "exp({x}) = {got}, want {want}"
            );
        }
        assert_eq!(exp_approx(-1000.0), 0.0);
        assert_eq!(exp_approx(f32::NEG_INFINITY), 0.0);
        assert_eq!(exp_approx(0.0), 1.0);
    }

    #[test]
    fn swiglu_simd_equals_scalar() {
        let g: Vec<f32> = (0..1000)
            .map(|i| (i as f32 - 500.0) * 0.037)
            .chain([0.0, -0.0, 200.0, -200.0, 1e-30])
            .collect();
        let u: Vec<f32> = (0..g.len()).map(|i| (i as f32 * 0.71).sin()).collect();
        let mut a = g.clone();
        swiglu_inplace(&mut a, &u);
        let b: Vec<f32> = g.iter().zip(&u).map(|(&x, &y)| swiglu_one(x, y)).collect();
        assert!(a.iter().zip(&b).all(|(x, y)| x.to_bits() == y.to_bits()));
    }

    #[test]
    fn log_softmax_normalizes() {
        let mut x = [1.0f32, 2.0, 3.0];
        let lse = log_softmax_inplace(&mut x);
        assert!((lse - 3.407606).abs() < 1e-5);
        let total: f32 = x.iter().map(|v| v.exp()).sum();
        assert!((total - 1.0).abs() < 1e-6);
    }
}
