//! The soak test: the allocator and the structures under validation for as
//! long as you like, reporting operations done, memory footprint over time
//! and every error. Not part of CI (it is long by design).
//!
//! ```text
//! cargo run --release --example soak -- --minutes 10
//! cargo run --release --example soak -- --minutes 10 --checked --csv soak.csv
//! ```
//!
//! Each round does two things, and rounds repeat until the time is up:
//!
//! - **Allocator**: a generated trace (the six workloads of
//!   `vvmalloc_tools::trace::gen` in turn, a new seed every round) is replayed
//!   with validation on (every block aligned, disjoint from every live
//!   block, its bytes intact until freed and kept by `realloc`) against the
//!   process heap (`VvMalloc`, also this program's global allocator, so
//!   everything else here runs on it too) and two long-lived `Heap`
//!   instances (skip-list index with hazard pointers, list index with
//!   epochs), which are never reset: fragmentation or leaks accumulate.
//! - **Structures**: a stress run of one of the Treiber stack, the list and
//!   the skip list under global epochs, global hazard pointers or an own
//!   hazard domain (in turn), threads racing on shared keys; every value
//!   is counted in and out (nothing lost, nothing returned twice), every
//!   drop is counted (nothing dropped twice; with an own domain, everything
//!   dropped once the structure is), and the structure's invariants are
//!   checked at the end.
//!
//! A line goes to stdout every `--every` seconds (default 10): time,
//! rounds, operations, resident memory, the heaps' mapped and in-use bytes,
//! misuse counts and errors; `--csv FILE` writes one row per round. Any
//! failed check is printed with its round and counted; the program goes on
//! and exits with status 1 at the end if there was any.
//!
//! `--checked` runs everything in the checked mode (`VVMALLOC_CHECKED=1`
//! for the process heap, which the program sets by starting itself again,
//! and checked `Heap` instances): double frees, overruns and free-list
//! corruption would abort with a report.

fn main() {
    #[cfg(not(loom))]
    soak::main();
    #[cfg(loom)]
    eprintln!("soak runs on a normal build (without --cfg loom)");
}

/// The allocator workloads (for `status_kib`).
#[cfg(not(loom))]
use vvmalloc_tools::workloads;

#[cfg(not(loom))]
#[global_allocator]
static GLOBAL: vvmalloc::VvMalloc = vvmalloc::VvMalloc::new();

#[cfg(not(loom))]
mod soak {
    use std::io::Write;
    use std::panic::{self, AssertUnwindSafe};
    use std::process::{exit, Command};
    use std::sync::{Arc, Barrier};
    use std::thread;
    use std::time::{Duration, Instant};

    use vvmalloc::heap::{HeapConfig, ListIndex, SkipIndex};
    use vvmalloc::reclaim::{Domain, Epoch, Hazard, Reclaim};
    use vvmalloc::{Heap, List, SkipList, TreiberStack, VvMalloc};
    use vvmalloc_tools::trace::gen::{generate, Workload};
    use vvmalloc_tools::trace::replay::{replay, Global, Options, ReplayAlloc};

    use crate::workloads::status_kib;
    use vvmalloc_tools::bench::xorshift;
    use vvmalloc_tools::ledger::{check_net_effect, DropLedger, Log, Tracked};

    const USAGE: &str = "\
usage: soak [--minutes M | --secs S] [--threads T] [--checked] [--every S] [--csv FILE]
  --minutes M   run for M minutes (default 10)
  --secs S      run for S seconds instead
  --threads T   threads of each replay and stress run (default 4)
  --checked     the checked mode for every heap (the process heap through
                VVMALLOC_CHECKED=1: the program starts itself again)
  --every S     seconds between progress lines (default 10)
  --csv FILE    one row per round: time, operations, footprint, errors";

    struct Args {
        secs: f64,
        threads: usize,
        checked: bool,
        every: f64,
        csv: Option<String>,
    }

    fn fail(msg: &str) -> ! {
        eprintln!("soak: {msg}\n{USAGE}");
        exit(2)
    }

    fn parse() -> Args {
        let mut a = Args {
            secs: 600.0,
            threads: 4,
            checked: false,
            every: 10.0,
            csv: None,
        };
        let mut it = std::env::args().skip(1);
        while let Some(flag) = it.next() {
            let mut num = |what: &str| -> f64 {
                it.next()
                    .and_then(|v| v.parse::<f64>().ok())
                    .filter(|v| v.is_finite() && *v > 0.0)
                    .unwrap_or_else(|| fail(&format!("{what} needs a positive number")))
            };
            match flag.as_str() {
                "--minutes" => a.secs = num("--minutes") * 60.0,
                "--secs" => a.secs = num("--secs"),
                "--threads" => a.threads = num("--threads") as usize,
                "--every" => a.every = num("--every"),
                "--checked" => a.checked = true,
                "--csv" => {
                    a.csv = Some(it.next().unwrap_or_else(|| fail("--csv needs a file")));
                }
                "-h" | "--help" => {
                    println!("{USAGE}");
                    exit(0)
                }
                other => fail(&format!("unknown argument {other:?}")),
            }
        }
        a.threads = a.threads.max(1);
        a
    }

    pub(crate) fn main() {
        let args = parse();
        if args.checked && std::env::var("VVMALLOC_CHECKED").as_deref() != Ok("1") {
            // The process heap reads the variable at its first allocation,
            // long past: start again with it set.
            let status = Command::new(std::env::current_exe().expect("own path"))
                .args(std::env::args_os().skip(1))
                .env("VVMALLOC_CHECKED", "1")
                .status()
                .unwrap_or_else(|e| fail(&format!("cannot start again: {e}")));
            exit(status.code().unwrap_or(1));
        }
        assert_eq!(VvMalloc::is_checked(), args.checked);
        Soak::new(args).run();
    }

    /// The soak's state: the long-lived heaps, totals, the time series.
    struct Soak {
        args: Args,
        heaps: Vec<(&'static str, &'static dyn ReplayAlloc)>,
        skip: &'static Heap<SkipIndex<Hazard>>,
        list: &'static Heap<ListIndex>,
        alloc_ops: usize,
        struct_ops: usize,
        errors: Vec<String>,
        csv: Option<std::fs::File>,
    }

    impl Soak {
        fn new(args: Args) -> Self {
            let config = HeapConfig {
                checked: args.checked,
                ..HeapConfig::new()
            };
            // Leaked: they live as long as the soak, and the table below
            // and the footprint lines both need them.
            let skip: &'static Heap<SkipIndex<Hazard>> =
                Box::leak(Box::new(Heap::with_config(config)));
            let list: &'static Heap<ListIndex> = Box::leak(Box::new(Heap::with_config(config)));
            let process: &'static Global<VvMalloc> =
                Box::leak(Box::new(Global::new("vvmalloc", VvMalloc::new())));
            let heaps: Vec<(&'static str, &'static dyn ReplayAlloc)> = vec![
                ("vvmalloc", process),
                ("vv-skiplist-hazard", skip),
                ("vv-list-epoch", list),
            ];
            let csv = args.csv.as_ref().map(|path| {
                let mut f = std::fs::File::create(path)
                    .unwrap_or_else(|e| fail(&format!("cannot create {path}: {e}")));
                writeln!(
                    f,
                    "secs,round,alloc_ops,structure_ops,rss_kib,process_mapped_kib,\
                     process_in_use_kib,skiplist_hazard_mapped_kib,list_epoch_mapped_kib,misuse,errors"
                )
                .expect("write the CSV header");
                f
            });
            Soak {
                args,
                heaps,
                skip,
                list,
                alloc_ops: 0,
                struct_ops: 0,
                errors: Vec::new(),
                csv,
            }
        }

        fn run(mut self) {
            let t0 = Instant::now();
            let deadline = Duration::from_secs_f64(self.args.secs);
            println!(
                "soak: {:.0} s, {} threads, {} mode, on {} CPUs",
                self.args.secs,
                self.args.threads,
                if self.args.checked {
                    "checked"
                } else {
                    "unchecked"
                },
                thread::available_parallelism().map_or(0, |n| n.get())
            );
            println!(
                "| secs | rounds | alloc Mops | structure Mops | RSS MiB | process heap mapped / in use MiB | skip-list/hazard heap mapped MiB | list/epoch heap mapped MiB | misuse | errors |"
            );
            println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
            let mut next_line = 0.0;
            let mut round = 0;
            // (seconds, resident bytes) after each round.
            let mut rss = Vec::new();
            while t0.elapsed() < deadline {
                self.allocator_round(round);
                self.structure_round(round);
                round += 1;
                let secs = t0.elapsed().as_secs_f64();
                let row = self.sample(secs, round);
                rss.push((secs, row.rss));
                if secs >= next_line || t0.elapsed() >= deadline {
                    println!(
                        "| {secs:.0} | {round} | {:.1} | {:.1} | {:.1} | {:.1} / {:.1} | {:.1} | {:.1} | {} | {} |",
                        self.alloc_ops as f64 / 1e6,
                        self.struct_ops as f64 / 1e6,
                        mib(row.rss),
                        mib(row.mapped),
                        mib(row.in_use),
                        mib(row.skip),
                        mib(row.list),
                        row.misuse,
                        self.errors.len()
                    );
                    next_line = secs + self.args.every;
                }
            }
            let secs = t0.elapsed().as_secs_f64();
            let end = self.sample(secs, round);
            println!(
                "\nsoak: {round} rounds in {secs:.0} s: {} allocator requests ({:.2} M/s), {} structure operations ({:.2} M/s), every one checked",
                self.alloc_ops,
                self.alloc_ops as f64 / secs / 1e6,
                self.struct_ops,
                self.struct_ops as f64 / secs / 1e6
            );
            // Growth shows as a higher peak in the second half than in the
            // first (the workloads cycle, so each half sees every one).
            let peak = |from: f64, to: f64| {
                rss.iter()
                    .filter(|&&(t, _)| t >= from && t < to)
                    .map(|&(_, r)| r)
                    .max()
                    .unwrap_or(0)
            };
            println!(
                "soak: resident memory after the first round {:.1} MiB; peak in the first half {:.1} MiB, in the second half {:.1} MiB",
                mib(rss.first().map_or(0, |r| r.1)),
                mib(peak(0.0, secs / 2.0)),
                mib(peak(secs / 2.0, f64::INFINITY))
            );
            if end.misuse > 0 {
                self.errors
                    .push(format!("the heaps counted {} misuse", end.misuse));
            }
            if self.errors.is_empty() {
                println!("soak: no error");
            } else {
                println!("soak: {} errors:", self.errors.len());
                for e in &self.errors {
                    println!("  {e}");
                }
                exit(1);
            }
        }

        /// One validated replay of a fresh trace against every heap.
        fn allocator_round(&mut self, round: usize) {
            let w = Workload::ALL[round % Workload::ALL.len()];
            // Sizes that take about a second each on 2 cores, validated
            // (large-block fragmentation writes and checks megabytes per
            // request).
            let ops = match w {
                Workload::LargeFrag => 4_000,
                Workload::Realloc => 30_000,
                _ => 100_000,
            };
            let trace = generate(w, round as u64 + 1, self.args.threads, ops);
            let opts = Options {
                threads: self.args.threads,
                validate: true,
                ..Options::default()
            };
            for (name, heap) in &self.heaps {
                match replay(&trace, *heap, &opts) {
                    Ok(r) => self.alloc_ops += r.ops,
                    Err(e) => self
                        .errors
                        .push(format!("round {round}: {} on {name}: {e}", w.name())),
                }
            }
        }

        /// One stress run of one structure under one scheme, checked.
        fn structure_round(&mut self, round: usize) {
            let t = self.args.threads;
            let which = round % 9;
            let name = [
                "stack, global epochs",
                "stack, global hazard pointers",
                "stack, own hazard domain",
                "list, global epochs",
                "list, global hazard pointers",
                "list, own hazard domain",
                "skip list, global epochs",
                "skip list, global hazard pointers",
                "skip list, own hazard domain",
            ][which];
            let result = panic::catch_unwind(AssertUnwindSafe(|| match which {
                0 => stack::<Epoch>(Domain::global(), t, false),
                1 => stack::<Hazard>(Domain::global(), t, false),
                2 => stack::<Hazard>(Domain::new(), t, true),
                3 => map(List::<u64, Tracked, Epoch>::new(), t, false),
                4 => map(
                    List::<u64, Tracked, Hazard>::with_domain(Domain::global()),
                    t,
                    false,
                ),
                5 => map(List::<u64, Tracked, Hazard>::with_own_domain(), t, true),
                6 => map(SkipList::<u64, Tracked, Epoch>::new(), t, false),
                7 => map(
                    SkipList::<u64, Tracked, Hazard>::with_domain(Domain::global()),
                    t,
                    false,
                ),
                _ => map(SkipList::<u64, Tracked, Hazard>::with_own_domain(), t, true),
            }));
            match result {
                Ok(ops) => self.struct_ops += ops,
                Err(e) => {
                    let msg = e
                        .downcast_ref::<String>()
                        .map(String::as_str)
                        .or_else(|| e.downcast_ref::<&str>().copied())
                        .unwrap_or("(no message)");
                    self.errors.push(format!("round {round}: {name}: {msg}"));
                }
            }
        }

        fn sample(&mut self, secs: f64, round: usize) -> Row {
            let p = VvMalloc::stats();
            let (s, l) = (self.skip.stats(), self.list.stats());
            let row = Row {
                rss: status_kib("VmRSS:") << 10,
                mapped: p.mapped_bytes,
                in_use: p.in_use_bytes,
                skip: s.mapped_bytes,
                list: l.mapped_bytes,
                misuse: p.misuse + s.misuse + l.misuse,
            };
            if let Some(f) = &mut self.csv {
                let line = format!(
                    "{secs:.2},{round},{},{},{},{},{},{},{},{},{}",
                    self.alloc_ops,
                    self.struct_ops,
                    row.rss >> 10,
                    row.mapped >> 10,
                    row.in_use >> 10,
                    row.skip >> 10,
                    row.list >> 10,
                    row.misuse,
                    self.errors.len()
                );
                if let Err(e) = writeln!(f, "{line}") {
                    self.errors.push(format!("writing the CSV: {e}"));
                    self.csv = None;
                }
            }
            row
        }
    }

    struct Row {
        rss: usize,
        mapped: usize,
        in_use: usize,
        skip: usize,
        list: usize,
        misuse: usize,
    }

    fn mib(bytes: usize) -> f64 {
        bytes as f64 / (1 << 20) as f64
    }

    /// Operations per thread of a stress run.
    const OPS: usize = 50_000;
    /// Keys shared by all threads (so operations on one key race).
    const KEYS: u64 = 256;

    /// Threads push and pop tracked values: each value pushed comes out
    /// exactly once (popped by a thread or drained at the end) and is
    /// dropped exactly once. Returns the operations done.
    fn stack<R: Reclaim>(domain: Domain<R>, threads: usize, own: bool) -> usize {
        let stack = Arc::new(TreiberStack::with_domain(domain));
        let ledger = DropLedger::new(threads * OPS);
        let barrier = Arc::new(Barrier::new(threads));
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let (stack, ledger, barrier) = (stack.clone(), ledger.clone(), barrier.clone());
                thread::spawn(move || {
                    let mut seed = 0x9E37_79B9_7F4A_7C15 ^ (t as u64 + 1);
                    let mut popped = Vec::new();
                    barrier.wait();
                    for i in 0..OPS {
                        stack.push(ledger.value(t * OPS + i));
                        if xorshift(&mut seed) % 4 != 0 {
                            if let Some(v) = stack.pop() {
                                popped.push(v);
                            }
                        }
                    }
                    popped
                })
            })
            .collect();
        let mut seen = vec![0u8; threads * OPS];
        let mut out: Vec<Tracked> = Vec::new();
        for h in handles {
            out.extend(h.join().expect("a stack thread panicked"));
        }
        out.extend(std::iter::from_fn(|| stack.pop()));
        assert!(stack.is_empty(), "the stack is not empty after draining");
        for v in &out {
            seen[v.id] += 1;
        }
        if let Some(id) = seen.iter().position(|&n| n != 1) {
            panic!("value {id} came out of the stack {} times", seen[id]);
        }
        ledger.assert_none_dropped();
        let n = out.len();
        drop(out);
        ledger.assert_all_dropped_once();
        drop(stack);
        if own {
            ledger.assert_all_dropped_once();
        }
        // Every value pushed once and popped once.
        2 * n
    }

    /// The operations of the list and the skip list a stress run uses.
    trait SoakMap: Send + Sync + 'static {
        /// Inserts unless the key is present (then the value is dropped).
        fn put(&self, k: u64, v: Tracked) -> bool;
        /// Removes the key, returning the removed value's id.
        fn take(&self, k: u64) -> Option<usize>;
        fn take_first(&self) -> Option<(u64, usize)>;
        fn find(&self, k: u64) -> Option<(u64, usize)>;
        fn contents(&self) -> Vec<(u64, usize)>;
        fn count(&self) -> usize;
        fn check(&mut self);
    }

    macro_rules! soak_map {
        ($ty:ident) => {
            impl<R: Reclaim + 'static> SoakMap for $ty<u64, Tracked, R>
            where
                Self: Send + Sync,
            {
                fn put(&self, k: u64, v: Tracked) -> bool {
                    self.try_insert(k, v).is_ok()
                }
                fn take(&self, k: u64) -> Option<usize> {
                    self.remove(&k).map(|e| e.value().id)
                }
                fn take_first(&self) -> Option<(u64, usize)> {
                    self.pop_first().map(|e| (*e.key(), e.value().id))
                }
                fn find(&self, k: u64) -> Option<(u64, usize)> {
                    self.get(&k).map(|e| (*e.key(), e.value().id))
                }
                fn contents(&self) -> Vec<(u64, usize)> {
                    self.iter().map(|e| (*e.key(), e.value().id)).collect()
                }
                fn count(&self) -> usize {
                    self.len()
                }
                fn check(&mut self) {
                    self.check_invariants();
                }
            }
        };
    }
    soak_map!(List);
    soak_map!(SkipList);

    /// Threads insert, remove, pop and look up shared keys; the net effect
    /// is checked (`check_net_effect`: every inserted value removed once or
    /// still there, rejected values dropped at once, the rest with the
    /// map). Returns the operations done.
    fn map<M: SoakMap>(map: M, threads: usize, own: bool) -> usize {
        let map = Arc::new(map);
        let ledger = DropLedger::new(threads * OPS);
        let barrier = Arc::new(Barrier::new(threads));
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let (map, ledger, barrier) = (map.clone(), ledger.clone(), barrier.clone());
                thread::spawn(move || {
                    let mut log = Log::default();
                    let mut seed = 0x2545_F491_4F6C_DD1D ^ (t as u64 + 1);
                    barrier.wait();
                    for i in 0..OPS {
                        let r = xorshift(&mut seed);
                        let key = r % KEYS;
                        let id = t * OPS + i;
                        match (r >> 32) % 8 {
                            0..=2 => {
                                if map.put(key, ledger.value(id)) {
                                    log.inserted.push((key, id));
                                } else {
                                    log.rejected.push(id);
                                }
                            }
                            3..=4 => {
                                if let Some(v) = map.take(key) {
                                    log.removed.push((key, v));
                                }
                            }
                            5 => {
                                if let Some(kv) = map.take_first() {
                                    log.removed.push(kv);
                                }
                            }
                            _ => {
                                if let Some((k, _)) = map.find(key) {
                                    assert_eq!(k, key, "get returned another key");
                                }
                            }
                        }
                    }
                    log
                })
            })
            .collect();
        let logs: Vec<Log> = handles
            .into_iter()
            .map(|h| h.join().expect("a map thread panicked"))
            .collect();
        let mut map = Arc::into_inner(map).expect("threads joined");
        map.check();
        let remaining = map.contents();
        let len = map.count();
        let run = check_net_effect(&logs, &remaining, len, ledger, move || drop(map));
        if own {
            run.assert_all_dropped_once();
        }
        threads * OPS
    }
}
