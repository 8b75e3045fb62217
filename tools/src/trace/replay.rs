//! Replays a [`Trace`] against an allocator, validating every block.
//!
//! Any allocator plugs in through [`ReplayAlloc`]: a [`GlobalAlloc`] (glibc's
//! `System`, jemalloc, mimalloc, [`VvMalloc`](vvmalloc::VvMalloc)) through
//! [`Global`], or a [`Heap`] instance, each of whose replay threads then
//! works through a [`LocalHeap`] of its own.
//!
//! With [`Options::validate`] on (the default) every request is checked:
//!
//! - the block is not null and is aligned to [`Options::align`];
//! - it overlaps no other live block;
//! - the pattern written over the whole block when it was allocated is
//!   intact when it is freed or reallocated, and `realloc` kept the old
//!   contents (up to the smaller size).
//!
//! The first failure stops the replay with a [`ReplayError`] naming the line
//! of the trace. Validation serialises the threads on a map of the live
//! blocks and writes every byte: turn it off to measure speed.
//!
//! ```
//! # if vvmalloc::LOOM_BUILD || cfg!(miri) { return; }
//! use std::alloc::System;
//! use vvmalloc_tools::trace::replay::{replay, Global, Options};
//! use vvmalloc_tools::trace::Trace;
//!
//! let t = Trace::parse("t.rep", "a 0 100\na 1 20 @1\nr 0 300 @1\nf 1\nf 0\n").unwrap();
//! let r = replay(&t, &Global::new("glibc", System), &Options::default()).unwrap();
//! assert_eq!(r.ops, 5);
//! ```

use std::alloc::{GlobalAlloc, Layout};
use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Barrier, Mutex};
use std::time::{Duration, Instant};

use super::{Kind, Op, Trace};
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use vvmalloc::heap::{FreeIndex, Heap, LocalHeap};

/// An allocator the replayer can drive: shared by the replay threads, each
/// of which takes a [`ThreadAlloc`] handle.
pub trait ReplayAlloc: Sync {
    /// A name for tables.
    fn name(&self) -> String;

    /// The calling thread's handle (called once per replay thread).
    fn thread(&self) -> Box<dyn ThreadAlloc + '_>;

    /// Bytes the allocator has mapped from the OS, if it reports them.
    fn mapped_bytes(&self) -> Option<usize> {
        None
    }
}

/// One replay thread's access to the allocator.
pub trait ThreadAlloc {
    /// As [`GlobalAlloc::alloc`]; null on failure.
    fn alloc(&mut self, layout: Layout) -> *mut u8;

    /// As [`GlobalAlloc::dealloc`].
    ///
    /// # Safety
    ///
    /// `p` is a live block of this allocator (from any thread's handle)
    /// allocated with `layout`.
    unsafe fn dealloc(&mut self, p: *mut u8, layout: Layout);

    /// As [`GlobalAlloc::realloc`].
    ///
    /// # Safety
    ///
    /// As for [`dealloc`](Self::dealloc); `new_size` is non-zero and does not
    /// overflow `isize` when rounded to the alignment.
    unsafe fn realloc(&mut self, p: *mut u8, layout: Layout, new_size: usize) -> *mut u8;
}

/// Any [`GlobalAlloc`], under a name.
#[derive(Debug)]
pub struct Global<A> {
    name: String,
    alloc: A,
}

impl<A: GlobalAlloc + Sync> Global<A> {
    /// `alloc` under the name `name`.
    pub fn new(name: &str, alloc: A) -> Self {
        Global {
            name: name.to_string(),
            alloc,
        }
    }
}

impl<A: GlobalAlloc + Sync> ReplayAlloc for Global<A> {
    fn name(&self) -> String {
        self.name.clone()
    }

    fn thread(&self) -> Box<dyn ThreadAlloc + '_> {
        Box::new(GlobalThread(&self.alloc))
    }
}

struct GlobalThread<'a, A>(&'a A);

impl<A: GlobalAlloc> ThreadAlloc for GlobalThread<'_, A> {
    fn alloc(&mut self, layout: Layout) -> *mut u8 {
        // SAFETY: the replayer never asks for zero bytes.
        unsafe { self.0.alloc(layout) }
    }

    unsafe fn dealloc(&mut self, p: *mut u8, layout: Layout) {
        // SAFETY: the caller's contract.
        unsafe { self.0.dealloc(p, layout) }
    }

    unsafe fn realloc(&mut self, p: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: the caller's contract.
        unsafe { self.0.realloc(p, layout, new_size) }
    }
}

impl<I: FreeIndex> ReplayAlloc for Heap<I> {
    fn name(&self) -> String {
        if I::SCHEME == "mutex" {
            format!("vv-{}", I::NAME)
        } else {
            format!("vv-{}-{}", I::NAME, I::SCHEME)
        }
    }

    fn thread(&self) -> Box<dyn ThreadAlloc + '_> {
        Box::new(self.local())
    }

    fn mapped_bytes(&self) -> Option<usize> {
        Some(self.stats().mapped_bytes)
    }
}

impl<I: FreeIndex> ThreadAlloc for LocalHeap<'_, I> {
    fn alloc(&mut self, layout: Layout) -> *mut u8 {
        LocalHeap::alloc(self, layout)
    }

    unsafe fn dealloc(&mut self, p: *mut u8, layout: Layout) {
        // SAFETY: the caller's contract; every thread's handle is a cache
        // of the same heap.
        unsafe { LocalHeap::dealloc(self, p, layout) }
    }

    unsafe fn realloc(&mut self, p: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: as above.
        unsafe { LocalHeap::realloc(self, p, layout, new_size) }
    }
}

/// How to replay.
#[derive(Clone, Copy, Debug)]
pub struct Options {
    /// Replay threads; the trace's thread `t` runs on replay thread
    /// `t % threads`. 0 means one per thread of the trace.
    pub threads: usize,
    /// Check every block (see the [module documentation](self)). Without
    /// it, each block still gets one byte written per 4 KiB page (and its
    /// last byte), as a program using the memory would, so that resident
    /// memory means something.
    pub validate: bool,
    /// The alignment every block is asked for (a power of two).
    pub align: usize,
    /// How many times to replay the trace (blocks the trace leaves
    /// allocated are freed after each pass, untimed); at most, see
    /// `min_secs`.
    pub passes: usize,
    /// Stop after the first pass that brings the timed total to this many
    /// seconds (0: run every pass), as the malloc lab's timer does: short
    /// traces are replayed until the measurement is long enough to mean
    /// something, long ones once.
    pub min_secs: f64,
}

impl Default for Options {
    /// One replay thread per trace thread, validation on, 16-byte
    /// alignment (what `malloc` guarantees on 64-bit Linux), one pass.
    fn default() -> Self {
        Options {
            threads: 0,
            validate: true,
            align: 16,
            passes: 1,
            min_secs: 0.0,
        }
    }
}

/// What a replay measured.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Report {
    /// Requests replayed (all passes).
    pub ops: usize,
    /// Wall time of the passes (the untimed cleanup between passes
    /// excluded).
    pub secs: f64,
    /// Replay threads used.
    pub threads: usize,
    /// The trace's peak live payload, in bytes ([`Trace::peak_live`]).
    pub peak_live: usize,
}

impl Report {
    /// Requests per second.
    pub fn ops_per_sec(&self) -> f64 {
        self.ops as f64 / self.secs.max(1e-9)
    }
}

/// A request that failed or a block that failed validation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplayError {
    /// The trace's name.
    pub file: String,
    /// The line of the request.
    pub line: usize,
    /// What went wrong.
    pub message: String,
}

impl fmt::Display for ReplayError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.file, self.line, self.message)
    }
}

impl std::error::Error for ReplayError {}

/// The word of the validation pattern at word index `k` of a block whose
/// allocation has key `key`.
#[inline]
fn word(key: u64, k: usize) -> u64 {
    let mut z = key ^ (k as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 29)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z ^ (z >> 32)
}

/// Writes the pattern over `[from, to)` of the block at `p`.
///
/// # Safety
///
/// `p` is valid for writes of `to` bytes.
unsafe fn fill(p: *mut u8, key: u64, from: usize, to: usize) {
    let byte = |i: usize| {
        // SAFETY: `i < to` (contract).
        unsafe { p.add(i).write(word(key, i / 8).to_le_bytes()[i % 8]) }
    };
    // Single bytes up to the first whole word, whole words, single bytes
    // after the last.
    let words = (from.div_ceil(8), to / 8);
    if words.0 >= words.1 {
        (from..to).for_each(byte);
        return;
    }
    (from..8 * words.0).for_each(byte);
    for k in words.0..words.1 {
        // SAFETY: `8k + 8 <= to` (contract).
        // Little-endian words, as the single bytes are.
        unsafe {
            p.add(8 * k)
                .cast::<u64>()
                .write_unaligned(word(key, k).to_le())
        };
    }
    (8 * words.1..to).for_each(byte);
}

/// The first offset in `[0, len)` where the block at `p` departs from its
/// pattern.
///
/// # Safety
///
/// `p` is valid for reads of `len` bytes.
unsafe fn check(p: *const u8, key: u64, len: usize) -> Option<usize> {
    for k in 0..len / 8 {
        // SAFETY: `8k + 8 <= len` (contract).
        let w = u64::from_le(unsafe { p.add(8 * k).cast::<u64>().read_unaligned() });
        if w != word(key, k) {
            let bad = (w ^ word(key, k)).trailing_zeros() as usize / 8;
            return Some(8 * k + bad);
        }
    }
    (len / 8 * 8..len).find(|&i| {
        // SAFETY: `i < len` (contract).
        unsafe { p.add(i).read() != word(key, i / 8).to_le_bytes()[i % 8] }
    })
}

/// Writes one byte per page of `[from, to)` of the block at `p`, and its
/// last byte.
///
/// # Safety
///
/// `p` is valid for writes of `to` bytes.
unsafe fn touch(p: *mut u8, from: usize, to: usize) {
    for off in (from..to).step_by(4096) {
        // SAFETY: `off < to` (contract).
        unsafe { p.add(off).write(1) };
    }
    if to > from {
        // SAFETY: as above.
        unsafe { p.add(to - 1).write(2) };
    }
}

/// State shared by the replay threads.
struct Shared<'t> {
    trace: &'t Trace,
    opts: Options,
    /// Per block: its address, and the key of its pattern.
    ptrs: Vec<AtomicPtr<u8>>,
    keys: Vec<AtomicU64>,
    /// Per block: requests on it done so far in this pass (published only
    /// where the next request is another thread's).
    done: Vec<AtomicU32>,
    abort: AtomicBool,
    error: Mutex<Option<ReplayError>>,
    /// Live blocks by address: `(end, id, line)` (validation only).
    live: Mutex<BTreeMap<usize, (usize, u32, u32)>>,
    progress: AtomicUsize,
}

impl Shared<'_> {
    fn fail(&self, op: &Op, message: String) {
        let mut e = self.error.lock().unwrap_or_else(|e| e.into_inner());
        if e.is_none() {
            *e = Some(ReplayError {
                file: self.trace.name().to_string(),
                line: op.line as usize,
                message,
            });
        }
        // Relaxed: the other threads only need to stop eventually; the
        // error itself is read after they are joined.
        self.abort.store(true, Ordering::Relaxed); // stop eventually; pairs with nothing
    }

    fn layout(&self, size: usize) -> Layout {
        // The replayer never asks for zero bytes: a zero-size request
        // (legal in a trace, as in C) is replayed as one byte.
        Layout::from_size_align(size.max(1), self.opts.align)
            .expect("checked by `replay` against the largest size a trace may hold")
    }

    /// Records a new block; `false` (and the error) if it overlaps a live
    /// one or is misaligned.
    fn admit(&self, op: &Op, p: *mut u8, size: usize) -> bool {
        if (p as usize) % self.opts.align != 0 {
            self.fail(
                op,
                format!(
                    "block {p:p} of {size} bytes is not aligned to {}",
                    self.opts.align
                ),
            );
            return false;
        }
        let (start, end) = (p as usize, p as usize + size.max(1));
        let mut live = self.live.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((&s, &(e, id, line))) = live.range(..end).next_back() {
            if e > start {
                drop(live);
                self.fail(
                    op,
                    format!(
                        "block {p:p} of {size} bytes overlaps the live block {:#x} of {} bytes (block {} allocated at line {line})",
                        s,
                        e - s,
                        self.trace.file_ids[id as usize]
                    ),
                );
                return false;
            }
        }
        live.insert(start, (end, op.id, op.line));
        true
    }

    fn forget(&self, p: *mut u8) {
        let mut live = self.live.lock().unwrap_or_else(|e| e.into_inner());
        live.remove(&(p as usize));
    }

    /// Checks the pattern of block `op.id` (at `p`) over `len` bytes.
    fn intact(&self, op: &Op, p: *mut u8, key: u64, len: usize, what: &str) -> bool {
        // SAFETY: `p` is the live block of `op.id`, of at least `len` bytes.
        match unsafe { check(p, key, len) } {
            None => true,
            Some(at) => {
                self.fail(
                    op,
                    format!(
                        "{what}: byte {at} of block {} ({p:p}, {len} bytes checked) changed since it was written",
                        self.trace.file_ids[op.id as usize]
                    ),
                );
                false
            }
        }
    }

    /// Runs one request; `false` on failure (recorded).
    fn run(&self, a: &mut dyn ThreadAlloc, op: &Op, key: u64) -> bool {
        let id = op.id as usize;
        let validate = self.opts.validate;
        match op.kind {
            Kind::Alloc => {
                let p = a.alloc(self.layout(op.size));
                if p.is_null() {
                    self.fail(op, format!("allocation of {} bytes failed", op.size));
                    return false;
                }
                if validate {
                    if !self.admit(op, p, op.size) {
                        return false;
                    }
                    // SAFETY: a fresh block of `op.size` bytes.
                    unsafe { fill(p, key, 0, op.size) };
                } else {
                    // SAFETY: as above.
                    unsafe { touch(p, 0, op.size) };
                }
                // Relaxed: published to other threads by the `done` store.
                self.ptrs[id].store(p, Ordering::Relaxed); // published by the `done` Release store
                                                           // Relaxed: as above.
                self.keys[id].store(key, Ordering::Relaxed); // published by the `done` Release store
            }
            Kind::Free => {
                // Relaxed: the `done` acquire (or program order) made the
                // stores of the previous request on the block visible.
                let p = self.ptrs[id].load(Ordering::Relaxed); // ordered by the `done` Acquire load
                if validate {
                    // Relaxed: as above.
                    let k = self.keys[id].load(Ordering::Relaxed); // ordered by the `done` Acquire load
                    if !self.intact(op, p, k, op.old_size, "free") {
                        return false;
                    }
                    self.forget(p);
                }
                // SAFETY: the live block of `op.id`, with its layout.
                unsafe { a.dealloc(p, self.layout(op.old_size)) };
                // Relaxed: as for the allocation's store.
                self.ptrs[id].store(core::ptr::null_mut(), Ordering::Relaxed); // published by the `done` Release store
            }
            Kind::Realloc => {
                // Relaxed: as in `Free`.
                let p = self.ptrs[id].load(Ordering::Relaxed); // ordered by the `done` Acquire load
                                                               // Relaxed: as above.
                let k = self.keys[id].load(Ordering::Relaxed); // ordered by the `done` Acquire load
                if validate {
                    if !self.intact(op, p, k, op.old_size, "realloc") {
                        return false;
                    }
                    self.forget(p);
                }
                // SAFETY: the live block of `op.id`, with its layout; the new
                // size is at least 1 and was bounded by the parser.
                let q = unsafe { a.realloc(p, self.layout(op.old_size), op.size.max(1)) };
                if q.is_null() {
                    self.fail(
                        op,
                        format!("realloc from {} to {} bytes failed", op.old_size, op.size),
                    );
                    return false;
                }
                if validate {
                    if !self.admit(op, q, op.size) {
                        return false;
                    }
                    let kept = op.old_size.min(op.size);
                    if !self.intact(op, q, k, kept, "realloc did not keep the contents") {
                        return false;
                    }
                    // SAFETY: `q` has `op.size` bytes.
                    unsafe { fill(q, k, kept, op.size) };
                } else {
                    // SAFETY: as above.
                    unsafe { touch(q, op.old_size.min(op.size), op.size) };
                }
                // Relaxed: as for the allocation's store.
                self.ptrs[id].store(q, Ordering::Relaxed); // published by the `done` Release store
            }
        }
        true
    }

    /// One replay thread's share of one pass.
    /// Returns when it started and finished (its own clock readings: the
    /// thread that spawned it may be descheduled at the start line).
    fn worker(
        &self,
        alloc: &dyn ReplayAlloc,
        mine: &[u32],
        pass: u64,
        start: &Barrier,
    ) -> (Instant, Instant) {
        // A panic (of the allocator, say) must not leave the other threads
        // waiting for this one's requests: it stops them all, and `replay`
        // passes the panic on when it joins.
        struct StopOnPanic<'a>(&'a AtomicBool);
        impl Drop for StopOnPanic<'_> {
            fn drop(&mut self) {
                if std::thread::panicking() {
                    // Relaxed: see `fail`.
                    self.0.store(true, Ordering::Relaxed); // stop eventually; pairs with nothing
                }
            }
        }
        let _stop = StopOnPanic(&self.abort);
        start.wait();
        let t0 = Instant::now();
        // After the start line: a panic here cannot strand the others there.
        let mut a = alloc.thread();
        let ops = self.trace.ops();
        for (n, &i) in mine.iter().enumerate() {
            let op = &ops[i as usize];
            if op.waits {
                let mut spins = 0u32;
                // Acquire: pairs with the Release store of the previous
                // request on the block, by another thread.
                while self.done[op.id as usize].load(Ordering::Acquire) != op.seq {
                    // Relaxed: see `fail` (stop eventually; pairs with nothing).
                    if self.abort.load(Ordering::Relaxed) {
                        return (t0, Instant::now());
                    }
                    spins += 1;
                    if spins < 64 {
                        std::hint::spin_loop();
                    } else {
                        std::thread::yield_now();
                    }
                }
            }
            // A distinct key per allocation (splitmix of pass and request).
            let key = word(pass, i as usize);
            if !self.run(&mut *a, op, key) {
                return (t0, Instant::now());
            }
            if op.signals {
                // Release: publishes this request's effects (the block's
                // address) to the thread that makes the next one.
                self.done[op.id as usize].store(op.seq + 1, Ordering::Release); // pairs with the `done` Acquire load
            }
            if n % 1024 == 1023 {
                // Relaxed: a progress counter.
                self.progress.fetch_add(1024, Ordering::Relaxed); // a progress counter; pairs with nothing
                                                                  // Relaxed: see `fail`.
                if self.abort.load(Ordering::Relaxed) {
                    // stop eventually; pairs with nothing
                    return (t0, Instant::now());
                }
            }
        }
        (t0, Instant::now())
    }
}

/// Replays `trace` against `alloc`. See the [module documentation](self).
pub fn replay(
    trace: &Trace,
    alloc: &dyn ReplayAlloc,
    opts: &Options,
) -> Result<Report, ReplayError> {
    replay_with_progress(trace, alloc, opts, |_| {})
}

/// As [`replay`], calling `progress` about every 50 ms with the fraction
/// of the requests done. The first call, with 0.0, comes when the
/// replayer's own bookkeeping is set up, before the first request: the
/// moment to read a baseline of memory use. If the replay fails, the
/// blocks live at that point are not freed (the allocator may be broken).
pub fn replay_with_progress(
    trace: &Trace,
    alloc: &dyn ReplayAlloc,
    opts: &Options,
    mut progress: impl FnMut(f64),
) -> Result<Report, ReplayError> {
    let mut opts = *opts;
    if opts.threads == 0 {
        opts.threads = trace.threads();
    }
    opts.passes = opts.passes.max(1);
    if !opts.align.is_power_of_two()
        || Layout::from_size_align(super::MAX_SIZE, opts.align).is_err()
    {
        return Err(ReplayError {
            file: trace.name().to_string(),
            line: 0,
            message: format!("alignment {} is not a power of two below 2^40", opts.align),
        });
    }
    let ids = trace.ids();
    let s = Shared {
        trace,
        opts,
        ptrs: (0..ids)
            .map(|_| AtomicPtr::new(core::ptr::null_mut()))
            .collect(),
        keys: (0..ids).map(|_| AtomicU64::new(0)).collect(),
        done: (0..ids).map(|_| AtomicU32::new(0)).collect(),
        abort: AtomicBool::new(false),
        error: Mutex::new(None),
        live: Mutex::new(BTreeMap::new()),
        progress: AtomicUsize::new(0),
    };
    let mut shares: Vec<Vec<u32>> = vec![Vec::new(); opts.threads];
    for (i, op) in trace.ops().iter().enumerate() {
        shares[op.thread as usize % opts.threads].push(i as u32);
    }
    let mut sizes = vec![0usize; ids];
    for op in trace.ops() {
        sizes[op.id as usize] = op.size;
    }
    let total = (trace.ops().len() * opts.passes).max(1);
    // Setup is done: a caller measuring memory reads its baseline now.
    progress(0.0);
    let mut elapsed = Duration::ZERO;
    let mut passes = 0;
    for pass in 0..opts.passes {
        if passes > 0 && opts.min_secs > 0.0 && elapsed.as_secs_f64() >= opts.min_secs {
            break;
        }
        passes += 1;
        for d in &s.done {
            // Relaxed: the threads of the previous pass were joined.
            d.store(0, Ordering::Relaxed); // ordered by the join
        }
        let start = Barrier::new(opts.threads + 1);
        let (t0, t1) = std::thread::scope(|sc| {
            let handles: Vec<_> = shares
                .iter()
                .map(|mine| {
                    let (s, start) = (&s, &start);
                    sc.spawn(move || s.worker(alloc, mine, pass as u64, start))
                })
                .collect();
            start.wait();
            while !handles.iter().all(|h| h.is_finished()) {
                std::thread::park_timeout(Duration::from_millis(50));
                // Relaxed: a progress counter.
                let done = pass * trace.ops().len() + s.progress.load(Ordering::Relaxed); // a progress counter; pairs with nothing
                progress(done as f64 / total as f64);
            }
            let times: Vec<(Instant, Instant)> = handles
                .into_iter()
                .map(|h| h.join().expect("a replay thread panicked"))
                .collect();
            let t0 = times
                .iter()
                .map(|t| t.0)
                .min()
                .expect("one thread at least");
            (t0, times.iter().map(|t| t.1).max().unwrap_or(t0))
        });
        // Relaxed: the threads were joined.
        s.progress.store(0, Ordering::Relaxed); // ordered by the join
        elapsed += t1.saturating_duration_since(t0);
        if let Some(e) = s.error.lock().unwrap_or_else(|e| e.into_inner()).take() {
            return Err(e);
        }
        // Free what the trace left allocated (untimed).
        let mut a = alloc.thread();
        for (id, p) in s.ptrs.iter().enumerate() {
            // Relaxed: the replay threads were joined.
            let p = p.swap(core::ptr::null_mut(), Ordering::Relaxed); // ordered by the join
            if !p.is_null() {
                s.forget(p);
                // SAFETY: a live block of this allocator, of the size of the
                // block's last request.
                unsafe { a.dealloc(p, s.layout(sizes[id])) };
            }
        }
    }
    progress(1.0);
    Ok(Report {
        ops: trace.ops().len() * passes,
        secs: elapsed.as_secs_f64(),
        threads: opts.threads,
        peak_live: trace.peak_live(),
    })
}
