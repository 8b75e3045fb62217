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
//! `small`, `producer`, `realloc`) runs one workload.

fn main() {
    #[cfg(not(loom))]
    demo::main();
    #[cfg(loom)]
    eprintln!("alloc_demo runs on a normal build (without --cfg loom)");
}

/// The workloads, shared with `benches/alloc.rs`.
#[cfg(not(loom))]
#[path = "../benches/workloads/mod.rs"]
mod workloads;

/// The demo proper (the loom build of the crate has no `VvMalloc`).
#[cfg(not(loom))]
mod demo {
    use std::alloc::{GlobalAlloc, System};
    use std::io::{IsTerminal, Write};
    use std::thread;
    use std::time::Instant;

    use vvmalloc::VvMalloc;

    use crate::workloads::{self, rss, Workload};

    #[global_allocator]
    static GLOBAL: VvMalloc = VvMalloc::new();

    struct Outcome {
        secs: f64,
        ops: usize,
        peak_rss: usize,
        peak_live: usize,
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
        let base = rss();
        let mut peak = base;
        let o = workloads::run(w, a, threads, ops, |frac| {
            peak = peak.max(rss());
            bar.draw(name, frac);
        });
        peak = peak.max(rss());
        Outcome {
            secs: o.secs,
            ops: o.ops,
            peak_rss: peak.saturating_sub(base),
            peak_live: o.peak_live,
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
            (Workload::ReallocGrowth, 3_000_000 / scale),
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
            "  large: {:.1} MiB in use, free index {} runs / {:.1} MiB, {} index nodes awaiting reclamation",
            mib(st.large_in_use_bytes),
            st.free_index_blocks,
            mib(st.free_index_bytes),
            st.reclaim_held_nodes
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
