//! Content addressing of full KV blocks (the prefix cache's index).
//!
//! Principal types:
//! - [`BlockHash`]: a 64-bit key for one *full* block, chained over its
//!   parent: `hash(parent_hash, token ids of the block)`. Chaining makes the
//!   key depend on the whole prefix, so equal keys mean equal KV (same tokens at
//!   the same positions after the same context).
//! - [`PrefixIndex`]: hash → physical block, plus a copy of each indexed
//!   block's token ids and parent hash. A lookup compares those too, so a
//!   64-bit collision makes a miss, never a wrong block shared into a request.
//!
//! The pool (`block_pool`) owns a `PrefixIndex` and decides *when* blocks
//! enter and leave it (commit after the step that filled them, eviction only
//! under pressure); this module only knows keys and contents.
//!
//! Hashing uses `std`'s SipHash with its fixed default key: deterministic
//! within a build, fast enough for 16-token blocks, no dependency. Hashes never
//! leave the process, so stability across Rust versions is not needed.

use std::collections::hash_map::{DefaultHasher, HashMap};
use std::hash::Hasher;

use crate::block_pool::BlockId;

/// Key of one full block: a hash over its parent's key and its token ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct BlockHash(pub u64);

/// The parent of a sequence's first block.
const ROOT_PARENT: u64 = 0x6675_6c63_7275_6d00; // "fulcrum\0"

/// `hash(parent, tokens)` for one full block; `parent` is `None` for block 0.
pub fn hash_block(parent: Option<BlockHash>, tokens: &[u32]) -> BlockHash {
    let mut hasher = DefaultHasher::new();
    hasher.write_u64(parent.map_or(ROOT_PARENT, |p| p.0));
    hasher.write_usize(tokens.len());
    for &token in tokens {
        hasher.write_u32(token);
    }
    BlockHash(hasher.finish())
}

/// Extends `hashes` so it covers every full block of `tokens`. O(new tokens).
pub fn extend_hash_chain(hashes: &mut Vec<BlockHash>, tokens: &[u32], block_size: usize) {
    let num_full_blocks = tokens.len() / block_size;
    while hashes.len() < num_full_blocks {
        let i = hashes.len();
        let parent = hashes.last().copied();
        hashes.push(hash_block(
            parent,
            &tokens[i * block_size..(i + 1) * block_size],
        ));
    }
}

/// hash → block, with each indexed block's tokens and parent kept for
/// verification. Storage is one flat arena sized for the whole pool.
#[derive(Debug)]
pub struct PrefixIndex {
    block_size: usize,
    by_hash: HashMap<BlockHash, BlockId>,
    // [num_blocks, block_size] token ids of indexed blocks.
    tokens: Vec<u32>,
    // [num_blocks] parent hash of indexed blocks (`ROOT_PARENT` for block 0).
    parents: Vec<u64>,
}

impl PrefixIndex {
    pub fn new(num_blocks: usize, block_size: usize) -> Self {
        PrefixIndex {
            block_size,
            by_hash: HashMap::new(),
            tokens: vec![0; num_blocks * block_size],
            parents: vec![0; num_blocks],
        }
    }

    pub fn num_entries(&self) -> usize {
        self.by_hash.len()
    }

    /// The block indexed under `hash` whose stored parent and tokens equal
    /// `parent` and `tokens`. O(block_size).
    pub fn get(
        &self,
        hash: BlockHash,
        parent: Option<BlockHash>,
        tokens: &[u32],
    ) -> Option<BlockId> {
        let block = *self.by_hash.get(&hash)?;
        let i = block as usize;
        let is_same = self.parents[i] == parent.map_or(ROOT_PARENT, |p| p.0)
            && self.tokens[i * self.block_size..(i + 1) * self.block_size] == *tokens;
        is_same.then_some(block)
    }

    /// Indexes `block` under `hash`. Returns false (and indexes nothing) when
    /// the key is taken: another block with the same content was committed
    /// first (two sequences computed the same prefix in the same step), or a
    /// collision. Either way the existing entry is kept.
    pub fn insert(
        &mut self,
        hash: BlockHash,
        parent: Option<BlockHash>,
        tokens: &[u32],
        block: BlockId,
    ) -> bool {
        if tokens.len() != self.block_size || self.by_hash.contains_key(&hash) {
            return false;
        }
        let i = block as usize;
        self.tokens[i * self.block_size..(i + 1) * self.block_size].copy_from_slice(tokens);
        self.parents[i] = parent.map_or(ROOT_PARENT, |p| p.0);
        self.by_hash.insert(hash, block);
        true
    }

    /// Drops the entry for `hash` if it points at `block`.
    pub fn remove(&mut self, hash: BlockHash, block: BlockId) {
        if self.by_hash.get(&hash) == Some(&block) {
            self.by_hash.remove(&hash);
        }
    }

    pub fn contains(&self, hash: BlockHash, block: BlockId) -> bool {
        self.by_hash.get(&hash) == Some(&block)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chain_depends_on_the_whole_prefix() {
        let a = hash_block(None, &[1, 2]);
        let b = hash_block(None, &[3, 4]);
        assert_ne!(hash_block(Some(a), &[5, 6]), hash_block(Some(b), &[5, 6]));
        assert_eq!(hash_block(Some(a), &[5, 6]), hash_block(Some(a), &[5, 6]));
    }

    #[test]
    fn extend_covers_full_blocks_only() {
        let mut hashes = Vec::new();
        extend_hash_chain(&mut hashes, &[1, 2, 3, 4, 5], 2);
        assert_eq!(hashes.len(), 2);
        assert_eq!(hashes[1], hash_block(Some(hashes[0]), &[3, 4]));
        extend_hash_chain(&mut hashes, &[1, 2, 3, 4, 5, 6], 2);
        assert_eq!(hashes.len(), 3);
    }

    #[test]
    fn a_forged_collision_is_a_miss() {
        let mut index = PrefixIndex::new(4, 2);
        let h = hash_block(None, &[1, 2]);
        assert!(index.insert(h, None, &[1, 2], 3));
        assert_eq!(index.get(h, None, &[1, 2]), Some(3));
        // Same key, different content or parent: never served.
        assert_eq!(index.get(h, None, &[1, 9]), None);
        assert_eq!(index.get(h, Some(BlockHash(7)), &[1, 2]), None);
        // The key is taken: a second block is not indexed.
        assert!(!index.insert(h, None, &[1, 2], 1));
        index.remove(h, 1);
        assert!(index.contains(h, 3));
        index.remove(h, 3);
        assert_eq!(index.num_entries(), 0);
    }
}
