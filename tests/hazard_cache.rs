//! The caches of hazard records: per thread for the process-wide domain, in
//! the domain for an own one. A binary of its own: it reads
//! `reclaim::held_back`, which is process-wide, so its tests also take a
//! lock, one at a time.

#![cfg(not(loom))]

use std::sync::Mutex;
use std::thread;

use vvmalloc::reclaim::{held_back, Domain, Hazard};
use vvmalloc::{SkipList, TreiberStack};

static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// Shields of the process-wide hazard domain are kept in a per-thread cache
/// between operations; a cached shield must protect nothing, or the node it
/// last pointed at could never be freed.
#[test]
fn cached_hazard_shields_protect_nothing() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
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

/// The same for an own domain, whose records are cached in the domain, from
/// several threads (each with its slot of the cache).
#[test]
fn cached_records_of_an_own_domain_protect_nothing() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let n = if cfg!(miri) { 20 } else { 1000 };
    let stack: TreiberStack<u64, Hazard> = TreiberStack::with_own_domain();
    thread::scope(|s| {
        for t in 0..3u64 {
            let stack = &stack;
            s.spawn(move || {
                for i in 0..n {
                    stack.push(t * n + i);
                    assert!(stack.pop().is_some());
                }
            });
        }
    });
    stack.domain().collect();
    assert_eq!(
        held_back::<Hazard>(),
        0,
        "a cached record of an own domain still protects a node"
    );
}

/// An own domain's cache holds records that point at the domain: the
/// structure (and its `Domain`) may move while records are cached, and be
/// dropped with records cached by threads that have exited. (Miri runs
/// this: a record left pointing at a moved or dropped domain would be a use
/// after free.)
#[test]
fn own_domains_move_and_drop_with_records_cached() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let n = if cfg!(miri) { 20 } else { 1000 };
    let map: SkipList<u64, u64, Hazard> = SkipList::with_own_domain();
    thread::scope(|s| {
        for t in 0..2u64 {
            let map = &map;
            s.spawn(move || {
                for i in 0..n {
                    map.insert(t * n + i, i);
                    assert_eq!(map.get(&(t * n + i)).map(|e| *e.value()), Some(i));
                }
            });
        }
    });
    // Moved (into a box, then out of a vector) with records cached.
    let mut moved = vec![Box::new(map)];
    let map = *moved.pop().unwrap();
    thread::scope(|s| {
        s.spawn(|| {
            for k in 0..2 * n {
                assert!(map.remove(&k).is_some());
            }
        });
    });
    assert!(map.is_empty());
    drop(map);
    assert_eq!(held_back::<Hazard>(), 0, "the dropped domain kept garbage");
}
