//! A persistent worker pool for the data-parallel parts of a step.
//!
//! A decode step of a 30-layer model runs a few hundred parallel regions
//! (every matrix product, attention) of a few tens of microseconds each, so
//! handing work to threads must cost about a microsecond: workers stay alive
//! between regions, spin briefly waiting for the next one, and only then sleep
//! on a condition variable (so an idle server burns no CPU).
//!
//! Work is a number of *tasks* `0..n`, claimed dynamically with an atomic
//! counter; the calling thread takes tasks too. Callers split work by
//! *output rows*, so which thread runs a task never changes a result: each
//! output element is produced by the same code in the same order whatever
//! the thread count (DESIGN.md, "Determinism as a feature").

use std::cell::UnsafeCell;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How long a worker spins for the next region before it sleeps.
const SPIN_BEFORE_SLEEP: Duration = Duration::from_micros(200);

type Job = dyn Fn(usize) + Sync;

struct Shared {
    /// The current region's closure, valid from the `generation` bump that
    /// published it until every worker has decremented `busy_workers`.
    job: UnsafeCell<Option<*const Job>>,
    generation: AtomicU64,
    next_task: AtomicUsize,
    num_tasks: AtomicUsize,
    busy_workers: AtomicUsize,
    sleepers: AtomicUsize,
    panicked: AtomicBool,
    shutdown: AtomicBool,
    lock: Mutex<()>,
    wake: Condvar,
}

// SAFETY: `job` is written only by the thread inside `WorkerPool::run` while no
// worker is reading it (all workers finished the previous region, and the new
// one is published afterwards with a Release bump of `generation` that workers
// Acquire). The pointee is `Sync`, so sharing the reference across threads is sound.
unsafe impl Sync for Shared {}
unsafe impl Send for Shared {}

impl Shared {
    /// Claims and runs tasks until none are left. Returns false if a task panicked.
    fn drain(&self, job: &(dyn Fn(usize) + Sync + '_)) -> bool {
        let n = self.num_tasks.load(Ordering::Relaxed);
        let mut ok = true;
        loop {
            let i = self.next_task.fetch_add(1, Ordering::Relaxed);
            if i >= n {
                return ok;
            }
            if catch_unwind(AssertUnwindSafe(|| job(i))).is_err() {
                ok = false;
            }
        }
    }
}

/// Persistent threads that run parallel regions; see the module doc.
pub struct WorkerPool {
    shared: Arc<Shared>,
    workers: Vec<JoinHandle<()>>,
    /// Serializes `run` calls from different threads (the pool runs one region at a time).
    region: Mutex<()>,
}

impl WorkerPool {
    /// A pool of `num_threads` threads in total, the caller's included
    /// (`num_threads - 1` are spawned). Zero is treated as one.
    pub fn new(num_threads: usize) -> WorkerPool {
        let shared = Arc::new(Shared {
            job: UnsafeCell::new(None),
            generation: AtomicU64::new(0),
            next_task: AtomicUsize::new(0),
            num_tasks: AtomicUsize::new(0),
            busy_workers: AtomicUsize::new(0),
            sleepers: AtomicUsize::new(0),
            panicked: AtomicBool::new(false),
            shutdown: AtomicBool::new(false),
            lock: Mutex::new(()),
            wake: Condvar::new(),
        });
        let workers = (1..num_threads.max(1))
            .map(|i| {
                let shared = shared.clone();
                std::thread::Builder::new()
                    .name(format!("fulcrum-worker-{i}"))
                    .spawn(move || worker_loop(&shared))
                    .expect("spawning a worker thread")
            })
            .collect();
        WorkerPool {
            shared,
            workers,
            region: Mutex::new(()),
        }
    }

    /// Threads that take part in a region, the caller included.
    pub fn num_threads(&self) -> usize {
        self.workers.len() + 1
    }

    /// Runs `f(task)` for every task in `0..num_tasks` and returns when all are
    /// done. Tasks run in any order on any thread. A panic in a task is
    /// re-raised here after the region has finished.
    pub fn run<'f, F: Fn(usize) + Sync + 'f>(&self, num_tasks: usize, f: F) {
        if num_tasks == 0 {
            return;
        }
        if self.workers.is_empty() || num_tasks == 1 {
            (0..num_tasks).for_each(&f);
            return;
        }
        let _region = self.region.lock().unwrap_or_else(|e| e.into_inner());
        let s = &*self.shared;
        let job: &(dyn Fn(usize) + Sync + 'f) = &f;
        // SAFETY: erasing the lifetime is sound because this function does not
        // return before every worker has stopped using the pointer (the
        // `busy_workers` wait below), and no worker reads `job` outside a region.
        let job_ptr: *const Job =
            unsafe { std::mem::transmute::<&(dyn Fn(usize) + Sync + 'f), &'static Job>(job) };
        // SAFETY: no worker is inside a region (the previous `run` waited for all
        // of them), so nobody reads `job` while it is written.
        unsafe { *s.job.get() = Some(job_ptr) };
        s.next_task.store(0, Ordering::Relaxed);
        s.num_tasks.store(num_tasks, Ordering::Relaxed);
        s.busy_workers.store(self.workers.len(), Ordering::Relaxed);
        s.generation.fetch_add(1, Ordering::SeqCst);
        if s.sleepers.load(Ordering::SeqCst) > 0 {
            let _g = s.lock.lock().unwrap_or_else(|e| e.into_inner());
            s.wake.notify_all();
        }
        let ok = s.drain(job);
        let mut spins = 0u32;
        while s.busy_workers.load(Ordering::Acquire) != 0 {
            spins += 1;
            if spins < 1 << 16 {
                std::hint::spin_loop();
            } else {
                std::thread::yield_now();
            }
        }
        // SAFETY: all workers are done with this region.
        unsafe { *s.job.get() = None };
        let worker_panicked = s.panicked.swap(false, Ordering::Relaxed);
        if !ok || worker_panicked {
            panic!("a task of a parallel region panicked");
        }
    }

    /// Runs `f` on disjoint consecutive chunks of `out` (`chunk` elements each,
    /// the last one shorter), in parallel. `f(chunk_index, chunk)`.
    pub fn for_each_chunk_mut<T: Send, F: Fn(usize, &mut [T]) + Sync>(
        &self,
        out: &mut [T],
        chunk: usize,
        f: F,
    ) {
        let chunk = chunk.max(1);
        let len = out.len();
        let num = len.div_ceil(chunk);
        let base = SendPtr(out.as_mut_ptr());
        self.run(num, |i| {
            let start = i * chunk;
            let end = (start + chunk).min(len);
            // SAFETY: task `i` covers `start..end`, disjoint from every other
            // task's range and inside `out`, which is exclusively borrowed for
            // the duration of `run`.
            let part =
                unsafe { std::slice::from_raw_parts_mut(base.get().add(start), end - start) };
            f(i, part);
        });
    }
}

impl Drop for WorkerPool {
    fn drop(&mut self) {
        let s = &*self.shared;
        s.shutdown.store(true, Ordering::SeqCst);
        s.generation.fetch_add(1, Ordering::SeqCst);
        {
            let _g = s.lock.lock().unwrap_or_else(|e| e.into_inner());
            s.wake.notify_all();
        }
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
    }
}

fn worker_loop(s: &Shared) {
    // Not a fresh load: a region may already have been published before this
    // thread got to run, and it must not be skipped. No region runs before
    // `new` returns, so generation 0 is the last one this worker "saw".
    let mut seen = 0;
    loop {
        // Wait for the next region: spin first, then sleep.
        let start = Instant::now();
        let mut spins = 0u32;
        loop {
            if s.generation.load(Ordering::Acquire) != seen {
                break;
            }
            spins = spins.wrapping_add(1);
            if spins.is_multiple_of(256) && start.elapsed() > SPIN_BEFORE_SLEEP {
                let mut g = s.lock.lock().unwrap_or_else(|e| e.into_inner());
                s.sleepers.fetch_add(1, Ordering::SeqCst);
                while s.generation.load(Ordering::SeqCst) == seen {
                    g = s.wake.wait(g).unwrap_or_else(|e| e.into_inner());
                }
                s.sleepers.fetch_sub(1, Ordering::SeqCst);
                break;
            }
            std::hint::spin_loop();
        }
        seen = s.generation.load(Ordering::Acquire);
        if s.shutdown.load(Ordering::SeqCst) {
            return;
        }
        // SAFETY: the generation bump we observed (Acquire) was made after
        // `job` was set, and `run` keeps the closure alive until we decrement
        // `busy_workers` below.
        let job = unsafe { (*s.job.get()).expect("a region publishes its job") };
        // SAFETY: see above; the pointer is valid for the whole region.
        let ok = s.drain(unsafe { &*job });
        if !ok {
            s.panicked.store(true, Ordering::Relaxed);
        }
        s.busy_workers.fetch_sub(1, Ordering::Release);
    }
}

/// A raw pointer that may cross threads; used only for disjoint writes.
pub struct SendPtr<T>(pub *mut T);
impl<T> Clone for SendPtr<T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T> Copy for SendPtr<T> {}
// SAFETY: users guarantee that different threads touch disjoint elements.
unsafe impl<T: Send> Send for SendPtr<T> {}
unsafe impl<T: Send> Sync for SendPtr<T> {}

impl<T> SendPtr<T> {
    /// The pointer (a method, so closures capture the whole `SendPtr`, which is
    /// `Sync`, rather than the raw pointer field).
    pub fn get(self) -> *mut T {
        self.0
    }
}

/// The default thread count: the number of physical cores when it can be
/// told (hyper-threads share the vector units the kernels saturate).
pub fn default_num_threads() -> usize {
    physical_cores().unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    })
}

fn physical_cores() -> Option<usize> {
    let text = std::fs::read_to_string("/proc/cpuinfo").ok()?;
    let mut cores = std::collections::HashSet::new();
    let (mut phys, mut core) = (None, None);
    for line in text.lines().chain(std::iter::once("")) {
        if line.trim().is_empty() {
            if let (Some(p), Some(c)) = (phys.take(), core.take()) {
                cores.insert((p, c));
            }
            continue;
        }
        let mut kv = line.splitn(2, ':');
        let (k, v) = (kv.next()?.trim(), kv.next().unwrap_or("").trim());
        match k {
            "physical id" => phys = v.parse::<u32>().ok(),
            "core id" => core = v.parse::<u32>().ok(),
            _ => {}
        }
    }
    let online = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(usize::MAX);
    (!cores.is_empty()).then(|| cores.len().min(online))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU32;

    #[test]
    fn every_task_runs_exactly_once() {
        for threads in [1, 2, 3, 4] {
            let pool = WorkerPool::new(threads);
            for n in [0, 1, 2, 7, 100, 1000] {
                let counts: Vec<AtomicU32> = (0..n).map(|_| AtomicU32::new(0)).collect();
                pool.run(n, |i| {
                    counts[i].fetch_add(1, Ordering::Relaxed);
                });
                assert!(
                    counts.iter().all(|c| c.load(Ordering::Relaxed) == 1),
                    "threads {threads} n {n}"
                );
            }
        }
    }

    #[test]
    fn many_short_regions_and_sleep_wake() {
        let pool = WorkerPool::new(3);
        let total = AtomicU32::new(0);
        for round in 0..2000 {
            pool.run(5, |_| {
                total.fetch_add(1, Ordering::Relaxed);
            });
            if round % 500 == 0 {
                std::thread::sleep(Duration::from_millis(2)); // workers fall asleep
            }
        }
        assert_eq!(total.load(Ordering::Relaxed), 10_000);
    }

    #[test]
    fn chunks_cover_the_slice() {
        let pool = WorkerPool::new(2);
        let mut v = vec![0usize; 103];
        pool.for_each_chunk_mut(&mut v, 10, |ci, part| {
            for (j, x) in part.iter_mut().enumerate() {
                *x = ci * 10 + j;
            }
        });
        assert!(v.iter().enumerate().all(|(i, &x)| i == x));
    }

    #[test]
    fn a_panicking_task_is_reported_and_the_pool_survives() {
        let pool = WorkerPool::new(2);
        let r = catch_unwind(AssertUnwindSafe(|| {
            pool.run(8, |i| {
                if i == 5 {
                    panic!("boom");
                }
            })
        }));
        assert!(r.is_err());
        let n = AtomicU32::new(0);
        pool.run(8, |_| {
            n.fetch_add(1, Ordering::Relaxed);
        });
        assert_eq!(n.load(Ordering::Relaxed), 8);
    }

    #[test]
    fn default_threads_is_positive() {
        assert!(default_num_threads() >= 1);
    }
}
