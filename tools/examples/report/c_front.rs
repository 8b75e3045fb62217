//! The C part: the report's small-object workloads as a C program
//! (`benches/c/workloads.c`), run under glibc's `malloc` and under each
//! preloadable allocator found (`LD_PRELOAD`: vvmalloc's `libvvmalloc.so`,
//! Debian's jemalloc, mimalloc and tcmalloc), so that the C front door is
//! measured: the PLT call, the exported `malloc`/`free`, the thread-local
//! access of a shared library.

use std::fmt::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::report::{fail, median, write, Cfg};

/// The workloads the C program has (its keys are the Rust suite's).
const WORKLOADS: [&str; 8] = [
    "pair",
    "larson",
    "xmalloc",
    "cache-scratch",
    "threadtest",
    "churn",
    "sh6bench",
    "realloc",
];

/// The peers' libraries (Debian's packages `libjemalloc2`,
/// `libmimalloc2.0`, `libtcmalloc-minimal4`).
const PEERS: [(&str, &str); 3] = [
    ("jemalloc", "/usr/lib/x86_64-linux-gnu/libjemalloc.so.2"),
    ("mimalloc", "/usr/lib/x86_64-linux-gnu/libmimalloc.so.2"),
    (
        "tcmalloc",
        "/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4",
    ),
];

/// An allocator of the C part: its name, and the library to preload
/// (glibc: none).
type Preload = (String, Option<PathBuf>);

/// Builds the C program and the preloadable library; returns the program,
/// the allocators to run, and notes on what was skipped.
fn prepare() -> Result<(PathBuf, Vec<Preload>, Vec<String>), String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    // The report is `target/<profile>/examples/report`; the library and the
    // program go to `target/<profile>/`.
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .ok_or("cannot find the target folder")?
        .to_path_buf();
    let prog = dir.join("c-workloads");
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    let st = Command::new(&cc)
        .args(["-O2", "-pthread", "-o"])
        .arg(&prog)
        .arg(root.join("benches/c/workloads.c"))
        .status()
        .map_err(|e| format!("cannot run {cc}: {e}"))?;
    if !st.success() {
        return Err(format!("{cc} failed to build benches/c/workloads.c ({st})"));
    }
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let st = Command::new(&cargo)
        .args(["build", "--release", "-p", "vvmalloc-preload"])
        .current_dir(root)
        .status()
        .map_err(|e| format!("cannot run {cargo}: {e}"))?;
    if !st.success() {
        return Err(format!("building the preloadable library failed ({st})"));
    }
    let vv = root.join("target/release/libvvmalloc.so");
    let vv = match std::env::var_os("CARGO_TARGET_DIR") {
        Some(t) => PathBuf::from(t).join("release/libvvmalloc.so"),
        None => vv,
    };
    let mut allocs = vec![
        ("glibc".to_string(), None),
        ("vvmalloc".to_string(), Some(vv)),
    ];
    let mut notes = Vec::new();
    for (name, lib) in PEERS {
        if Path::new(lib).exists() {
            allocs.push((name.to_string(), Some(PathBuf::from(lib))));
        } else {
            notes.push(format!("{name} skipped: {lib} not found"));
        }
    }
    Ok((prog, allocs, notes))
}

/// One run: Mops/s and peak RSS growth in bytes.
fn spawn(
    prog: &Path,
    lib: Option<&Path>,
    w: &str,
    threads: usize,
    secs: f64,
) -> Result<(f64, f64), String> {
    let mut cmd = Command::new(prog);
    cmd.args([w, &threads.to_string(), &secs.to_string()]);
    if let Some(lib) = lib {
        cmd.env("LD_PRELOAD", lib);
    }
    let out = cmd
        .output()
        .map_err(|e| format!("cannot run the C program: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{} ({})",
            String::from_utf8_lossy(&out.stderr).trim(),
            out.status
        ));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let l = text
        .lines()
        .find_map(|l| l.strip_prefix("r "))
        .ok_or("the C program printed no result")?;
    let f: Vec<f64> = l.split(' ').filter_map(|x| x.parse().ok()).collect();
    if f.len() != 4 || f[1] <= 0.0 {
        return Err(format!("bad output {l:?}"));
    }
    Ok((f[0] / f[1] / 1e6, f[2]))
}

/// Runs the part; returns its markdown.
pub(crate) fn run(cfg: &Cfg) -> String {
    let (prog, allocs, notes) = match prepare() {
        Ok(x) => x,
        Err(e) => {
            eprintln!("c: {e}");
            fail();
            return format!("\n## The C front door\n\nNot run: {e}.\n");
        }
    };
    let keys: Vec<&str> = cfg.workloads.iter().map(|w| w.key()).collect();
    let workloads: Vec<&str> = WORKLOADS.into_iter().filter(|w| keys.contains(w)).collect();
    // (workload, threads, allocator) -> median (Mops/s, RSS).
    let mut rows: Vec<(&str, usize, String, f64, f64)> = Vec::new();
    let mut failures = Vec::new();
    let total = workloads.len() * cfg.threads.len() * cfg.reps * allocs.len();
    let mut k = 0;
    for &w in &workloads {
        for &t in &cfg.threads {
            let mut runs: Vec<Vec<(f64, f64)>> = vec![Vec::new(); allocs.len()];
            for _ in 0..cfg.reps {
                for (i, (name, lib)) in allocs.iter().enumerate() {
                    k += 1;
                    match spawn(&prog, lib.as_deref(), w, t, cfg.secs) {
                        Ok(r) => {
                            eprintln!("[{k}/{total}] C {w} x{t} {name}: {:.2} Mops/s", r.0);
                            runs[i].push(r);
                        }
                        Err(e) => {
                            eprintln!("[{k}/{total}] C {w} x{t} {name}: FAILED: {e}");
                            failures.push(format!("{w} x{t} {name}: {e}"));
                            fail();
                        }
                    }
                }
            }
            for (i, (name, _)) in allocs.iter().enumerate() {
                if !runs[i].is_empty() {
                    let mops = median(runs[i].iter().map(|r| r.0).collect());
                    let rss = median(runs[i].iter().map(|r| r.1).collect());
                    rows.push((w, t, name.clone(), mops, rss));
                }
            }
        }
    }
    let find = |w: &str, t: usize, a: &str| {
        rows.iter()
            .find(|r| r.0 == w && r.1 == t && r.2 == a)
            .map(|r| (r.3, r.4))
    };
    let mut csv = String::from("workload,threads,allocator,mops_per_sec,vs_glibc,peak_rss_bytes\n");
    for r in &rows {
        let ratio = find(r.0, r.1, "glibc").map_or(String::new(), |g| format!("{:.3}", r.3 / g.0));
        let _ = writeln!(csv, "{},{},{},{:.4},{ratio},{:.0}", r.0, r.1, r.2, r.3, r.4);
    }
    write(cfg, "c.csv", &csv);
    let names: Vec<&str> = allocs.iter().map(|a| a.0.as_str()).collect();
    let mut md = String::from(
        "\n## The C front door\n\nThe small-object workloads as a C program (`tools/benches/c/workloads.c`), each allocator preloaded (`LD_PRELOAD`; glibc: none).\n",
    );
    for &t in &cfg.threads {
        let _ = write!(
            md,
            "\nThroughput at {t} thread(s), Mops/s (ratio to glibc):\n\n| workload |{}\n|---|{}\n",
            names.iter().map(|a| format!(" {a} |")).collect::<String>(),
            "---:|".repeat(names.len())
        );
        for &w in &workloads {
            let _ = write!(md, "| {w} |");
            let g = find(w, t, "glibc");
            for a in &names {
                match find(w, t, a) {
                    Some((mops, _)) => {
                        let ratio = g.map_or("-".into(), |g| format!("{:.2}x", mops / g.0));
                        let _ = write!(md, " {mops:.2} ({ratio}) |");
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
        "\nPeak RSS growth at {top} thread(s), MiB:\n\n| workload |{}\n|---|{}\n",
        names.iter().map(|a| format!(" {a} |")).collect::<String>(),
        "---:|".repeat(names.len())
    );
    for &w in &workloads {
        let _ = write!(md, "| {w} |");
        for a in &names {
            match find(w, top, a) {
                Some((_, rss)) => {
                    let _ = write!(md, " {:.1} |", rss / 1048576.0);
                }
                None => md += " failed |",
            }
        }
        md += "\n";
    }
    md += "\nData: `c.csv`.\n";
    for n in notes {
        let _ = writeln!(md, "\nNote: {n}.");
    }
    if !failures.is_empty() {
        md += "\nFailed runs:\n\n";
        for f in &failures {
            let _ = writeln!(md, "- {f}");
        }
    }
    md
}
