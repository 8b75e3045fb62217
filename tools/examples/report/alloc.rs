//! The allocator part: every (workload, threads, allocator) in a child
//! process of its own, repeated and interleaved; medians kept.

use std::fmt::Write;
use std::time::Duration;

use crate::plot::{chart, Axes, Panel, Series};
use crate::report::{median, run_child, write, Cfg};
use crate::workloads::{self, allocator, status_kib, Limit, Workload};

/// The child: `--child ALLOC WORKLOAD THREADS SECS`; prints
/// `r <ops> <secs> <peak rss growth> <peak live>`.
pub(crate) fn child(args: &[String]) {
    let [alloc, w, threads, secs] = args else {
        panic!("usage: --child ALLOC WORKLOAD THREADS SECS");
    };
    let a = allocator(alloc).expect("unknown allocator");
    let w = Workload::from_key(w).expect("unknown workload");
    let threads: usize = threads.parse().expect("threads");
    let secs: f64 = secs.parse().expect("secs");
    let base = status_kib("VmRSS:") * 1024;
    let o = workloads::run(
        w,
        &*a,
        threads,
        Limit::Time(Duration::from_secs_f64(secs)),
        |_| {},
    );
    let hwm = status_kib("VmHWM:") * 1024;
    println!(
        "r {} {} {} {}",
        o.ops,
        o.secs,
        hwm.saturating_sub(base),
        o.peak_live
    );
}

/// One run's result.
#[derive(Clone, Copy)]
struct Run {
    mops: f64,
    rss: f64,
    live: f64,
}

fn spawn(alloc: &str, w: Workload, threads: usize, secs: f64) -> Result<Run, String> {
    let text = run_child(&[
        "--child",
        alloc,
        w.key(),
        &threads.to_string(),
        &secs.to_string(),
    ])?;
    let l = text
        .lines()
        .find_map(|l| l.strip_prefix("r "))
        .ok_or("the child printed no result")?;
    let f: Vec<f64> = l.split(' ').filter_map(|x| x.parse().ok()).collect();
    if f.len() != 4 {
        return Err(format!("bad child output {l:?}"));
    }
    Ok(Run {
        mops: f[0] / f[1] / 1e6,
        rss: f[2],
        live: f[3],
    })
}

/// One row of the results.
struct Row {
    w: Workload,
    threads: usize,
    alloc: String,
    run: Run,
}

fn mib(b: f64) -> f64 {
    b / 1048576.0
}

/// Runs the part; returns its markdown.
pub(crate) fn run(cfg: &Cfg) -> String {
    let total = cfg.workloads.len() * cfg.threads.len() * cfg.reps * cfg.allocs.len();
    let mut k = 0;
    let mut rows: Vec<Row> = Vec::new();
    let mut failures = Vec::new();
    for &w in &cfg.workloads {
        for &t in &cfg.threads {
            let mut runs: Vec<Vec<Run>> = vec![Vec::new(); cfg.allocs.len()];
            for _ in 0..cfg.reps {
                for (i, a) in cfg.allocs.iter().enumerate() {
                    k += 1;
                    match spawn(a, w, t, cfg.secs) {
                        Ok(r) => {
                            eprintln!(
                                "[{k}/{total}] {} x{t} {a}: {:.2} Mops/s, peak RSS {:.1} MiB",
                                w.key(),
                                r.mops,
                                mib(r.rss)
                            );
                            runs[i].push(r);
                        }
                        Err(e) => {
                            eprintln!("[{k}/{total}] {} x{t} {a}: FAILED: {e}", w.key());
                            failures.push(format!("{} x{t} {a}: {e}", w.key()));
                            crate::report::fail();
                        }
                    }
                }
            }
            for (i, a) in cfg.allocs.iter().enumerate() {
                if runs[i].is_empty() {
                    continue;
                }
                let pick = |f: fn(&Run) -> f64| median(runs[i].iter().map(f).collect());
                rows.push(Row {
                    w,
                    threads: t,
                    alloc: a.clone(),
                    run: Run {
                        mops: pick(|r| r.mops),
                        rss: pick(|r| r.rss),
                        live: pick(|r| r.live),
                    },
                });
            }
        }
    }
    let glibc = |r: &Row| {
        rows.iter()
            .find(|g| g.w == r.w && g.threads == r.threads && g.alloc == "glibc")
            .map(|g| r.run.mops / g.run.mops)
    };
    let mut csv = String::from(
        "workload,threads,allocator,mops_per_sec,vs_glibc,peak_rss_bytes,peak_live_bytes\n",
    );
    for r in &rows {
        let _ = writeln!(
            csv,
            "{},{},{},{:.4},{},{:.0},{:.0}",
            r.w.key(),
            r.threads,
            r.alloc,
            r.run.mops,
            glibc(r).map_or(String::new(), |x| format!("{x:.3}")),
            r.run.rss,
            r.run.live
        );
    }
    write(cfg, "alloc.csv", &csv);
    let panels = |f: fn(&Run) -> f64| -> Vec<Panel> {
        cfg.workloads
            .iter()
            .map(|&w| Panel {
                title: w.key().to_string(),
                series: cfg
                    .allocs
                    .iter()
                    .map(|a| Series {
                        name: a.clone(),
                        points: rows
                            .iter()
                            .filter(|r| r.w == w && r.alloc == *a)
                            .map(|r| (r.threads as f64, f(&r.run)))
                            .collect(),
                    })
                    .collect(),
            })
            .collect()
    };
    write(
        cfg,
        "alloc-throughput.svg",
        &chart(
            "Allocator workloads: throughput by thread count (report)",
            &panels(|r| r.mops),
            3,
            &Axes {
                x_label: "threads",
                y_label: "Mops/s",
                x_log2: true,
                y_log: false,
            },
        ),
    );
    write(
        cfg,
        "alloc-rss.svg",
        &chart(
            "Allocator workloads: peak RSS growth by thread count (report)",
            &panels(|r| mib(r.rss)),
            3,
            &Axes {
                x_label: "threads",
                y_label: "MiB",
                x_log2: true,
                y_log: false,
            },
        ),
    );
    // The markdown: throughput (ratio to glibc) at each thread count, then
    // memory at the highest.
    let mut md = String::from("\n## Allocator workloads\n");
    for &t in &cfg.threads {
        let _ =
            write!(
            md,
            "\nThroughput at {t} thread(s), Mops/s (ratio to glibc):\n\n| workload |{}\n|---|{}\n",
            cfg.allocs.iter().map(|a| format!(" {a} |")).collect::<String>(),
            "---:|".repeat(cfg.allocs.len())
        );
        for &w in &cfg.workloads {
            let _ = write!(md, "| {} |", w.key());
            for a in &cfg.allocs {
                match rows
                    .iter()
                    .find(|r| r.w == w && r.threads == t && r.alloc == *a)
                {
                    Some(r) => {
                        let _ = write!(
                            md,
                            " {:.2} ({}) |",
                            r.run.mops,
                            glibc(r).map_or("-".into(), |x| format!("{x:.2}x"))
                        );
                    }
                    None => md += " failed |",
                }
            }
            md += "\n";
        }
    }
    if cfg.workloads.contains(&Workload::Pair) {
        let _ = write!(
            md,
            "\nThe fast path alone (`pair`: a 32-byte malloc/free pair, over and over), ns per pair per thread:\n\n| threads |{}\n|---|{}\n",
            cfg.allocs.iter().map(|a| format!(" {a} |")).collect::<String>(),
            "---:|".repeat(cfg.allocs.len())
        );
        for &t in &cfg.threads {
            let _ = write!(md, "| {t} |");
            for a in &cfg.allocs {
                match rows
                    .iter()
                    .find(|r| r.w == Workload::Pair && r.threads == t && r.alloc == *a)
                {
                    Some(r) => {
                        let _ = write!(md, " {:.1} |", 1e3 * t as f64 / r.run.mops);
                    }
                    None => md += " failed |",
                }
            }
            md += "\n";
        }
    }
    let top = *cfg.threads.iter().max().unwrap_or(&1);
    let _ = write!(
        md,
        "\nPeak RSS growth at {top} thread(s), MiB (the workload's peak live MiB in the first column):\n\n| workload | live |{}\n|---|---:|{}\n",
        cfg.allocs.iter().map(|a| format!(" {a} |")).collect::<String>(),
        "---:|".repeat(cfg.allocs.len())
    );
    for &w in &cfg.workloads {
        let live = rows
            .iter()
            .filter(|r| r.w == w && r.threads == top)
            .map(|r| r.run.live)
            .fold(0.0, f64::max);
        let _ = write!(md, "| {} | {:.1} |", w.key(), mib(live));
        for a in &cfg.allocs {
            match rows
                .iter()
                .find(|r| r.w == w && r.threads == top && r.alloc == *a)
            {
                Some(r) => {
                    let _ = write!(md, " {:.1} |", mib(r.run.rss));
                }
                None => md += " failed |",
            }
        }
        md += "\n";
    }
    md += "\nPlots: `alloc-throughput.svg`, `alloc-rss.svg`; data: `alloc.csv`.\n";
    if !failures.is_empty() {
        md += "\nFailed runs:\n\n";
        for f in &failures {
            let _ = writeln!(md, "- {f}");
        }
    }
    md
}
