//! `realloc` growth: blocks that grow keep a growth reserve after them and
//! grow there in place, the reserve is theirs alone, a shrink gives it
//! back, and growth racing other threads' large blocks keeps every byte.

#![cfg(not(loom))]

use std::alloc::Layout;
use std::sync::{Arc, Barrier};
use std::thread;

use vvmalloc::heap::{HeapConfig, SMALL_MAX};
use vvmalloc::Heap;

const PAGE: usize = 4096;

fn heap() -> Heap {
    Heap::with_config(HeapConfig {
        arena_bytes: 4 << 30,
        checked: false,
    })
}

fn layout(size: usize) -> Layout {
    Layout::from_size_align(size, 8).unwrap()
}

/// Writes a pattern of `seed` over `[from, to)` of `p`.
fn fill(p: *mut u8, from: usize, to: usize, seed: u8) {
    for i in from..to {
        // SAFETY: the callers pass live blocks of at least `to` bytes.
        unsafe { p.add(i).write(seed.wrapping_add((i % 251) as u8)) };
    }
}

fn check(p: *const u8, len: usize, seed: u8) -> bool {
    // SAFETY: as for `fill`.
    (0..len).all(|i| unsafe { p.add(i).read() } == seed.wrapping_add((i % 251) as u8))
}

/// Grows a block by 1.5x from `from` to at least `to` bytes, keeping and
/// checking its bytes; returns the block, its size and the sizes at which
/// it moved.
fn grow(heap: &Heap, from: usize, to: usize, seed: u8) -> (*mut u8, usize, Vec<usize>) {
    let mut size = from;
    let mut p = heap.alloc(layout(size));
    fill(p, 0, size, seed);
    let mut moves = Vec::new();
    while size < to {
        let new = size + size / 2;
        // SAFETY: `p` is live with `layout(size)`.
        let q = unsafe { heap.realloc(p, layout(size), new) };
        assert!(!q.is_null());
        assert!(check(q, size, seed), "bytes lost growing {size} -> {new}");
        if q != p {
            moves.push(size);
        }
        fill(q, size, new, seed);
        (p, size) = (q, new);
    }
    (p, size, moves)
}

/// A block that grows past a page moves once into a large block with a
/// reserve; from then on it grows in place (the reserve, then the free run
/// after it, of which it keeps a new reserve).
#[test]
fn a_growing_block_moves_once_then_grows_in_place() {
    if cfg!(miri) {
        return; // no mmap(PROT_NONE) under Miri
    }
    let heap = heap();
    let (p, size, moves) = grow(&heap, 20, 8 << 20, 1);
    assert!(
        moves.iter().all(|&s| s < PAGE),
        "moved at {moves:?} (only the small steps below a page may move)"
    );
    // The usable size is the block's pages, not its reserve.
    assert_eq!(heap.usable_size(p), Some(size.next_multiple_of(PAGE)));
    // SAFETY: live with `layout(size)`.
    unsafe { heap.dealloc(p, layout(size)) };
    let st = heap.stats();
    assert_eq!(
        (st.in_use_bytes, st.large_in_use_bytes, st.requested_bytes),
        (0, 0, 0),
        "{st:?}"
    );
}

/// The reserve after a growing block is not handed to anyone else: large
/// blocks allocated meanwhile land outside it, and the block then grows
/// into all of it in place.
#[test]
fn the_growth_reserve_is_the_blocks_alone() {
    if cfg!(miri) {
        return;
    }
    let heap = heap();
    let p = heap.alloc(layout(3000));
    fill(p, 0, 3000, 2);
    // One step past a page: a large block of 2 pages and a reserve of 6.
    let size = 5000;
    // SAFETY: live with `layout(3000)`.
    let p = unsafe { heap.realloc(p, layout(3000), size) };
    assert!(check(p, 3000, 2));
    fill(p, 3000, size, 2);
    let others: Vec<*mut u8> = (0..32).map(|_| heap.alloc(layout(40_000))).collect();
    let reserve_end = p as usize + 8 * PAGE;
    for &o in &others {
        let o = o as usize;
        assert!(
            o + 40_000 <= p as usize || o >= reserve_end,
            "a block at {o:#x} inside the reserve [{p:p}, {reserve_end:#x})"
        );
        fill(o as *mut u8, 0, 40_000, 7);
    }
    let target = 8 * PAGE;
    // SAFETY: live with `layout(size)`.
    let q = unsafe { heap.realloc(p, layout(size), target) };
    assert_eq!(q, p, "the growth into the reserve moved the block");
    assert!(check(q, size, 2));
    for &o in &others {
        assert!(check(o, 40_000, 7));
        // SAFETY: live with `layout(40_000)`.
        unsafe { heap.dealloc(o, layout(40_000)) };
    }
    // SAFETY: live with `layout(target)`.
    unsafe { heap.dealloc(q, layout(target)) };
    assert_eq!(heap.stats().in_use_bytes, 0);
}

/// A shrink gives the tail and the reserve back: the next large block of
/// that length is carved right after the shrunk block.
#[test]
fn a_shrink_gives_the_reserve_back() {
    if cfg!(miri) {
        return;
    }
    let heap = heap();
    let (p, size, _) = grow(&heap, 20, 100_000, 3);
    let before = heap.stats().large_in_use_bytes;
    // Still large (a shrink below the large range moves to a small block).
    let small = SMALL_MAX + PAGE;
    // SAFETY: live with `layout(size)`.
    let q = unsafe { heap.realloc(p, layout(size), small) };
    assert_eq!(q, p);
    assert!(check(q, small, 3));
    let st = heap.stats();
    assert_eq!(st.large_in_use_bytes, small, "{before} -> {st:?}");
    // SAFETY: live with `layout(small)`.
    unsafe { heap.dealloc(q, layout(small)) };
    let st = heap.stats();
    assert_eq!((st.in_use_bytes, st.large_in_use_bytes), (0, 0), "{st:?}");
}

/// Threads grow blocks to a few MiB while other threads allocate and free
/// large blocks around them (the runs next to the growing blocks come and
/// go): every block keeps its bytes, none overlaps another, and the heap
/// ends empty.
#[test]
fn growth_racing_large_blocks_of_other_threads_keeps_every_byte() {
    if cfg!(miri) {
        return;
    }
    const THREADS: usize = 4;
    let rounds = 40;
    let heap = Arc::new(heap());
    let barrier = Arc::new(Barrier::new(THREADS));
    let handles: Vec<_> = (0..THREADS)
        .map(|t| {
            let (heap, barrier) = (heap.clone(), barrier.clone());
            thread::spawn(move || {
                let seed = t as u8 * 40;
                barrier.wait();
                let mut s = 0x2545_F491_4F6C_DD1Du64 ^ (t as u64 + 1);
                for r in 0..rounds {
                    if t % 2 == 0 {
                        let (p, size, _) = grow(&heap, 16, 3 << 20, seed + r as u8);
                        assert!(check(p, size, seed + r as u8));
                        // SAFETY: live with `layout(size)`.
                        unsafe { heap.dealloc(p, layout(size)) };
                    } else {
                        let mut live = Vec::new();
                        for i in 0..24 {
                            s ^= s << 13;
                            s ^= s >> 7;
                            s ^= s << 17;
                            let size = SMALL_MAX + (s % (600 << 10)) as usize;
                            let p = heap.alloc(layout(size));
                            fill(p, 0, size, seed + i);
                            live.push((p, size, seed + i));
                            if s & 1 == 0 {
                                let (p, size, sd) =
                                    live.swap_remove((s >> 8) as usize % live.len());
                                assert!(check(p, size, sd));
                                // SAFETY: live with `layout(size)`.
                                unsafe { heap.dealloc(p, layout(size)) };
                            }
                        }
                        for (p, size, sd) in live {
                            assert!(check(p, size, sd));
                            // SAFETY: as above.
                            unsafe { heap.dealloc(p, layout(size)) };
                        }
                    }
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    let st = heap.stats();
    assert_eq!((st.in_use_bytes, st.requested_bytes), (0, 0), "{st:?}");
}
