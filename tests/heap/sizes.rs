//! Every size and alignment, zeroed blocks, `realloc`, unsized frees, and the reuse of freed large and huge blocks.

use super::*;

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
