//! The reclamation study.
//!
//! 1. Read cost: read-only lookups on the list and the skip list under each
//!    scheme, against `Leak` (which protects nothing and frees nothing: the
//!    cost of a read with no reclamation at all).
//! 2. Garbage bound: two worker threads insert and remove keys at a fixed
//!    rate while a third takes a `Ref` to an entry at the start (with
//!    `Epoch` it keeps its thread pinned, with `Hazard` it holds one hazard
//!    pointer) and stalls, releasing it at 60% of the run. Every 10 ms the
//!    run samples [`held_back`]: the nodes retired and not yet freed. Each
//!    configuration runs in a child process of its own, so that no other
//!    run's garbage is counted.

use std::fmt::Write;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use vvmalloc::reclaim::{held_back, AsymHazard, Epoch, Hazard, Leak, Reclaim};
use vvmalloc::{List, SkipList};

use crate::common::targets::{list_maps, skiplist_maps, skiplist_own_maps, Map, READ_ONLY};
use crate::common::xorshift;
use crate::plot::{chart, Axes, Panel, Series};
use crate::report::{run_child, write, Cfg};
use crate::structures::{emit, maps_bench};

/// Keys the garbage runs' workers use (`1..KEYS`; key 0 is the stalled
/// thread's and is never removed).
const KEYS: u64 = 1024;
/// Removals per second, all workers together.
const RATE: f64 = 200_000.0;
const WORKERS: usize = 2;

/// A map whose entry a thread can hold.
trait Subject: Map {
    /// Takes a `Ref` to key 0 and holds it until `release` is set.
    fn stall(&self, release: &AtomicBool);
}

fn hold_until(release: &AtomicBool) {
    // Acquire: pairs with the sampler's Release store; only timing.
    while !release.load(Ordering::Acquire) {
        thread::sleep(Duration::from_millis(1));
    }
}

impl<R: Reclaim> Subject for List<u64, u64, R> {
    fn stall(&self, release: &AtomicBool) {
        let held = self.get(&0).expect("key 0 is never removed");
        hold_until(release);
        drop(held);
    }
}

impl<R: Reclaim> Subject for SkipList<u64, u64, R> {
    fn stall(&self, release: &AtomicBool) {
        let held = self.get(&0).expect("key 0 is never removed");
        hold_until(release);
        drop(held);
    }
}

/// Ties a map to its scheme, so that `study` counts that scheme's garbage.
trait HasScheme<R: Reclaim> {}
impl<R: Reclaim> HasScheme<R> for List<u64, u64, R> {}
impl<R: Reclaim> HasScheme<R> for SkipList<u64, u64, R> {}

/// One configuration: `(structure, scheme, stalled)`.
const CONFIGS: [(&str, &str, bool); 14] = [
    ("list", "epoch", false),
    ("list", "epoch", true),
    ("list", "hazard", false),
    ("list", "hazard", true),
    ("list", "asym-hazard", false),
    ("list", "asym-hazard", true),
    ("list", "leak", false),
    ("skiplist", "epoch", false),
    ("skiplist", "epoch", true),
    ("skiplist", "hazard", false),
    ("skiplist", "hazard", true),
    ("skiplist", "asym-hazard", false),
    ("skiplist", "asym-hazard", true),
    ("skiplist", "leak", false),
];

/// The child: `--garbage-child STRUCTURE SCHEME STALLED SECS`; prints
/// `g <ms> <unreclaimed nodes>` samples, then `w <removals>`.
pub(crate) fn child(args: &[String]) {
    let [structure, scheme, stalled, secs] = args else {
        panic!("usage: --garbage-child STRUCTURE SCHEME STALLED SECS");
    };
    let stalled = stalled == "true";
    let secs: f64 = secs.parse().expect("secs");
    match (structure.as_str(), scheme.as_str()) {
        ("list", "epoch") => study(List::<u64, u64, Epoch>::new(), stalled, secs),
        ("list", "hazard") => study(List::<u64, u64, Hazard>::new(), stalled, secs),
        ("list", "asym-hazard") => study(List::<u64, u64, AsymHazard>::new(), stalled, secs),
        ("list", "leak") => study(List::<u64, u64, Leak>::new(), stalled, secs),
        ("skiplist", "epoch") => study(SkipList::<u64, u64, Epoch>::new(), stalled, secs),
        ("skiplist", "hazard") => study(SkipList::<u64, u64, Hazard>::new(), stalled, secs),
        ("skiplist", "asym-hazard") => {
            study(SkipList::<u64, u64, AsymHazard>::new(), stalled, secs)
        }
        ("skiplist", "leak") => study(SkipList::<u64, u64, Leak>::new(), stalled, secs),
        _ => panic!("unknown configuration {structure} {scheme}"),
    }
}

fn study<R: Reclaim, M: Subject + HasScheme<R>>(map: M, stalled: bool, secs: f64) {
    for k in (0..KEYS).step_by(2) {
        map.insert(k);
    }
    let base = held_back::<R>();
    let stop = AtomicBool::new(false);
    let release = AtomicBool::new(false);
    let removed = AtomicU64::new(0);
    let per_worker = RATE / WORKERS as f64;
    let mut samples = Vec::new();
    thread::scope(|s| {
        if stalled {
            s.spawn(|| map.stall(&release));
            // Let it take its Ref before the others start removing.
            thread::sleep(Duration::from_millis(20));
        }
        let t0 = Instant::now();
        for w in 0..WORKERS {
            let (map, stop, removed) = (&map, &stop, &removed);
            s.spawn(move || {
                let mut r = 0x2545_F491_4F6C_DD1D ^ (w as u64 + 1);
                let mut done = 0u64;
                // Relaxed: a flag polled in a loop.
                while !stop.load(Ordering::Relaxed) {
                    for _ in 0..100 {
                        let k = 1 + xorshift(&mut r) % (KEYS - 1);
                        map.insert(k);
                        if map.remove(k) {
                            done += 1;
                        }
                    }
                    // Pace: no faster than `per_worker` removals a second.
                    let due = Duration::from_secs_f64(done as f64 / per_worker);
                    if let Some(ahead) = due.checked_sub(t0.elapsed()) {
                        thread::sleep(ahead);
                    }
                }
                // Relaxed: read after the scope joins this thread.
                removed.fetch_add(done, Ordering::Relaxed);
            });
        }
        while t0.elapsed().as_secs_f64() < secs {
            let t = t0.elapsed();
            if t.as_secs_f64() >= 0.6 * secs {
                // Release: pairs with the stalled thread's Acquire load.
                release.store(true, Ordering::Release);
            }
            samples.push((t.as_millis(), held_back::<R>().saturating_sub(base)));
            thread::sleep(Duration::from_millis(10));
        }
        // Relaxed: see the workers' loop.
        stop.store(true, Ordering::Relaxed);
        // Release: pairs with the stalled thread's Acquire load.
        release.store(true, Ordering::Release);
    });
    for (ms, n) in samples {
        println!("g {ms} {n}");
    }
    // Relaxed: the scope joined the workers.
    println!("w {}", removed.load(Ordering::Relaxed));
}

/// One configuration's samples and removals.
struct Trace {
    structure: &'static str,
    scheme: &'static str,
    stalled: bool,
    samples: Vec<(f64, f64)>,
    removed: u64,
}

fn spawn(
    structure: &str,
    scheme: &str,
    stalled: bool,
    secs: f64,
) -> Result<(Vec<(f64, f64)>, u64), String> {
    let text = run_child(&[
        "--garbage-child",
        structure,
        scheme,
        &stalled.to_string(),
        &secs.to_string(),
    ])?;
    let mut samples = Vec::new();
    let mut removed = None;
    for l in text.lines() {
        let f: Vec<&str> = l.split(' ').collect();
        match f.as_slice() {
            ["g", ms, n] => samples.push((
                ms.parse().map_err(|_| format!("bad sample {l:?}"))?,
                n.parse().map_err(|_| format!("bad sample {l:?}"))?,
            )),
            ["w", n] => removed = n.parse().ok(),
            _ => {}
        }
    }
    match removed {
        Some(r) if !samples.is_empty() => Ok((samples, r)),
        _ => Err("the child printed no samples".into()),
    }
}

/// Runs the part; returns its markdown.
pub(crate) fn run(cfg: &Cfg) -> String {
    // 1. Read cost.
    let big = if cfg.quick { 10_000 } else { 1_000_000 };
    let reads = vec![
        maps_bench(
            cfg,
            "list: read-only, 128 keys".into(),
            list_maps(128),
            READ_ONLY,
            128,
        ),
        maps_bench(
            cfg,
            format!("skiplist: read-only, {big} keys"),
            {
                // The own domains after the global ones of each scheme.
                let mut maps = skiplist_maps(big);
                maps.splice(3..3, skiplist_own_maps(big));
                maps
            },
            READ_ONLY,
            big,
        ),
    ];
    let mut md = emit(
        cfg,
        "reclamation-read",
        "Reclamation: the read cost (read-only lookups)",
        &reads,
        "leak",
    );
    // 2. Garbage bound.
    let secs = if cfg.quick { 1.0 } else { 5.0 };
    let mut traces = Vec::new();
    for (k, &(structure, scheme, stalled)) in CONFIGS.iter().enumerate() {
        match spawn(structure, scheme, stalled, secs) {
            Ok((samples, removed)) => {
                let peak = samples.iter().map(|s| s.1).fold(0.0, f64::max);
                eprintln!(
                    "[{}/{}] garbage {structure} {scheme}{}: peak {peak:.0} unreclaimed nodes, {removed} removals",
                    k + 1,
                    CONFIGS.len(),
                    if stalled { " stalled" } else { "" }
                );
                traces.push(Trace {
                    structure,
                    scheme,
                    stalled,
                    samples,
                    removed,
                });
            }
            Err(e) => {
                eprintln!("garbage {structure} {scheme} {stalled}: FAILED: {e}");
                crate::report::fail();
            }
        }
    }
    let label = |t: &Trace| {
        format!(
            "{}{}",
            t.scheme,
            if t.stalled { ", stalled guard" } else { "" }
        )
    };
    let mut csv = String::from("structure,scheme,stalled,ms,unreclaimed_nodes\n");
    for t in &traces {
        for &(ms, n) in &t.samples {
            let _ = writeln!(csv, "{},{},{},{ms},{n}", t.structure, t.scheme, t.stalled);
        }
    }
    write(cfg, "reclamation-garbage.csv", &csv);
    let panels: Vec<Panel> = ["list", "skiplist"]
        .iter()
        .map(|s| Panel {
            title: format!("{s}: unreclaimed nodes over time"),
            series: traces
                .iter()
                .filter(|t| t.structure == *s)
                .map(|t| Series {
                    name: label(t),
                    points: t.samples.clone(),
                })
                .collect(),
        })
        .collect();
    write(
        cfg,
        "reclamation-garbage.svg",
        &chart(
            &format!(
                "Garbage with a stalled guard ({WORKERS} workers removing {RATE:.0}/s; released at 60%) (report)"
            ),
            &panels,
            2,
            &Axes {
                x_label: "ms",
                y_label: "nodes (log)",
                x_log2: false,
                y_log: true,
            },
        ),
    );
    let _ = write!(
        md,
        "\n## Reclamation: garbage with a stalled guard\n\n{WORKERS} workers insert and remove keys of 1..{KEYS} at {RATE:.0} removals a second in all, for {secs} s; in the stalled runs a third thread holds a `Ref` to key 0 from the start until 60% of the run. Unreclaimed = retired and not yet freed (`reclaim::held_back`), sampled every 10 ms.\n\n| structure | scheme | stalled | removals | peak unreclaimed | mean unreclaimed before release | at the end |\n|---|---|---|---:|---:|---:|---:|\n"
    );
    for t in &traces {
        let release_ms = 0.6 * secs * 1000.0;
        let before: Vec<f64> = t
            .samples
            .iter()
            .filter(|s| s.0 < release_ms)
            .map(|s| s.1)
            .collect();
        let mean = before.iter().sum::<f64>() / before.len().max(1) as f64;
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {:.0} | {mean:.0} | {:.0} |",
            t.structure,
            t.scheme,
            if t.stalled { "yes" } else { "no" },
            t.removed,
            t.samples.iter().map(|s| s.1).fold(0.0, f64::max),
            t.samples.last().map_or(0.0, |s| s.1)
        );
    }
    md += "\nPlot: `reclamation-garbage.svg`; data: `reclamation-garbage.csv`.\n";
    md
}
