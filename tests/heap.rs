//! Tests of `Heap` instances: every path, each free index, properties,
//! threads, memory given back, misuse and failure.

#![cfg(not(loom))]

use std::alloc::Layout;
use std::collections::BTreeMap;

use proptest::prelude::*;
use vvmalloc::heap::{BTreeIndex, FreeIndex, HeapConfig, ListIndex, SkipIndex, HUGE_MIN};
use vvmalloc::reclaim::Hazard;
use vvmalloc::Heap;

/// Address space of the tests' heaps: under Miri every byte of it is a
/// real (zeroed) allocation, so it is small there.
const ARENA: usize = if cfg!(miri) { 64 << 20 } else { 4 << 30 };

fn small_heap<I: FreeIndex>() -> Heap<I> {
    Heap::with_config(HeapConfig {
        arena_bytes: ARENA,
        checked: false,
    })
}

fn fill(p: *mut u8, len: usize, seed: u8) {
    for i in 0..len {
        // SAFETY: the callers pass live blocks of at least `len` bytes.
        unsafe { p.add(i).write(seed.wrapping_add(i as u8)) };
    }
}

fn check(p: *const u8, len: usize, seed: u8) -> bool {
    // SAFETY: as for `fill`.
    (0..len).all(|i| unsafe { p.add(i).read() } == seed.wrapping_add(i as u8))
}

/// Sizes from 1 byte to huge, every power-of-two alignment up to 1 MiB.
#[test]
fn every_size_range_and_alignment() {
    let heap: Heap = small_heap();
    let local = heap.local();
    let sizes = [
        1,
        8,
        16,
        17,
        100,
        128,
        129,
        1000,
        4096,
        16 * 1024,
        16 * 1024 + 1,
        100_000,
        HUGE_MIN - 1,
        HUGE_MIN,
        9 << 20,
    ];
    let mut live = Vec::new();
    for (k, &size) in sizes.iter().enumerate() {
        let mut align = 1;
        while align <= 1 << 20 {
            let layout = Layout::from_size_align(size, align).unwrap();
            for (via_local, p) in [(false, heap.alloc(layout)), (true, local.alloc(layout))] {
                assert!(!p.is_null(), "{size} @ {align}");
                assert_eq!(p as usize % align, 0, "{size} @ {align} misaligned");
                let n = size.min(4096);
                fill(p, n, k as u8);
                live.push((p, layout, n, k as u8, via_local));
            }
            align *= if size > 1 << 16 { 16 } else { 2 };
        }
    }
    // No two live blocks overlap.
    let mut spans: Vec<(usize, usize)> = live
        .iter()
        .map(|&(p, l, ..)| (p as usize, l.size()))
        .collect();
    spans.sort();
    for w in spans.windows(2) {
        assert!(
            w[0].0 + w[0].1 <= w[1].0,
            "overlap: {:x?} {:x?}",
            w[0],
            w[1]
        );
    }
    for (p, layout, n, seed, via_local) in live {
        assert!(check(p, n, seed));
        // Free through the other path than the allocation's.
        // SAFETY: from this heap with this layout.
        unsafe {
            if via_local {
                heap.dealloc(p, layout)
            } else {
                local.dealloc(p, layout)
            }
        }
    }
    drop(local);
    let s = heap.stats();
    assert_eq!(s.in_use_bytes, 0, "{s:?}");
    assert_eq!(s.requested_bytes, 0);
    assert_eq!(s.misuse, 0);
}

#[test]
fn zeroed_blocks_are_zero_even_when_reused() {
    let heap: Heap = small_heap();
    for size in [24, 3000, 50_000, HUGE_MIN + 5] {
        let layout = Layout::from_size_align(size, 8).unwrap();
        let p = heap.alloc(layout);
        fill(p, size, 7);
        // SAFETY: from this heap.
        unsafe { heap.dealloc(p, layout) };
        let q = heap.alloc_zeroed(layout);
        // SAFETY: a live block of `size` bytes.
        assert!((0..size).all(|i| unsafe { q.add(i).read() } == 0), "{size}");
        // SAFETY: from this heap.
        unsafe { heap.dealloc(q, layout) };
    }
}

#[test]
fn zeroed_fresh_large_blocks_are_not_written() {
    // Fresh OS pages are zero: zeroing them again would fault them all in.
    let heap: Heap = small_heap();
    let size = 8 << 20;
    let layout = Layout::from_size_align(size, 4096).unwrap();
    let p = heap.alloc_zeroed(layout);
    assert!(!p.is_null());
    let resident = heap.stats().resident_bytes;
    assert!(
        resident < 2 << 20,
        "{resident} bytes resident after alloc_zeroed"
    );
    let zero = |i: usize| {
        // SAFETY: `i < size`, inside the live block.
        unsafe { p.add(i).read() == 0 }
    };
    assert!((0..size).step_by(4096).all(zero));
    // SAFETY: from this heap.
    unsafe { heap.dealloc(p, layout) };
}

#[test]
fn realloc_keeps_contents_and_grows_large_blocks_in_place() {
    let heap: Heap = small_heap();
    let l = Layout::from_size_align(40_000, 8).unwrap();
    let p = heap.alloc(l);
    fill(p, 40_000, 3);
    // The rest of a fresh region follows the block: growth is in place.
    // SAFETY: from this heap with `l`.
    let q = unsafe { heap.realloc(p, l, 200_000) };
    assert_eq!(p, q);
    assert!(check(q, 40_000, 3));
    // Shrinking is in place too.
    let l2 = Layout::from_size_align(200_000, 8).unwrap();
    // SAFETY: as above.
    let r = unsafe { heap.realloc(q, l2, 20_000) };
    assert_eq!(r, q);
    // Small to large to huge and back.
    let l3 = Layout::from_size_align(20_000, 8).unwrap();
    // SAFETY: as above.
    let s = unsafe { heap.realloc(r, l3, 100) };
    assert!(check(s, 100, 3));
    let l4 = Layout::from_size_align(100, 8).unwrap();
    // SAFETY: as above.
    let h = unsafe { heap.realloc(s, l4, HUGE_MIN * 2) };
    assert!(check(h, 100, 3));
    fill(h, HUGE_MIN * 2, 9);
    let l5 = Layout::from_size_align(HUGE_MIN * 2, 8).unwrap();
    // SAFETY: as above (a huge block grows by mremap).
    let h2 = unsafe { heap.realloc(h, l5, HUGE_MIN * 8) };
    assert!(check(h2, HUGE_MIN * 2, 9));
    let l6 = Layout::from_size_align(HUGE_MIN * 8, 8).unwrap();
    // SAFETY: as above.
    let t = unsafe { heap.realloc(h2, l6, 10) };
    assert!(check(t, 10, 9));
    // SAFETY: as above.
    unsafe { heap.dealloc(t, Layout::from_size_align(10, 8).unwrap()) };
    let st = heap.stats();
    assert_eq!(
        (
            st.in_use_bytes,
            st.requested_bytes,
            st.huge_blocks,
            st.misuse
        ),
        (0, 0, 0, 0),
        "{st:?}"
    );
}

#[test]
fn impossible_requests_return_null_and_the_heap_survives_os_failure() {
    let heap: Heap = small_heap();
    let too_big = Layout::from_size_align(isize::MAX as usize - 4095, 4096).unwrap();
    assert!(heap.alloc(too_big).is_null());
    let local = heap.local();
    assert!(local.alloc(too_big).is_null());
    // The OS refuses everything for a while: the first allocation (which
    // must reserve the arena) fails cleanly.
    heap.inject_os_failures(1);
    let l = Layout::from_size_align(64, 8).unwrap();
    assert!(heap.alloc(l).is_null());
    // Memory is back: the heap works.
    let p = heap.alloc(l);
    assert!(!p.is_null());
    // A large request needing a new region fails, then succeeds.
    let big = Layout::from_size_align(1 << 20, 8).unwrap();
    heap.inject_os_failures(1);
    assert!(heap.alloc(big).is_null());
    let q = heap.alloc(big);
    assert!(!q.is_null());
    heap.inject_os_failures(1);
    assert!(heap
        .alloc(Layout::from_size_align(HUGE_MIN, 8).unwrap())
        .is_null());
    // SAFETY: from this heap.
    unsafe {
        heap.dealloc(p, l);
        heap.dealloc(q, big);
    }
    // An arena too small for the request.
    let tiny: Heap = Heap::with_config(HeapConfig {
        arena_bytes: 1 << 20,
        checked: false,
    });
    assert!(tiny
        .alloc(Layout::from_size_align(2 << 20, 8).unwrap())
        .is_null());
    assert!(!tiny
        .alloc(Layout::from_size_align(64, 8).unwrap())
        .is_null());
}

/// The OS refuses the next mapping at each point where the heap maps or
/// commits memory once its arena exists: a new span for small blocks (on
/// the cache-less path and through a thread cache, checked or not) and a
/// huge block moved by `realloc`. Each request that needed it returns null,
/// the blocks already handed out keep their bytes (a failed `realloc`
/// leaves its block as it was), and the next request succeeds.
#[test]
fn os_failure_at_every_mapping_point_returns_null_and_loses_nothing() {
    for checked in [false, true] {
        let heap: Heap = Heap::with_config(HeapConfig {
            arena_bytes: ARENA,
            checked,
        });
        let local = heap.local();
        // 16 KiB blocks: four to a span (three when checked), so a new span
        // is needed every few requests.
        let l = Layout::from_size_align(16_000, 16).unwrap();
        for cached in [false, true] {
            let alloc = || {
                if cached {
                    local.alloc(l)
                } else {
                    heap.alloc(l)
                }
            };
            let mut kept = Vec::new();
            heap.inject_os_failures(1);
            let mut failed = false;
            for i in 0..16u8 {
                let p = alloc();
                if p.is_null() {
                    failed = true;
                    break;
                }
                fill(p, l.size(), i);
                kept.push((p, i));
            }
            assert!(
                failed,
                "no request needed a new span (checked {checked}, cached {cached})"
            );
            let p = alloc();
            assert!(!p.is_null(), "the heap did not recover");
            kept.push((p, 99));
            fill(p, l.size(), 99);
            for (p, i) in kept {
                assert!(check(p, l.size(), i));
                // SAFETY: a live block of `heap` with layout `l`.
                unsafe { heap.dealloc(p, l) };
            }
        }
        // A huge block that `realloc` must move (it grows it with
        // `mremap`): refused, it stays where it was, whole.
        let h = Layout::from_size_align(HUGE_MIN, 16).unwrap();
        let p = heap.alloc(h);
        fill(p, 4096, 7);
        heap.inject_os_failures(1);
        // SAFETY: a live block of `heap` with layout `h`.
        let q = unsafe { heap.realloc(p, h, 2 * HUGE_MIN) };
        assert!(q.is_null());
        assert!(check(p, 4096, 7));
        // SAFETY: as above; it is still live after the failed realloc.
        let q = unsafe { heap.realloc(p, h, 2 * HUGE_MIN) };
        assert!(!q.is_null() && check(q, 4096, 7));
        // SAFETY: the moved block, now of `2 * HUGE_MIN` bytes.
        unsafe { heap.dealloc(q, Layout::from_size_align(2 * HUGE_MIN, 16).unwrap()) };
        drop(local);
        let st = heap.stats();
        assert_eq!((st.in_use_bytes, st.misuse), (0, 0), "{st:?}");
    }
}

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
            .args(["--exact", "checked_mode_reports_and_aborts", "--nocapture"])
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

/// Blocks allocated by producer threads' heaps and freed by a consumer's:
/// every free is a remote free back to the owning page. Every block keeps
/// its bytes, nothing is lost, and once the producers are gone (their pages
/// abandoned, with frees still arriving), `trim` takes every page back.
#[test]
fn cross_thread_frees_go_back_to_the_owning_pages() {
    let n = if cfg!(miri) { 100 } else { 200_000 };
    let heap: Heap = small_heap();
    let (tx, rx) = std::sync::mpsc::sync_channel::<(usize, usize, u8)>(1024);
    std::thread::scope(|s| {
        for t in 0..2u8 {
            let tx = tx.clone();
            let heap = &heap;
            s.spawn(move || {
                let local = heap.local();
                for i in 0..n {
                    let size = 8 + (i * 37 + t as usize * 11) % 1000;
                    let p = local.alloc(Layout::from_size_align(size, 8).unwrap());
                    assert!(!p.is_null());
                    let seed = (i as u8) ^ t;
                    fill(p, size, seed);
                    tx.send((p as usize, size, seed)).unwrap();
                }
            });
        }
        drop(tx);
        let local = heap.local();
        let mut freed = 0;
        for (p, size, seed) in rx {
            assert!(check(p as *const u8, size, seed), "bytes changed");
            // SAFETY: a live block of this heap, sent by its owner.
            unsafe { local.dealloc(p as *mut u8, Layout::from_size_align(size, 8).unwrap()) };
            freed += 1;
        }
        assert_eq!(freed, 2 * n);
    });
    let st = heap.stats();
    assert_eq!((st.requested_bytes, st.misuse), (0, 0), "{st:?}");
    // The producers' footprint stayed bounded: the consumer's frees went
    // back to their pages, which the producers reused (at most 1024 blocks
    // of under 1 KiB in flight per producer, plus what the page search
    // leaves behind: well under 16 MiB).
    assert!(st.mapped_bytes < 16 << 20, "{st:?}");
    heap.trim();
    let st = heap.stats();
    assert_eq!(st.in_use_bytes, 0, "{st:?}");
    assert!(st.spans_released > 0, "{st:?}");
    // Every block is free, so every page went back: none is missed among
    // the abandoned ones.
    assert_eq!(st.small_free_bytes(), 0, "{st:?}");
    assert_eq!(st.small.iter().map(|c| c.spans).sum::<usize>(), 0, "{st:?}");
}

/// A thread heap dropped with blocks still in use abandons its pages;
/// after those blocks are freed (cache-less, from other threads), another
/// thread heap adopts the pages instead of taking new memory, and an empty
/// page given back by one heap is reused by the next.
#[test]
fn abandoned_pages_are_adopted_and_empty_pages_reused() {
    let heap: Heap = small_heap();
    // 1 KiB blocks, 64 to a page; `n` a multiple of two pages' worth, so
    // that each of the two heaps below needs whole pages (with a part of a
    // page left over, one of them would need a new page for its last
    // blocks: each heap adopts whole pages).
    let layout = Layout::from_size_align(1024, 8).unwrap();
    let n = if cfg!(miri) { 256 } else { 20_480 };
    let mapped = || heap.stats().mapped_bytes;
    // One heap allocates n blocks and is dropped with all of them live.
    let a = heap.local();
    let ps: Vec<usize> = (0..n).map(|_| a.alloc(layout) as usize).collect();
    assert!(ps.iter().all(|&p| p != 0));
    drop(a);
    let st = heap.stats();
    let c = st.small.iter().position(|c| c.size == 1024).unwrap();
    assert_eq!(st.small[c].in_use_blocks, n, "{st:?}");
    let before = mapped();
    // Freed from two other threads without a thread heap.
    std::thread::scope(|s| {
        for half in ps.chunks(n / 2) {
            let heap = &heap;
            s.spawn(move || {
                for &p in half {
                    // SAFETY: allocated above with `layout`, freed once.
                    unsafe { heap.dealloc(p as *mut u8, layout) };
                }
            });
        }
    });
    // Two heaps on two threads allocate as many again: no new memory.
    std::thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| {
                let b = heap.local();
                let ps: Vec<usize> = (0..n / 2).map(|_| b.alloc(layout) as usize).collect();
                for &p in &ps {
                    assert!(p != 0);
                    // SAFETY: as above.
                    unsafe { b.dealloc(p as *mut u8, layout) };
                }
            });
        }
    });
    assert_eq!(
        mapped(),
        before,
        "new memory while abandoned pages had room"
    );
    let st = heap.stats();
    assert_eq!(st.in_use_bytes, 0, "{st:?}");
    assert!(st.empty_page_bytes > 0, "{st:?}");
    heap.trim();
    let st = heap.stats();
    assert_eq!(st.small_free_bytes(), 0, "trim missed a page: {st:?}");
    assert_eq!(st.empty_page_bytes, 0, "{st:?}");
}

#[derive(Clone, Debug)]
enum Op {
    Alloc { size: usize, align_log: u32 },
    Free(usize),
    Realloc(usize, usize),
}

fn op() -> impl Strategy<Value = Op> {
    let size = prop_oneof![
        6 => 1usize..512,
        3 => 512usize..20_000,
        2 => 20_000usize..600_000,
        1 => HUGE_MIN..HUGE_MIN + 100_000,
    ];
    prop_oneof![
        4 => (size.clone(), 0u32..13).prop_map(|(size, align_log)| Op::Alloc { size, align_log }),
        3 => any::<usize>().prop_map(Op::Free),
        2 => (any::<usize>(), size).prop_map(|(i, s)| Op::Realloc(i, s)),
    ]
}

/// Random alloc/free/realloc sequences: blocks never overlap, are aligned,
/// keep their bytes until freed, and `realloc` keeps the contents.
fn run_ops<I: FreeIndex>(ops: &[Op], use_local: bool, checked: bool) -> Result<(), TestCaseError> {
    let heap: Heap<I> = Heap::with_config(HeapConfig {
        arena_bytes: ARENA,
        checked,
    });
    let local = heap.local();
    let alloc = |l: Layout| {
        if use_local {
            local.alloc(l)
        } else {
            heap.alloc(l)
        }
    };
    let mut live: BTreeMap<usize, (Layout, u8)> = BTreeMap::new();
    let overlaps = |live: &BTreeMap<usize, (Layout, u8)>, p: usize, n: usize| {
        live.range(..p + n.max(1))
            .next_back()
            .is_some_and(|(&q, &(l, _))| q + l.size().max(1) > p)
    };
    for (seed, op) in ops.iter().enumerate() {
        let seed = seed as u8;
        match *op {
            Op::Alloc { size, align_log } => {
                let l = Layout::from_size_align(size, 1 << align_log).unwrap();
                let p = alloc(l);
                prop_assert!(!p.is_null());
                prop_assert_eq!(p as usize % l.align(), 0);
                prop_assert!(!overlaps(&live, p as usize, size), "overlap at {:p}", p);
                fill(p, size.min(2048), seed);
                live.insert(p as usize, (l, seed));
            }
            Op::Free(i) | Op::Realloc(i, _) if live.is_empty() => {
                let _ = i;
            }
            Op::Free(i) => {
                let (&p, &(l, s)) = live.iter().nth(i % live.len()).unwrap();
                prop_assert!(
                    check(p as *const u8, l.size().min(2048), s),
                    "bytes changed"
                );
                live.remove(&p);
                // SAFETY: a live block of this heap with layout `l`.
                unsafe {
                    if use_local {
                        local.dealloc(p as *mut u8, l)
                    } else {
                        heap.dealloc(p as *mut u8, l)
                    }
                }
            }
            Op::Realloc(i, new) => {
                let (&p, &(l, s)) = live.iter().nth(i % live.len()).unwrap();
                live.remove(&p);
                // SAFETY: as above.
                let q = unsafe {
                    if use_local {
                        local.realloc(p as *mut u8, l, new)
                    } else {
                        heap.realloc(p as *mut u8, l, new)
                    }
                };
                prop_assert!(!q.is_null());
                prop_assert_eq!(q as usize % l.align(), 0);
                prop_assert!(
                    check(q, l.size().min(new).min(2048), s),
                    "realloc lost bytes"
                );
                prop_assert!(!overlaps(&live, q as usize, new));
                fill(q, new.min(2048), seed);
                live.insert(
                    q as usize,
                    (Layout::from_size_align(new, l.align()).unwrap(), seed),
                );
            }
        }
    }
    for (p, (l, s)) in live {
        prop_assert!(check(p as *const u8, l.size().min(2048), s));
        // SAFETY: as above.
        unsafe { heap.dealloc(p as *mut u8, l) };
    }
    drop(local);
    let st = heap.stats();
    prop_assert_eq!(st.misuse, 0);
    prop_assert_eq!(st.requested_bytes, 0);
    prop_assert_eq!(st.in_use_bytes, 0, "{:?}", st);
    Ok(())
}

/// 48 cases, 2 under Miri, which also cannot write failure files.
fn config() -> ProptestConfig {
    let mut config = ProptestConfig::with_cases(if cfg!(miri) { 2 } else { 48 });
    if cfg!(miri) {
        config.failure_persistence = None;
    }
    config
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn prop_skip_index(ops in prop::collection::vec(op(), 1..150), local: bool) {
        run_ops::<SkipIndex>(&ops, local, false)?;
    }

    #[test]
    fn prop_list_index(ops in prop::collection::vec(op(), 1..150), local: bool) {
        run_ops::<ListIndex>(&ops, local, false)?;
    }

    #[test]
    fn prop_skip_index_hazard(ops in prop::collection::vec(op(), 1..150), local: bool) {
        run_ops::<SkipIndex<Hazard>>(&ops, local, false)?;
    }

    #[test]
    fn prop_list_index_hazard(ops in prop::collection::vec(op(), 1..150), local: bool) {
        run_ops::<ListIndex<Hazard>>(&ops, local, false)?;
    }

    #[test]
    fn prop_btree_index(ops in prop::collection::vec(op(), 1..150), local: bool) {
        run_ops::<BTreeIndex>(&ops, local, false)?;
    }

    #[test]
    fn prop_checked(ops in prop::collection::vec(op(), 1..150), local: bool) {
        run_ops::<SkipIndex>(&ops, local, true)?;
    }
}

/// Two threads sharing a few big free runs: a search that fails while the
/// other thread holds a run (to split or coalesce it) must not map a new
/// region each time, or the address space grows with every pass.
#[test]
fn concurrent_large_blocks_do_not_grow_the_arena_without_bound() {
    use vvmalloc::trace::gen::{generate, Workload};
    use vvmalloc::trace::replay::{replay, Options};

    fn check<I: FreeIndex>() {
        let t = generate(Workload::LargeFrag, 5, 4, 4000);
        let heap: Heap<I> = small_heap();
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

/// `free` without a size, `usable_size` and `good_size`, on every size
/// range and alignment: what C's `free` and `malloc_usable_size` need.
#[test]
fn unsized_free_and_usable_size_cover_every_range() {
    let heap: Heap = small_heap();
    let mut blocks = Vec::new();
    for &(size, align) in &[
        (1, 1),
        (24, 8),
        (100, 64),
        (16384, 16),
        (16385, 16),
        (100_000, 16),
        (5000, 1 << 16),
        (HUGE_MIN, 16),
        (HUGE_MIN + 1, 1 << 21),
    ] {
        let good = vvmalloc::heap::good_size(size, align).unwrap();
        let p = heap.alloc(Layout::from_size_align(good, align).unwrap());
        assert!(!p.is_null() && p as usize % align == 0, "{size}/{align}");
        assert_eq!(heap.usable_size(p), Some(good), "{size}/{align}");
        fill(p, good, size as u8);
        blocks.push((p, good, size as u8));
    }
    assert_eq!(heap.stats().requested_bytes, heap.stats().in_use_bytes);
    for (p, good, seed) in blocks {
        assert!(check(p, good, seed));
        // SAFETY: from this heap, not used again.
        unsafe { heap.free(p) };
    }
    let st = heap.stats();
    assert_eq!((st.in_use_bytes, st.requested_bytes, st.misuse), (0, 0, 0));
    assert_eq!(st.huge_blocks, 0);
    // Not blocks: null, a pointer inside a large block, a foreign pointer.
    let big = heap.alloc(Layout::from_size_align(100_000, 16).unwrap());
    let on_stack = [0u8; 8];
    assert_eq!(heap.usable_size(std::ptr::null()), None);
    assert_eq!(heap.usable_size(big.wrapping_add(4096)), None);
    assert_eq!(heap.usable_size(on_stack.as_ptr()), None);
    // SAFETY: from this heap.
    unsafe { heap.free(big) };
    assert_eq!(
        heap.usable_size(big),
        None,
        "a freed large block has no size"
    );
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

/// While a fork is being prepared, other threads' large operations wait
/// (so none holds runs or a pinned epoch in the child); small ones do not.
/// The forking thread itself may still allocate.
#[test]
fn prepare_fork_lets_the_forking_thread_allocate_and_others_finish_after() {
    // That other threads' large operations wait while the gate is closed
    // is what the loom model `fork_gate_holds_large_operations_out_of_a_fork`
    // checks (with a seeded bug it catches); here, without any clock: the
    // forking thread itself can still allocate (no deadlock on its own
    // gate), small operations are not held, and a large operation started
    // during the fork completes once it is over.
    let heap: Heap = small_heap();
    heap.prepare_fork();
    std::thread::scope(|s| {
        let small = s.spawn(|| {
            let l = Layout::from_size_align(64, 8).unwrap();
            let p = heap.alloc(l);
            assert!(!p.is_null());
            // SAFETY: from this heap.
            unsafe { heap.dealloc(p, l) };
        });
        small.join().unwrap();
        let large = s.spawn(|| {
            let l = Layout::from_size_align(100_000, 8).unwrap();
            let p = heap.alloc(l);
            assert!(!p.is_null());
            // SAFETY: from this heap.
            unsafe { heap.dealloc(p, l) };
        });
        let l = Layout::from_size_align(100_000, 8).unwrap();
        let p = heap.alloc(l);
        assert!(!p.is_null());
        // SAFETY: from this heap.
        unsafe { heap.dealloc(p, l) };
        heap.after_fork_parent();
        large.join().unwrap();
    });
    assert_eq!(heap.stats().in_use_bytes, 0);
}

/// Freed large blocks up to 256 KiB are kept for reuse at their size:
/// reused first, bounded, still checked for double frees, and given to
/// the free index (and back to the OS) by `trim`.
#[test]
fn freed_large_blocks_are_reused_at_their_size_within_bounds() {
    let heap: Heap = small_heap();
    let l = Layout::from_size_align(64 << 10, 16).unwrap();
    let p = heap.alloc(l);
    // SAFETY: from this heap.
    unsafe { heap.dealloc(p, l) };
    assert_eq!(heap.stats().large_cache_bytes, 64 << 10);
    assert_eq!(heap.alloc(l), p, "the cached block is reused");
    assert_eq!(heap.stats().large_cache_bytes, 0);
    // SAFETY: from this heap; the second free is the misuse.
    unsafe {
        heap.free(p);
        heap.free(p);
    }
    assert_eq!(heap.stats().misuse, 1);
    // At most 16 blocks of one size are kept; the rest go to the index.
    let blocks: Vec<*mut u8> = (0..40).map(|_| heap.alloc(l)).collect();
    for &b in &blocks {
        // SAFETY: from this heap.
        unsafe { heap.dealloc(b, l) };
    }
    let st = heap.stats();
    assert_eq!(st.large_cache_bytes, 16 * (64 << 10));
    assert_eq!(st.large_in_use_bytes, 0);
    assert!(st.free_index_bytes >= 24 * (64 << 10));
    heap.trim();
    let st = heap.stats();
    assert_eq!((st.large_cache_bytes, st.large_in_use_bytes), (0, 0));
}

/// A freed huge block is kept mapped and reused by the next huge request of
/// its size; a zeroed request still gets zeros; `trim` unmaps the rest.
#[test]
fn freed_huge_blocks_are_reused_and_zeroed_when_asked() {
    let heap: Heap = small_heap();
    let l = Layout::from_size_align(HUGE_MIN + 4096, 16).unwrap();
    let p = heap.alloc(l);
    fill(p, l.size(), 7);
    // SAFETY: from this heap.
    unsafe { heap.dealloc(p, l) };
    assert_eq!(heap.stats().huge_blocks, 0);
    assert!(heap.stats().mapped_bytes >= l.size(), "kept mapped");
    let q = heap.alloc_zeroed(l);
    assert_eq!(q, p, "the mapping is reused");
    // SAFETY: `q` has `l.size()` bytes.
    assert!(unsafe { std::slice::from_raw_parts(q, l.size()) }
        .iter()
        .all(|&b| b == 0));
    // SAFETY: from this heap; then a double free, detected.
    unsafe {
        heap.dealloc(q, l);
        heap.free(q);
    }
    assert_eq!(heap.stats().misuse, 1);
    let before = heap.stats().mapped_bytes;
    assert!(heap.trim() >= l.size());
    assert!(heap.stats().mapped_bytes + l.size() <= before);
}
