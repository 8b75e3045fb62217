//! The skip list's API beyond insert / get / remove, checked against its
//! documented semantics: `compare_insert` under contention (it keeps the
//! maximum when told to), the owning iterators (every value dropped exactly
//! once, taken or not), and the set's `replace`.
#![cfg(not(loom))]

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;

use common::{xorshift, DropLedger};
use vvmalloc::reclaim::{Domain, Epoch, Hazard, Reclaim};
use vvmalloc::{SkipList, SkipSet};

// Tests named `*own*` use only own domains, so they free everything they
// allocate: CI runs them under Miri with its leak check on.

const THREADS: usize = if cfg!(miri) { 2 } else { 4 };
const OPS: usize = if cfg!(miri) { 40 } else { 20_000 };
const KEYS: u64 = if cfg!(miri) { 4 } else { 32 };

/// Every thread offers random values for a few keys with "replace if
/// greater": at the end each key holds the largest value offered for it,
/// and every `compare_insert` returned an entry at least as large as what
/// it offered (the new one, or the greater one present).
fn compare_insert_keeps_the_maximum<R: Reclaim>(map: SkipList<u64, u64, R>) {
    let best: Vec<AtomicU64> = (0..KEYS).map(|_| AtomicU64::new(0)).collect();
    thread::scope(|s| {
        for t in 0..THREADS {
            let (map, best) = (&map, &best);
            s.spawn(move || {
                let mut seed = 0x2545_F491_4F6C_DD1D ^ (t as u64 + 1);
                for _ in 0..OPS {
                    let r = xorshift(&mut seed);
                    let (key, value) = (r % KEYS, (r >> 8) % 1_000_000 + 1);
                    let e = map.compare_insert(key, value, |old| *old < value);
                    assert_eq!(*e.key(), key);
                    assert!(*e.value() >= value, "{} < {value}", e.value());
                    best[key as usize].fetch_max(value, Ordering::Relaxed); // joined before read
                }
            });
        }
    });
    for (key, b) in best.iter().enumerate() {
        let want = b.load(Ordering::Relaxed); // after the scope's joins
        let got = map.get(&(key as u64)).map(|e| *e.value());
        assert_eq!(got, (want > 0).then_some(want), "key {key}");
    }
}

#[test]
fn compare_insert_keeps_the_maximum_epoch_own() {
    compare_insert_keeps_the_maximum(SkipList::<_, _, Epoch>::with_domain(Domain::new()));
}

#[test]
fn compare_insert_keeps_the_maximum_hazard_own() {
    compare_insert_keeps_the_maximum(SkipList::<_, _, Hazard>::with_domain(Domain::new()));
}

#[test]
fn compare_insert_refused_returns_the_present_entry_and_drops_the_offer() {
    let ledger = DropLedger::new(2);
    let m: SkipList<u8, common::Tracked> = SkipList::new();
    m.insert(1, ledger.value(0));
    let e = m.compare_insert(1, ledger.value(1), |_| false);
    assert_eq!(e.value().id, 0);
    assert_eq!(ledger.drops(1), 1, "the refused value is dropped");
    assert_eq!(ledger.drops(0), 0);
}

#[test]
fn into_iter_yields_in_order_and_drops_every_value_once_own() {
    for taken in [0, 3, 10] {
        let ledger = DropLedger::new(10);
        let m: SkipList<u32, common::Tracked, Epoch> = SkipList::with_domain(Domain::new());
        for id in [7, 2, 9, 0, 4, 1, 8, 3, 6, 5] {
            m.insert(id as u32, ledger.value(id));
        }
        // A replaced and a removed value, held back by the domain until the
        // map (and its domain) goes.
        m.remove(&5);
        let mut it = m.into_iter();
        assert_eq!(it.len(), 9);
        let got: Vec<(u32, usize)> = it.by_ref().take(taken).map(|(k, v)| (k, v.id)).collect();
        let want: Vec<(u32, usize)> = [0, 1, 2, 3, 4, 6, 7, 8, 9]
            .into_iter()
            .take(taken)
            .map(|k| (k, k as usize))
            .collect();
        assert_eq!(got, want);
        assert_eq!(it.len(), 9 - taken.min(9));
        drop(it);
        ledger.assert_all_dropped_once();
    }
}

#[test]
fn set_into_iter_and_replace() {
    let s: SkipSet<u32, Hazard> = SkipSet::with_domain(Domain::new());
    for k in [3, 1, 2] {
        s.insert(k);
    }
    assert_eq!(*s.replace(2), 2);
    assert_eq!(s.len(), 3);
    assert_eq!(s.into_iter().collect::<Vec<_>>(), [1, 2, 3]);
}
