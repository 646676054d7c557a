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
        (0..4usize, 0..4usize).prop_map(|(table, num_blocks)| Op::Allocate { table, num_blocks }),
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
