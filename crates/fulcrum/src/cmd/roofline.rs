//! `fulcrum roofline`: this machine's memory bandwidth (one thread and all)
//! and peak int8 / f32 throughput, the bars the kernels are measured against.

use anyhow::Result;
use clap::Args;
use fulcrum_kernels::pool::default_num_threads;
use fulcrum_kernels::roofline::Roofline;
use fulcrum_kernels::WorkerPool;

#[derive(Args)]
pub struct RooflineArgs {
    /// Threads for the all-thread figures (default: physical cores).
    #[arg(long)]
    threads: Option<usize>,
    /// Size of the buffer streamed from memory, in MiB (larger than the caches).
    #[arg(long, default_value_t = 1024)]
    buffer_mib: usize,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    json: bool,
}

pub fn run(a: RooflineArgs) -> Result<()> {
    let threads = a.threads.unwrap_or_else(default_num_threads).max(1);
    if a.buffer_mib == 0 {
        anyhow::bail!("--buffer-mib must be positive");
    }
    let pool = WorkerPool::new(threads);
    let r = Roofline::measure(&pool, a.buffer_mib << 20);
    if a.json {
        println!(
            "{}",
            serde_json::json!({
                "isa": r.isa.name(), "threads": r.threads,
                "mem_bw_1_gbs": r.mem_bw_1 / 1e9, "mem_bw_all_gbs": r.mem_bw_all / 1e9,
                "int8_gops": r.int8_ops / 1e9, "f32_gflops": r.f32_flops / 1e9,
            })
        );
        return Ok(());
    }
    println!("ISA {}  threads {}", r.isa, r.threads);
    println!(
        "{:<34} {:>10}",
        "memory read bandwidth, 1 thread",
        format!("{:.1} GB/s", r.mem_bw_1 / 1e9)
    );
    println!(
        "{:<34} {:>10}",
        format!("memory read bandwidth, {} threads", r.threads),
        format!("{:.1} GB/s", r.mem_bw_all / 1e9)
    );
    println!(
        "{:<34} {:>10}",
        "int8 multiply-add (2 ops/MAC)",
        format!("{:.0} GOP/s", r.int8_ops / 1e9)
    );
    println!(
        "{:<34} {:>10}",
        "f32 fused multiply-add (2 flops)",
        format!("{:.0} GFLOP/s", r.f32_flops / 1e9)
    );
    Ok(())
}
