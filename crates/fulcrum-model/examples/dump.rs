//! Development aid: runs one prompt (token ids) and writes the next-token
//! logits to `$FULCRUM_DUMP_DIR/logits.bin` (with intermediate tensors when
//! the forward pass dumps them), for comparison with llama.cpp's.
use fulcrum_kernels::WorkerPool;
use fulcrum_model::{ForwardScratch, Model, SeqInput};
fn main() {
    let a: Vec<String> = std::env::args().collect();
    let numerics = std::env::var("FULCRUM_NUMERICS")
        .ok()
        .map(|n| n.parse().unwrap())
        .unwrap_or_default();
    let model = Model::load_with(&a[1], numerics).unwrap();
    let ids: Vec<u32> = a[2].split(',').map(|s| s.parse().unwrap()).collect();
    let blocks = ids.len().div_ceil(16) + 1;
    let mut kv = model.new_kv_cache(blocks, 16);
    let table: Vec<u32> = (0..blocks as u32).collect();
    let chunk: usize = std::env::var("CHUNK")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(ids.len());
    let pool = WorkerPool::new(2);
    let mut scratch = ForwardScratch::default();
    let mut pos = 0;
    let mut logits = Vec::new();
    while pos < ids.len() {
        let n = chunk.min(ids.len() - pos);
        let seq = SeqInput {
            tokens: &ids[pos..pos + n],
            num_computed_tokens: pos,
            block_table: &table,
            wants_logits: true,
        };
        logits = model
            .forward(&pool, &[seq], &mut kv, &mut scratch)
            .unwrap()
            .to_vec();
        pos += n;
    }
    let dir = std::env::var("FULCRUM_DUMP_DIR").unwrap_or(".".into());
    std::fs::write(
        format!("{dir}/logits.bin"),
        logits
            .iter()
            .flat_map(|f| f.to_le_bytes())
            .collect::<Vec<u8>>(),
    )
    .unwrap();
}
