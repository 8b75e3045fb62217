//! The benchmark report: one command that runs the project's measurement
//! suite and writes CSV, SVG plots and markdown tables into a results
//! folder.
//!
//! ```sh
//! cargo run --release --example report -- --quick          # < 5 min on 2 cores
//! cargo run --release --example report -- --out docs/results  # the docs' numbers
//! cargo run --release --example report -- --help
//! ```
//!
//! Four parts:
//!
//! 1. **alloc**: the allocator suite (`benches/workloads`: larson, xmalloc,
//!    cache-scratch, cache-thrash, threadtest, churn, sh6bench-like, realloc
//!    growth, large-block fragmentation) against vvmalloc (its process heap
//!    and `Heap` instances with each free index and reclamation scheme),
//!    glibc, jemalloc, mimalloc and snmalloc, at each thread count. Every run is a
//!    child process of its own, so that its peak resident memory is its
//!    own. Throughput, peak RSS growth and the workload's peak live bytes.
//! 2. **c**: the small-object workloads as a C program
//!    (`tools/benches/c/workloads.c`) under glibc and each preloadable allocator
//!    found (`LD_PRELOAD`: `libvvmalloc.so`, Debian's jemalloc, mimalloc,
//!    tcmalloc): the C front door. Builds the program with `cc` and the
//!    library with `cargo build --release -p vvmalloc-preload`.
//! 3. **structures**: the Treiber stack, the list and the skip list under
//!    each reclamation scheme against their peers (`tools/src/bench/targets.rs`,
//!    the same targets as the criterion benches), throughput per thread
//!    count.
//! 4. **reclamation**: the read cost of each scheme (read-only lookups,
//!    against the `Leak` scheme that protects nothing), and the garbage
//!    bound: a thread stalls holding a `Ref` (a pinned epoch, or a hazard
//!    pointer) while others remove at a fixed rate; unreclaimed nodes over
//!    time, per scheme.

fn main() {
    #[cfg(not(loom))]
    report::main();
    #[cfg(loom)]
    eprintln!("the report runs on a normal build (without --cfg loom)");
}

#[cfg(not(loom))]
use vvmalloc_tools::bench as common;
#[cfg(not(loom))]
use vvmalloc_tools::workloads;

#[cfg(not(loom))]
mod alloc;
#[cfg(not(loom))]
mod c_front;
#[cfg(not(loom))]
mod plot;
#[cfg(not(loom))]
mod reclamation;
#[cfg(not(loom))]
mod structures;

#[cfg(not(loom))]
mod report {
    use std::path::PathBuf;
    use std::process::exit;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::Instant;

    use crate::workloads::{Workload, ALLOCATORS};

    const HELP: &str = "\
report: run the benchmark suite and write CSV, SVG and markdown tables.

USAGE:
    report [OPTIONS]

OPTIONS:
        --quick            short runs (0.25 s each, one repetition, 1 and 2
                           threads): the whole report in under 5 minutes
                           on 2 cores
        --out DIR          the results folder [default: results]
        --parts LIST       alloc,c,structures,reclamation [default: all]
    -t, --threads LIST     thread counts [default: 1,2,4,... up to the
                           number of CPUs; --quick: 1,2]
        --secs S           seconds per run [default: 1; --quick: 0.25]
        --reps N           repetitions of each allocator run (the median
                           is kept) [default: 3; --quick: 1]
    -a, --alloc LIST       allocators [default: all]: vvmalloc,
                           vv-skiplist-epoch, vv-skiplist-hazard,
                           vv-list-epoch, vv-list-hazard, vv-btree,
                           glibc, jemalloc, mimalloc, snmalloc
    -w, --workloads LIST   allocator workloads [default: all]: pair, larson,
                           xmalloc, cache-scratch, cache-thrash,
                           threadtest, churn, sh6bench, realloc, largefrag
                           (the C part runs those of them it has; its
                           allocators are glibc and the preloadable
                           libraries found, whatever --alloc says)
    -h, --help             this text

WRITES (in the results folder):
    report.md                  every table, with the machine and command
                               (alloc.md, structures.md, reclamation.md:
                               each part's; report.md joins those present)
    alloc.csv                  workload,threads,allocator,mops,ratio,rss,live
    alloc-throughput.svg       throughput vs threads, one panel per workload
    alloc-rss.svg              peak RSS growth vs threads
    c.csv                      the C part: workload,threads,allocator,
                               mops,ratio,rss
    structures.csv, .svg       structure throughput vs threads
    reclamation-read.csv, .svg read-only throughput per scheme
    reclamation-garbage.csv    unreclaimed nodes over time (stalled guard)
    reclamation-garbage.svg
";

    /// Set when a run failed: the report still writes what it has, then
    /// exits with status 1.
    static FAILED: AtomicBool = AtomicBool::new(false);

    /// Records a failed run.
    pub(crate) fn fail() {
        FAILED.store(true, Ordering::SeqCst);
    }

    /// What to run, from the command line.
    pub(crate) struct Cfg {
        pub(crate) quick: bool,
        pub(crate) out: PathBuf,
        pub(crate) parts: Vec<String>,
        pub(crate) threads: Vec<usize>,
        pub(crate) secs: f64,
        pub(crate) reps: usize,
        pub(crate) allocs: Vec<String>,
        pub(crate) workloads: Vec<Workload>,
    }

    fn die(msg: &str) -> ! {
        eprintln!("report: {msg}");
        exit(2)
    }

    fn list(v: &str) -> Vec<String> {
        v.split(',')
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect()
    }

    fn parse(args: &[String]) -> Cfg {
        let mut quick = false;
        let mut out = PathBuf::from("results");
        let mut parts = list("alloc,c,structures,reclamation");
        let (mut threads, mut secs, mut reps) = (None, None, None);
        let mut allocs: Vec<String> = ALLOCATORS.iter().map(|s| s.to_string()).collect();
        let mut workloads = Workload::SUITE.to_vec();
        let mut it = args.iter();
        while let Some(arg) = it.next() {
            let mut val = || {
                it.next()
                    .cloned()
                    .unwrap_or_else(|| die(&format!("{arg} needs a value")))
            };
            match arg.as_str() {
                "--quick" => quick = true,
                "--out" => out = PathBuf::from(val()),
                "--parts" => parts = list(&val()),
                "-t" | "--threads" => {
                    threads = Some(
                        list(&val())
                            .iter()
                            .map(|t| match t.parse::<usize>() {
                                Ok(n) if n > 0 => n,
                                _ => die(&format!("bad thread count {t:?}")),
                            })
                            .collect::<Vec<_>>(),
                    )
                }
                "--secs" => {
                    secs = Some(
                        val()
                            .parse::<f64>()
                            .ok()
                            .filter(|s| *s > 0.0)
                            .unwrap_or_else(|| die("--secs needs a positive number")),
                    )
                }
                "--reps" => {
                    reps = Some(
                        val()
                            .parse::<usize>()
                            .ok()
                            .filter(|n| *n > 0)
                            .unwrap_or_else(|| die("--reps needs a positive integer")),
                    )
                }
                "-a" | "--alloc" => allocs = list(&val()),
                "-w" | "--workloads" => {
                    workloads = list(&val())
                        .iter()
                        .map(|k| {
                            Workload::from_key(k)
                                .unwrap_or_else(|| die(&format!("unknown workload {k:?}")))
                        })
                        .collect()
                }
                "-h" | "--help" => {
                    print!("{HELP}");
                    exit(0)
                }
                other => die(&format!("unknown option {other:?} (see --help)")),
            }
        }
        for a in &allocs {
            if !ALLOCATORS.contains(&a.as_str()) {
                die(&format!("unknown allocator {a:?}"));
            }
        }
        for p in &parts {
            if !["alloc", "c", "structures", "reclamation"].contains(&p.as_str()) {
                die(&format!("unknown part {p:?}"));
            }
        }
        let cpus = std::thread::available_parallelism().map_or(2, |n| n.get());
        let threads = threads.unwrap_or_else(|| {
            if quick {
                vec![1, 2]
            } else {
                let mut v = vec![1];
                while v.last().unwrap() * 2 <= cpus.max(2) {
                    v.push(v.last().unwrap() * 2);
                }
                v
            }
        });
        Cfg {
            quick,
            out,
            parts,
            threads,
            secs: secs.unwrap_or(if quick { 0.25 } else { 1.0 }),
            reps: reps.unwrap_or(if quick { 1 } else { 3 }),
            allocs,
            workloads,
        }
    }

    /// The machine, for the report's header.
    fn machine() -> String {
        let cpu = std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("model name"))
                    .and_then(|l| l.split_once(':'))
                    .map(|(_, v)| v.trim().to_string())
            })
            .unwrap_or_else(|| "unknown CPU".into());
        let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
        let mem = std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("MemTotal:"))
                    .and_then(|l| l.split_whitespace().nth(1)?.parse::<usize>().ok())
            })
            .unwrap_or(0);
        format!("{cpu}, {cpus} CPUs, {:.0} GiB", mem as f64 / 1048576.0)
    }

    /// Today's date (UTC), from the system clock.
    fn today() -> String {
        let days = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() / 86_400) as i64;
        // Civil from days (Howard Hinnant's algorithm).
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z - era * 146_097;
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let d = doy - (153 * mp + 2) / 5 + 1;
        let m = if mp < 10 { mp + 3 } else { mp - 9 };
        let y = yoe + era * 400 + i64::from(m <= 2);
        format!("{y:04}-{m:02}-{d:02}")
    }

    /// Runs this executable with `args` (a child mode) and returns its
    /// standard output, or an error naming its stderr and exit status.
    pub(crate) fn run_child(args: &[&str]) -> Result<String, String> {
        let out = std::process::Command::new(std::env::current_exe().map_err(|e| e.to_string())?)
            .args(args)
            .output()
            .map_err(|e| format!("cannot run the child: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "{} ({})",
                String::from_utf8_lossy(&out.stderr).trim(),
                out.status
            ));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// The median of `v` (not empty).
    pub(crate) fn median(mut v: Vec<f64>) -> f64 {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    }

    /// Writes `text` to `name` in the results folder.
    pub(crate) fn write(cfg: &Cfg, name: &str, text: &str) {
        let path = cfg.out.join(name);
        if let Err(e) = std::fs::write(&path, text) {
            die(&format!("cannot write {}: {e}", path.display()));
        }
        eprintln!("wrote {}", path.display());
    }

    pub(crate) fn main() {
        let args: Vec<String> = std::env::args().skip(1).collect();
        match args.first().map(String::as_str) {
            Some("--child") => return crate::alloc::child(&args[1..]),
            Some("--garbage-child") => return crate::reclamation::child(&args[1..]),
            _ => {}
        }
        let cfg = parse(&args);
        if let Err(e) = std::fs::create_dir_all(&cfg.out) {
            die(&format!("cannot create {}: {e}", cfg.out.display()));
        }
        let start = Instant::now();
        let header = format!(
            "Machine: {}. Command: `cargo run --release --example report -- {}` (threads {:?}, {} s per run, {} repetition(s)), {}.\n",
            machine(),
            args.join(" "),
            cfg.threads,
            cfg.secs,
            cfg.reps,
            today()
        );
        for part in &cfg.parts {
            eprintln!("== {part} (at {:.0}s)", start.elapsed().as_secs_f64());
            let t0 = Instant::now();
            let body = match part.as_str() {
                "alloc" => crate::alloc::run(&cfg),
                "c" => crate::c_front::run(&cfg),
                "structures" => crate::structures::run(&cfg),
                _ => crate::reclamation::run(&cfg),
            };
            let secs = t0.elapsed().as_secs_f64();
            write(
                &cfg,
                &format!("{part}.md"),
                &format!("{body}\n{header}This part took {secs:.0} s.\n"),
            );
        }
        // report.md: every part's tables found in the folder, so that a
        // part rerun alone (`--parts`) updates its section only.
        let mut md = String::from("# vvmalloc benchmark report\n");
        for part in ["alloc", "c", "structures", "reclamation"] {
            if let Ok(text) = std::fs::read_to_string(cfg.out.join(format!("{part}.md"))) {
                md += &text;
            }
        }
        write(&cfg, "report.md", &md);
        let took = start.elapsed();
        eprintln!("done in {:.0} s", took.as_secs_f64());
        if FAILED.load(Ordering::SeqCst) {
            eprintln!("report: some runs failed (listed in report.md)");
            exit(1);
        }
    }
}
