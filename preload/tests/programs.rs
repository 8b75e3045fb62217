//! Real programs under the preloadable library: each runs twice, under
//! glibc's malloc and with `LD_PRELOAD=libvvmalloc.so`, and must exit 0 with
//! the same output both times. Needs `cc`, `python3`, `sort` and `git`
//! (`.ci/run` installs them).
//!
//! The library is built in release mode by this test (`cargo build
//! --release -p vvmalloc-preload`, in a target directory of its own so that
//! it does not wait on the lock of the `cargo test` that runs it).

// The loom build has no process heap (see `vvmalloc::heap`): nothing to
// build there.
#![cfg(not(loom))]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use tools::trace::record::convert;
use tools::trace::replay::{replay, Options};

/// The library, built once per test binary.
fn library() -> &'static Path {
    static LIB: OnceLock<PathBuf> = OnceLock::new();
    LIB.get_or_init(|| {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
        let target = root.join("target").join("preload-test");
        let status = Command::new(env!("CARGO"))
            .args([
                "build",
                "--release",
                "-p",
                "vvmalloc-preload",
                "--target-dir",
            ])
            .arg(&target)
            .current_dir(root)
            .status()
            .expect("cargo runs");
        assert!(status.success(), "building the library failed");
        target.join("release").join("libvvmalloc.so")
    })
}

/// A scratch directory of the test's own.
fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("vvmalloc-preload-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Runs `cmd` built by `make`, with the library preloaded or not.
fn run(make: &dyn Fn() -> Command, preload: bool) -> Output {
    let mut cmd = make();
    if preload {
        cmd.env("LD_PRELOAD", library());
    } else {
        cmd.env_remove("LD_PRELOAD");
    }
    let desc = format!("{cmd:?}");
    cmd.output()
        .unwrap_or_else(|e| panic!("cannot run {desc}: {e} (is the program installed?)"))
}

/// Runs `cmd` under the checked mode of the library: it must succeed (a
/// misuse found would abort it). Returns its standard output.
fn checked(what: &str, cmd: &mut Command) -> Vec<u8> {
    let out = cmd
        .env("LD_PRELOAD", library())
        .env("VVMALLOC_CHECKED", "1")
        .output()
        .unwrap_or_else(|e| panic!("cannot run {what}: {e}"));
    assert!(
        out.status.success(),
        "{what} in checked mode ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// Runs the command under glibc and under vvmalloc; both must succeed with
/// the same standard output, which is returned.
fn same_under_both(what: &str, make: &dyn Fn() -> Command) -> Vec<u8> {
    let glibc = run(make, false);
    assert!(
        glibc.status.success(),
        "{what} failed under glibc: {}",
        String::from_utf8_lossy(&glibc.stderr)
    );
    let vv = run(make, true);
    assert!(
        vv.status.success(),
        "{what} failed under vvmalloc ({}): {}",
        vv.status,
        String::from_utf8_lossy(&vv.stderr)
    );
    assert!(
        glibc.stdout == vv.stdout,
        "{what}: the output differs under vvmalloc"
    );
    vv.stdout
}

/// Compiles `tests/c/<name>.c` with `flags` into a scratch directory.
fn compile(name: &str, flags: &[&str]) -> PathBuf {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("tests/c/{name}.c"));
    let exe = scratch(name).join(name);
    let st = Command::new("cc")
        .args(flags)
        .arg("-o")
        .arg(&exe)
        .arg(&src)
        .status()
        .expect("cc runs");
    assert!(st.success(), "cc {name}.c failed");
    exe
}

/// A program of the project's own that calls every exported function,
/// forks from a threaded process and runs thousands of threads.
#[test]
fn the_exercise_program_passes_every_check() {
    let exe = compile("exercise", &["-O2", "-pthread"]);
    let out = same_under_both("exercise", &|| Command::new(&exe));
    assert_eq!(out, b"exercise: ok\n");
    // The checked mode finds no misuse in it (it would abort).
    assert_eq!(checked("exercise", &mut Command::new(&exe)), out);
}

/// Misuse through the C API: with `VVMALLOC_CHECKED=1` each kind is
/// reported with its address and the program aborts; without, the library
/// does what `docs/reliability.md` says (a foreign pointer is ignored, a
/// small double free is not detected and hands one block out twice, an
/// overrun is not detected). Writing every usable byte is no misuse.
#[test]
fn misuse_is_reported_in_checked_mode() {
    // -O0: no call of the misuse may be optimised away.
    let exe = compile("misuse", &["-O0", "-w"]);
    let under = |what: &str, checked: bool| {
        let mut cmd = Command::new(&exe);
        cmd.arg(what).env("LD_PRELOAD", library());
        if checked {
            cmd.env("VVMALLOC_CHECKED", "1");
        } else {
            cmd.env_remove("VVMALLOC_CHECKED");
        }
        cmd.output().unwrap()
    };
    for (what, report) in [
        (
            "double-free",
            "vvmalloc: double free of a small block (or a free of one never handed out) (address 0x",
        ),
        (
            "overrun",
            "vvmalloc: write past the end of a small block (address 0x",
        ),
        (
            "foreign",
            "vvmalloc: free of a pointer this heap never returned (address 0x0000000000010000)",
        ),
    ] {
        let out = under(what, true);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.code().is_none() && err.contains(report),
            "{what}, checked: {} {err}",
            out.status
        );
    }
    let unchecked = |what: &str| {
        let out = under(what, false);
        assert!(out.status.success(), "{what}, unchecked: {}", out.status);
        String::from_utf8(out.stdout).unwrap()
    };
    assert_eq!(unchecked("double-free"), "the same block twice\n");
    assert_eq!(unchecked("overrun"), "freed\n");
    assert_eq!(unchecked("foreign"), "freed\n");
    for checked in [false, true] {
        let out = under("usable", checked);
        assert!(out.status.success(), "usable, checked {checked}: {out:?}");
        assert_eq!(out.stdout, b"ok\n");
    }
}

/// Allocation-heavy Python with four threads (also a benchmark program).
const PYTHON_SCRIPT: &str = include_str!("programs/alloc_threads.py");
#[test]
fn python_with_threads_gives_the_same_output() {
    let dir = scratch("python");
    let script = dir.join("alloc.py");
    std::fs::write(&script, PYTHON_SCRIPT).unwrap();
    let out = same_under_both("python3", &|| {
        let mut c = Command::new("python3");
        c.arg(&script);
        c
    });
    assert_eq!(String::from_utf8_lossy(&out).lines().count(), 5);
    // And in checked mode: no misuse found, the same output.
    assert_eq!(
        checked("python3", Command::new("python3").arg(&script)),
        out
    );
}

#[test]
fn sort_of_a_large_file_gives_the_same_output() {
    let dir = scratch("sort");
    let input = dir.join("input.txt");
    let mut text = String::with_capacity(40 << 20);
    let mut x: u64 = 88172645463325252;
    for _ in 0..1_000_000 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        text += &format!("{:x} {}\n", x, x % 100_000);
    }
    std::fs::write(&input, text).unwrap();
    let out = same_under_both("sort", &|| {
        let mut c = Command::new("sort");
        c.args(["--parallel=2", "-S", "64M", "-k2,2n", "-k1,1"])
            .arg(&input);
        c.env("LC_ALL", "C");
        c
    });
    assert_eq!(out.iter().filter(|&&b| b == b'\n').count(), 1_000_000);
}

#[test]
fn git_commits_and_checks_a_repository_the_same_way() {
    let base = scratch("git");
    let script = r#"
set -e
git init -q repo
cd repo
for i in $(seq 1 300); do
    printf 'file %s\n%s\n' "$i" "$(seq 1 $i)" > "f$i.txt"
done
git add .
git commit -q -m "first"
for i in $(seq 1 300 | awk 'NR % 7 == 0'); do echo "changed $i" >> "f$i.txt"; done
git commit -q -am "second"
git gc -q
git fsck --full --strict 2>&1
git rev-parse HEAD
git log --stat | tail -n 5
git diff HEAD~1 --stat | tail -n 1
"#;
    for n in 0..2 {
        std::fs::create_dir_all(base.join(format!("run{n}"))).unwrap();
    }
    let make = |n: usize| {
        let base = base.clone();
        move || {
            let dir = base.join(format!("run{n}"));
            let _ = std::fs::remove_dir_all(dir.join("repo"));
            let mut c = Command::new("sh");
            c.arg("-c").arg(script).current_dir(&dir);
            for (k, v) in [
                ("GIT_AUTHOR_NAME", "t"),
                ("GIT_AUTHOR_EMAIL", "t@example.com"),
                ("GIT_COMMITTER_NAME", "t"),
                ("GIT_COMMITTER_EMAIL", "t@example.com"),
                ("GIT_AUTHOR_DATE", "2026-01-01T00:00:00Z"),
                ("GIT_COMMITTER_DATE", "2026-01-01T00:00:00Z"),
                ("GIT_CONFIG_NOSYSTEM", "1"),
                ("HOME", dir.to_str().unwrap()),
            ] {
                c.env(k, v);
            }
            c
        }
    };
    let glibc = run(&make(0), false);
    let vv = run(&make(1), true);
    assert!(
        glibc.status.success(),
        "{}",
        String::from_utf8_lossy(&glibc.stderr)
    );
    assert!(
        vv.status.success(),
        "{}",
        String::from_utf8_lossy(&vv.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&glibc.stdout),
        String::from_utf8_lossy(&vv.stdout)
    );
    assert!(String::from_utf8_lossy(&vv.stdout).contains("42 files changed, 42 insertions(+)"));
}

#[test]
fn gcc_compiles_the_same_assembly() {
    let dir = scratch("gcc");
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/c/exercise.c");
    let out = same_under_both("cc -S", &|| {
        let mut c = Command::new("cc");
        c.args(["-O2", "-S", "-o", "-"]).arg(&src);
        c
    });
    assert!(String::from_utf8_lossy(&out).contains("every_function"));
    // And a whole build (driver, compiler, assembler, linker: four
    // processes under the library), whose program then runs.
    let exe = dir.join("exercise");
    let st = Command::new("cc")
        .args(["-O2", "-pthread", "-o"])
        .arg(&exe)
        .arg(&src)
        .env("LD_PRELOAD", library())
        .status()
        .unwrap();
    assert!(st.success());
    let run = Command::new(&exe).output().unwrap();
    assert_eq!(run.stdout, b"exercise: ok\n");
}

/// `VVMALLOC_TRACE` records a threaded Python run; the recording converts
/// to a trace that replays, validated, on the heap.
#[test]
fn a_recording_of_python_converts_and_replays() {
    let dir = scratch("record");
    let script = dir.join("alloc.py");
    std::fs::write(&script, PYTHON_SCRIPT).unwrap();
    // The interpreter itself (`python3` may be a wrapper script that would
    // leave recordings of its own).
    let exe = Command::new("python3")
        .args(["-c", "import sys; print(sys.executable)"])
        .output()
        .unwrap();
    let exe = String::from_utf8(exe.stdout).unwrap().trim().to_string();
    let prefix = dir.join("rec");
    let out = Command::new(&exe)
        .arg(&script)
        .env("LD_PRELOAD", library())
        .env("VVMALLOC_TRACE", &prefix)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let recs: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with("rec."))
        .collect();
    assert_eq!(recs.len(), 1, "one process, one recording: {recs:?}");
    let raw = std::fs::read(&recs[0]).unwrap();
    let (trace, c) = convert("python", &raw).unwrap();
    assert!(
        trace.ops().len() > 100_000,
        "{} requests",
        trace.ops().len()
    );
    assert!(trace.threads() >= 4, "{} threads", trace.threads());
    // A handful of frees are lost at thread exit (after the recorder's
    // exit hook); nothing else is.
    assert!(c.unknown_frees + c.lost_frees < 200, "{c:?}");
    let heap = vv::Heap::new();
    let r = replay(
        &trace,
        &heap,
        &Options {
            threads: 2,
            ..Options::default()
        },
    );
    assert!(r.is_ok(), "{:?}", r.err());
}
