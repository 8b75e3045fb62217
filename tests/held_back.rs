//! `reclaim::held_back`: the count of retired, not yet freed nodes. One test
//! in a binary of its own, since the count is process-wide per scheme and
//! other tests in the same process would move it.

#![cfg(not(loom))]

use std::alloc::Layout;

use vvmalloc::heap::HeapConfig;
use vvmalloc::reclaim::{held_back, AsymHazard, Domain, Epoch, Hazard, Leak};
use vvmalloc::{Heap, SkipSet, TreiberStack};

#[test]
fn held_back_counts_retired_nodes_until_they_are_freed() {
    // Leak never frees: every retired node stays counted.
    let leak: TreiberStack<u32, Leak> = TreiberStack::new();
    let before = held_back::<Leak>();
    for i in 0..100 {
        leak.push(i);
    }
    while leak.pop().is_some() {}
    assert_eq!(held_back::<Leak>(), before + 100);

    // Own domains free everything retired into them when dropped: the
    // count goes back to zero (nothing else in this process uses them).
    let hazard: TreiberStack<u32, Hazard> = TreiberStack::with_domain(Domain::new());
    for i in 0..100 {
        hazard.push(i);
    }
    while hazard.pop().is_some() {}
    assert!(held_back::<Hazard>() <= 100);
    drop(hazard);
    assert_eq!(held_back::<Hazard>(), 0);

    let asym: TreiberStack<u32, AsymHazard> = TreiberStack::with_domain(Domain::new());
    for i in 0..100 {
        asym.push(i);
    }
    while asym.pop().is_some() {}
    // One thread's retired list is scanned at 64 nodes: fewer wait.
    assert!(held_back::<AsymHazard>() < 64);
    drop(asym);
    assert_eq!(held_back::<AsymHazard>(), 0);

    let set: SkipSet<u32, Epoch> = SkipSet::with_domain(Domain::new());
    for i in 0..100 {
        set.insert(i);
    }
    for i in 0..100 {
        assert!(set.remove(&i));
    }
    let guard = set.domain().pin();
    // A pinned guard holds back everything retired after it pinned.
    for i in 0..10 {
        set.insert(i);
        assert!(set.remove(&i));
    }
    assert!(held_back::<Epoch>() >= 10, "{}", held_back::<Epoch>());
    drop(guard);
    drop(set);
    assert_eq!(held_back::<Epoch>(), 0);

    // The heap's statistics report what its free index's scheme holds back:
    // large frees and reuses retire index nodes, and a thread pinned in the
    // global epoch keeps them from being freed.
    let heap: Heap = Heap::with_config(HeapConfig {
        arena_bytes: 1 << 30,
        ..HeapConfig::new()
    });
    let global: Domain<Epoch> = Domain::global();
    let pinned = global.pin();
    // Above 256 KiB: freed blocks that small are cached, not indexed.
    let layout = Layout::from_size_align(300_000, 8).unwrap();
    for _ in 0..20 {
        let p = heap.alloc(layout);
        assert!(!p.is_null());
        // SAFETY: from this heap, with this layout.
        unsafe { heap.dealloc(p, layout) };
    }
    let held = heap.stats().reclaim_held_nodes;
    assert!(held >= 20, "{held}");
    assert_eq!(held, held_back::<Epoch>());
    drop(pinned);
}
