//! The structure part: the Treiber stack, the list and the skip list under
//! each reclamation scheme against their peers, throughput per thread
//! count (the median of `--reps` runs). The targets are the criterion
//! benches' (`benches/common/targets.rs`).

use std::fmt::Write;
use std::hint::black_box;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use crate::common::targets::{
    self, list_maps, pools, skiplist_maps, Map, Mix, Pool, MIXED, READ_MOSTLY, WRITE_HEAVY,
};
use crate::common::xorshift;
use crate::plot::{chart, Axes, Panel, Series};
use crate::report::{median, write, Cfg};

/// Runs `body(t, stop)` on `threads` threads for `secs`; each returns the
/// operations it did. Returns millions of operations per second.
pub(crate) fn timed(
    threads: usize,
    secs: f64,
    body: &(dyn Fn(usize, &AtomicBool) -> u64 + Sync),
) -> f64 {
    let stop = AtomicBool::new(false);
    let barrier = Barrier::new(threads + 1);
    thread::scope(|s| {
        let hs: Vec<_> = (0..threads)
            .map(|t| {
                let (stop, barrier) = (&stop, &barrier);
                s.spawn(move || {
                    barrier.wait();
                    body(t, stop)
                })
            })
            .collect();
        barrier.wait();
        let t0 = Instant::now();
        thread::sleep(Duration::from_secs_f64(secs));
        // Relaxed: polled by the workers; the joins synchronise.
        stop.store(true, Ordering::Relaxed);
        let ops: u64 = hs.into_iter().map(|h| h.join().unwrap()).sum();
        ops as f64 / t0.elapsed().as_secs_f64() / 1e6
    })
}

/// The median of `cfg.reps` runs of [`timed`].
pub(crate) fn median_of(
    cfg: &Cfg,
    threads: usize,
    body: &(dyn Fn(usize, &AtomicBool) -> u64 + Sync),
) -> f64 {
    median(
        (0..cfg.reps)
            .map(|_| timed(threads, cfg.secs, body))
            .collect(),
    )
}

/// Operations between two looks at the stop flag.
const CHUNK: u64 = 64;

fn pool_loop(pool: &dyn Pool, stop: &AtomicBool) -> u64 {
    let mut n = 0;
    // Relaxed: see `timed`.
    while !stop.load(Ordering::Relaxed) {
        for i in 0..CHUNK {
            pool.put(i);
            black_box(pool.take());
        }
        n += CHUNK;
    }
    n
}

pub(crate) fn map_loop(map: &dyn Map, mix: Mix, keys: u64, t: usize, stop: &AtomicBool) -> u64 {
    let mut s = 0x9E37_79B9_7F4A_7C15 ^ (t as u64 + 1);
    let mut n = 0;
    // Relaxed: see `timed`.
    while !stop.load(Ordering::Relaxed) {
        for _ in 0..CHUNK {
            black_box(targets::op(map, mix, xorshift(&mut s), keys));
        }
        n += CHUNK;
    }
    n
}

/// One benchmark: a title and its implementations' results per thread
/// count.
pub(crate) struct Bench {
    pub(crate) title: String,
    pub(crate) results: Vec<(String, Vec<(usize, f64)>)>,
}

/// Runs `mix` on every map of `maps` at each thread count.
pub(crate) fn maps_bench(
    cfg: &Cfg,
    title: String,
    maps: Vec<(&'static str, Arc<dyn Map>)>,
    mix: Mix,
    keys: u64,
) -> Bench {
    let mut results = Vec::new();
    for (name, map) in maps {
        let mut pts = Vec::new();
        for &t in &cfg.threads {
            let mops = median_of(cfg, t, &|t, stop| map_loop(&*map, mix, keys, t, stop));
            eprintln!("{title} x{t} {name}: {mops:.2} Mops/s");
            pts.push((t, mops));
        }
        results.push((name.to_string(), pts));
    }
    Bench { title, results }
}

/// The CSV rows, markdown tables and plot of `benches`.
pub(crate) fn emit(
    cfg: &Cfg,
    file: &str,
    heading: &str,
    benches: &[Bench],
    baseline: &str,
) -> String {
    let mut csv = String::from("benchmark,implementation,threads,mops_per_sec\n");
    let mut md = format!("\n## {heading}\n");
    for b in benches {
        let _ = write!(
            md,
            "\n{}, Mops/s{}:\n\n| implementation |{}\n|---|{}\n",
            b.title,
            if baseline.is_empty() {
                String::new()
            } else {
                format!(" (ratio to {baseline})")
            },
            cfg.threads
                .iter()
                .map(|t| format!(" {t} thread(s) |"))
                .collect::<String>(),
            "---:|".repeat(cfg.threads.len())
        );
        let base = b
            .results
            .iter()
            .find(|(n, _)| n.ends_with(baseline) && !baseline.is_empty());
        for (name, pts) in &b.results {
            let _ = write!(md, "| {name} |");
            for &(t, mops) in pts {
                let _ = writeln!(csv, "{},{name},{t},{mops:.4}", b.title);
                let ratio = base
                    .and_then(|(_, bp)| bp.iter().find(|p| p.0 == t))
                    .map_or(String::new(), |p| format!(" ({:.2}x)", mops / p.1));
                let _ = write!(md, " {mops:.2}{ratio} |");
            }
            md += "\n";
        }
    }
    write(cfg, &format!("{file}.csv"), &csv);
    let panels: Vec<Panel> = benches
        .iter()
        .map(|b| Panel {
            title: b.title.clone(),
            series: b
                .results
                .iter()
                .map(|(n, pts)| Series {
                    name: n.clone(),
                    points: pts.iter().map(|&(t, m)| (t as f64, m)).collect(),
                })
                .collect(),
        })
        .collect();
    write(
        cfg,
        &format!("{file}.svg"),
        &chart(
            &format!("{heading} (report)"),
            &panels,
            2,
            &Axes {
                x_label: "threads",
                y_label: "Mops/s",
                x_log2: true,
                y_log: false,
            },
        ),
    );
    let _ = write!(md, "\nPlot: `{file}.svg`; data: `{file}.csv`.\n");
    md
}

/// Runs the part; returns its markdown.
pub(crate) fn run(cfg: &Cfg) -> String {
    let mut benches = Vec::new();
    // The stack: one push and one pop per operation.
    let mut results = Vec::new();
    for (name, pool) in pools() {
        let mut pts = Vec::new();
        for &t in &cfg.threads {
            let mops = median_of(cfg, t, &|_, stop| pool_loop(&*pool, stop));
            eprintln!("stack push+pop x{t} {name}: {mops:.2} Mops/s");
            pts.push((t, mops));
        }
        results.push((name.to_string(), pts));
    }
    benches.push(Bench {
        title: "stack: push+pop pairs".into(),
        results,
    });
    benches.push(maps_bench(
        cfg,
        "list: mixed 50/25/25, 128 keys".into(),
        list_maps(128),
        MIXED,
        128,
    ));
    let big = if cfg.quick { 10_000 } else { 1_000_000 };
    for (mix, keys) in [(READ_MOSTLY, big), (MIXED, 1_000), (WRITE_HEAVY, big)] {
        benches.push(maps_bench(
            cfg,
            format!(
                "skiplist: {} {}/{}/{}, {keys} keys",
                mix.name,
                mix.get,
                mix.insert,
                100 - mix.get - mix.insert
            ),
            skiplist_maps(keys),
            mix,
            keys,
        ));
    }
    emit(cfg, "structures", "Structures", &benches, "")
}
