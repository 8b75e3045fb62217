//! Allocator workloads shared by the comparison bench (`benches/alloc.rs`),
//! the demo (`examples/alloc_demo.rs`) and the report (`examples/report`):
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

#![allow(dead_code, missing_docs, unreachable_pub)]

use std::alloc::{Layout, System};
use std::sync::atomic::{AtomicBool, AtomicIsize, AtomicUsize, Ordering};
use std::sync::Barrier;
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_queue::ArrayQueue;
use vvmalloc::heap::{BTreeIndex, ListIndex, SkipIndex};
use vvmalloc::reclaim::Hazard;
use vvmalloc::trace::replay::{Global, ReplayAlloc, ThreadAlloc};
use vvmalloc::{Heap, VvMalloc};

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
pub static DONE: AtomicUsize = AtomicUsize::new(0);
/// Bytes the workload holds live, updated in batches (a consumer's batch
/// of frees can arrive before its producer's batch of allocations: the sum
/// can dip below zero for a moment); and its peak.
pub static LIVE: AtomicIsize = AtomicIsize::new(0);
pub static PEAK_LIVE: AtomicUsize = AtomicUsize::new(0);

/// A thread's view of the shared counters, flushed every few operations so
/// that the counting does not dominate what is measured.
pub struct Counter {
    ops: usize,
    /// Operations since the last flush.
    pending: usize,
    live: isize,
}

impl Counter {
    pub fn new() -> Self {
        Self {
            ops: 0,
            pending: 0,
            live: 0,
        }
    }

    /// The operations this thread has done.
    pub fn done(&self) -> usize {
        self.ops
    }

    #[inline]
    pub fn op(&mut self, live_delta: isize) {
        self.ops += 1;
        self.pending += 1;
        self.live += live_delta;
        if self.pending == 1024 {
            self.flush();
        }
    }

    pub fn flush(&mut self) {
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

    /// Uniform in `[lo, hi]`.
    pub fn range(&mut self, lo: usize, hi: usize) -> usize {
        lo + self.below((hi - lo + 1) as u64) as usize
    }
}

/// When a thread stops: after `ops` operations, or when `stop` is set.
pub struct Budget<'a> {
    ops: usize,
    stop: &'a AtomicBool,
}

impl Budget<'_> {
    #[inline]
    pub fn more(&self, c: &Counter) -> bool {
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
pub fn touch(p: *mut u8, size: usize) {
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

/// Small-object churn: each thread holds up to 16384 blocks of 16–512 bytes
/// and frees or allocates one at random.
/// The fast path alone: a 32-byte block allocated, written and freed at
/// once, over and over; one operation per pair.
pub fn pair(a: &mut dyn ThreadAlloc, b: &Budget) {
    let mut c = Counter::new();
    while b.more(&c) {
        let p = alloc(a, 32, 8);
        // SAFETY: allocated just above with (32, 8).
        unsafe { free(a, p, 32, 8) };
        c.op(0);
    }
}

pub fn churn(a: &mut dyn ThreadAlloc, seed: u64, b: &Budget) {
    let mut rng = Rng(seed);
    let mut slots: Vec<(*mut u8, usize)> = vec![(std::ptr::null_mut(), 0); 16384];
    let mut c = Counter::new();
    while b.more(&c) {
        let i = rng.below(slots.len() as u64) as usize;
        let (p, size) = slots[i];
        if p.is_null() {
            let size = rng.range(16, 512);
            slots[i] = (alloc(a, size, 8), size);
            c.op(size as isize);
        } else {
            // SAFETY: allocated above with this layout.
            unsafe { free(a, p, size, 8) };
            slots[i].0 = std::ptr::null_mut();
            c.op(-(size as isize));
        }
    }
    free_all(a, slots, 8, &mut c);
}

/// Frees every non-null block of `slots`.
fn free_all(a: &mut dyn ThreadAlloc, slots: Vec<(*mut u8, usize)>, align: usize, c: &mut Counter) {
    for (p, size) in slots {
        if !p.is_null() {
            // SAFETY: the workloads keep only live blocks of `a`'s
            // allocator, allocated with `align`, in their slots.
            unsafe { free(a, p, size, align) };
            c.op(-(size as isize));
        }
    }
}

/// Producer/consumer pairs: one thread allocates 64–256-byte blocks and
/// passes them through a bounded queue to another, which frees them: every
/// block is freed by a thread other than its allocator's.
pub fn producer(a: &mut dyn ThreadAlloc, q: &ArrayQueue<(usize, usize)>, seed: u64, b: &Budget) {
    let mut rng = Rng(seed);
    let mut c = Counter::new();
    while b.more(&c) {
        let size = rng.range(64, 256);
        let p = alloc(a, size, 8);
        c.op(size as isize);
        let mut item = (p as usize, size);
        while let Err(back) = q.push(item) {
            item = back;
            std::hint::spin_loop();
        }
    }
}

pub fn consumer(a: &mut dyn ThreadAlloc, q: &ArrayQueue<(usize, usize)>, done: &AtomicBool) {
    let mut c = Counter::new();
    loop {
        match q.pop() {
            Some((p, size)) => {
                // SAFETY: allocated by the producer with this layout.
                unsafe { free(a, p as *mut u8, size, 8) };
                c.op(-(size as isize));
            }
            // Acquire: pairs with the producer's Release store after its last push.
            None if done.load(Ordering::Acquire) && q.is_empty() => return,
            None => std::hint::spin_loop(),
        }
    }
}

/// Mixed sizes: mostly small, some medium, a few large (64 KiB–1 MiB) and
/// rare huge (4–8 MiB) blocks, 512 held per thread, with `realloc` growth.
pub fn mixed(a: &mut dyn ThreadAlloc, seed: u64, b: &Budget) {
    let mut rng = Rng(seed);
    let mut slots: Vec<(*mut u8, usize)> = vec![(std::ptr::null_mut(), 0); 512];
    let mut c = Counter::new();
    while b.more(&c) {
        let i = rng.below(slots.len() as u64) as usize;
        let (p, size) = slots[i];
        let r = rng.below(1000);
        if p.is_null() {
            let size = match r {
                0..=899 => rng.range(16, 1024),
                900..=979 => rng.range(1024, 64 << 10),
                980..=998 => rng.range(64 << 10, 1 << 20),
                _ => rng.range(4 << 20, 8 << 20),
            };
            slots[i] = (alloc(a, size, 16), size);
            c.op(size as isize);
        } else if r < 100 && size < (1 << 20) {
            let new = size + size / 2 + 8;
            // SAFETY: allocated above with this layout.
            let q = unsafe { a.realloc(p, layout(size, 16), new) };
            assert!(!q.is_null(), "out of memory");
            touch(q, new);
            slots[i] = (q, new);
            c.op((new - size) as isize);
        } else {
            // SAFETY: as above.
            unsafe { free(a, p, size, 16) };
            slots[i].0 = std::ptr::null_mut();
            c.op(-(size as isize));
        }
    }
    free_all(a, slots, 16, &mut c);
}

/// Realloc growth: each thread grows a buffer from 16 bytes to about 1 MiB
/// by factors of 1.5 through `realloc`, writing its new tail, then frees it.
/// One operation is one `realloc` (or the first allocation, or the free).
pub fn realloc_growth(a: &mut dyn ThreadAlloc, seed: u64, b: &Budget) {
    let mut rng = Rng(seed);
    let mut c = Counter::new();
    while b.more(&c) {
        let mut size = rng.range(16, 31);
        let mut p = alloc(a, size, 8);
        c.op(size as isize);
        while size < (1 << 20) && b.more(&c) {
            let new = size + size / 2;
            // SAFETY: allocated with this layout.
            p = unsafe { a.realloc(p, layout(size, 8), new) };
            assert!(!p.is_null(), "out of memory");
            touch_range(p, size, new);
            c.op((new - size) as isize);
            size = new;
        }
        // SAFETY: as above.
        unsafe { free(a, p, size, 8) };
        c.op(-(size as isize));
    }
}

/// A growing buffer as Rust's `Vec<u8>` (and so `String`) keeps it: a
/// block of `cap` bytes, `len` of them written.
struct Grown {
    p: *mut u8,
    cap: usize,
    len: usize,
}

impl Grown {
    const EMPTY: Grown = Grown {
        p: std::ptr::null_mut(),
        cap: 0,
        len: 0,
    };

    /// Appends `n` written bytes, growing the block as `Vec` does: to the
    /// larger of twice its capacity and what is needed, at least 8 bytes,
    /// through `realloc`.
    fn push(&mut self, a: &mut dyn ThreadAlloc, n: usize, c: &mut Counter) {
        if self.len + n > self.cap {
            let cap = (self.cap * 2).max(self.len + n).max(8);
            self.p = if self.cap == 0 {
                a.alloc(layout(cap, 1))
            } else {
                // SAFETY: `p` is live with `layout(self.cap, 1)`.
                unsafe { a.realloc(self.p, layout(self.cap, 1), cap) }
            };
            assert!(!self.p.is_null(), "out of memory growing to {cap} bytes");
            c.op((cap - self.cap) as isize);
            self.cap = cap;
        }
        // SAFETY: `[len, len + n)` is inside the block.
        unsafe { self.p.add(self.len).write_bytes(self.len as u8, n) };
        self.len += n;
    }

    fn free(self, a: &mut dyn ThreadAlloc, c: &mut Counter) {
        if self.cap > 0 {
            // SAFETY: live with `layout(cap, 1)`.
            unsafe { a.dealloc(self.p, layout(self.cap, 1)) };
            c.op(-(self.cap as isize));
        }
    }
}

/// Bytes the vector of [`vec_growth`] grows to.
const VEC_BYTES: usize = 64 << 20;
/// The strings of [`vec_growth`] that grow beside it.
const VEC_STRINGS: usize = 256;

/// What a Rust program does when it builds its data with `push`: one
/// `Vec<u8>` grown by 4 KiB `extend`s to 64 MiB, and beside it 256 `String`s
/// grown by 16-byte pushes to random lengths of 16 bytes to 4 KiB, growing
/// as `Vec` grows (doubling, through `realloc`), every byte written; then
/// all freed. Each allocation, reallocation and free is an operation. Most
/// of the time is the program's own writes, as in a real program: what the
/// allocator adds is its copies (a block moved to grow) and its page
/// faults.
pub fn vec_growth(a: &mut dyn ThreadAlloc, seed: u64, b: &Budget) {
    let mut rng = Rng(seed);
    let mut c = Counter::new();
    while b.more(&c) {
        let mut v = Grown::EMPTY;
        let mut strings: Vec<(Grown, usize)> = (0..VEC_STRINGS)
            .map(|_| (Grown::EMPTY, rng.range(1, 256) * 16))
            .collect();
        while v.len < VEC_BYTES && b.more(&c) {
            v.push(a, 4096, &mut c);
            for (s, target) in &mut strings {
                if s.len < *target && rng.below(8) == 0 {
                    s.push(a, 16, &mut c);
                }
            }
        }
        // The peak: count it before the frees (the counter is flushed
        // every 1024 operations, which would miss it).
        c.flush();
        v.free(a, &mut c);
        for (s, _) in strings {
            s.free(a, &mut c);
        }
    }
    c.flush();
}

/// Larson's slots per thread, and the operations of one round.
const LARSON_SLOTS: usize = 1000;
const LARSON_ROUND: usize = 20_000;

/// One thread of one Larson round (after Larson and Krishnan, "Memory
/// allocation for long-running server applications", ISMM 1998): the
/// thread owns an array of blocks of 8–1000 bytes it inherited from a
/// thread of the previous round, and replaces a random one with a new block
/// `LARSON_ROUND` times. Its successor inherits the array, so most blocks
/// are freed by a thread other than the one that allocated them, and
/// threads come and go like a server's connections.
fn larson_round(a: &mut dyn ThreadAlloc, slots: &mut [(usize, usize)], seed: u64, b: &Budget) {
    let mut rng = Rng(seed);
    let mut c = Counter::new();
    for _ in 0..LARSON_ROUND {
        if !b.more(&c) {
            break;
        }
        let i = rng.below(slots.len() as u64) as usize;
        let (p, size) = slots[i];
        if p != 0 {
            // SAFETY: the slots hold live blocks of 8-byte alignment.
            unsafe { free(a, p as *mut u8, size, 8) };
        }
        let new = rng.range(8, 1000);
        slots[i] = (alloc(a, new, 8) as usize, new);
        c.op(new as isize - size as isize);
    }
}

/// Blocks per xmalloc batch, and batches in flight.
const XM_BATCH: usize = 64;
const XM_QUEUE: usize = 256;
type Batch = [(usize, usize); XM_BATCH];

/// xmalloc (after Lever and Boreham's xmalloc-test, "malloc() performance
/// in a multithreaded Linux environment", USENIX 2000): producer threads
/// allocate batches of 64 blocks of 16–1024 bytes and put them on one
/// shared queue; consumer threads take batches and free every block. With
/// one thread it does both in turn. One operation is one allocation or one
/// free.
fn xmalloc_producer(a: &mut dyn ThreadAlloc, q: &ArrayQueue<Batch>, seed: u64, b: &Budget) {
    let mut rng = Rng(seed);
    let mut c = Counter::new();
    while b.more(&c) {
        let mut batch = make_batch(a, &mut rng, &mut c);
        while let Err(back) = q.push(batch) {
            batch = back;
            // Relaxed: see `Budget::more`.
            if b.stop.load(Ordering::Relaxed) {
                // The consumers may be gone: free it here.
                free_batch(a, &batch, &mut c);
                return;
            }
            thread::yield_now();
        }
    }
}

fn make_batch(a: &mut dyn ThreadAlloc, rng: &mut Rng, c: &mut Counter) -> Batch {
    let mut batch = [(0, 0); XM_BATCH];
    for slot in &mut batch {
        let size = rng.range(16, 1024);
        *slot = (alloc(a, size, 8) as usize, size);
        c.op(size as isize);
    }
    batch
}

fn free_batch(a: &mut dyn ThreadAlloc, batch: &Batch, c: &mut Counter) {
    for &(p, size) in batch {
        // SAFETY: a batch holds live blocks of 8-byte alignment.
        unsafe { free(a, p as *mut u8, size, 8) };
        c.op(-(size as isize));
    }
}

fn xmalloc_consumer(a: &mut dyn ThreadAlloc, q: &ArrayQueue<Batch>, producing: &AtomicUsize) {
    let mut c = Counter::new();
    loop {
        match q.pop() {
            Some(batch) => free_batch(a, &batch, &mut c),
            // Acquire: pairs with the producers' Release decrement, after
            // their last push.
            None if producing.load(Ordering::Acquire) == 0 && q.is_empty() => return,
            None => thread::yield_now(),
        }
    }
}

fn xmalloc_alone(a: &mut dyn ThreadAlloc, seed: u64, b: &Budget) {
    let mut rng = Rng(seed);
    let mut c = Counter::new();
    while b.more(&c) {
        let batch = make_batch(a, &mut rng, &mut c);
        free_batch(a, &batch, &mut c);
    }
}

/// Writes the first byte of an 8-byte object `writes` times, as Hoard's
/// cache tests do: false sharing makes each write a cache-line transfer.
fn hammer(p: *mut u8, writes: usize) {
    for i in 0..writes {
        // SAFETY: `p` is a live block of at least 8 bytes; volatile so that
        // every write happens.
        unsafe { p.write_volatile(i as u8) };
    }
}

/// Writes to each object of the cache tests.
const CACHE_WRITES: usize = 100;

/// cache-thrash (Berger et al., "Hoard: a scalable memory allocator for
/// multithreaded applications", ASPLOS 2000): each thread allocates an
/// 8-byte object, writes it 100 times and frees it, over and over. An
/// allocator that hands neighbouring objects to different threads makes
/// them share cache lines (active false sharing). One operation is one
/// allocate-write-free.
fn cache_thrash(a: &mut dyn ThreadAlloc, b: &Budget) {
    let mut c = Counter::new();
    while b.more(&c) {
        let p = alloc(a, 8, 8);
        hammer(p, CACHE_WRITES);
        // SAFETY: allocated just above.
        unsafe { free(a, p, 8, 8) };
        c.op(0);
    }
}

/// cache-scratch (Hoard paper): the runner allocates one 8-byte object per
/// thread, all in a row (so they likely share cache lines), and hands one
/// to each thread; each frees it and then runs cache-thrash's loop. An
/// allocator that gives the freed object back to the thread that freed it
/// keeps the objects of several threads in one line (passive false
/// sharing).
fn cache_scratch(a: &mut dyn ThreadAlloc, given: usize, b: &Budget) {
    // SAFETY: the runner allocated it with (8, 8) and gave it to this
    // thread only.
    unsafe { free(a, given as *mut u8, 8, 8) };
    cache_thrash(a, b);
}

/// threadtest (Hoard paper): each thread allocates 10 000 objects of 64
/// bytes, then frees them all, over and over. One operation is one
/// allocation or free.
fn threadtest(a: &mut dyn ThreadAlloc, b: &Budget) {
    const OBJECTS: usize = 10_000;
    let mut c = Counter::new();
    let mut held = Vec::with_capacity(OBJECTS);
    while b.more(&c) {
        for _ in 0..OBJECTS {
            held.push(alloc(a, 64, 8));
            c.op(64);
        }
        for p in held.drain(..) {
            // SAFETY: allocated above with (64, 8).
            unsafe { free(a, p, 64, 8) };
            c.op(-64);
        }
    }
}

/// A size-varied test after MicroQuill's sh6bench: each round allocates
/// 2000 blocks whose sizes sweep 1–1000 bytes with one in 64 of 1–16 KiB,
/// frees the first half in reverse order (LIFO), allocates 1000 more, and
/// frees all that remain in allocation order (FIFO).
fn sh6bench(a: &mut dyn ThreadAlloc, seed: u64, b: &Budget) {
    let mut rng = Rng(seed);
    let mut c = Counter::new();
    let mut held: Vec<(*mut u8, usize)> = Vec::with_capacity(3000);
    let size_of = |i: usize, rng: &mut Rng| {
        if i % 64 == 63 {
            rng.range(1024, 16 << 10)
        } else {
            1 + (i * 7 + rng.below(8) as usize) % 1000
        }
    };
    while b.more(&c) {
        for i in 0..2000 {
            let size = size_of(i, &mut rng);
            held.push((alloc(a, size, 8), size));
            c.op(size as isize);
        }
        for (p, size) in held.drain(..1000).rev() {
            // SAFETY: allocated above with 8-byte alignment.
            unsafe { free(a, p, size, 8) };
            c.op(-(size as isize));
        }
        for i in 0..1000 {
            let size = size_of(i, &mut rng);
            held.push((alloc(a, size, 8), size));
            c.op(size as isize);
        }
        for (p, size) in held.drain(..) {
            // SAFETY: as above.
            unsafe { free(a, p, size, 8) };
            c.op(-(size as isize));
        }
    }
}

/// Large-block fragmentation: each thread fills 64 slots with alternating
/// smaller (32–256 KiB) and bigger (256 KiB–4 MiB) blocks, frees the smaller
/// ones (holes between the bigger ones), asks for 32 blocks a little bigger
/// than the holes, then frees everything and starts again. An allocator
/// that cannot reuse the holes grows; one that splits and coalesces well
/// does not. Every page of every block is written.
fn largefrag(a: &mut dyn ThreadAlloc, seed: u64, b: &Budget) {
    const SLOTS: usize = 64;
    let mut rng = Rng(seed);
    let mut c = Counter::new();
    let mut slots: Vec<(*mut u8, usize)> = Vec::with_capacity(SLOTS + SLOTS / 2);
    while b.more(&c) {
        for i in 0..SLOTS {
            let size = if i % 2 == 0 {
                rng.range(32 << 10, 256 << 10)
            } else {
                rng.range(256 << 10, 4 << 20)
            };
            slots.push((alloc(a, size, 16), size));
            c.op(size as isize);
        }
        let mut kept = Vec::with_capacity(SLOTS);
        for (i, (p, size)) in slots.drain(..).enumerate() {
            if i % 2 == 0 {
                // SAFETY: allocated above with 16-byte alignment.
                unsafe { free(a, p, size, 16) };
                c.op(-(size as isize));
            } else {
                kept.push((p, size));
            }
        }
        for _ in 0..SLOTS / 2 {
            let size = rng.range(256 << 10, 320 << 10);
            kept.push((alloc(a, size, 16), size));
            c.op(size as isize);
        }
        free_all(a, std::mem::take(&mut kept), 16, &mut c);
    }
}

#[derive(Clone, Copy, PartialEq, Debug)]
pub enum Workload {
    Pair,
    Churn,
    ProducerConsumer,
    Mixed,
    ReallocGrowth,
    VecGrowth,
    Larson,
    Xmalloc,
    CacheScratch,
    CacheThrash,
    ThreadTest,
    Sh6bench,
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

    pub fn from_key(k: &str) -> Option<Workload> {
        Self::EVERY.into_iter().find(|w| w.key() == k)
    }
}

/// What one run measured.
pub struct Outcome {
    pub secs: f64,
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
