//! The paged KV cache's bookkeeping: which physical block belongs to whom.
//!
//! Principal types:
//! - [`BlockPool`]: an index arena of `num_blocks` blocks (a `Vec`), each with
//!   a reference count and, once full and committed, a [`BlockHash`]. The
//!   bytes of K and V live in a buffer the model owns and indexes by
//!   [`BlockId`]; this crate never touches them.
//! - [`BlockTable`]: a sequence's blocks in position order. Position `p` of a
//!   sequence lives in block `table[p / block_size]`, slot `p % block_size`.
//!   Not `Clone`: a table is the only record of its references, so a block can
//!   be released once per acquisition and never twice.
//!
//! Every block with `ref_count == 0` is on exactly one of two intrusive
//! doubly-linked lists threaded through the arena by index:
//! - *free*: no content worth keeping; handed out first;
//! - *evictable*: full, hashed, indexed in the [`PrefixIndex`], owned by no
//!   sequence. Kept cached until an allocation finds *free* empty, then
//!   evicted least-recently-released first.
//!
//! So `num_used + num_free + num_evictable == num_blocks` always, and the
//! allocatable count is `num_free + num_evictable`.
//!
//! Complexity: `allocate` is O(1) per block (pop a list head; an eviction
//! also removes one hash-map entry); `free` is O(blocks in the table);
//! `acquire_cached` is O(1) per block (unlink from the middle of a list);
//! `lookup_prefix` is O(hit blocks × block_size) (a hash probe plus a token
//! comparison per block).

use crate::prefix_cache::{BlockHash, PrefixIndex};

/// Index of a physical KV block; the model runner's block tables are `&[u32]`.
pub type BlockId = u32;

const NIL: u32 = u32::MAX;

/// A sequence's physical blocks, in position order.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct BlockTable {
    blocks: Vec<BlockId>,
    /// Leading blocks whose hashes are committed (or that came from the cache).
    num_committed: usize,
}

impl BlockTable {
    pub fn as_slice(&self) -> &[BlockId] {
        &self.blocks
    }
    pub fn len(&self) -> usize {
        self.blocks.len()
    }
    pub fn is_empty(&self) -> bool {
        self.blocks.is_empty()
    }
    /// Leading blocks that are full and known to the prefix cache.
    pub fn num_committed_blocks(&self) -> usize {
        self.num_committed
    }
}

/// `allocate` found fewer allocatable blocks than asked for; nothing changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("KV block pool exhausted: {requested} blocks requested, {available} allocatable")]
pub struct OutOfBlocks {
    pub requested: usize,
    pub available: usize,
}

#[derive(Debug, Clone)]
struct Block {
    ref_count: u32,
    /// Set while the block is in the prefix index.
    hash: Option<BlockHash>,
    prev: u32,
    next: u32,
}

/// Head/tail of an intrusive list threaded through `Block::prev/next`.
#[derive(Debug, Clone, Copy)]
struct List {
    head: u32,
    tail: u32,
    len: usize,
}

impl List {
    const EMPTY: List = List {
        head: NIL,
        tail: NIL,
        len: 0,
    };
}

/// Which list a released block joins.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Which {
    Free,
    Evictable,
}

/// The arena. See the module doc for the invariants.
#[derive(Debug)]
pub struct BlockPool {
    block_size: usize,
    blocks: Vec<Block>,
    free: List,
    evictable: List,
    num_used: usize,
    /// `None` when prefix caching is off: then nothing is ever hashed and
    /// every released block goes straight to *free*.
    index: Option<PrefixIndex>,
}

impl BlockPool {
    /// A pool of `num_blocks` free blocks of `block_size` tokens.
    /// Precondition (checked by `SchedulerConfig::validate`):
    /// `1 <= num_blocks < u32::MAX`, `block_size >= 1`.
    pub fn new(num_blocks: usize, block_size: usize, enable_prefix_cache: bool) -> Self {
        let num_blocks = num_blocks.min(NIL as usize);
        let mut pool = BlockPool {
            block_size: block_size.max(1),
            blocks: vec![
                Block {
                    ref_count: 0,
                    hash: None,
                    prev: NIL,
                    next: NIL
                };
                num_blocks
            ],
            free: List::EMPTY,
            evictable: List::EMPTY,
            num_used: 0,
            index: enable_prefix_cache.then(|| PrefixIndex::new(num_blocks, block_size.max(1))),
        };
        // In order, so that a fresh pool hands out block 0 first (readable tests).
        for id in 0..num_blocks as u32 {
            pool.push_back(Which::Free, id);
        }
        pool
    }

    pub fn block_size(&self) -> usize {
        self.block_size
    }
    pub fn num_blocks(&self) -> usize {
        self.blocks.len()
    }
    /// Blocks an allocation can get now: free plus evictable cached ones.
    pub fn num_free_blocks(&self) -> usize {
        self.free.len + self.evictable.len
    }
    /// Blocks owned by at least one sequence.
    pub fn num_used_blocks(&self) -> usize {
        self.num_used
    }
    /// Blocks in the prefix cache, owned or not.
    pub fn num_cached_blocks(&self) -> usize {
        self.index.as_ref().map_or(0, PrefixIndex::num_entries)
    }
    /// Cached blocks owned by nobody (the eviction candidates).
    pub fn num_evictable_blocks(&self) -> usize {
        self.evictable.len
    }
    pub fn is_prefix_cache_enabled(&self) -> bool {
        self.index.is_some()
    }
    /// Owners of `block` (0 for an out-of-range id).
    pub fn ref_count(&self, block: BlockId) -> u32 {
        self.blocks.get(block as usize).map_or(0, |b| b.ref_count)
    }
    /// Blocks needed to hold `num_tokens` positions.
    pub fn num_blocks_for(&self, num_tokens: usize) -> usize {
        num_tokens.div_ceil(self.block_size)
    }
    pub fn can_allocate(&self, num_blocks: usize) -> bool {
        num_blocks <= self.num_free_blocks()
    }

    /// Appends `num_blocks` fresh blocks to `table`, evicting unowned cached
    /// blocks (least recently released first) only when no free block is
    /// left. All or nothing. O(num_blocks).
    pub fn allocate(
        &mut self,
        num_blocks: usize,
        table: &mut BlockTable,
    ) -> Result<(), OutOfBlocks> {
        if !self.can_allocate(num_blocks) {
            return Err(OutOfBlocks {
                requested: num_blocks,
                available: self.num_free_blocks(),
            });
        }
        table.blocks.reserve(num_blocks);
        for _ in 0..num_blocks {
            let id = self.pop_front(Which::Free).or_else(|| {
                let id = self.pop_front(Which::Evictable)?;
                self.evict(id);
                Some(id)
            });
            // Unreachable: `can_allocate` counted both lists.
            let Some(id) = id else {
                return Err(OutOfBlocks {
                    requested: num_blocks,
                    available: 0,
                });
            };
            self.blocks[id as usize].ref_count = 1;
            self.num_used += 1;
            table.blocks.push(id);
        }
        Ok(())
    }

    /// Releases every block of `table` and empties it. A block whose count
    /// drops to 0 joins *evictable* if it is cached, else *free*. Blocks are
    /// released last-first so a sequence's tail is evicted before its head
    /// (the head is the prefix other requests are most likely to share).
    /// O(blocks in the table).
    pub fn free(&mut self, table: &mut BlockTable) {
        for &id in table.blocks.iter().rev() {
            let block = &mut self.blocks[id as usize];
            debug_assert!(
                block.ref_count > 0,
                "block {id} released more often than acquired"
            );
            block.ref_count = block.ref_count.saturating_sub(1);
            if block.ref_count == 0 {
                let which = if block.hash.is_some() {
                    Which::Evictable
                } else {
                    Which::Free
                };
                self.num_used -= 1;
                self.push_back(which, id);
            }
        }
        table.blocks.clear();
        table.num_committed = 0;
    }

    /// The cached blocks matching the leading full blocks of `tokens`, at most
    /// `max_blocks`. `hashes` is the sequence's hash chain (one per full
    /// block). Reads only; see `acquire_cached`. Empty when caching is off.
    pub fn lookup_prefix(
        &self,
        hashes: &[BlockHash],
        tokens: &[u32],
        max_blocks: usize,
    ) -> Vec<BlockId> {
        let Some(index) = &self.index else {
            return Vec::new();
        };
        let mut hit = Vec::new();
        for (i, &hash) in hashes.iter().enumerate().take(max_blocks) {
            let Some(block_tokens) = tokens.get(i * self.block_size..(i + 1) * self.block_size)
            else {
                break;
            };
            let parent = i.checked_sub(1).map(|p| hashes[p]);
            match index.get(hash, parent, block_tokens) {
                Some(block) => hit.push(block),
                None => break,
            }
        }
        hit
    }

    /// Takes a reference on each block of a `lookup_prefix` hit and appends
    /// them to the (empty) `table` as committed blocks. An unowned block
    /// leaves *evictable*. O(blocks).
    pub fn acquire_cached(&mut self, blocks: &[BlockId], table: &mut BlockTable) {
        debug_assert!(table.is_empty(), "cached blocks only start a table");
        for &id in blocks {
            if self.blocks[id as usize].ref_count == 0 {
                self.unlink(Which::Evictable, id);
                self.num_used += 1;
            }
            self.blocks[id as usize].ref_count += 1;
            table.blocks.push(id);
        }
        table.num_committed = table.blocks.len();
    }

    /// Commits the hashes of the table's blocks that became full: those below
    /// `num_computed_tokens`, whose KV the step that just ran wrote. Called
    /// after a step, never before (an uncomputed block must not be shared).
    /// `hashes` and `tokens` are the sequence's. A block whose content is
    /// already indexed under another block stays unhashed (it will be freed
    /// plainly); the chain still continues through its hash.
    pub fn commit_full_blocks(
        &mut self,
        table: &mut BlockTable,
        hashes: &[BlockHash],
        tokens: &[u32],
        num_computed_tokens: usize,
    ) {
        let Some(index) = &mut self.index else { return };
        let num_full = (num_computed_tokens / self.block_size)
            .min(table.blocks.len())
            .min(hashes.len());
        for i in table.num_committed..num_full {
            let id = table.blocks[i];
            let block = &mut self.blocks[id as usize];
            if block.hash.is_none() {
                let parent = i.checked_sub(1).map(|p| hashes[p]);
                let block_tokens = &tokens[i * self.block_size..(i + 1) * self.block_size];
                if index.insert(hashes[i], parent, block_tokens, id) {
                    block.hash = Some(hashes[i]);
                }
            }
        }
        table.num_committed = table.num_committed.max(num_full);
    }

    /// Checks every structural invariant; `Err` names the first broken one.
    /// O(num_blocks). For tests and debug assertions.
    pub fn check_invariants(&self) -> Result<(), String> {
        let mut on_list = vec![None; self.blocks.len()];
        for which in [Which::Free, Which::Evictable] {
            let list = self.list(which);
            let (mut id, mut prev, mut len) = (list.head, NIL, 0);
            while id != NIL {
                let block = self
                    .blocks
                    .get(id as usize)
                    .ok_or(format!("{which:?} links to {id}"))?;
                if on_list[id as usize].replace(which).is_some() {
                    return Err(format!("block {id} is on a list twice"));
                }
                if block.prev != prev {
                    return Err(format!("block {id}: broken prev link"));
                }
                if block.ref_count != 0 {
                    return Err(format!(
                        "block {id} is listed {which:?} with ref_count {}",
                        block.ref_count
                    ));
                }
                if (which == Which::Evictable) != block.hash.is_some() {
                    return Err(format!("block {id} on {which:?} has hash {:?}", block.hash));
                }
                (prev, id, len) = (id, block.next, len + 1);
            }
            if len != list.len || list.tail != prev {
                return Err(format!("{which:?} list length/tail mismatch"));
            }
        }
        let num_used = self.blocks.iter().filter(|b| b.ref_count > 0).count();
        if num_used != self.num_used {
            return Err(format!(
                "num_used {} but {num_used} blocks have owners",
                self.num_used
            ));
        }
        if self.num_used + self.free.len + self.evictable.len != self.blocks.len() {
            return Err("used + free + evictable != total".into());
        }
        for (id, block) in self.blocks.iter().enumerate() {
            if block.ref_count == 0 && on_list[id].is_none() {
                return Err(format!("unowned block {id} is on no list"));
            }
            if let (Some(hash), Some(index)) = (block.hash, &self.index) {
                if !index.contains(hash, id as BlockId) {
                    return Err(format!("block {id} hashed but not indexed"));
                }
            }
        }
        let num_hashed = self.blocks.iter().filter(|b| b.hash.is_some()).count();
        if num_hashed != self.num_cached_blocks() {
            return Err("index entries != hashed blocks".into());
        }
        Ok(())
    }

    fn evict(&mut self, id: BlockId) {
        if let (Some(hash), Some(index)) = (self.blocks[id as usize].hash.take(), &mut self.index) {
            index.remove(hash, id);
        }
    }

    fn list(&self, which: Which) -> List {
        match which {
            Which::Free => self.free,
            Which::Evictable => self.evictable,
        }
    }

    fn list_mut(&mut self, which: Which) -> &mut List {
        match which {
            Which::Free => &mut self.free,
            Which::Evictable => &mut self.evictable,
        }
    }

    fn push_back(&mut self, which: Which, id: u32) {
        let tail = self.list(which).tail;
        self.blocks[id as usize].prev = tail;
        self.blocks[id as usize].next = NIL;
        if tail == NIL {
            self.list_mut(which).head = id;
        } else {
            self.blocks[tail as usize].next = id;
        }
        let list = self.list_mut(which);
        list.tail = id;
        list.len += 1;
    }

    fn pop_front(&mut self, which: Which) -> Option<u32> {
        let head = self.list(which).head;
        if head == NIL {
            return None;
        }
        self.unlink(which, head);
        Some(head)
    }

    /// Precondition: `id` is on list `which`.
    fn unlink(&mut self, which: Which, id: u32) {
        let Block { prev, next, .. } = self.blocks[id as usize];
        if prev == NIL {
            self.list_mut(which).head = next;
        } else {
            self.blocks[prev as usize].next = next;
        }
        if next == NIL {
            self.list_mut(which).tail = prev;
        } else {
            self.blocks[next as usize].prev = prev;
        }
        self.blocks[id as usize].prev = NIL;
        self.blocks[id as usize].next = NIL;
        self.list_mut(which).len -= 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::prefix_cache::extend_hash_chain;
    use proptest::prelude::*;

    fn hashes_of(tokens: &[u32], block_size: usize) -> Vec<BlockHash> {
        let mut hashes = Vec::new();
        extend_hash_chain(&mut hashes, tokens, block_size);
        hashes
    }

    /// Allocates blocks for all of `tokens` (after any cache hit) and commits them
    /// as if a step had computed every token.
    fn fill(pool: &mut BlockPool, tokens: &[u32]) -> BlockTable {
        let hashes = hashes_of(tokens, pool.block_size());
        let mut table = BlockTable::default();
        let hit = pool.lookup_prefix(&hashes, tokens, usize::MAX);
        pool.acquire_cached(&hit, &mut table);
        let need = pool.num_blocks_for(tokens.len()) - table.len();
        pool.allocate(need, &mut table).unwrap();
        pool.commit_full_blocks(&mut table, &hashes, tokens, tokens.len());
        table
    }

    #[test]
    fn allocate_is_all_or_nothing() {
        let mut pool = BlockPool::new(4, 16, true);
        let mut a = BlockTable::default();
        pool.allocate(3, &mut a).unwrap();
        assert_eq!(a.as_slice(), &[0, 1, 2]);
        let mut b = BlockTable::default();
        assert_eq!(
            pool.allocate(2, &mut b),
            Err(OutOfBlocks {
                requested: 2,
                available: 1
            })
        );
        assert!(b.is_empty());
        assert_eq!((pool.num_used_blocks(), pool.num_free_blocks()), (3, 1));
        pool.free(&mut a);
        assert!(a.is_empty());
        assert_eq!((pool.num_used_blocks(), pool.num_free_blocks()), (0, 4));
        pool.check_invariants().unwrap();
    }

    #[test]
    fn a_cached_prefix_is_shared_with_a_reference_each() {
        let mut pool = BlockPool::new(8, 4, true);
        let prompt: Vec<u32> = (0..10).collect(); // 2 full blocks + 2 tokens
        let a = fill(&mut pool, &prompt);
        assert_eq!(a.as_slice(), &[0, 1, 2]);
        assert_eq!(a.num_committed_blocks(), 2);
        assert_eq!(pool.num_cached_blocks(), 2);

        let b = fill(&mut pool, &prompt);
        assert_eq!(
            b.as_slice(),
            &[0, 1, 3],
            "full blocks shared, the partial one is not"
        );
        assert_eq!(
            (pool.ref_count(0), pool.ref_count(1), pool.ref_count(3)),
            (2, 2, 1)
        );
        pool.check_invariants().unwrap();
    }

    #[test]
    fn unowned_cached_blocks_stay_until_the_pool_needs_room() {
        let mut pool = BlockPool::new(4, 2, true);
        let mut a = fill(&mut pool, &[1, 2, 3, 4]); // blocks 0, 1 cached
        pool.free(&mut a);
        assert_eq!(
            (pool.num_free_blocks(), pool.num_evictable_blocks()),
            (4, 2)
        );

        // Two free blocks left: taking them evicts nothing.
        let mut b = BlockTable::default();
        pool.allocate(2, &mut b).unwrap();
        assert_eq!(pool.num_cached_blocks(), 2);
        // Under pressure, the tail block (released first) goes before the head.
        let mut c = BlockTable::default();
        pool.allocate(1, &mut c).unwrap();
        assert_eq!(c.as_slice(), &[1]);
        let hashes = hashes_of(&[1, 2, 3, 4], 2);
        assert_eq!(pool.lookup_prefix(&hashes, &[1, 2, 3, 4], 2), vec![0]);
        pool.check_invariants().unwrap();
    }

    #[test]
    fn eviction_is_least_recently_released_first() {
        let mut pool = BlockPool::new(2, 2, true);
        let mut a = fill(&mut pool, &[1, 2]);
        let mut b = fill(&mut pool, &[3, 4]);
        pool.free(&mut b);
        pool.free(&mut a); // a released last: most recent
        let mut c = BlockTable::default();
        pool.allocate(1, &mut c).unwrap();
        assert_eq!(
            c.as_slice(),
            &[1],
            "b's block, released first, is evicted first"
        );
        assert_eq!(
            pool.lookup_prefix(&hashes_of(&[1, 2], 2), &[1, 2], 1),
            vec![0]
        );
        assert!(pool
            .lookup_prefix(&hashes_of(&[3, 4], 2), &[3, 4], 1)
            .is_empty());
    }

    #[test]
    fn reusing_a_cached_block_protects_it_from_eviction() {
        let mut pool = BlockPool::new(2, 2, true);
        let mut a = fill(&mut pool, &[1, 2]);
        pool.free(&mut a);
        let b = fill(&mut pool, &[1, 2]);
        assert_eq!(b.as_slice(), &[0]);
        assert_eq!(pool.num_evictable_blocks(), 0);
        let mut c = BlockTable::default();
        pool.allocate(1, &mut c).unwrap();
        assert_eq!(c.as_slice(), &[1]);
        assert!(!pool.can_allocate(1));
    }

    #[test]
    fn an_uncomputed_block_is_not_committed() {
        let mut pool = BlockPool::new(4, 2, true);
        let tokens = [1, 2, 3, 4];
        let hashes = hashes_of(&tokens, 2);
        let mut table = BlockTable::default();
        pool.allocate(2, &mut table).unwrap();
        pool.commit_full_blocks(&mut table, &hashes, &tokens, 3);
        assert_eq!(table.num_committed_blocks(), 1);
        assert_eq!(pool.lookup_prefix(&hashes, &tokens, 2), vec![0]);
    }

    #[test]
    fn with_caching_off_nothing_is_hashed() {
        let mut pool = BlockPool::new(4, 2, false);
        let mut a = fill(&mut pool, &[1, 2, 3, 4]);
        assert_eq!(pool.num_cached_blocks(), 0);
        pool.free(&mut a);
        assert_eq!(pool.num_evictable_blocks(), 0);
        assert_eq!(fill(&mut pool, &[1, 2, 3, 4]).as_slice(), &[2, 3]);
        pool.check_invariants().unwrap();
    }

    #[derive(Debug, Clone)]
    enum Op {
        Allocate {
            table: usize,
            num_blocks: usize,
        },
        Free {
            table: usize,
        },
        FillPrompt {
            table: usize,
            prompt: usize,
            len: usize,
        },
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (0..4usize, 0..4usize)
                .prop_map(|(table, num_blocks)| Op::Allocate { table, num_blocks }),
            (0..4usize).prop_map(|table| Op::Free { table }),
            (0..4usize, 0..3usize, 1..20usize).prop_map(|(table, prompt, len)| Op::FillPrompt {
                table,
                prompt,
                len
            }),
        ]
    }

    proptest! {
        /// used + free + evictable == total, ref counts equal the number of tables
        /// holding a block (so never negative and no double free), and the hash
        /// index agrees with the blocks, after any sequence of operations.
        #[test]
        fn invariants_hold_under_random_operations(ops in prop::collection::vec(op(), 1..60)) {
            let mut pool = BlockPool::new(12, 4, true);
            let mut tables: Vec<BlockTable> = (0..4).map(|_| BlockTable::default()).collect();
            let prompts: Vec<Vec<u32>> = (0..3u32).map(|p| (0..20).map(|i| if i < 8 { i } else { p * 100 + i }).collect()).collect();
            for op in ops {
                match op {
                    Op::Allocate { table, num_blocks } => {
                        let before = pool.num_free_blocks();
                        let ok = pool.allocate(num_blocks, &mut tables[table]).is_ok();
                        prop_assert_eq!(ok, num_blocks <= before);
                    }
                    Op::Free { table } => pool.free(&mut tables[table]),
                    Op::FillPrompt { table, prompt, len } => {
                        if tables[table].is_empty() {
                            let tokens = &prompts[prompt][..len];
                            let hashes = hashes_of(tokens, 4);
                            let hit = pool.lookup_prefix(&hashes, tokens, usize::MAX);
                            let evictable_hits = hit.iter().filter(|&&b| pool.ref_count(b) == 0).count();
                            let need = pool.num_blocks_for(len) - hit.len();
                            if need + evictable_hits <= pool.num_free_blocks() {
                                pool.acquire_cached(&hit, &mut tables[table]);
                                pool.allocate(need, &mut tables[table]).unwrap();
                                pool.commit_full_blocks(&mut tables[table], &hashes, tokens, len);
                            }
                        }
                    }
                }
                if let Err(e) = pool.check_invariants() {
                    prop_assert!(false, "{}", e);
                }
                for block in 0..12u32 {
                    let holders = tables.iter().map(|t| t.as_slice().iter().filter(|&&b| b == block).count()).sum::<usize>();
                    prop_assert_eq!(pool.ref_count(block) as usize, holders);
                }
            }
            for table in &mut tables {
                pool.free(table);
            }
            prop_assert_eq!(pool.num_used_blocks(), 0);
            prop_assert_eq!(pool.num_free_blocks(), 12);
        }
    }
}
