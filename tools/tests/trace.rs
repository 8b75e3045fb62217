//! The trace format, the generator and the replayer: parser errors, replays
//! of every workload against every allocator with validation on, and
//! broken allocators that the validator must catch.

#![cfg(not(loom))]

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use vvmalloc::heap::{BTreeIndex, FreeIndex, HeapConfig, ListIndex, SkipIndex};
use vvmalloc::reclaim::Hazard;
use vvmalloc::{Heap, VvMalloc};
use vvmalloc_tools::trace::gen::{generate, Workload};
use vvmalloc_tools::trace::replay::{replay, Global, Options, ReplayAlloc};
use vvmalloc_tools::trace::{Kind, Trace};

fn err(text: &str) -> String {
    Trace::parse("t.rep", text).unwrap_err().to_string()
}

#[test]
fn parses_malloc_lab_traces_with_headers() {
    let t = Trace::parse(
        "lab.rep",
        "20000\n3\n5\n1\n# a comment\n\na 0 512\na 1 128\nr 0 640\nf 1\nf 0\n",
    )
    .unwrap();
    assert_eq!(t.ops().len(), 5);
    assert_eq!(
        (t.threads(), t.ids(), t.peak_live(), t.leaked()),
        (1, 2, 768, 0)
    );
    let r = t.ops()[2];
    assert_eq!(
        (r.kind, r.size, r.old_size, r.seq, r.line),
        (Kind::Realloc, 640, 512, 1, 9)
    );
    // The writer's output reads back the same.
    let again = Trace::parse("again", &t.to_text()).unwrap();
    assert_eq!(
        again.ops(),
        t.ops()
            .iter()
            .map(|o| vvmalloc_tools::trace::Op {
                line: o.line - 2,
                ..*o
            })
            .collect::<Vec<_>>()
    );
}

#[test]
fn threads_and_cross_thread_requests() {
    let t = Trace::parse("t.rep", "a 7 10 @2\nf 7 @0\na 7 20\nf 7\n").unwrap();
    assert_eq!(t.threads(), 3);
    let o = t.ops();
    assert!(o[0].signals && !o[0].waits);
    assert!(o[1].waits && !o[1].signals);
    assert!(!o[2].waits && !o[3].waits);
}

#[test]
fn malformed_traces_are_rejected_with_file_line_and_problem() {
    assert_eq!(
        err("a 0 16\nf 1\n"),
        "t.rep:2: f 1: block 1 is not allocated"
    );
    assert_eq!(
        err("a 0 16\nf 0\nf 0\n"),
        "t.rep:3: f 0: block 0 is not allocated (freed at line 2)"
    );
    assert_eq!(
        err("a 0 16\na 0 8\n"),
        "t.rep:2: a 0 8: block 0 is already allocated (last request at line 1)"
    );
    assert_eq!(err("r 3 16\n"), "t.rep:1: r 3 16: block 3 is not allocated");
    assert_eq!(
        err("x 0 16\n"),
        "t.rep:1: x 0 16: unknown request `x` (expected `a`, `f` or `r`)"
    );
    assert_eq!(
        err("a 0\n"),
        "t.rep:1: a 0: expected `a <id> <size> [@thread]`"
    );
    assert_eq!(
        err("f 0 12\n"),
        "t.rep:1: f 0 12: expected `f <id> [@thread]`"
    );
    assert_eq!(
        err("a zero 1\n"),
        "t.rep:1: a zero 1: bad id `zero` (a number)"
    );
    assert_eq!(
        err("a 0 -5\n"),
        "t.rep:1: a 0 -5: bad size `-5` (a number of bytes)"
    );
    assert_eq!(
        err("a 0 99999999999999\n"),
        "t.rep:1: a 0 99999999999999: size 99999999999999 is over the limit of 1099511627776 bytes"
    );
    assert_eq!(
        err("a 0 1 @x\n"),
        "t.rep:1: a 0 1 @x: bad thread `@x` (a number below 4096)"
    );
    assert_eq!(
        err("1\n2\n3\n4\n5\na 0 1\n"),
        "t.rep:5: 5: more than 4 header lines (a request is `a id size`, `f id` or `r id size`)"
    );
    assert_eq!(
        err("a 0 1\n@3\n"),
        "t.rep:2: @3: expected a request before `@3`"
    );
    let missing = Trace::read(std::path::Path::new("/nonexistent/x.rep")).unwrap_err();
    assert!(
        missing
            .to_string()
            .starts_with("/nonexistent/x.rep:0: cannot read:"),
        "{missing}"
    );
}

#[test]
fn the_generator_is_deterministic_and_frees_everything() {
    for w in Workload::ALL {
        for threads in [1, 3, 4] {
            let t = generate(w, 42, threads, 3000);
            assert!(t.ops().len() >= 3000, "{w:?}");
            assert_eq!(t.leaked(), 0, "{w:?} x{threads}");
            assert_eq!(t.threads(), threads, "{w:?}");
            assert_eq!(t.to_text(), generate(w, 42, threads, 3000).to_text());
            assert_ne!(
                t.to_text(),
                generate(w, 43, threads, 3000).to_text(),
                "{w:?}"
            );
        }
    }
    // Producer/consumer frees across threads.
    let pc = generate(Workload::ProducerConsumer, 1, 2, 2000);
    assert!(pc.ops().iter().any(|o| o.waits));
}

fn heaps() -> Vec<Box<dyn ReplayAlloc>> {
    let config = HeapConfig {
        arena_bytes: 8 << 30,
        ..HeapConfig::new()
    };
    vec![
        Box::new(Global::new("glibc", System)),
        Box::new(Global::new("vvmalloc", VvMalloc::new())),
        // The peers are not built for the sanitizer run (Cargo.toml).
        #[cfg(not(vvmalloc_sanitize))]
        Box::new(Global::new("jemalloc", tikv_jemallocator::Jemalloc)),
        #[cfg(not(vvmalloc_sanitize))]
        Box::new(Global::new("mimalloc", mimalloc::MiMalloc)),
        Box::new(Heap::<SkipIndex>::with_config(config)),
        Box::new(Heap::<SkipIndex<Hazard>>::with_config(config)),
        Box::new(Heap::<ListIndex>::with_config(config)),
        Box::new(Heap::<ListIndex<Hazard>>::with_config(config)),
        Box::new(Heap::<BTreeIndex>::with_config(config)),
    ]
}

#[test]
fn every_workload_replays_validated_on_every_allocator() {
    let traces: Vec<Trace> = Workload::ALL
        .into_iter()
        // Large blocks are slow to validate (every byte is written and
        // read): fewer requests for them.
        .map(|w| {
            let ops = match w {
                Workload::LargeFrag | Workload::Realloc => 600,
                _ => 4000,
            };
            generate(w, 5, 3, ops)
        })
        .collect();
    for a in heaps() {
        for t in &traces {
            for (threads, passes) in [(1, 1), (3, 2)] {
                let opts = Options {
                    threads,
                    passes,
                    ..Options::default()
                };
                let r = replay(t, &*a, &opts)
                    .unwrap_or_else(|e| panic!("{} on {}: {e}", a.name(), t.name()));
                assert_eq!(r.ops, passes * t.ops().len());
                assert_eq!(r.threads, threads);
            }
        }
    }
}

/// A broken allocator: `System`, except for what `fault` says.
struct Broken {
    fault: Fault,
    calls: AtomicUsize,
}

#[derive(Clone, Copy, PartialEq)]
enum Fault {
    /// The 3rd allocation returns the 2nd's block again.
    Overlap,
    /// Every block is 8 bytes off its alignment.
    Misaligned,
    /// The 3rd allocation's block gets a byte changed after it was handed out
    /// (at its next free, the pattern is checked).
    Corrupt,
    /// `realloc` copies one byte too few.
    ShortCopy,
}

static SECOND: AtomicUsize = AtomicUsize::new(0);
static THIRD: AtomicUsize = AtomicUsize::new(0);

// SAFETY: not sound, on purpose (a broken allocator for the validator to
// catch); only the replayer's validation calls it, in this test.
unsafe impl GlobalAlloc for Broken {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        let n = self.calls.fetch_add(1, Ordering::SeqCst);
        let pad = if self.fault == Fault::Misaligned {
            8
        } else {
            0
        };
        // SAFETY: a larger layout than asked.
        let p = unsafe { System.alloc(Layout::from_size_align(l.size() + 64, l.align()).unwrap()) }
            .wrapping_add(pad);
        match (self.fault, n) {
            (_, 1) => SECOND.store(p as usize, Ordering::SeqCst),
            (Fault::Overlap, 2) => return SECOND.load(Ordering::SeqCst) as *mut u8,
            (Fault::Corrupt, 2) => THIRD.store(p as usize, Ordering::SeqCst),
            (Fault::Corrupt, 3) => {
                // SAFETY: the third block is live and has at least 16 bytes
                // in the test trace.
                unsafe {
                    let third = THIRD.load(Ordering::SeqCst) as *mut u8;
                    let b = third.add(5).read();
                    third.add(5).write(!b);
                }
            }
            _ => {}
        }
        p
    }

    unsafe fn dealloc(&self, _p: *mut u8, _l: Layout) {
        // Leaks: the test blocks are few, and a broken allocator's blocks
        // are not worth giving back.
    }

    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        // SAFETY: a fresh block of `new` bytes.
        let q = unsafe { self.alloc(Layout::from_size_align(new, l.align()).unwrap()) };
        let n = l.size().min(new) - if self.fault == Fault::ShortCopy { 1 } else { 0 };
        // SAFETY: both blocks have at least `n` bytes and are distinct.
        unsafe { std::ptr::copy_nonoverlapping(p, q, n) };
        q
    }
}

fn broken(fault: Fault, text: &str) -> String {
    let t = Trace::parse("b.rep", text).unwrap();
    let a = Global::new(
        "broken",
        Broken {
            fault,
            calls: AtomicUsize::new(0),
        },
    );
    replay(&t, &a, &Options::default()).unwrap_err().to_string()
}

#[test]
fn the_validator_catches_broken_allocators() {
    let trace = "a 0 64\na 1 64\na 2 64\na 3 64\nf 2\nf 1\nf 0\nf 3\n";
    let e = broken(Fault::Overlap, trace);
    assert!(e.starts_with("b.rep:3: block 0x"), "{e}");
    assert!(
        e.contains("overlaps the live block") && e.contains("(block 1 allocated at line 2)"),
        "{e}"
    );

    let e = broken(Fault::Misaligned, trace);
    assert!(
        e.starts_with("b.rep:1: block 0x") && e.ends_with("of 64 bytes is not aligned to 16"),
        "{e}"
    );

    let e = broken(Fault::Corrupt, trace);
    assert!(e.starts_with("b.rep:5: free: byte 5 of block 2 (0x"), "{e}");
    assert!(
        e.ends_with("64 bytes checked) changed since it was written"),
        "{e}"
    );

    let e = broken(Fault::ShortCopy, "a 0 40\nr 0 100\nf 0\n");
    assert!(
        e.starts_with("b.rep:2: realloc did not keep the contents: byte 39 of block 0"),
        "{e}"
    );

    // The same traces pass on a working allocator.
    for text in [trace, "a 0 40\nr 0 100\nf 0\n"] {
        let t = Trace::parse("ok.rep", text).unwrap();
        replay(&t, &Global::new("glibc", System), &Options::default()).unwrap();
    }
}

#[test]
fn bad_options_and_failed_allocations_are_errors() {
    let t = Trace::parse("t.rep", "a 0 16\nf 0\n").unwrap();
    let e = replay(
        &t,
        &Global::new("glibc", System),
        &Options {
            align: 24,
            ..Options::default()
        },
    );
    assert_eq!(
        e.unwrap_err().to_string(),
        "t.rep:0: alignment 24 is not a power of two below 2^40"
    );
    // `min_secs` stops after the pass that reaches it; 0 runs every pass.
    let g = Global::new("glibc", System);
    let once = Options {
        passes: 50,
        min_secs: 1e-12,
        ..Options::default()
    };
    assert_eq!(replay(&t, &g, &once).unwrap().ops, 2);
    let all = Options {
        passes: 5,
        ..Options::default()
    };
    assert_eq!(replay(&t, &g, &all).unwrap().ops, 10);
    // A request no allocator can serve: an error, not a crash.
    let t = Trace::parse("huge.rep", "a 0 1099511627776\nf 0\n").unwrap();
    let tiny: Heap = Heap::with_config(HeapConfig {
        arena_bytes: 64 << 20,
        ..HeapConfig::new()
    });
    tiny.inject_os_failures(1000);
    let e = replay(&t, &tiny, &Options::default()).unwrap_err();
    assert_eq!(
        e.to_string(),
        "huge.rep:1: allocation of 1099511627776 bytes failed"
    );
}

/// The shipped trace set (`traces/`) is what `mdriver gen` makes with its
/// defaults (seed 1, 4 threads, 30000 requests), parses, and replays with
/// validation on vvmalloc's process heap and a heap instance.
#[test]
fn the_shipped_traces_are_reproducible_and_replay_cleanly() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../traces");
    for w in Workload::ALL {
        let path = dir.join(format!("{}.rep", w.name()));
        let shipped = std::fs::read_to_string(&path).unwrap();
        let body: String = shipped
            .lines()
            .filter(|l| !l.starts_with('#'))
            .map(|l| format!("{l}\n"))
            .collect();
        let t = Trace::read(&path).unwrap();
        assert_eq!(
            body,
            generate(w, 1, 4, 30_000).to_text(),
            "{}",
            path.display()
        );
        assert_eq!(t.threads(), 4);
        if cfg!(miri) || w == Workload::LargeFrag {
            // Validating 30000 large blocks writes and reads gigabytes: the
            // CLI does that (see the README), not the test suite.
            continue;
        }
        replay_validated_on_vvmalloc(&t);
    }
}

/// Replays `t` with validation, on 2 threads, on vvmalloc's process heap
/// and on a heap instance; panics naming the trace and allocator.
fn replay_validated_on_vvmalloc(t: &Trace) {
    let opts = Options {
        threads: 2,
        ..Options::default()
    };
    for a in [
        Box::new(Global::new("vvmalloc", VvMalloc::new())) as Box<dyn ReplayAlloc>,
        Box::new(Heap::<SkipIndex>::new()),
    ] {
        replay(t, &*a, &opts).unwrap_or_else(|e| panic!("{}, {}: {e}", t.name(), a.name()));
    }
}

/// The recordings of real programs in `traces/real-*.rep` parse and replay
/// with validation on vvmalloc's process heap and a heap instance.
#[test]
fn the_recorded_traces_of_real_programs_replay_cleanly() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../traces");
    for name in ["python", "gcc", "git", "sort"] {
        let path = dir.join(format!("real-{name}.rep"));
        let t = Trace::read(&path).unwrap_or_else(|e| panic!("{e}"));
        assert!(!t.ops().is_empty());
        if cfg!(miri) {
            continue;
        }
        replay_validated_on_vvmalloc(&t);
    }
}

/// An allocator that panics on its third allocation.
struct Panics(AtomicUsize);

// SAFETY: forwards to `System`, or panics before allocating.
unsafe impl GlobalAlloc for Panics {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        assert!(
            self.0.fetch_add(1, Ordering::SeqCst) != 2,
            "the allocator panics"
        );
        // SAFETY: the caller's contract.
        unsafe { System.alloc(l) }
    }

    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        // SAFETY: the caller's contract.
        unsafe { System.dealloc(p, l) }
    }
}

/// A replay thread that panics must not leave the others waiting for its
/// requests: the replay ends, passing the panic on.
#[test]
fn a_panicking_allocator_does_not_hang_the_replay() {
    // Thread 1 frees what thread 0 allocates, so it waits on thread 0.
    let t = Trace::parse("p.rep", "a 0 8\nf 0 @1\na 1 8\nf 1 @1\na 2 8\nf 2 @1\n").unwrap();
    let a = Global::new("panics", Panics(AtomicUsize::new(0)));
    let opts = Options {
        threads: 2,
        ..Options::default()
    };
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| replay(&t, &a, &opts)));
    assert!(r.is_err(), "the panic is passed on");
}

/// Two threads sharing a few big free runs (the replayer drives the heap): a search that fails while the
/// other thread holds a run (to split or coalesce it) must not map a new
/// region each time, or the address space grows with every pass.
#[test]
fn concurrent_large_blocks_do_not_grow_the_arena_without_bound() {
    fn check<I: FreeIndex>() {
        let t = generate(Workload::LargeFrag, 5, 4, 4000);
        let heap: Heap<I> = Heap::with_config(HeapConfig {
            arena_bytes: 4 << 30,
            checked: false,
        });
        let opts = Options {
            threads: 2,
            validate: false,
            ..Options::default()
        };
        let mut mapped = Vec::new();
        for _ in 0..20 {
            replay(&t, &heap, &opts).unwrap();
            mapped.push(heap.stats().mapped_bytes >> 20);
        }
        // Measured on 2 cores: +64 MiB over the last 18 passes with the
        // retries, +450 MiB over 8 passes without.
        assert!(
            mapped[19] <= mapped[1] + 384,
            "{} MiB mapped by pass: {mapped:?}",
            I::NAME
        );
    }
    if cfg!(miri) {
        return; // no mmap(PROT_NONE) under Miri
    }
    check::<SkipIndex>();
    check::<BTreeIndex>();
}
