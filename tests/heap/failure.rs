//! Impossible requests and OS failure at every mapping point.

use super::*;

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
