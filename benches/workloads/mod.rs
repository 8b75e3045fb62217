//! Allocator workloads shared by the comparison bench (`benches/alloc.rs`)
//! and the demo (`examples/alloc_demo.rs`): each drives any `GlobalAlloc`
//! with a seeded sequence of operations, so every allocator gets the same
//! work.

#![allow(dead_code, missing_docs, unreachable_pub)]

use std::alloc::{GlobalAlloc, Layout};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Barrier;
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_queue::ArrayQueue;

/// Progress of the running workload, in operations.
pub static DONE: AtomicUsize = AtomicUsize::new(0);
/// Bytes the workload holds live, updated in batches; and its peak.
pub static LIVE: AtomicUsize = AtomicUsize::new(0);
pub static PEAK_LIVE: AtomicUsize = AtomicUsize::new(0);

/// A thread's view of the shared counters, flushed every few operations so
/// that the counting does not dominate what is measured.
pub struct Counter {
    ops: usize,
    live: isize,
}

impl Counter {
    pub fn new() -> Self {
        Self { ops: 0, live: 0 }
    }

    #[inline]
    pub fn op(&mut self, live_delta: isize) {
        self.ops += 1;
        self.live += live_delta;
        if self.ops == 1024 {
            self.flush();
        }
    }

    pub fn flush(&mut self) {
        DONE.fetch_add(self.ops, Ordering::Relaxed);
        let now = if self.live >= 0 {
            LIVE.fetch_add(self.live as usize, Ordering::Relaxed) + self.live as usize
        } else {
            LIVE.fetch_sub((-self.live) as usize, Ordering::Relaxed) - (-self.live) as usize
        };
        PEAK_LIVE.fetch_max(now, Ordering::Relaxed);
        self.ops = 0;
        self.live = 0;
    }
}

impl Drop for Counter {
    fn drop(&mut self) {
        self.flush();
    }
}

/// A xorshift generator: the same seed gives both allocators the same
/// operations.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Writes one byte per page of the block (and its last byte), as a program
/// using the memory would, so that resident memory means something.
pub fn touch(p: *mut u8, size: usize) {
    for off in (0..size).step_by(4096) {
        // SAFETY: `p` is a live block of `size` bytes.
        unsafe { p.add(off).write(1) };
    }
    // SAFETY: as above.
    unsafe { p.add(size - 1).write(2) };
}

/// Small-object churn: each thread holds up to 16384 blocks of 16–512 bytes
/// and frees or allocates one at random.
pub fn churn(a: &dyn GlobalAlloc, seed: u64, ops: usize) {
    let mut rng = Rng(seed);
    let mut slots: Vec<(*mut u8, usize)> = vec![(std::ptr::null_mut(), 0); 16384];
    let mut c = Counter::new();
    for _ in 0..ops {
        let i = rng.below(slots.len() as u64) as usize;
        let (p, size) = slots[i];
        if p.is_null() {
            let size = 16 + rng.below(497) as usize;
            // SAFETY: non-zero size.
            let p = unsafe { a.alloc(Layout::from_size_align(size, 8).unwrap()) };
            assert!(!p.is_null(), "out of memory");
            touch(p, size);
            slots[i] = (p, size);
            c.op(size as isize);
        } else {
            // SAFETY: allocated above with this layout.
            unsafe { a.dealloc(p, Layout::from_size_align(size, 8).unwrap()) };
            slots[i].0 = std::ptr::null_mut();
            c.op(-(size as isize));
        }
    }
    for (p, size) in slots {
        if !p.is_null() {
            // SAFETY: as above.
            unsafe { a.dealloc(p, Layout::from_size_align(size, 8).unwrap()) };
            c.op(-(size as isize));
        }
    }
}

/// Producer/consumer: one thread allocates 64–256-byte blocks and passes
/// them through a bounded queue to another, which frees them: every block
/// is freed by a thread other than its allocator's.
pub fn producer(a: &dyn GlobalAlloc, q: &ArrayQueue<(usize, usize)>, seed: u64, ops: usize) {
    let mut rng = Rng(seed);
    let mut c = Counter::new();
    for _ in 0..ops {
        let size = 64 + rng.below(193) as usize;
        // SAFETY: non-zero size.
        let p = unsafe { a.alloc(Layout::from_size_align(size, 8).unwrap()) };
        assert!(!p.is_null(), "out of memory");
        touch(p, size);
        c.op(size as isize);
        let mut item = (p as usize, size);
        while let Err(back) = q.push(item) {
            item = back;
            std::hint::spin_loop();
        }
    }
}

pub fn consumer(a: &dyn GlobalAlloc, q: &ArrayQueue<(usize, usize)>, done: &AtomicBool) {
    let mut c = Counter::new();
    loop {
        match q.pop() {
            Some((p, size)) => {
                // SAFETY: allocated by the producer with this layout.
                unsafe { a.dealloc(p as *mut u8, Layout::from_size_align(size, 8).unwrap()) };
                c.op(-(size as isize));
            }
            None if done.load(Ordering::Acquire) && q.is_empty() => return,
            None => std::hint::spin_loop(),
        }
    }
}

/// Mixed sizes: mostly small, some medium, a few large (64 KiB–1 MiB) and
/// rare huge (4–8 MiB) blocks, 512 held per thread, with `realloc` growth.
pub fn mixed(a: &dyn GlobalAlloc, seed: u64, ops: usize) {
    let mut rng = Rng(seed);
    let mut slots: Vec<(*mut u8, usize)> = vec![(std::ptr::null_mut(), 0); 512];
    let mut c = Counter::new();
    for _ in 0..ops {
        let i = rng.below(slots.len() as u64) as usize;
        let (p, size) = slots[i];
        let r = rng.below(1000);
        if p.is_null() {
            let size = match r {
                0..=899 => 16 + rng.below(1009),
                900..=979 => 1024 + rng.below(63 * 1024),
                980..=998 => (64 << 10) + rng.below(960 << 10),
                _ => (4 << 20) + rng.below(4 << 20),
            } as usize;
            // SAFETY: non-zero size.
            let p = unsafe { a.alloc(Layout::from_size_align(size, 16).unwrap()) };
            assert!(!p.is_null(), "out of memory");
            touch(p, size);
            slots[i] = (p, size);
            c.op(size as isize);
        } else if r < 100 && size < (1 << 20) {
            let new = size + size / 2 + 8;
            // SAFETY: allocated above with this layout.
            let q = unsafe { a.realloc(p, Layout::from_size_align(size, 16).unwrap(), new) };
            assert!(!q.is_null(), "out of memory");
            touch(q, new);
            slots[i] = (q, new);
            c.op((new - size) as isize);
        } else {
            // SAFETY: as above.
            unsafe { a.dealloc(p, Layout::from_size_align(size, 16).unwrap()) };
            slots[i].0 = std::ptr::null_mut();
            c.op(-(size as isize));
        }
    }
    for (p, size) in slots {
        if !p.is_null() {
            // SAFETY: as above.
            unsafe { a.dealloc(p, Layout::from_size_align(size, 16).unwrap()) };
            c.op(-(size as isize));
        }
    }
}

#[derive(Clone, Copy, PartialEq)]
pub enum Workload {
    Churn,
    ProducerConsumer,
    Mixed,
    ReallocGrowth,
}

impl Workload {
    pub const ALL: [Workload; 4] = [
        Workload::Churn,
        Workload::ProducerConsumer,
        Workload::Mixed,
        Workload::ReallocGrowth,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Workload::Churn => "small-object churn",
            Workload::ProducerConsumer => "producer/consumer",
            Workload::Mixed => "mixed sizes + large",
            Workload::ReallocGrowth => "realloc growth",
        }
    }

    /// A short name for command lines and CSV.
    pub fn key(self) -> &'static str {
        match self {
            Workload::Churn => "churn",
            Workload::ProducerConsumer => "prodcons",
            Workload::Mixed => "mixed",
            Workload::ReallocGrowth => "realloc",
        }
    }

    pub fn from_key(k: &str) -> Option<Workload> {
        Self::ALL.into_iter().find(|w| w.key() == k)
    }
}

/// Realloc growth: each thread grows a buffer from 16 bytes to about 1 MiB
/// by factors of 1.5 through `realloc`, writing its new tail, then frees it.
/// One operation is one `realloc` (or the final free).
pub fn realloc_growth(a: &dyn GlobalAlloc, seed: u64, ops: usize) {
    let mut rng = Rng(seed);
    let mut c = Counter::new();
    let mut done = 0;
    while done < ops {
        let mut size = 16 + rng.below(16) as usize;
        // SAFETY: non-zero size.
        let mut p = unsafe { a.alloc(Layout::from_size_align(size, 8).unwrap()) };
        assert!(!p.is_null(), "out of memory");
        touch(p, size);
        c.op(size as isize);
        done += 1;
        while size < (1 << 20) && done < ops {
            let new = size + size / 2;
            // SAFETY: allocated with this layout.
            p = unsafe { a.realloc(p, Layout::from_size_align(size, 8).unwrap(), new) };
            assert!(!p.is_null(), "out of memory");
            touch_range(p, size, new);
            c.op((new - size) as isize);
            size = new;
            done += 1;
        }
        // SAFETY: as above.
        unsafe { a.dealloc(p, Layout::from_size_align(size, 8).unwrap()) };
        c.op(-(size as isize));
        done += 1;
    }
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

/// What one run measured.
pub struct Outcome {
    pub secs: f64,
    pub ops: usize,
    /// Peak bytes the workload held live (sampled in batches).
    pub peak_live: usize,
}

/// Runs `w` on `threads` threads (`ops` operations each; for
/// producer/consumer, `threads / 2` pairs) through `a`, from a common start.
/// `tick` is called about every 20 ms while it runs, with the fraction done.
pub fn run(
    w: Workload,
    a: &(dyn GlobalAlloc + Sync),
    threads: usize,
    ops: usize,
    mut tick: impl FnMut(f64),
) -> Outcome {
    DONE.store(0, Ordering::SeqCst);
    LIVE.store(0, Ordering::SeqCst);
    PEAK_LIVE.store(0, Ordering::SeqCst);
    let total = threads * ops;
    let start_line = Barrier::new(threads + 1);
    let pairs = threads / 2;
    let queues: Vec<ArrayQueue<(usize, usize)>> =
        (0..pairs).map(|_| ArrayQueue::new(16384)).collect();
    let producers_done: Vec<AtomicBool> = (0..pairs).map(|_| AtomicBool::new(false)).collect();
    let mut secs = 0.0;
    thread::scope(|s| {
        let mut hs = Vec::new();
        for t in 0..threads {
            let (start_line, queues, producers_done) = (&start_line, &queues, &producers_done);
            hs.push(s.spawn(move || {
                start_line.wait();
                let seed = 0x9e37_79b9_7f4a_7c15 ^ ((t as u64 + 1) * 0x1234_5678);
                match w {
                    Workload::Churn => churn(a, seed, ops),
                    Workload::Mixed => mixed(a, seed, ops),
                    Workload::ReallocGrowth => realloc_growth(a, seed, ops),
                    Workload::ProducerConsumer if t % 2 == 0 => {
                        producer(a, &queues[t / 2], seed, ops);
                        producers_done[t / 2].store(true, Ordering::Release);
                    }
                    Workload::ProducerConsumer => {
                        consumer(a, &queues[t / 2], &producers_done[t / 2])
                    }
                }
                Instant::now()
            }));
        }
        start_line.wait();
        let t0 = Instant::now();
        while !hs.iter().all(|h| h.is_finished()) {
            thread::sleep(Duration::from_millis(20));
            tick(DONE.load(Ordering::Relaxed) as f64 / total as f64);
        }
        // The time to the last thread's finish, not to the last tick.
        let end = hs
            .into_iter()
            .map(|h| h.join().unwrap())
            .max()
            .unwrap_or(t0);
        secs = end.duration_since(t0).as_secs_f64();
    });
    Outcome {
        secs,
        ops: DONE.load(Ordering::SeqCst),
        peak_live: PEAK_LIVE.load(Ordering::SeqCst),
    }
}

/// The process's resident memory in bytes (`/proc/self/statm`).
pub fn rss() -> usize {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<usize>().ok())
        .map_or(0, |pages| pages * 4096)
}
