//! The allocator comparison: vvmalloc against glibc (`System`), jemalloc
//! (`tikv-jemallocator`) and mimalloc (`mimalloc` crate), each called as a
//! `GlobalAlloc` instance through the same workloads (`benches/workloads`),
//! at 1 and 2 threads (producer/consumer: 1 and 2 pairs).
//!
//! `cargo bench --bench alloc` (about 3 minutes on 2 cores); `-- --quick`
//! runs a tenth of the operations and one repetition, `-- --only churn` (or
//! `prodcons`, `mixed`, `realloc`) one workload.
//!
//! Each (workload, threads, allocator) runs in a child process of its own, so
//! that its peak resident memory (`VmHWM` minus the resident memory before
//! the run) is its own; the runs of one row are interleaved and repeated,
//! and the table shows the median throughput and the ratios to glibc and
//! mimalloc. This bench's own bookkeeping uses the system allocator (the
//! default global allocator), the same for every run. Results also go to
//! `target/alloc-bench.csv`.

#![allow(missing_docs)]

#[cfg(not(loom))]
use vvmalloc_tools::workloads;

fn main() {
    #[cfg(not(loom))]
    bench::main();
    #[cfg(loom)]
    eprintln!("the allocator bench runs on a normal build (without --cfg loom)");
}

/// The bench proper (the loom build of the crate has no `VvMalloc`).
#[cfg(not(loom))]
mod bench {
    use std::process::Command;

    use crate::workloads::{self, allocator, status_kib, Limit, Workload};

    const ALLOCATORS: [&str; 4] = ["vvmalloc", "glibc", "jemalloc", "mimalloc"];

    fn ops_per_thread(w: Workload) -> usize {
        match w {
            Workload::Churn => 10_000_000,
            Workload::ProducerConsumer => 4_000_000,
            Workload::Mixed => 1_000_000,
            Workload::ReallocGrowth => 2_000_000,
            // The report's suite (`examples/report`) runs the others.
            _ => 1_000_000,
        }
    }

    /// The child: one run, printed as `ops secs peak_rss_bytes peak_live`.
    fn child(alloc: &str, w: Workload, threads: usize, ops: usize) {
        let base = status_kib("VmRSS:") * 1024;
        let a = allocator(alloc).expect("unknown allocator");
        let o = workloads::run(w, &*a, threads, Limit::Ops(ops), |_| {});
        let hwm = status_kib("VmHWM:") * 1024;
        println!(
            "{} {} {} {}",
            o.ops,
            o.secs,
            hwm.saturating_sub(base),
            o.peak_live
        );
    }

    struct Run {
        ops_per_sec: f64,
        peak_rss: usize,
        peak_live: usize,
    }

    fn spawn(alloc: &str, w: Workload, threads: usize, ops: usize) -> Run {
        let out = Command::new(std::env::current_exe().unwrap())
            .args([
                "--child",
                alloc,
                w.key(),
                &threads.to_string(),
                &ops.to_string(),
            ])
            .output()
            .expect("cannot run the child");
        assert!(
            out.status.success(),
            "{alloc} {}: {}",
            w.key(),
            String::from_utf8_lossy(&out.stderr)
        );
        let s = String::from_utf8(out.stdout).unwrap();
        let f: Vec<f64> = s.split_whitespace().map(|x| x.parse().unwrap()).collect();
        Run {
            ops_per_sec: f[0] / f[1],
            peak_rss: f[2] as usize,
            peak_live: f[3] as usize,
        }
    }

    fn median(mut v: Vec<f64>) -> f64 {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
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
        let quick = args.iter().any(|a| a == "--quick");
        // `cargo bench` passes `--bench`; `cargo test --benches` passes nothing
        // of ours: run the quick mode then too.
        let (scale, reps) = if quick || !args.iter().any(|a| a == "--bench") {
            (10, 1)
        } else {
            (1, 3)
        };
        let mut csv = String::from(
            "workload,threads,allocator,mops_per_sec,peak_rss_bytes,peak_live_bytes\n",
        );
        // The allocators of each row, and the ones the ratios are to.
        let (allocs, baselines): (&[&str], &[usize]) = (&ALLOCATORS, &[1, 3]);
        let ratio_heads: String = baselines
            .iter()
            .map(|&b| format!(" vs {} |", allocs[b]))
            .collect();
        println!(
            "| workload | threads | allocator | Mops/s |{ratio_heads} peak RSS (MiB) | peak live (MiB) |"
        );
        println!(
            "|---|---:|---|---:|{}---:|---:|",
            "---:|".repeat(baselines.len())
        );
        // `--only churn|prodcons|mixed|realloc` runs one workload.
        let only = args
            .iter()
            .position(|a| a == "--only")
            .and_then(|i| args.get(i + 1));
        for w in Workload::ALL
            .into_iter()
            .filter(|w| only.is_none_or(|o| o == w.key()))
        {
            let thread_counts: &[usize] = if w == Workload::ProducerConsumer {
                &[2, 4]
            } else {
                &[1, 2]
            };
            for &threads in thread_counts {
                let ops = ops_per_thread(w) / scale;
                let mut runs: Vec<Vec<Run>> = allocs.iter().map(|_| Vec::new()).collect();
                for _ in 0..reps {
                    for (k, a) in allocs.iter().enumerate() {
                        eprintln!("running {} x{threads} with {a}", w.key());
                        runs[k].push(spawn(a, w, threads, ops));
                    }
                }
                let thr: Vec<f64> = runs
                    .iter()
                    .map(|r| median(r.iter().map(|x| x.ops_per_sec).collect()))
                    .collect();
                for (k, a) in allocs.iter().enumerate() {
                    let rss = median(runs[k].iter().map(|x| x.peak_rss as f64).collect());
                    let live = median(runs[k].iter().map(|x| x.peak_live as f64).collect());
                    let ratios: String = baselines
                        .iter()
                        .map(|&b| format!(" {:.2}x |", thr[k] / thr[b]))
                        .collect();
                    println!(
                        "| {} | {} | {} | {:.1} |{ratios} {:.1} | {:.1} |",
                        w.name(),
                        if w == Workload::ProducerConsumer {
                            format!("{threads} ({} pairs)", threads / 2)
                        } else {
                            threads.to_string()
                        },
                        a,
                        thr[k] / 1e6,
                        rss / 1048576.0,
                        live / 1048576.0
                    );
                    csv += &format!(
                        "{},{threads},{a},{:.3},{rss},{live}\n",
                        w.key(),
                        thr[k] / 1e6
                    );
                }
            }
        }
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/alloc-bench.csv");
        if std::fs::write(&path, csv).is_ok() {
            eprintln!("wrote {}", path.display());
        }
    }
}
