//! Allocator workloads shared by the comparison bench (`benches/alloc.rs`),
//! the demo (`examples/alloc_demo.rs`), the driver, the soak test and the
//! report (`examples/report`), all in this crate:
//! each drives any allocator the trace replayer can drive
//! ([`ReplayAlloc`]: one handle per thread) with a seeded sequence of
//! operations, so every allocator gets the same work.
//!
//! The suite ([`Workload::SUITE`]) re-implements the classic allocator
//! stress tests from their published descriptions (no code of theirs is
//! used): Larson and Krishnan's server simulation, Lever and Boreham's
//! xmalloc-test, Berger et al.'s cache-scratch, cache-thrash and threadtest
//! (the Hoard paper), a small-object churn, a size-varied test after
//! MicroQuill's sh6bench, realloc growth and a large-block fragmentation
//! test. Each is described at its function.

use std::alloc::{Layout, System};
use std::sync::atomic::{AtomicBool, AtomicIsize, AtomicUsize, Ordering};
use std::sync::Barrier;
use std::thread;
use std::time::{Duration, Instant};

use crate::trace::replay::{Global, ReplayAlloc, ThreadAlloc};
use crossbeam_queue::ArrayQueue;
use vvmalloc::heap::{BTreeIndex, ListIndex, SkipIndex};
use vvmalloc::reclaim::Hazard;
use vvmalloc::{Heap, VvMalloc};

mod kernels;
use kernels::*;

/// Every allocator [`allocator`] knows, in table order.
pub const ALLOCATORS: [&str; 10] = [
    "vvmalloc",
    "vv-skiplist-epoch",
    "vv-skiplist-hazard",
    "vv-list-epoch",
    "vv-list-hazard",
    "vv-btree",
    "glibc",
    "jemalloc",
    "mimalloc",
    "snmalloc",
];

/// The allocator named `name`: `vvmalloc` is the `VvMalloc` global
/// allocator's process heap; the `vv-<index>-<scheme>` ones are `Heap`
/// instances with each free index and reclamation scheme, used through a
/// `LocalHeap` per thread; the others are the peers' `GlobalAlloc`s.
pub fn allocator(name: &str) -> Option<Box<dyn ReplayAlloc>> {
    Some(match name {
        "vvmalloc" => Box::new(Global::new("vvmalloc", VvMalloc::new())),
        "vv-skiplist-epoch" | "vv-heap" => Box::new(Heap::<SkipIndex>::new()),
        "vv-skiplist-hazard" => {
            Box::new(Heap::<SkipIndex<Hazard>>::with_config(Default::default()))
        }
        "vv-list-epoch" => Box::new(Heap::<ListIndex>::with_config(Default::default())),
        "vv-list-hazard" => Box::new(Heap::<ListIndex<Hazard>>::with_config(Default::default())),
        "vv-btree" => Box::new(Heap::<BTreeIndex>::with_config(Default::default())),
        "glibc" => Box::new(Global::new("glibc", System)),
        "jemalloc" => Box::new(Global::new("jemalloc", tikv_jemallocator::Jemalloc)),
        "mimalloc" => Box::new(Global::new("mimalloc", mimalloc::MiMalloc)),
        "snmalloc" => Box::new(Global::new("snmalloc", snmalloc_rs::SnMalloc)),
        _ => return None,
    })
}

/// A field of `/proc/self/status` in KiB (`VmRSS:`, `VmHWM:`), 0 if absent.
pub fn status_kib(field: &str) -> usize {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

/// Progress of the running workload, in operations.
pub(crate) static DONE: AtomicUsize = AtomicUsize::new(0);
/// Bytes the workload holds live, updated in batches (a consumer's batch
/// of frees can arrive before its producer's batch of allocations: the sum
/// can dip below zero for a moment); and its peak.
pub(crate) static LIVE: AtomicIsize = AtomicIsize::new(0);
/// The peak of [`LIVE`].
pub(crate) static PEAK_LIVE: AtomicUsize = AtomicUsize::new(0);

/// A thread's view of the shared counters, flushed every few operations so
/// that the counting does not dominate what is measured.
pub(crate) struct Counter {
    ops: usize,
    /// Operations since the last flush.
    pending: usize,
    live: isize,
}

impl Counter {
    /// A counter with nothing counted.
    pub(crate) fn new() -> Self {
        Self {
            ops: 0,
            pending: 0,
            live: 0,
        }
    }

    /// The operations this thread has done.
    pub(crate) fn done(&self) -> usize {
        self.ops
    }

    /// Counts one operation that changed the live bytes by `live_delta`.
    #[inline]
    pub(crate) fn op(&mut self, live_delta: isize) {
        self.ops += 1;
        self.pending += 1;
        self.live += live_delta;
        if self.pending == 1024 {
            self.flush();
        }
    }

    /// Adds what this thread counted to the shared counters.
    pub(crate) fn flush(&mut self) {
        // Relaxed: statistics read by the progress ticks and, after the joins, by `run`; no data depends on them.
        DONE.fetch_add(self.pending, Ordering::Relaxed);
        let now = LIVE.fetch_add(self.live, Ordering::Relaxed) + self.live;
        PEAK_LIVE.fetch_max(now.max(0) as usize, Ordering::Relaxed);
        self.pending = 0;
        self.live = 0;
    }
}

impl Drop for Counter {
    fn drop(&mut self) {
        self.flush();
    }
}

/// A xorshift generator: the same seed gives every allocator the same
/// operations.
pub(crate) struct Rng(pub(crate) u64);

impl Rng {
    /// The next number (a xorshift step).
    pub(crate) fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// A number below `n`.
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    /// Uniform in `[lo, hi]`.
    pub(crate) fn range(&mut self, lo: usize, hi: usize) -> usize {
        lo + self.below((hi - lo + 1) as u64) as usize
    }
}

/// When a thread stops: after `ops` operations, or when `stop` is set.
pub(crate) struct Budget<'a> {
    ops: usize,
    stop: &'a AtomicBool,
}

impl Budget<'_> {
    /// Whether the thread counted by `c` should go on.
    #[inline]
    pub(crate) fn more(&self, c: &Counter) -> bool {
        // Relaxed: a flag polled in a loop; the runner's join is the
        // synchronisation that matters.
        c.done() < self.ops && !self.stop.load(Ordering::Relaxed)
    }
}

/// How long a run lasts.
#[derive(Clone, Copy, Debug)]
pub enum Limit {
    /// This many operations per thread.
    Ops(usize),
    /// Until this much time has passed (each thread then finishes its
    /// operation; Larson finishes its round).
    Time(Duration),
}

fn layout(size: usize, align: usize) -> Layout {
    Layout::from_size_align(size, align).unwrap()
}

/// Allocates `size` bytes aligned to `align` and touches them; panics on
/// failure (every workload fits in memory: a null is a bug).
fn alloc(a: &mut dyn ThreadAlloc, size: usize, align: usize) -> *mut u8 {
    let p = a.alloc(layout(size, align));
    assert!(!p.is_null(), "out of memory allocating {size} bytes");
    touch(p, size);
    p
}

/// Frees a block of `alloc`.
///
/// # Safety
///
/// `p` is a live block of `a`'s allocator allocated with (`size`, `align`).
unsafe fn free(a: &mut dyn ThreadAlloc, p: *mut u8, size: usize, align: usize) {
    // SAFETY: the caller's contract.
    unsafe { a.dealloc(p, layout(size, align)) }
}

/// Writes one byte per page of the block (and its last byte), as a program
/// using the memory would, so that resident memory means something.
pub(crate) fn touch(p: *mut u8, size: usize) {
    touch_range(p, 0, size);
}

/// Writes one byte per page of `[from, to)` of the block at `p`.
fn touch_range(p: *mut u8, from: usize, to: usize) {
    for off in (from..to).step_by(4096) {
        // SAFETY: the block has `to` bytes.
        unsafe { p.add(off).write(1) };
    }
    // SAFETY: as above.
    unsafe { p.add(to - 1).write(2) };
}

/// A workload; each is described at its kernel (`kernels.rs`) and named
/// in full by [`Workload::name`].
#[derive(Clone, Copy, PartialEq, Debug)]
pub enum Workload {
    /// A 32-byte block allocated and freed at once: the fast path alone.
    Pair,
    /// Small-object churn: up to 16384 blocks of 16-512 bytes per thread,
    /// one freed or allocated at random.
    Churn,
    /// Producer/consumer pairs: every block freed by another thread.
    ProducerConsumer,
    /// Mixed sizes: mostly small, some large and rare huge blocks, with
    /// `realloc` growth.
    Mixed,
    /// A buffer grown from 16 bytes to about 1 MiB through `realloc`.
    ReallocGrowth,
    /// `Vec<u8>` grown by `push` to 64 MiB, and growing `String`s.
    VecGrowth,
    /// Larson and Krishnan's server simulation.
    Larson,
    /// Lever and Boreham's xmalloc-test.
    Xmalloc,
    /// Berger et al.'s cache-scratch (passive false sharing).
    CacheScratch,
    /// Berger et al.'s cache-thrash (active false sharing).
    CacheThrash,
    /// Berger et al.'s threadtest.
    ThreadTest,
    /// After MicroQuill's sh6bench: varied sizes, LIFO and FIFO frees.
    Sh6bench,
    /// Large-block fragmentation.
    LargeFrag,
}

impl Workload {
    /// The workloads of the alloc bench and the demo.
    pub const ALL: [Workload; 4] = [
        Workload::Churn,
        Workload::ProducerConsumer,
        Workload::Mixed,
        Workload::ReallocGrowth,
    ];

    /// The report's suite: the classic allocator stress tests.
    pub const SUITE: [Workload; 11] = [
        Workload::Pair,
        Workload::Larson,
        Workload::Xmalloc,
        Workload::CacheScratch,
        Workload::CacheThrash,
        Workload::ThreadTest,
        Workload::Churn,
        Workload::Sh6bench,
        Workload::ReallocGrowth,
        Workload::VecGrowth,
        Workload::LargeFrag,
    ];

    const EVERY: [Workload; 13] = [
        Workload::Pair,
        Workload::Churn,
        Workload::ProducerConsumer,
        Workload::Mixed,
        Workload::ReallocGrowth,
        Workload::VecGrowth,
        Workload::Larson,
        Workload::Xmalloc,
        Workload::CacheScratch,
        Workload::CacheThrash,
        Workload::ThreadTest,
        Workload::Sh6bench,
        Workload::LargeFrag,
    ];

    /// Its name in the tables.
    pub fn name(self) -> &'static str {
        match self {
            Workload::Pair => "malloc/free pair (32 bytes: the fast path alone)",
            Workload::Churn => "small-object churn",
            Workload::ProducerConsumer => "producer/consumer",
            Workload::Mixed => "mixed sizes + large",
            Workload::ReallocGrowth => "realloc growth",
            Workload::VecGrowth => "Vec/String growth (push to 64 MiB)",
            Workload::Larson => "larson (server simulation)",
            Workload::Xmalloc => "xmalloc (producers/consumers)",
            Workload::CacheScratch => "cache-scratch (passive false sharing)",
            Workload::CacheThrash => "cache-thrash (active false sharing)",
            Workload::ThreadTest => "threadtest",
            Workload::Sh6bench => "sh6bench-like (varied sizes, LIFO+FIFO)",
            Workload::LargeFrag => "large-block fragmentation",
        }
    }

    /// A short name for command lines and CSV.
    pub fn key(self) -> &'static str {
        match self {
            Workload::Pair => "pair",
            Workload::Churn => "churn",
            Workload::ProducerConsumer => "prodcons",
            Workload::Mixed => "mixed",
            Workload::ReallocGrowth => "realloc",
            Workload::VecGrowth => "vec",
            Workload::Larson => "larson",
            Workload::Xmalloc => "xmalloc",
            Workload::CacheScratch => "cache-scratch",
            Workload::CacheThrash => "cache-thrash",
            Workload::ThreadTest => "threadtest",
            Workload::Sh6bench => "sh6bench",
            Workload::LargeFrag => "largefrag",
        }
    }

    /// The workload whose [`key`](Self::key) is `k`.
    pub fn from_key(k: &str) -> Option<Workload> {
        Self::EVERY.into_iter().find(|w| w.key() == k)
    }
}

/// What one run measured.
pub struct Outcome {
    /// Wall time of the run.
    pub secs: f64,
    /// Operations done.
    pub ops: usize,
    /// Peak bytes the workload held live (sampled in batches).
    pub peak_live: usize,
}

fn seed_of(t: usize) -> u64 {
    0x9e37_79b9_7f4a_7c15 ^ ((t as u64 + 1) * 0x1234_5678)
}

/// Runs `w` on `threads` threads through `a` until `limit`, from a common
/// start (producer/consumer: `threads / 2` pairs; xmalloc: half producers,
/// half consumers, or one thread doing both; Larson: rounds of fresh
/// threads). `tick` is called about every 20 ms while it runs, with the
/// operations done so far.
pub fn run(
    w: Workload,
    a: &dyn ReplayAlloc,
    threads: usize,
    limit: Limit,
    mut tick: impl FnMut(usize),
) -> Outcome {
    DONE.store(0, Ordering::SeqCst);
    LIVE.store(0, Ordering::SeqCst);
    PEAK_LIVE.store(0, Ordering::SeqCst);
    let stop = AtomicBool::new(false);
    let (ops, deadline) = match limit {
        Limit::Ops(n) => (n, None),
        Limit::Time(d) => (usize::MAX, Some(d)),
    };
    let budget = Budget { ops, stop: &stop };
    let mut secs = 0.0;
    thread::scope(|s| {
        let runner = s.spawn(|| drive(w, a, threads, &budget));
        let t0 = Instant::now();
        while !runner.is_finished() {
            thread::sleep(Duration::from_millis(20));
            // Relaxed: a progress statistic (see `Counter::flush`).
            tick(DONE.load(Ordering::Relaxed));
            if deadline.is_some_and(|d| t0.elapsed() >= d) {
                // Relaxed: polled by the workers (see `Budget::more`).
                stop.store(true, Ordering::Relaxed);
            }
        }
        secs = runner.join().unwrap();
    });
    Outcome {
        secs,
        ops: DONE.load(Ordering::SeqCst),
        peak_live: PEAK_LIVE.load(Ordering::SeqCst),
    }
}

/// Runs the workload's threads; returns the seconds from their common start
/// to the last one's finish.
fn drive(w: Workload, a: &dyn ReplayAlloc, threads: usize, b: &Budget) -> f64 {
    if w == Workload::Larson {
        return larson(a, threads, b);
    }
    let start_line = Barrier::new(threads + 1);
    let pairs = threads / 2;
    let queues: Vec<ArrayQueue<(usize, usize)>> =
        (0..pairs).map(|_| ArrayQueue::new(16384)).collect();
    let producers_done: Vec<AtomicBool> = (0..pairs).map(|_| AtomicBool::new(false)).collect();
    let batches = ArrayQueue::<Batch>::new(XM_QUEUE);
    let producing = AtomicUsize::new(threads.div_ceil(2));
    // cache-scratch: one object per thread, allocated in a row here.
    let given: Vec<usize> = if w == Workload::CacheScratch {
        let mut h = a.thread();
        (0..threads)
            .map(|_| alloc(&mut *h, 8, 8) as usize)
            .collect()
    } else {
        vec![0; threads]
    };
    thread::scope(|s| {
        let mut hs = Vec::new();
        for t in 0..threads {
            let (start_line, queues, producers_done) = (&start_line, &queues, &producers_done);
            let (batches, producing, given) = (&batches, &producing, &given);
            hs.push(s.spawn(move || {
                let mut h = a.thread();
                let h = &mut *h;
                start_line.wait();
                let seed = seed_of(t);
                match w {
                    Workload::Pair => pair(h, b),
                    Workload::Churn => churn(h, seed, b),
                    Workload::Mixed => mixed(h, seed, b),
                    Workload::ReallocGrowth => realloc_growth(h, seed, b),
                    Workload::VecGrowth => vec_growth(h, seed, b),
                    Workload::ProducerConsumer if t % 2 == 0 => {
                        producer(h, &queues[t / 2], seed, b);
                        // Release: pairs with the consumer's Acquire load; orders the last push before it.
                        producers_done[t / 2].store(true, Ordering::Release);
                    }
                    Workload::ProducerConsumer => {
                        consumer(h, &queues[t / 2], &producers_done[t / 2])
                    }
                    Workload::Xmalloc if threads == 1 => xmalloc_alone(h, seed, b),
                    Workload::Xmalloc if t % 2 == 0 => {
                        xmalloc_producer(h, batches, seed, b);
                        // Release: pairs with the consumers' Acquire load.
                        producing.fetch_sub(1, Ordering::Release);
                    }
                    Workload::Xmalloc => xmalloc_consumer(h, batches, producing),
                    Workload::CacheScratch => cache_scratch(h, given[t], b),
                    Workload::CacheThrash => cache_thrash(h, b),
                    Workload::ThreadTest => threadtest(h, b),
                    Workload::Sh6bench => sh6bench(h, seed, b),
                    Workload::LargeFrag => largefrag(h, seed, b),
                    Workload::Larson => unreachable!(),
                }
                Instant::now()
            }));
        }
        start_line.wait();
        let t0 = Instant::now();
        // The time to the last thread's finish.
        let end = hs
            .into_iter()
            .map(|h| h.join().unwrap())
            .max()
            .unwrap_or(t0);
        end.duration_since(t0).as_secs_f64()
    })
}

/// Larson: rounds of `threads` fresh threads; thread `t` of a round takes
/// over the blocks of thread `t + 1` of the previous round. Thread start-up
/// is part of the time, as in the original.
fn larson(a: &dyn ReplayAlloc, threads: usize, b: &Budget) -> f64 {
    let mut arrays: Vec<Vec<(usize, usize)>> = vec![vec![(0, 0); LARSON_SLOTS]; threads];
    let t0 = Instant::now();
    let mut round = 0u64;
    loop {
        arrays.rotate_left(1.min(threads - 1));
        // Relaxed: a statistic; the round's scope join orders the counts.
        let done_before = DONE.load(Ordering::Relaxed);
        thread::scope(|s| {
            for (t, slots) in arrays.iter_mut().enumerate() {
                s.spawn(move || {
                    let mut h = a.thread();
                    larson_round(&mut *h, slots, seed_of(t) ^ round, b);
                });
            }
        });
        round += 1;
        // Relaxed: as above, after the round's threads were joined.
        let per_thread = (DONE.load(Ordering::Relaxed) - done_before) / threads;
        // Relaxed: see `Budget::more`.
        if b.stop.load(Ordering::Relaxed) || per_thread < LARSON_ROUND {
            break;
        }
        if b.ops != usize::MAX && round as usize * LARSON_ROUND >= b.ops {
            break;
        }
    }
    let secs = t0.elapsed().as_secs_f64();
    // Not timed nor counted: free what the last round holds.
    let mut h = a.thread();
    for (p, size) in arrays.into_iter().flatten() {
        if p != 0 {
            // SAFETY: the slots hold live blocks of 8-byte alignment.
            unsafe { free(&mut *h, p as *mut u8, size, 8) };
        }
    }
    secs
}

/// The process's resident memory in bytes (`/proc/self/statm`).
pub fn rss() -> usize {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<usize>().ok())
        .map_or(0, |pages| pages * 4096)
}
