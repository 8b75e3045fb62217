//! The main job of vvmalloc: the allocator, installed as this program's
//! global allocator, against the system allocator (glibc `malloc`) on
//! multi-threaded workloads.
//!
//! Each workload runs twice with the same operations, once through
//! `VvMalloc` and once through `System`, both called through the same
//! `GlobalAlloc` interface (the program's own bookkeeping always uses
//! `VvMalloc`, the global allocator). Each run is a child process of its own
//! (this program, started again with `--child`), so that one allocator's
//! retained memory does not count against the other. For each run the table
//! shows the throughput, the ratio of the two, the peak resident memory the
//! run added (`VmHWM` at the end minus `VmRSS` at the start), the peak of the
//! bytes the workload held live, and the utilization: peak live bytes / peak
//! resident growth. The statistics of the last vvmalloc run's heap follow.
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

/// The workloads, shared with `benches/alloc.rs` and the report.
#[cfg(not(loom))]
use vvmalloc_tools::workloads;

/// The demo proper (the loom build of the crate has no `VvMalloc`).
#[cfg(not(loom))]
mod demo {
    use std::io::{BufRead, BufReader, IsTerminal, Write};
    use std::process::{Command, Stdio};
    use std::thread;
    use std::time::Instant;

    use vvmalloc::VvMalloc;

    use crate::workloads::{self, allocator, status_kib, Limit, Workload};

    #[global_allocator]
    static GLOBAL: VvMalloc = VvMalloc::new();

    struct Outcome {
        secs: f64,
        ops: usize,
        peak_rss: usize,
        peak_live: usize,
    }

    /// The child: one run. Prints `p <fraction>` lines while it runs, then
    /// `r <ops> <secs> <peak rss growth> <peak live>`, then (vvmalloc) the
    /// heap's statistics as `s <line>`s.
    fn child(alloc: &str, w: Workload, threads: usize, ops: usize) {
        let base = status_kib("VmRSS:") * 1024;
        let mut out = std::io::stdout().lock();
        let a = allocator(alloc).expect("unknown allocator");
        let total = (threads * ops) as f64;
        let o = workloads::run(w, &*a, threads, Limit::Ops(ops), |done| {
            let _ = writeln!(out, "p {}", done as f64 / total);
            let _ = out.flush();
        });
        let hwm = status_kib("VmHWM:") * 1024;
        let _ = writeln!(
            out,
            "r {} {} {} {}",
            o.ops,
            o.secs,
            hwm.saturating_sub(base),
            o.peak_live
        );
        if alloc == "vvmalloc" {
            VvMalloc::trim();
            for line in heap_stats() {
                let _ = writeln!(out, "s {line}");
            }
        }
    }

    fn run(
        w: Workload,
        name: &str,
        threads: usize,
        ops: usize,
        bar: &mut Bar,
        stats: &mut Vec<String>,
    ) -> Outcome {
        let mut c = Command::new(std::env::current_exe().expect("own path"))
            .args([
                "--child",
                name,
                w.key(),
                &threads.to_string(),
                &ops.to_string(),
            ])
            .stdout(Stdio::piped())
            .spawn()
            .expect("cannot start the child");
        let mut result = None;
        let mut st = Vec::new();
        for line in BufReader::new(c.stdout.take().unwrap()).lines() {
            let line = line.expect("child output");
            match line.split_once(' ') {
                Some(("p", f)) => bar.draw(name, f.parse().unwrap_or(0.0)),
                Some(("r", r)) => {
                    let f: Vec<f64> = r.split(' ').map(|x| x.parse().unwrap()).collect();
                    result = Some(Outcome {
                        ops: f[0] as usize,
                        secs: f[1],
                        peak_rss: f[2] as usize,
                        peak_live: f[3] as usize,
                    });
                }
                Some(("s", l)) => st.push(l.to_string()),
                _ => {}
            }
        }
        let status = c.wait().expect("child");
        assert!(status.success(), "the {name} run of {} failed", w.name());
        if !st.is_empty() {
            *stats = st;
        }
        result.expect("the child printed no result")
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

    /// The process heap's statistics, as lines of text.
    fn heap_stats() -> Vec<String> {
        let st = VvMalloc::stats();
        let mut lines = Vec::new();
        lines.push(format!(
            "requested, in use : {:.1} MiB, {:.1} MiB",
            mib(st.requested_bytes),
            mib(st.in_use_bytes)
        ));
        lines.push(format!(
            "mapped, resident  : {:.1} MiB, {:.1} MiB",
            mib(st.mapped_bytes),
            mib(st.resident_bytes)
        ));
        lines.push(format!(
            "small: {:.1} MiB in use, {:.1} MiB free in pages, {} spans released so far",
            mib(st.small_in_use_bytes()),
            mib(st.small_free_bytes()),
            st.spans_released
        ));
        lines.push(format!(
            "large: {:.1} MiB in use, free index {} runs / {:.1} MiB, {} index nodes awaiting reclamation",
            mib(st.large_in_use_bytes),
            st.free_index_blocks,
            mib(st.free_index_bytes),
            st.reclaim_held_nodes
        ));
        lines.push(format!(
            "huge : {} blocks, {:.1} MiB; misuse detected: {}",
            st.huge_blocks,
            mib(st.huge_bytes),
            st.misuse
        ));
        let busiest: Vec<String> = {
            let mut cs: Vec<_> = st.small.iter().filter(|c| c.spans > 0).collect();
            cs.sort_by_key(|c| std::cmp::Reverse(c.spans));
            cs.iter()
                .take(5)
                .map(|c| format!("{} B: {} spans", c.size, c.spans))
                .collect()
        };
        lines.push(format!(
            "classes holding the most spans: {}",
            busiest.join(", ")
        ));
        lines
    }

    fn mib(b: usize) -> f64 {
        b as f64 / (1 << 20) as f64
    }

    pub(crate) fn main() {
        let args: Vec<String> = std::env::args().collect();
        if let Some(i) = args.iter().position(|a| a == "--child") {
            let w = Workload::from_key(&args[i + 2]).expect("workload");
            child(
                &args[i + 1],
                w,
                args[i + 3].parse().unwrap(),
                args[i + 4].parse().unwrap(),
            );
            return;
        }
        let quick = std::env::args().any(|a| a == "--quick");
        let scale = if quick { 10 } else { 1 };
        // `--only churn|producer|mixed` runs one workload.
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
        let allocators = ["vvmalloc", "glibc"];
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
        let mut stats = Vec::new();
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
            for name in allocators {
                outs.push(run(w, name, threads, ops, &mut bar, &mut stats));
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
            for (o, name) in outs.iter().zip(&allocators) {
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
        println!("Utilization = peak live bytes / peak growth of the run's resident memory (VmHWM - VmRSS at the start; each run in a process of its own).");
        println!();
        println!("vvmalloc's heap at the end of its last run (after trim):");
        for line in &stats {
            println!("  {line}");
        }
    }
}
