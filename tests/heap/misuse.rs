//! Misuse: counted in unchecked mode, reported and aborting in checked mode; double frees of large and huge blocks.

use super::*;

#[test]
fn misuse_is_counted_and_harmless_in_unchecked_mode() {
    let heap: Heap = small_heap();
    let l = Layout::from_size_align(64, 8).unwrap();
    let p = heap.alloc(l);
    let mut on_stack = [0u8; 64];
    // SAFETY: deliberately wrong calls: the heap must detect them and leave
    // its state intact (the contract is broken only in ways it checks).
    unsafe {
        heap.dealloc(on_stack.as_mut_ptr(), l); // foreign
        heap.dealloc(p.add(8), l); // inside a block
    }
    let big = Layout::from_size_align(100_000, 8).unwrap();
    let b = heap.alloc(big);
    // SAFETY: as above; the second free is the misuse.
    unsafe {
        heap.dealloc(b, big);
        heap.dealloc(b, big);
    }
    assert_eq!(heap.stats().misuse, 3);
    // The heap still works and hands out distinct blocks.
    let x = heap.alloc(big);
    let y = heap.alloc(big);
    assert!(!x.is_null() && !y.is_null() && x != y);
    // SAFETY: from this heap.
    unsafe {
        heap.dealloc(x, big);
        heap.dealloc(y, big);
        heap.dealloc(p, l);
    }
}

/// The misuse a checked heap must catch, one per child process.
const MISUSE: &[(&str, &str)] = &[
    (
        "foreign",
        "vvmalloc: free of a pointer this heap never returned (address 0x",
    ),
    (
        "small-double-free",
        "vvmalloc: double free of a small block (or a free of one never handed out) (address 0x",
    ),
    (
        "small-double-free-cached",
        "vvmalloc: double free of a small block (or a free of one never handed out) (address 0x",
    ),
    (
        "overrun",
        "vvmalloc: write past the end of a small block (address 0x",
    ),
    ("overrun", "bytes requested 20, first byte overwritten 21)"),
    (
        "overrun-record",
        "vvmalloc: write past the end of a small block (its size record, the last 8 bytes of the block, was overwritten) (address 0x",
    ),
    (
        "overrun-cached",
        "bytes requested 100, first byte overwritten 100)",
    ),
    (
        "wrong-size",
        "vvmalloc: free with a size other than the block's (address 0x",
    ),
    ("wrong-size", "size given 48, size allocated 40)"),
    (
        "corrupt-free-list",
        "vvmalloc: a small block in use was handed out again: the free lists are corrupt",
    ),
    (
        "large-double-free",
        "vvmalloc: double free of a large block (or a pointer inside one) (address 0x",
    ),
];

/// Commits the misuse `what` on a checked heap (in a child process: it must
/// abort before the end).
fn commit_misuse(what: &str) {
    let heap: Heap = Heap::with_config(HeapConfig {
        arena_bytes: ARENA,
        checked: true,
    });
    let local = heap.local();
    let l = |n| Layout::from_size_align(n, 8).unwrap();
    // SAFETY: each arm is deliberately wrong in the way it names (and only
    // in ways the checked heap checks): it must abort at the misuse.
    unsafe {
        match what {
            "foreign" => {
                let _ = heap.alloc(l(64));
                let mut x = [0u8; 64];
                heap.dealloc(x.as_mut_ptr(), l(64));
            }
            "small-double-free" => {
                let p = heap.alloc(l(24));
                heap.dealloc(p, l(24));
                heap.free(p);
            }
            "small-double-free-cached" => {
                let p = local.alloc(l(300));
                let q = local.alloc(l(300));
                local.dealloc(p, l(300));
                local.dealloc(q, l(300));
                local.dealloc(p, l(300));
            }
            "overrun" => {
                let p = heap.alloc(l(20));
                p.add(21).write(0);
                heap.free(p);
            }
            "overrun-record" => {
                // 24 bytes take a 32-byte block whose last 8 are the record.
                let p = heap.alloc(l(24));
                p.add(24).write(7);
                heap.dealloc(p, l(24));
            }
            "overrun-cached" => {
                let p = local.alloc(l(100));
                core::ptr::write_bytes(p, 1, 101);
                local.dealloc(p, l(100));
            }
            "wrong-size" => {
                let p = heap.alloc(l(40));
                heap.dealloc(p, l(48));
            }
            "corrupt-free-list" => {
                // A write after free points the free block's link at a
                // block in use, which the heap then hands out again.
                let a = local.alloc(l(64));
                let b = local.alloc(l(64));
                local.dealloc(b, l(64));
                b.cast::<*mut u8>().write(a);
                let _ = local.alloc(l(64)); // b
                let _ = local.alloc(l(64)); // a, again
            }
            "large-double-free" => {
                let p = heap.alloc(l(100_000));
                heap.free(p);
                heap.free(p);
            }
            _ => panic!("no misuse named {what}"),
        }
    }
    drop(local);
    std::process::exit(3); // not reached if the heap aborted
}

/// The checked mode reports each misuse with its kind and address and
/// aborts: run this test binary again as a child that commits it, and read
/// its stderr.
#[test]
fn checked_mode_reports_and_aborts() {
    if cfg!(miri) {
        return; // Miri cannot start processes; the other runs cover this.
    }
    if let Some(what) = std::env::var_os("VV_MISUSE") {
        commit_misuse(what.to_str().unwrap());
    }
    for &(what, message) in MISUSE {
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "misuse::checked_mode_reports_and_aborts",
                "--nocapture",
            ])
            .env("VV_MISUSE", what)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.code().is_none(),
            "{what}: the child was not killed by an abort ({}): {err}",
            out.status
        );
        assert!(
            err.contains(message),
            "{what}: expected {message:?} in {err}"
        );
    }
}

/// In checked mode a correct program sees blocks of exactly the size it
/// asked for (`usable_size`), zeroed where asked, kept by `realloc`, and
/// the statistics stay exact; nothing is reported.
#[test]
fn checked_mode_is_transparent_to_correct_use() {
    let heap: Heap = Heap::with_config(HeapConfig {
        arena_bytes: ARENA,
        checked: true,
    });
    assert!(heap.config().checked);
    let local = heap.local();
    let mut blocks = Vec::new();
    for (i, n) in [
        0usize, 1, 8, 9, 15, 16, 17, 24, 100, 1000, 16_376, 16_377, 20_000,
    ]
    .into_iter()
    .enumerate()
    {
        for align in [1usize, 16, 64, 4096] {
            let l = Layout::from_size_align(n, align).unwrap();
            let p = if i % 2 == 0 {
                local.alloc_zeroed(l)
            } else {
                heap.alloc_zeroed(l)
            };
            assert!(!p.is_null());
            assert_eq!(p as usize % align, 0);
            // SAFETY: a fresh zeroed block of `n` bytes.
            assert!((0..n).all(|k| unsafe { p.add(k).read() } == 0));
            let usable = heap.usable_size(p).unwrap();
            if n + 8 <= vvmalloc::heap::SMALL_MAX {
                assert_eq!(usable, n, "usable size of a checked small block");
            } else {
                assert!(usable >= n);
            }
            fill(p, usable, i as u8);
            blocks.push((p, l, i as u8));
        }
    }
    for (k, (p, l, s)) in blocks.iter_mut().enumerate() {
        assert!(check(*p, l.size(), *s));
        let new = [3, 40, 5000, 30_000][k % 4];
        // SAFETY: a live block of `heap` with layout `l`.
        let q = unsafe {
            if k % 2 == 0 {
                local.realloc(*p, *l, new)
            } else {
                heap.realloc(*p, *l, new)
            }
        };
        assert!(!q.is_null());
        assert!(check(q, l.size().min(new), *s));
        *l = Layout::from_size_align(new, l.align()).unwrap();
        fill(q, new, *s);
        *p = q;
    }
    for (k, (p, l, s)) in blocks.into_iter().enumerate() {
        assert!(check(p, l.size(), s));
        // SAFETY: as above; the unsized free takes the recorded size.
        unsafe {
            if k % 3 == 0 {
                heap.free(p)
            } else {
                local.dealloc(p, l)
            }
        }
    }
    drop(local);
    let st = heap.stats();
    assert_eq!(st.misuse, 0);
    assert_eq!(st.requested_bytes, 0, "{st:?}");
    assert_eq!(st.in_use_bytes, 0, "{st:?}");
}

/// A second free of a large or huge block, and a free of a page inside a
/// live large block, are detected (a large block's page record is cleared
/// by its free; a huge block leaves the huge table), counted and harmless.
#[test]
fn double_frees_of_large_and_huge_blocks_are_detected() {
    let heap: Heap = small_heap();
    let l = Layout::from_size_align(200_000, 16).unwrap();
    let h = Layout::from_size_align(HUGE_MIN, 16).unwrap();
    let a = heap.alloc(l);
    let b = heap.alloc(h);
    // SAFETY: deliberately wrong: a page inside a live block, then each
    // block freed twice; the heap must detect the wrong calls.
    unsafe {
        heap.free(a.add(8192));
        heap.dealloc(a, l);
        heap.free(a);
        heap.dealloc(b, h);
        heap.free(b);
    }
    let st = heap.stats();
    assert_eq!(st.misuse, 3);
    assert_eq!((st.in_use_bytes, st.huge_blocks), (0, 0));
    // Still works, and the large block's space is reused once.
    let c = heap.alloc(l);
    let d = heap.alloc(l);
    assert!(!c.is_null() && !d.is_null() && c != d);
}
