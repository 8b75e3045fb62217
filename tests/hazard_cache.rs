//! The per-thread cache of hazard records of the process-wide domain. A
//! binary of its own: it reads `reclaim::held_back`, which is process-wide.

#![cfg(not(loom))]

use vvmalloc::reclaim::{held_back, Domain, Hazard};
use vvmalloc::TreiberStack;

/// Shields of the process-wide hazard domain are kept in a per-thread cache
/// between operations; a cached shield must protect nothing, or the node it
/// last pointed at could never be freed.
#[test]
fn cached_hazard_shields_protect_nothing() {
    let stack: TreiberStack<u64, Hazard> = TreiberStack::new();
    let global: Domain<Hazard> = Domain::global();
    // Warm the cache: every push and pop takes and returns shields.
    for i in 0..1000 {
        stack.push(i);
        assert_eq!(stack.pop(), Some(i));
    }
    // The last pops' shields pointed at nodes now retired; with them cached
    // and reset, a collection frees every retired node of this thread.
    global.collect();
    assert_eq!(
        held_back::<Hazard>(),
        0,
        "a cached shield still protects a node"
    );
}
