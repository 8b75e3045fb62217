//! Threads: cross-thread frees, abandoned pages, concurrent large blocks, `prepare_fork`.

use super::*;

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
