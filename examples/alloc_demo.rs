//! The main job of vvmalloc: the allocator, installed as this program's
//! global allocator, against the system allocator (glibc `malloc`) on
//! multi-threaded workloads.
//!
//! Each workload runs twice with the same operations, once through
//! `VvMalloc` and once through `System`, both called through the same
//! `GlobalAlloc` interface (the program's own bookkeeping always uses
//! `VvMalloc`, the global allocator). For each run the table shows the
//! throughput, the ratio of the two, the peak resident memory the run added
//! (sampled from `/proc/self/statm`), the peak of the bytes the workload held
//! live, and the utilization: peak live bytes / peak resident growth. The
//! process heap's statistics follow.
//!
//! `cargo run --release --example alloc_demo` (about 30 seconds on 2 cores);
//! `-- --quick` runs a tenth of the operations; `-- --only mixed` (or
//! `small`, `producer`) runs one workload.

fn main() {
    #[cfg(not(loom))]
    demo::main();
    #[cfg(loom)]
    eprintln!("alloc_demo runs on a normal build (without --cfg loom)");
}

/// The demo proper (the loom build of the crate has no `VvMalloc`).
#[cfg(not(loom))]
mod demo {
    use std::alloc::{GlobalAlloc, Layout, System};
    use std::io::{IsTerminal, Write};
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::Barrier;
    use std::thread;
    use std::time::{Duration, Instant};

    use crossbeam_queue::ArrayQueue;
    use vvmalloc::VvMalloc;

    #[global_allocator]
    static GLOBAL: VvMalloc = VvMalloc::new();

    /// Progress of the running workload, in operations.
    static DONE: AtomicUsize = AtomicUsize::new(0);
    /// Bytes the workload holds live, updated in batches; and its peak.
    static LIVE: AtomicUsize = AtomicUsize::new(0);
    static PEAK_LIVE: AtomicUsize = AtomicUsize::new(0);

    /// A thread's view of the shared counters, flushed every few operations so
    /// that the counting does not dominate what is measured.
    struct Counter {
        ops: usize,
        live: isize,
    }

    impl Counter {
        fn new() -> Self {
            Self { ops: 0, live: 0 }
        }

        #[inline]
        fn op(&mut self, live_delta: isize) {
            self.ops += 1;
            self.live += live_delta;
            if self.ops == 1024 {
                self.flush();
            }
        }

        fn flush(&mut self) {
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
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }

        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
    }

    /// Writes one byte per page of the block (and its last byte), as a program
    /// using the memory would, so that resident memory means something.
    fn touch(p: *mut u8, size: usize) {
        for off in (0..size).step_by(4096) {
            // SAFETY: `p` is a live block of `size` bytes.
            unsafe { p.add(off).write(1) };
        }
        // SAFETY: as above.
        unsafe { p.add(size - 1).write(2) };
    }

    /// Small-object churn: each thread holds up to 16384 blocks of 16–512 bytes
    /// and frees or allocates one at random.
    fn churn(a: &dyn GlobalAlloc, seed: u64, ops: usize) {
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
    fn producer(a: &dyn GlobalAlloc, q: &ArrayQueue<(usize, usize)>, seed: u64, ops: usize) {
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

    fn consumer(a: &dyn GlobalAlloc, q: &ArrayQueue<(usize, usize)>, done: &AtomicBool) {
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
    fn mixed(a: &dyn GlobalAlloc, seed: u64, ops: usize) {
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
    enum Workload {
        Churn,
        ProducerConsumer,
        Mixed,
    }

    impl Workload {
        fn name(self) -> &'static str {
            match self {
                Workload::Churn => "small-object churn",
                Workload::ProducerConsumer => "producer/consumer",
                Workload::Mixed => "mixed sizes + large",
            }
        }
    }

    struct Outcome {
        secs: f64,
        ops: usize,
        peak_rss: usize,
        peak_live: usize,
    }

    fn rss() -> usize {
        std::fs::read_to_string("/proc/self/statm")
            .ok()
            .and_then(|s| s.split_whitespace().nth(1)?.parse::<usize>().ok())
            .map_or(0, |pages| pages * 4096)
    }

    /// Gives both allocators' free memory back, so that each run starts from
    /// the same resident baseline.
    fn settle() {
        VvMalloc::trim();
        // SAFETY: malloc_trim has no preconditions.
        unsafe { libc::malloc_trim(0) };
    }

    fn run(
        w: Workload,
        a: &'static (dyn GlobalAlloc + Sync),
        name: &str,
        threads: usize,
        ops: usize,
        bar: &mut Bar,
    ) -> Outcome {
        settle();
        DONE.store(0, Ordering::SeqCst);
        LIVE.store(0, Ordering::SeqCst);
        PEAK_LIVE.store(0, Ordering::SeqCst);
        let base = rss();
        let total = threads * ops;
        let start_line = Barrier::new(threads + 1);
        let queues: Vec<ArrayQueue<(usize, usize)>> =
            (0..threads / 2).map(|_| ArrayQueue::new(16384)).collect();
        let mut peak = base;
        let mut secs = 0.0;
        let producers_done: Vec<AtomicBool> =
            (0..threads / 2).map(|_| AtomicBool::new(false)).collect();
        let producers_done = &producers_done;
        thread::scope(|s| {
            let mut hs = Vec::new();
            for t in 0..threads {
                let (start_line, queues) = (&start_line, &queues);
                hs.push(s.spawn(move || {
                    start_line.wait();
                    let seed = 0x9e37_79b9_7f4a_7c15 ^ ((t as u64 + 1) * 0x1234_5678);
                    match w {
                        Workload::Churn => churn(a, seed, ops),
                        Workload::Mixed => mixed(a, seed, ops),
                        Workload::ProducerConsumer if t % 2 == 0 => {
                            producer(a, &queues[t / 2], seed, ops);
                            producers_done[t / 2].store(true, Ordering::Release);
                        }
                        Workload::ProducerConsumer => {
                            consumer(a, &queues[t / 2], &producers_done[t / 2])
                        }
                    }
                }));
            }
            start_line.wait();
            let t0 = Instant::now();
            while !hs.iter().all(|h| h.is_finished()) {
                thread::sleep(Duration::from_millis(20));
                peak = peak.max(rss());
                bar.draw(name, DONE.load(Ordering::Relaxed) as f64 / total as f64);
            }
            secs = t0.elapsed().as_secs_f64();
            for h in hs {
                h.join().unwrap();
            }
        });
        peak = peak.max(rss());
        Outcome {
            secs,
            ops: DONE.load(Ordering::SeqCst),
            peak_rss: peak.saturating_sub(base),
            peak_live: PEAK_LIVE.load(Ordering::SeqCst),
        }
    }

    /// A one-line progress bar on stderr.
    struct Bar {
        workload: String,
        step: usize,
        steps: usize,
        /// Redraw in place on a terminal; otherwise one line per run.
        tty: bool,
        last: String,
    }

    impl Bar {
        fn draw(&mut self, what: &str, frac: f64) {
            if !self.tty {
                let line = format!("running {} with {what}", self.workload);
                if line != self.last {
                    eprintln!("[{}/{}] {line}", self.step + 1, self.steps);
                    self.last = line;
                }
                return;
            }
            let overall = (self.step as f64 + frac.min(1.0)) / self.steps as f64;
            let width = 30;
            let filled = (overall * width as f64) as usize;
            eprint!(
                "\r[{}{}] {:>3.0}%  {:<22} {:<9}",
                "#".repeat(filled),
                " ".repeat(width - filled),
                overall * 100.0,
                self.workload,
                what
            );
            let _ = std::io::stderr().flush();
        }
    }

    fn mib(b: usize) -> f64 {
        b as f64 / (1 << 20) as f64
    }

    pub(crate) fn main() {
        let quick = std::env::args().any(|a| a == "--quick");
        let scale = if quick { 10 } else { 1 };
        // `--only churn|producer|mixed` runs one workload.
        let args: Vec<String> = std::env::args().collect();
        let only = args
            .iter()
            .position(|a| a == "--only")
            .and_then(|i| args.get(i + 1))
            .cloned();
        let threads = thread::available_parallelism()
            .map_or(2, |n| n.get())
            .clamp(2, 8)
            & !1;
        let plan = [
            (Workload::Churn, 20_000_000 / scale),
            (Workload::ProducerConsumer, 10_000_000 / scale),
            (Workload::Mixed, 2_000_000 / scale),
        ];
        static VV: VvMalloc = VvMalloc::new();
        let allocators: [(&str, &'static (dyn GlobalAlloc + Sync)); 2] =
            [("vvmalloc", &VV), ("glibc", &System)];
        println!(
            "vvmalloc alloc_demo: {threads} threads; the same seeded operations for each allocator{}",
            if quick {
                " (--quick: a tenth of them)"
            } else {
                ""
            }
        );
        let mut bar = Bar {
            workload: String::new(),
            step: 0,
            steps: plan.len() * allocators.len(),
            tty: std::io::stderr().is_terminal(),
            last: String::new(),
        };
        let mut rows = Vec::new();
        let t0 = Instant::now();
        let plan: Vec<_> = plan
            .into_iter()
            .filter(|(w, _)| {
                only.as_ref()
                    .is_none_or(|o| w.name().starts_with(o.as_str()))
            })
            .collect();
        bar.steps = plan.len() * allocators.len();
        for &(w, ops) in &plan {
            bar.workload = w.name().to_string();
            let mut outs = Vec::new();
            for &(name, a) in &allocators {
                outs.push(run(w, a, name, threads, ops, &mut bar));
                bar.step += 1;
            }
            rows.push((w, outs));
        }
        if bar.tty {
            eprint!("\r{:<80}\r", "");
        }
        eprintln!("done in {:.1} s", t0.elapsed().as_secs_f64());
        println!();
        println!(
            "| workload | allocator | Mops/s | vs glibc | peak RSS growth (MiB) | peak live (MiB) | utilization |"
        );
        println!("|---|---|---:|---:|---:|---:|---:|");
        for (w, outs) in &rows {
            let glibc = outs[1].ops as f64 / outs[1].secs;
            for (o, (name, _)) in outs.iter().zip(&allocators) {
                let thr = o.ops as f64 / o.secs;
                println!(
                    "| {} | {} | {:.1} | {:.2}x | {:.1} | {:.1} | {} |",
                    w.name(),
                    name,
                    thr / 1e6,
                    thr / glibc,
                    mib(o.peak_rss),
                    mib(o.peak_live),
                    if o.peak_rss > 0 {
                        format!("{:.0}%", 100.0 * o.peak_live as f64 / o.peak_rss as f64)
                    } else {
                        "-".to_string()
                    }
                );
            }
        }
        println!();
        println!("Utilization = peak live bytes / peak growth of the process's resident memory during the run.");
        let st = VvMalloc::stats();
        println!();
        println!("vvmalloc process heap at the end (after trim):");
        println!(
            "  requested, in use : {:.1} MiB, {:.1} MiB",
            mib(st.requested_bytes),
            mib(st.in_use_bytes)
        );
        println!(
            "  mapped, resident  : {:.1} MiB, {:.1} MiB",
            mib(st.mapped_bytes),
            mib(st.resident_bytes)
        );
        println!(
            "  small: {:.1} MiB in use, {:.1} MiB free in central heaps, {} spans released so far",
            mib(st.small_in_use_bytes()),
            mib(st.small_free_bytes()),
            st.spans_released
        );
        println!(
            "  large: {:.1} MiB in use, free index {} runs / {:.1} MiB",
            mib(st.large_in_use_bytes),
            st.free_index_blocks,
            mib(st.free_index_bytes)
        );
        println!(
            "  huge : {} blocks, {:.1} MiB; misuse detected: {}",
            st.huge_blocks,
            mib(st.huge_bytes),
            st.misuse
        );
        let busiest: Vec<String> = {
            let mut cs: Vec<_> = st.small.iter().filter(|c| c.spans > 0).collect();
            cs.sort_by_key(|c| std::cmp::Reverse(c.spans));
            cs.iter()
                .take(5)
                .map(|c| format!("{} B: {} spans", c.size, c.spans))
                .collect()
        };
        println!("  classes holding the most spans: {}", busiest.join(", "));
    }
}
