//! The trace-driven driver: replays allocation traces against vvmalloc
//! (each free index and reclamation scheme), glibc, jemalloc, mimalloc and snmalloc,
//! validates every block, and reports throughput, peak resident memory and
//! utilization. Run `cargo run --release --example mdriver -- --help`.

fn main() {
    #[cfg(not(loom))]
    driver::main();
    #[cfg(loom)]
    eprintln!("mdriver runs on a normal build (without --cfg loom)");
}

/// The allocators by name, shared with the benches and the report.
#[cfg(not(loom))]
use vvmalloc_tools::workloads;

#[cfg(not(loom))]
mod driver {
    use std::io::{BufRead, BufReader, IsTerminal, Write};
    use std::path::{Path, PathBuf};
    use std::process::{exit, Command, Stdio};

    use vvmalloc::VvMalloc;
    use vvmalloc_tools::trace::gen::{generate, Workload};
    use vvmalloc_tools::trace::replay::{replay_with_progress, Options};
    use vvmalloc_tools::trace::Trace;

    const HELP: &str = "\
mdriver: replay allocation traces against allocators, check every block,
and compare throughput and memory use.

USAGE:
    mdriver [OPTIONS] <TRACE>...
    mdriver gen [--seed S] [--threads T] [--ops N] [--out DIR] [WORKLOAD...]
    mdriver convert [--head N] <RECORDING> <TRACE>

REPLAY OPTIONS:
    -a, --alloc LIST     comma-separated allocators [default: all]:
                         vvmalloc (the VvMalloc global allocator's heap),
                         vv-skiplist-epoch, vv-skiplist-hazard,
                         vv-list-epoch, vv-list-hazard, vv-btree
                         (Heap instances with each free index and
                         reclamation scheme, a LocalHeap per thread),
                         glibc, jemalloc, mimalloc, snmalloc
    -t, --threads LIST   replay thread counts, e.g. 1,2,4 [default: 1,2];
                         trace thread t runs on replay thread t % n
    -p, --passes N       most replays of each trace per timed run [default: 1000]
        --min-time S     replay again until the timed total reaches S
                         seconds (or --passes is reached) [default: 0.25]
    -n, --no-validate    skip the validation run (timing runs never validate)
        --csv FILE       write the results as CSV
        --json FILE      write the results as JSON
        --svg FILE       plot throughput relative to the baseline (SVG), at
                         the highest thread count
        --baseline NAME  the allocator the plot's ratios are to [default: glibc]
        --from-csv FILE  run nothing: read the rows of an earlier --csv
                         (filtered by -a and -t) and write --svg etc.
    -h, --help           this text

Each (trace, allocator, threads) runs in a child process of its own: first
with validation (alignment, no overlap, contents kept), then timed without.
Utilization = the trace's peak live bytes / the run's peak resident memory
growth (VmHWM after the run minus VmRSS before it, for every allocator);
for vvmalloc the heap's own mapped bytes are reported too.

GEN: writes <workload>.rep files (churn, tree, powerlaw, realloc, prodcons,
largefrag; all by default) [--seed 1 --threads 4 --ops 30000 --out traces].

CONVERT: turns a recording of a real program (VVMALLOC_TRACE=FILE with the
preloadable library writes FILE.<pid>) into a trace file; --head N keeps
its first N requests.

EXAMPLES:
    cargo run --release --example mdriver -- traces/*.rep
    cargo run --release --example mdriver -- -a vvmalloc,glibc -t 1,2,4 traces/churn.rep
    cargo run --release --example mdriver -- gen --ops 1000000 --out /tmp/big
";

    use crate::workloads::{allocator, status_kib, ALLOCATORS as ALL};

    fn die(msg: &str) -> ! {
        eprintln!("mdriver: {msg}");
        exit(2)
    }

    /// The child: one run. Prints `p <fraction>` lines, then
    /// `r <ops> <secs> <rss growth> <mapped or -1>` or `e <error>`.
    fn child(
        path: &str,
        alloc: &str,
        threads: usize,
        passes: usize,
        min_secs: f64,
        validate: bool,
    ) {
        let trace = Trace::read(Path::new(path)).unwrap_or_else(|e| die(&e.to_string()));
        let a = allocator(alloc).unwrap_or_else(|| die(&format!("unknown allocator {alloc}")));
        // Reset the peak resident memory, so that reading the trace does not
        // count (Linux 4.0 and later; else the peak includes it).
        let _ = std::fs::write("/proc/self/clear_refs", "5");
        // The baseline comes at the replayer's first progress call, once its
        // own bookkeeping is allocated.
        let mut base = None;
        let opts = Options {
            threads,
            validate,
            passes,
            min_secs,
            ..Options::default()
        };
        let mut out = std::io::stdout().lock();
        let r = replay_with_progress(&trace, &*a, &opts, |f| {
            base.get_or_insert_with(|| status_kib("VmRSS:") * 1024);
            let _ = writeln!(out, "p {f}");
            let _ = out.flush();
        });
        let hwm = status_kib("VmHWM:") * 1024;
        match r {
            Ok(r) => {
                let mapped = match alloc {
                    "vvmalloc" => Some(VvMalloc::stats().mapped_bytes),
                    _ => a.mapped_bytes(),
                };
                let _ = writeln!(
                    out,
                    "r {} {} {} {}",
                    r.ops,
                    r.secs,
                    hwm.saturating_sub(base.unwrap_or(0)),
                    mapped.map_or(-1, |m| m as i64)
                );
            }
            Err(e) => {
                let _ = writeln!(out, "e {e}");
            }
        }
    }

    struct Row {
        trace: String,
        alloc: String,
        threads: usize,
        ops: usize,
        secs: f64,
        rss: usize,
        mapped: Option<usize>,
        peak_live: usize,
    }

    impl Row {
        fn mops(&self) -> f64 {
            self.ops as f64 / self.secs.max(1e-9) / 1e6
        }
    }

    struct Progress {
        tty: bool,
        run: usize,
        runs: usize,
    }

    impl Progress {
        fn draw(&self, what: &str, frac: f64) {
            if self.tty {
                let width = 24;
                let filled =
                    ((self.run as f64 + frac.min(1.0)) / self.runs as f64 * width as f64) as usize;
                eprint!(
                    "\r[{}{}] {}/{} {what:<56}",
                    "#".repeat(filled),
                    " ".repeat(width - filled.min(width)),
                    self.run + 1,
                    self.runs
                );
                let _ = std::io::stderr().flush();
            }
        }
    }

    /// Runs one child; the result, or the error it reported.
    fn spawn(
        path: &Path,
        alloc: &str,
        threads: usize,
        passes: usize,
        min_secs: f64,
        validate: bool,
        progress: &Progress,
    ) -> Result<(usize, f64, usize, Option<usize>), String> {
        let what = format!(
            "{} {alloc} x{threads}{}",
            path.file_name().unwrap_or_default().to_string_lossy(),
            if validate { " (validating)" } else { "" }
        );
        if !progress.tty {
            eprintln!("[{}/{}] {what}", progress.run + 1, progress.runs);
        }
        let mut c = Command::new(std::env::current_exe().expect("own path"))
            .args([
                "--child",
                &path.display().to_string(),
                alloc,
                &threads.to_string(),
                &passes.to_string(),
                &min_secs.to_string(),
                if validate { "1" } else { "0" },
            ])
            .stdout(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot start a child: {e}"))?;
        let mut result = Err(format!("{what}: the child printed no result"));
        for line in BufReader::new(c.stdout.take().unwrap()).lines() {
            let line = line.map_err(|e| e.to_string())?;
            match line.split_once(' ') {
                Some(("p", f)) => progress.draw(&what, f.parse().unwrap_or(0.0)),
                Some(("r", r)) => {
                    let f: Vec<&str> = r.split(' ').collect();
                    result = Ok((
                        f[0].parse().unwrap(),
                        f[1].parse().unwrap(),
                        f[2].parse().unwrap(),
                        f[3].parse::<usize>().ok(),
                    ));
                }
                Some(("e", e)) => result = Err(format!("{alloc} x{threads}: {e}")),
                _ => {}
            }
        }
        let status = c.wait().map_err(|e| e.to_string())?;
        if !status.success() && result.is_ok() {
            return Err(format!("{what}: the child failed ({status})"));
        }
        if !status.success() {
            return result
                .and(Err(String::new()))
                .map_err(|e| format!("{e} ({status})"));
        }
        result
    }

    fn list(v: &str) -> Vec<String> {
        v.split(',')
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect()
    }

    fn gen(args: &[String]) {
        let (mut seed, mut threads, mut ops, mut out) =
            (1u64, 4usize, 30_000usize, "traces".to_string());
        let mut kinds = Vec::new();
        let mut i = 0;
        while i < args.len() {
            let val = |i: usize| {
                args.get(i + 1)
                    .cloned()
                    .unwrap_or_else(|| die(&format!("{} needs a value", args[i])))
            };
            match args[i].as_str() {
                "--seed" => seed = val(i).parse().unwrap_or_else(|_| die("bad --seed")),
                "--threads" => threads = val(i).parse().unwrap_or_else(|_| die("bad --threads")),
                "--ops" => ops = val(i).parse().unwrap_or_else(|_| die("bad --ops")),
                "--out" => out = val(i),
                "-h" | "--help" => {
                    print!("{HELP}");
                    return;
                }
                k => {
                    kinds.push(
                        Workload::from_name(k)
                            .unwrap_or_else(|| die(&format!("unknown workload {k} (see --help)"))),
                    );
                    i += 1;
                    continue;
                }
            }
            i += 2;
        }
        if kinds.is_empty() {
            kinds = Workload::ALL.to_vec();
        }
        std::fs::create_dir_all(&out).unwrap_or_else(|e| die(&format!("{out}: {e}")));
        for w in kinds {
            let t = generate(w, seed, threads, ops);
            let path = PathBuf::from(&out).join(format!("{}.rep", w.name()));
            let mut text = format!(
                "# vvmalloc trace: {} (seed {seed}, {threads} threads, {} requests, peak live {} bytes)\n# made by: mdriver gen --seed {seed} --threads {threads} --ops {ops} {}\n",
                w.name(),
                t.ops().len(),
                t.peak_live(),
                w.name()
            );
            text += &t.to_text();
            std::fs::write(&path, text)
                .unwrap_or_else(|e| die(&format!("{}: {e}", path.display())));
            println!("wrote {} ({} requests)", path.display(), t.ops().len());
        }
    }

    /// `mdriver convert`: a raw recording to a trace file.
    fn convert(from: &Path, to: &Path, head: Option<usize>) {
        let raw = std::fs::read(from).unwrap_or_else(|e| die(&format!("{}: {e}", from.display())));
        let name = to
            .file_stem()
            .map_or("trace".into(), |s| s.to_string_lossy().into_owned());
        let (mut t, c) = vvmalloc_tools::trace::record::convert(&name, &raw)
            .unwrap_or_else(|e| die(&e.to_string()));
        if let Some(n) = head {
            // A prefix of a valid history is valid (the replayer frees what
            // it leaves allocated).
            let text: String = t
                .to_text()
                .lines()
                .skip(4)
                .take(n)
                .map(|l| format!("{l}\n"))
                .collect();
            t = Trace::parse(&name, &text).unwrap_or_else(|e| die(&e.to_string()));
        }
        std::fs::write(to, t.to_text()).unwrap_or_else(|e| die(&format!("{}: {e}", to.display())));
        println!(
            "wrote {} ({} requests from {} records, {} threads, peak live {} bytes; \
             dropped {} frees of blocks allocated before recording began, \
             {} frees lost)",
            to.display(),
            t.ops().len(),
            c.records,
            t.threads(),
            t.peak_live(),
            c.unknown_frees,
            c.lost_frees
        );
    }

    pub(crate) fn main() {
        let args: Vec<String> = std::env::args().skip(1).collect();
        if args.first().map(String::as_str) == Some("--child") {
            child(
                &args[1],
                &args[2],
                args[3].parse().unwrap(),
                args[4].parse().unwrap(),
                args[5].parse().unwrap(),
                args[6] == "1",
            );
            return;
        }
        if args.first().map(String::as_str) == Some("gen") {
            gen(&args[1..]);
            return;
        }
        if args.first().map(String::as_str) == Some("convert") {
            let (head, rest) = match &args[1..] {
                [flag, n, rest @ ..] if flag == "--head" => {
                    (Some(n.parse().unwrap_or_else(|_| die("bad --head"))), rest)
                }
                rest => (None, rest),
            };
            let [from, to] = rest else {
                die("usage: mdriver convert [--head N] <RECORDING> <TRACE>")
            };
            convert(Path::new(from), Path::new(to), head);
            return;
        }
        let mut allocs: Vec<String> = ALL.iter().map(|s| s.to_string()).collect();
        let mut threads = vec![1usize, 2];
        let mut passes = 1000;
        let mut min_secs = 0.25;
        let mut validate = true;
        let (mut csv, mut json, mut svg) = (None, None, None);
        let mut baseline = "glibc".to_string();
        let mut from_csv = None;
        let mut threads_given = false;
        let mut traces = Vec::new();
        let mut i = 0;
        while i < args.len() {
            let val = |i: usize| {
                args.get(i + 1)
                    .cloned()
                    .unwrap_or_else(|| die(&format!("{} needs a value (see --help)", args[i])))
            };
            match args[i].as_str() {
                "-h" | "--help" => {
                    print!("{HELP}");
                    return;
                }
                "-a" | "--alloc" => allocs = list(&val(i)),
                "-t" | "--threads" => {
                    threads_given = true;
                    threads = list(&val(i))
                        .iter()
                        .map(|t| match t.parse() {
                            Ok(n) if n > 0 => n,
                            _ => die(&format!("bad thread count {t}")),
                        })
                        .collect()
                }
                "-p" | "--passes" => {
                    passes = val(i).parse().unwrap_or_else(|_| die("bad --passes"))
                }
                "--min-time" => min_secs = val(i).parse().unwrap_or_else(|_| die("bad --min-time")),
                "-n" | "--no-validate" => {
                    validate = false;
                    i += 1;
                    continue;
                }
                "--csv" => csv = Some(val(i)),
                "--json" => json = Some(val(i)),
                "--svg" => svg = Some(val(i)),
                "--baseline" => baseline = val(i),
                "--from-csv" => from_csv = Some(val(i)),
                a if a.starts_with('-') => die(&format!("unknown option {a} (see --help)")),
                t => {
                    traces.push(PathBuf::from(t));
                    i += 1;
                    continue;
                }
            }
            i += 2;
        }
        if !allocs.contains(&baseline) && svg.is_some() {
            die(&format!(
                "the plot's baseline {baseline} is not among the allocators (-a)"
            ));
        }
        if let Some(f) = from_csv {
            let text = std::fs::read_to_string(&f).unwrap_or_else(|e| die(&format!("{f}: {e}")));
            let rows: Vec<Row> = text
                .lines()
                .skip(1)
                .enumerate()
                .map(|(n, l)| {
                    row_of_csv(l).unwrap_or_else(|| {
                        die(&format!("{f}:{}: not a row of mdriver's CSV", n + 2))
                    })
                })
                .filter(|r| {
                    allocs.contains(&r.alloc) && (!threads_given || threads.contains(&r.threads))
                })
                .collect();
            print_table(&rows, "");
            if let Some(f) = json {
                write_file(&f, &to_json(&rows));
            }
            if let Some(f) = svg {
                write_file(&f, &to_svg(&rows, &baseline));
            }
            return;
        }
        if traces.is_empty() {
            die("no trace given (see --help; `mdriver gen` makes some)");
        }
        for a in &allocs {
            if allocator(a).is_none() {
                die(&format!("unknown allocator {a} (see --help)"));
            }
        }
        // Read every trace first: a malformed one stops everything before
        // any run.
        let parsed: Vec<Trace> = traces
            .iter()
            .map(|p| Trace::read(p).unwrap_or_else(|e| die(&e.to_string())))
            .collect();
        let mut progress = Progress {
            tty: std::io::stderr().is_terminal(),
            run: 0,
            runs: traces.len() * allocs.len() * threads.len() * if validate { 2 } else { 1 },
        };
        let mut rows = Vec::new();
        let mut failures = Vec::new();
        for (path, trace) in traces.iter().zip(&parsed) {
            for &t in &threads {
                for a in &allocs {
                    if validate {
                        let r = spawn(path, a, t, 1, 0.0, true, &progress);
                        progress.run += 1;
                        if let Err(e) = r {
                            failures.push(format!("{}: validation: {e}", path.display()));
                            progress.run += 1;
                            continue;
                        }
                    }
                    match spawn(path, a, t, passes, min_secs, false, &progress) {
                        Ok((ops, secs, rss, mapped)) => rows.push(Row {
                            trace: path
                                .file_stem()
                                .unwrap_or_default()
                                .to_string_lossy()
                                .into(),
                            alloc: a.clone(),
                            threads: t,
                            ops,
                            secs,
                            rss,
                            mapped,
                            peak_live: trace.peak_live(),
                        }),
                        Err(e) => failures.push(format!("{}: {e}", path.display())),
                    }
                    progress.run += 1;
                }
            }
        }
        if progress.tty {
            eprint!("\r{:<100}\r", "");
        }
        print_table(
            &rows,
            if !failures.is_empty() {
                "Some runs failed (the errors follow). "
            } else if validate {
                "Every run was validated first (alignment, overlap, contents): no error. "
            } else {
                "Not validated (--no-validate). "
            },
        );
        if let Some(f) = csv {
            write_file(&f, &to_csv(&rows));
        }
        if let Some(f) = json {
            write_file(&f, &to_json(&rows));
        }
        if let Some(f) = svg {
            write_file(&f, &to_svg(&rows, &baseline));
        }
        if !failures.is_empty() {
            for f in &failures {
                eprintln!("mdriver: {f}");
            }
            exit(1);
        }
    }

    fn write_file(path: &str, text: &str) {
        std::fs::write(path, text).unwrap_or_else(|e| die(&format!("{path}: {e}")));
        eprintln!("wrote {path}");
    }

    fn mib(b: usize) -> f64 {
        b as f64 / (1 << 20) as f64
    }

    /// glibc's throughput on the same trace and thread count.
    fn glibc_of(rows: &[Row], r: &Row) -> Option<f64> {
        rows.iter()
            .find(|g| g.alloc == "glibc" && g.trace == r.trace && g.threads == r.threads)
            .map(Row::mops)
    }

    fn print_table(rows: &[Row], footer: &str) {
        println!(
            "| trace | threads | allocator | Mops/s | vs glibc | peak RSS growth (MiB) | heap mapped (MiB) | utilization |"
        );
        println!("|---|---:|---|---:|---:|---:|---:|---:|");
        for r in rows {
            println!(
                "| {} | {} | {} | {:.2} | {} | {:.1} | {} | {} |",
                r.trace,
                r.threads,
                r.alloc,
                r.mops(),
                glibc_of(rows, r).map_or("-".into(), |g| format!("{:.2}x", r.mops() / g)),
                mib(r.rss),
                r.mapped.map_or("-".into(), |m| format!("{:.1}", mib(m))),
                if r.rss > 0 {
                    format!("{:.0}%", 100.0 * r.peak_live as f64 / r.rss as f64)
                } else {
                    "-".into()
                }
            );
        }
        println!();
        println!(
            "{}Utilization = the trace's peak live bytes / the run's peak RSS growth.",
            footer
        );
    }

    /// A row of [`to_csv`]'s output.
    fn row_of_csv(l: &str) -> Option<Row> {
        let f: Vec<&str> = l.split(',').collect();
        if f.len() != 9 {
            return None;
        }
        Some(Row {
            trace: f[0].to_string(),
            threads: f[1].parse().ok()?,
            alloc: f[2].to_string(),
            ops: f[3].parse().ok()?,
            secs: f[4].parse().ok()?,
            rss: f[6].parse().ok()?,
            mapped: f[7].parse().ok(),
            peak_live: f[8].parse().ok()?,
        })
    }

    fn to_csv(rows: &[Row]) -> String {
        let mut s = String::from(
            "trace,threads,allocator,ops,secs,mops_per_sec,peak_rss_growth_bytes,mapped_bytes,peak_live_bytes\n",
        );
        for r in rows {
            s += &format!(
                "{},{},{},{},{:.6},{:.4},{},{},{}\n",
                r.trace,
                r.threads,
                r.alloc,
                r.ops,
                r.secs,
                r.mops(),
                r.rss,
                r.mapped.map_or(String::new(), |m| m.to_string()),
                r.peak_live
            );
        }
        s
    }

    fn to_json(rows: &[Row]) -> String {
        let items: Vec<String> = rows
            .iter()
            .map(|r| {
                format!(
                    "  {{\"trace\": \"{}\", \"threads\": {}, \"allocator\": \"{}\", \"ops\": {}, \"secs\": {:.6}, \"mops_per_sec\": {:.4}, \"peak_rss_growth_bytes\": {}, \"mapped_bytes\": {}, \"peak_live_bytes\": {}}}",
                    r.trace.replace('"', "'"),
                    r.threads,
                    r.alloc,
                    r.ops,
                    r.secs,
                    r.mops(),
                    r.rss,
                    r.mapped.map_or("null".into(), |m| m.to_string()),
                    r.peak_live
                )
            })
            .collect();
        format!("[\n{}\n]\n", items.join(",\n"))
    }

    /// A grouped bar chart: per trace (at the highest thread count), each
    /// allocator's throughput relative to glibc, on a log scale.
    fn to_svg(rows: &[Row], baseline: &str) -> String {
        let top = rows.iter().map(|r| r.threads).max().unwrap_or(1);
        let rows: Vec<&Row> = rows.iter().filter(|r| r.threads == top).collect();
        let mut traces: Vec<&str> = Vec::new();
        let mut allocs: Vec<&str> = Vec::new();
        for r in &rows {
            if !traces.contains(&r.trace.as_str()) {
                traces.push(&r.trace);
            }
            if !allocs.contains(&r.alloc.as_str()) {
                allocs.push(&r.alloc);
            }
        }
        let colours = [
            "#1b9e77", "#d95f02", "#7570b3", "#e7298a", "#66a61e", "#e6ab02", "#666666", "#a6761d",
            "#1f78b4",
        ];
        let (w, h, left, top_m, bottom) = (960.0, 420.0, 60.0, 40.0, 90.0);
        let plot_h = h - top_m - bottom;
        let group_w = (w - left - 20.0) / traces.len().max(1) as f64;
        let bar_w = group_w * 0.8 / allocs.len().max(1) as f64;
        let base_of = |t: &str| {
            rows.iter()
                .find(|r| r.trace == t && r.alloc == baseline)
                .map(|r| r.mops())
        };
        let ratio_of = |r: &Row| base_of(&r.trace).map_or(1.0, |b| r.mops() / b);
        // A log2 scale over the powers of two around every ratio.
        let (lo, hi) = rows.iter().fold((-1i32, 1i32), |(lo, hi), r| {
            let l = ratio_of(r).log2();
            (lo.min(l.floor() as i32), hi.max(l.ceil() as i32))
        });
        let span = f64::from(hi - lo);
        let y = |ratio: f64| {
            let l = ratio.log2().clamp(f64::from(lo), f64::from(hi));
            top_m + plot_h * (1.0 - (l - f64::from(lo)) / span)
        };
        let mut s = format!(
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" font-family=\"sans-serif\" font-size=\"11\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n<text x=\"{}\" y=\"20\" text-anchor=\"middle\" font-size=\"14\">Throughput relative to {baseline}, {top} thread(s) (log scale; mdriver)</text>\n",
            w / 2.0
        );
        for e in lo..=hi {
            let r = 2f64.powi(e);
            let yy = y(r);
            s += &format!(
                "<line x1=\"{left}\" x2=\"{}\" y1=\"{yy:.1}\" y2=\"{yy:.1}\" stroke=\"{}\"/>\n<text x=\"{}\" y=\"{:.1}\" text-anchor=\"end\">{}x</text>\n",
                w - 20.0,
                if e == 0 { "#000" } else { "#ddd" },
                left - 4.0,
                yy + 4.0,
                if e < 0 { format!("1/{}", 1 << -e) } else { format!("{}", 1 << e) }
            );
        }
        for (g, t) in traces.iter().enumerate() {
            let x0 = left + g as f64 * group_w + group_w * 0.1;
            for (k, a) in allocs.iter().enumerate() {
                let Some(r) = rows.iter().find(|r| r.trace == *t && r.alloc == *a) else {
                    continue;
                };
                let ratio = ratio_of(r);
                let (y1, y0) = (y(ratio), y(1.0));
                s += &format!(
                    "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"{}\"><title>{a} on {t}: {ratio:.2}x {baseline}</title></rect>\n",
                    x0 + k as f64 * bar_w,
                    y1.min(y0),
                    bar_w * 0.9,
                    (y1 - y0).abs().max(0.5),
                    colours[k % colours.len()]
                );
            }
            s += &format!(
                "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{t}</text>\n",
                x0 + group_w * 0.4,
                h - bottom + 16.0
            );
        }
        for (k, a) in allocs.iter().enumerate() {
            let (lx, ly) = (
                left + (k % 5) as f64 * 170.0,
                h - bottom + 40.0 + (k / 5) as f64 * 16.0,
            );
            s += &format!(
                "<rect x=\"{lx}\" y=\"{:.1}\" width=\"10\" height=\"10\" fill=\"{}\"/><text x=\"{}\" y=\"{:.1}\">{a}</text>\n",
                ly - 9.0,
                colours[k % colours.len()],
                lx + 14.0,
                ly
            );
        }
        s += "</svg>\n";
        s
    }
}
