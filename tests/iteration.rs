//! The iterators' documented guarantees, for `SkipList` (both ends, ranges)
//! and `List`, with every reclamation scheme:
//!
//! - lazy: an entry removed before the step that would reach it is not
//!   yielded; an entry inserted after the last key yielded is, even into
//!   an iterator made on an empty map;
//! - resumable: after `None`, a later call yields what was inserted beyond
//!   the last key since;
//! - the two ends never yield the same key, and never cross;
//! - under concurrent inserts and removes: keys strictly increasing (from
//!   the back, decreasing), every key present for the whole iteration
//!   yielded, no key yielded that was never inserted.
#![cfg(not(loom))]

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread;

use vvmalloc::reclaim::{AsymHazard, Domain, Epoch, Hazard, Leak, Reclaim};
use vvmalloc::{List, SkipList};

// Tests named `*own*` use only own domains, so they free everything they
// allocate: CI runs them under Miri with its leak check on.

macro_rules! k {
    ($e:expr) => {
        $e.map(|e| *e.key())
    };
}

/// The forward guarantees, on a fresh map `$m` of either structure: it
/// ends with {5, 10, 30, 40}.
macro_rules! forward_lazy_and_resumable {
    ($m:expr) => {{
        let m = &$m;
        // An iterator made on an empty map sees later inserts.
        let mut it = m.iter();
        assert_eq!(k!(it.next()), None);
        for x in [10, 20, 30] {
            m.insert(x, x);
        }
        assert_eq!(k!(it.next()), Some(10));
        // Removed after the iterator passed its predecessor: not yielded.
        m.remove(&20);
        // Inserted just after the last key yielded: yielded.
        m.insert(15, 15);
        assert_eq!(k!(it.next()), Some(15));
        // The last entry yielded removed: the step continues from its key.
        m.remove(&15);
        assert_eq!(k!(it.next()), Some(30));
        assert_eq!(k!(it.next()), None);
        assert_eq!(k!(it.next()), None);
        // Resumes after `None`; a key below the last one yielded stays behind.
        m.insert(40, 40);
        m.insert(5, 5);
        assert_eq!(k!(it.next()), Some(40));
        assert_eq!(k!(it.next()), None);
    }};
}

/// A range's front on `$m` holding 5 and 10 below 30 and nothing else in
/// `20..30`: the end bound stops the iterator without ending it.
macro_rules! range_lazy_and_resumable {
    ($m:expr) => {{
        let m = &$m;
        let mut r = m.range(5..30);
        assert_eq!(k!(r.next()), Some(5));
        assert_eq!(k!(r.next()), Some(10));
        assert_eq!(k!(r.next()), None);
        m.insert(35, 35); // outside the range
        assert_eq!(k!(r.next()), None);
        m.insert(25, 25);
        assert_eq!(k!(r.next()), Some(25));
    }};
}

fn skiplist_lazy_and_resumable<R: Reclaim>(m: SkipList<u32, u32, R>) {
    forward_lazy_and_resumable!(m);

    // From the back: lazy and resumable too. Now {5, 10, 30, 40}.
    let mut it = m.iter();
    assert_eq!(k!(it.next_back()), Some(40));
    m.insert(50, 50); // above the back's last key: behind it
    m.remove(&30);
    assert_eq!(k!(it.next_back()), Some(10));
    assert_eq!(k!(it.next_back()), Some(5));
    assert_eq!(k!(it.next_back()), None);
    m.insert(1, 1);
    assert_eq!(k!(it.next_back()), Some(1));
    drop(it);

    range_lazy_and_resumable!(m);
    let mut r = m.range(..=10);
    m.insert(7, 7);
    assert_eq!(k!(r.next_back()), Some(10));
    assert_eq!(k!(r.next_back()), Some(7));
}

fn skiplist_ends_never_cross<R: Reclaim>(m: SkipList<u32, u32, R>) {
    for x in [10, 20, 30] {
        m.insert(x, x);
    }
    let mut it = m.iter();
    assert_eq!(k!(it.next()), Some(10));
    assert_eq!(k!(it.next_back()), Some(30));
    assert_eq!(k!(it.next()), Some(20));
    // 20 was yielded by the front, 30 by the back: nothing left.
    assert_eq!(k!(it.next_back()), None);
    assert_eq!(k!(it.next()), None);
    // A key inserted between the two ends' last keys is still to come,
    // from either end, once.
    m.insert(25, 25);
    m.insert(35, 35); // behind the back
    assert_eq!(k!(it.next_back()), Some(25));
    assert_eq!(k!(it.next()), None);
    assert_eq!(k!(it.next_back()), None);
    drop(it);

    // Meeting on one key: yielded once.
    let mut it = m.iter(); // {10, 20, 25, 30, 35}
    assert_eq!(k!(it.next_back()), Some(35));
    assert_eq!(k!(it.next_back()), Some(30));
    assert_eq!(k!(it.next_back()), Some(25));
    assert_eq!(k!(it.next()), Some(10));
    assert_eq!(k!(it.next()), Some(20));
    assert_eq!(k!(it.next()), None);
    assert_eq!(k!(it.next_back()), None);
}

fn list_lazy_and_resumable<R: Reclaim>(m: List<u32, u32, R>) {
    forward_lazy_and_resumable!(m);
    range_lazy_and_resumable!(m);
}

#[test]
fn skiplist_iterators_are_lazy_and_resumable() {
    skiplist_lazy_and_resumable(SkipList::<_, _, Epoch>::new());
    skiplist_lazy_and_resumable(SkipList::<_, _, Hazard>::new());
    skiplist_lazy_and_resumable(SkipList::<_, _, Leak>::new());
    skiplist_lazy_and_resumable(SkipList::<_, _, Epoch>::with_domain(Domain::new()));
    skiplist_lazy_and_resumable(SkipList::<_, _, Hazard>::with_domain(Domain::new()));
    skiplist_lazy_and_resumable(SkipList::<_, _, AsymHazard>::new());
    skiplist_lazy_and_resumable(SkipList::<_, _, AsymHazard>::with_domain(Domain::new()));
}

#[test]
fn skiplist_iterator_ends_never_cross() {
    skiplist_ends_never_cross(SkipList::<_, _, Epoch>::new());
    skiplist_ends_never_cross(SkipList::<_, _, Hazard>::new());
    skiplist_ends_never_cross(SkipList::<_, _, AsymHazard>::new());
    skiplist_ends_never_cross(SkipList::<_, _, Leak>::new());
}

#[test]
fn list_iterator_is_lazy_and_resumable() {
    list_lazy_and_resumable(List::<_, _, Epoch>::new());
    list_lazy_and_resumable(List::<_, _, Hazard>::new());
    list_lazy_and_resumable(List::<_, _, Leak>::new());
    list_lazy_and_resumable(List::<_, _, Epoch>::with_domain(Domain::new()));
    list_lazy_and_resumable(List::<_, _, Hazard>::with_domain(Domain::new()));
    list_lazy_and_resumable(List::<_, _, AsymHazard>::new());
    list_lazy_and_resumable(List::<_, _, AsymHazard>::with_domain(Domain::new()));
}

#[test]
fn skiplist_entry_cursors_move_past_removed_entries() {
    let m: SkipList<u32, ()> = (0..10).map(|k| (k * 10, ())).collect();
    let mut e = m.get(&30).unwrap();
    m.remove(&40);
    assert!(e.move_next());
    assert_eq!(*e.key(), 50);
    // The cursor's own entry removed: it moves on from its key.
    assert!(e.remove());
    assert_eq!(k!(e.next()), Some(60));
    assert_eq!(k!(e.prev()), Some(30));
    assert!(e.move_prev() && e.move_prev());
    assert_eq!(*e.key(), 20);
}

// ---- concurrent updates ----

/// Keys `0..UNIVERSE`; multiples of 3 are present throughout, the others
/// are inserted and removed by the writers while readers iterate.
const UNIVERSE: u32 = if cfg!(miri) { 24 } else { 600 };
const PASSES: usize = if cfg!(miri) { 2 } else { 200 };
/// The reader goes on until the writers have toggled this many keys too, so
/// the passes overlap the churn however the threads are scheduled.
const TOGGLES: usize = if cfg!(miri) { 20 } else { 200_000 };
const WRITERS: usize = 2;

fn stable(k: u32) -> bool {
    k % 3 == 0
}

/// Checks one pass's keys, in the order yielded: strictly increasing, within
/// the universe, every stable key present.
fn check_forward(keys: &[u32]) {
    assert!(
        keys.windows(2).all(|w| w[0] < w[1]),
        "out of order or twice: {keys:?}"
    );
    assert!(
        keys.iter().all(|&k| k < UNIVERSE),
        "never inserted: {keys:?}"
    );
    let stable_seen = keys.iter().filter(|&&k| stable(k)).count();
    assert_eq!(
        stable_seen as u32,
        UNIVERSE.div_ceil(3),
        "a stable key missed: {keys:?}"
    );
}

/// Runs `WRITERS` threads toggling the unstable keys (`remove`, which says
/// whether it removed, else `insert`) while `read` runs on this thread, at
/// least `PASSES` times and until the writers made `TOGGLES` toggles.
fn churn_while(
    insert: impl Fn(u32) + Sync,
    remove: impl Fn(u32) -> bool + Sync,
    mut read: impl FnMut(),
) {
    let stop = AtomicBool::new(false);
    let toggles = AtomicUsize::new(0);
    thread::scope(|s| {
        for t in 0..WRITERS as u32 {
            let (stop, toggles, insert, remove) = (&stop, &toggles, &insert, &remove);
            s.spawn(move || {
                let mut seed = 0x9E37_79B9_7F4A_7C15_u64 ^ u64::from(t + 1);
                // Relaxed: a stop flag; the scope's join synchronizes.
                while !stop.load(Ordering::Relaxed) {
                    // stop flag: pairs with nothing
                    seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
                    let k = (seed >> 33) as u32 % UNIVERSE;
                    if !stable(k) && !remove(k) {
                        insert(k);
                    }
                    // Relaxed: a count; only its size matters.
                    toggles.fetch_add(1, Ordering::Relaxed); // a count: pairs with nothing
                }
            });
        }
        // Stops the writers however this thread leaves the scope: a failed
        // check panics here, and the scope waits for them before it unwinds.
        struct Stop<'a>(&'a AtomicBool);
        impl Drop for Stop<'_> {
            fn drop(&mut self) {
                self.0.store(true, Ordering::Relaxed); // stop flag: pairs with nothing
            }
        }
        let _stop = Stop(&stop);
        let mut passes = 0;
        // Relaxed: as above.
        while passes < PASSES || toggles.load(Ordering::Relaxed) < TOGGLES {
            // a count: pairs with nothing
            read();
            passes += 1;
        }
    });
}

fn skiplist_under_churn<R: Reclaim>(m: SkipList<u32, u32, R>) {
    for k in (0..UNIVERSE).filter(|&k| stable(k)) {
        m.insert(k, k);
    }
    let mut pass = 0usize;
    churn_while(
        |k| {
            m.insert(k, k);
        },
        |k| m.remove(&k).is_some(),
        || {
            pass += 1;
            match pass % 4 {
                0 => check_forward(&m.iter().map(|e| *e.key()).collect::<Vec<_>>()),
                1 => {
                    let mut keys: Vec<u32> = m.iter().rev().map(|e| *e.key()).collect();
                    keys.reverse();
                    check_forward(&keys);
                }
                2 => {
                    // Both ends in turn: the two halves meet without a
                    // key twice and without a gap.
                    let mut it = m.iter();
                    let (mut front, mut back) = (Vec::new(), Vec::new());
                    loop {
                        let f = it.next().map(|e| *e.key());
                        let b = it.next_back().map(|e| *e.key());
                        front.extend(f);
                        back.extend(b);
                        if f.is_none() && b.is_none() {
                            break;
                        }
                    }
                    back.reverse();
                    front.extend(back);
                    check_forward(&front);
                }
                _ => {
                    // A range, and its values belong to its keys.
                    let (lo, hi) = (UNIVERSE / 4, 3 * UNIVERSE / 4);
                    let got: Vec<u32> = m
                        .range(lo..hi)
                        .map(|e| {
                            assert_eq!(e.key(), e.value());
                            *e.key()
                        })
                        .collect();
                    assert!(got.windows(2).all(|w| w[0] < w[1]), "{got:?}");
                    assert!(got.iter().all(|k| (lo..hi).contains(k)), "{got:?}");
                    let want = (lo..hi).filter(|&k| stable(k)).count();
                    assert_eq!(got.iter().filter(|&&k| stable(k)).count(), want, "{got:?}");
                }
            }
        },
    );
}

fn list_under_churn<R: Reclaim>(m: List<u32, u32, R>) {
    for k in (0..UNIVERSE).filter(|&k| stable(k)) {
        m.insert(k, k);
    }
    churn_while(
        |k| {
            m.insert(k, k);
        },
        |k| m.remove(&k).is_some(),
        || check_forward(&m.iter().map(|e| *e.key()).collect::<Vec<_>>()),
    );
}

#[test]
fn skiplist_iteration_under_churn_epoch_own() {
    skiplist_under_churn(SkipList::<_, _, Epoch>::with_domain(Domain::new()));
}

#[test]
fn skiplist_iteration_under_churn_hazard_own() {
    skiplist_under_churn(SkipList::<_, _, Hazard>::with_domain(Domain::new()));
}

#[test]
fn skiplist_iteration_under_churn_asym_hazard_own() {
    skiplist_under_churn(SkipList::<_, _, AsymHazard>::with_domain(Domain::new()));
}

#[test]
fn skiplist_iteration_under_churn_global_domains() {
    skiplist_under_churn(SkipList::<_, _, Epoch>::new());
    skiplist_under_churn(SkipList::<_, _, Hazard>::new());
    skiplist_under_churn(SkipList::<_, _, AsymHazard>::new());
}

#[test]
fn list_iteration_under_churn_epoch_own() {
    list_under_churn(List::<_, _, Epoch>::with_domain(Domain::new()));
}

#[test]
fn list_iteration_under_churn_hazard_own() {
    list_under_churn(List::<_, _, Hazard>::with_domain(Domain::new()));
}

#[test]
fn list_iteration_under_churn_asym_hazard_own() {
    list_under_churn(List::<_, _, AsymHazard>::with_domain(Domain::new()));
}

#[test]
fn list_iteration_under_churn_global_domains() {
    list_under_churn(List::<_, _, Epoch>::new());
    list_under_churn(List::<_, _, Hazard>::new());
    list_under_churn(List::<_, _, AsymHazard>::new());
}
