//! Partial selection over a large vocabulary, without sorting it.
//!
//! - `top_k_indices`: a bounded min-heap over one pass: O(n log k) in the
//!   worst case, close to O(n) comparisons in practice (most values lose to
//!   the heap's root with one comparison). For a 262k vocabulary and k = 50
//!   that is one cheap scan instead of a 262k-element sort.
//! - `nucleus_indices`: top-p by a histogram of the weights, O(n).

use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;

/// A value and its index, ordered by value, then by *lower* index first.
#[derive(Debug, Clone, Copy)]
struct Entry(f32, u32);

impl Ord for Entry {
    fn cmp(&self, other: &Self) -> Ordering {
        self.0
            .total_cmp(&other.0)
            .then_with(|| other.1.cmp(&self.1))
    }
}
impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl PartialEq for Entry {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Entry {}

/// Indices of the `k` largest `values`, largest first; equal values keep the
/// lower index first (so the result is deterministic).
pub(crate) fn top_k_indices(values: &[f32], k: usize) -> Vec<u32> {
    let k = k.min(values.len());
    if k == 0 {
        return Vec::new();
    }
    // Root = the worst kept entry.
    let mut heap: BinaryHeap<Reverse<Entry>> = BinaryHeap::with_capacity(k);
    for (i, &v) in values.iter().enumerate() {
        if heap.len() < k {
            heap.push(Reverse(Entry(v, i as u32)));
        } else if let Some(mut root) = heap.peek_mut() {
            // Strictly greater: an equal value seen later has a higher index
            // and so ranks below the root.
            if v.total_cmp(&root.0 .0) == Ordering::Greater {
                *root = Reverse(Entry(v, i as u32));
            }
        }
    }
    let mut kept: Vec<Entry> = heap.into_iter().map(|Reverse(e)| e).collect();
    kept.sort_unstable_by(|a, b| b.cmp(a));
    kept.into_iter().map(|e| e.1).collect()
}

/// The top-p nucleus of non-negative `weights` (at most 1, as the sampler
/// makes them): the fewest heaviest tokens whose mass reaches `top_p` of the
/// total, ties going to the lower index. Returned in index order.
///
/// O(n) without sorting the vocabulary: one pass adds each weight's mass to
/// a bucket keyed by the weight's top 16 bits (sign, exponent, 7 mantissa
/// bits: monotone in the value, ~0.5% wide); a scan from the heaviest bucket
/// finds the one where the mass crosses `top_p`; only that bucket's tokens
/// are sorted. (All-equal weights put everything in one bucket: a full sort,
/// the worst case.)
pub(crate) fn nucleus_indices(weights: &[f32], top_p: f32) -> Vec<u32> {
    // Not `clamp`: `max` maps a NaN to 0, `clamp` would keep it (and index
    // past the end).
    #[allow(clippy::manual_clamp)]
    let bucket = |w: f32| (w.max(0.0).min(1.0).to_bits() >> 16) as usize;
    let mut mass = vec![0.0f64; bucket(1.0) + 1];
    for &w in weights {
        mass[bucket(w)] += f64::from(w);
    }
    let total: f64 = mass.iter().sum();
    let target = f64::from(top_p) * total;
    let mut above = 0.0;
    let mut edge = 0;
    for b in (0..mass.len()).rev() {
        edge = b;
        if above + mass[b] >= target {
            break;
        }
        above += mass[b];
    }
    let mut kept: Vec<u32> = (0..weights.len() as u32)
        .filter(|&t| bucket(weights[t as usize]) > edge)
        .collect();
    let mut in_edge: Vec<Entry> = (0..weights.len() as u32)
        .filter(|&t| bucket(weights[t as usize]) == edge)
        .map(|t| Entry(weights[t as usize], t))
        .collect();
    in_edge.sort_unstable_by(|a, b| b.cmp(a));
    for Entry(w, t) in in_edge {
        if above >= target && !kept.is_empty() {
            break;
        }
        above += f64::from(w);
        kept.push(t);
    }
    kept.sort_unstable();
    kept
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn reference(values: &[f32], k: usize) -> Vec<u32> {
        let mut ids: Vec<u32> = (0..values.len() as u32).collect();
        ids.sort_by(|&a, &b| {
            values[b as usize]
                .total_cmp(&values[a as usize])
                .then(a.cmp(&b))
        });
        ids.truncate(k);
        ids
    }

    #[test]
    fn ties_keep_the_lower_index() {
        assert_eq!(top_k_indices(&[1.0, 3.0, 3.0, 2.0, 3.0], 2), vec![1, 2]);
        assert_eq!(top_k_indices(&[1.0, 2.0], 5), vec![1, 0]);
        assert!(top_k_indices(&[1.0], 0).is_empty());
    }

    /// Sort everything, keep the shortest heaviest-first prefix reaching p.
    fn reference_nucleus(weights: &[f32], top_p: f32) -> Vec<u32> {
        let total: f64 = weights.iter().map(|&w| f64::from(w)).sum();
        let mut mass = 0.0;
        let mut kept = Vec::new();
        for t in reference(weights, weights.len()) {
            kept.push(t);
            mass += f64::from(weights[t as usize]);
            if mass >= f64::from(top_p) * total {
                break;
            }
        }
        kept.sort_unstable();
        kept
    }

    #[test]
    fn a_flat_nucleus_keeps_the_lowest_indices() {
        assert_eq!(nucleus_indices(&[0.5; 8], 0.3), vec![0, 1, 2]);
        assert_eq!(nucleus_indices(&[0.0, 1.0, 0.0], 0.01), vec![1]);
        assert_eq!(nucleus_indices(&[0.1, 1.0, 0.2], 1.0), vec![0, 1, 2]);
    }

    proptest! {
        #[test]
        fn nucleus_matches_a_full_sort(
            logits in prop::collection::vec(-12.0f32..0.0, 1..400),
            top_p in 0.01f32..1.0,
        ) {
            let weights: Vec<f32> = logits.iter().map(|l| l.exp()).collect();
            prop_assert_eq!(nucleus_indices(&weights, top_p), reference_nucleus(&weights, top_p));
        }

        #[test]
        fn matches_a_full_sort(values in prop::collection::vec(-4i8..4, 0..200), k in 0usize..40) {
            let values: Vec<f32> = values.into_iter().map(f32::from).collect();
            prop_assert_eq!(top_k_indices(&values, k), reference(&values, k));
        }
    }
}
