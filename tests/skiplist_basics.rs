//! The skip list and its set through the public API, single-threaded: every
//! operation, drops, borrowed keys in own domains, and a property test
//! against `BTreeMap` under each scheme. Tests named `*own*` use only own
//! domains, so they free everything they allocate (Miri checks for leaks).

#![cfg(not(loom))]

use proptest::prelude::*;
use std::collections::BTreeMap;
use std::ops::Bound::{Excluded, Included, Unbounded};
use vvmalloc::reclaim::{AsymHazard, Epoch, Hazard, Leak, Reclaim};
use vvmalloc::skiplist::{Ref, SkipList, SkipSet, MAX_HEIGHT};

fn keys<K: Ord + Send + Copy, V: Send, R: Reclaim>(m: &SkipList<K, V, R>) -> Vec<K> {
    m.iter().map(|e| *e.key()).collect()
}

fn basics<R: Reclaim>(mut m: SkipList<u32, String, R>) {
    assert!(m.is_empty() && m.first().is_none() && m.last().is_none());
    assert!(m.pop_first().is_none() && m.pop_last().is_none());
    for k in [5, 1, 9, 3, 7] {
        assert_eq!(m.insert(k, k.to_string()).value(), &k.to_string());
    }
    assert_eq!(m.insert(3, "three".into()).value(), "three");
    assert!(m.try_insert(3, "x".into()).is_err());
    assert_eq!(m.get_or_insert(3, "y".into()).value(), "three");
    assert_eq!(m.get_or_insert_with(4, || "4".into()).value(), "4");
    assert_eq!(m.len(), 6);
    assert_eq!(m.get(&3).unwrap().value(), "three");
    assert!(m.get(&2).is_none() && !m.contains(&2) && m.contains(&9));
    let at = |e: Option<Ref<'_, u32, String, R>>| e.map(|e| *e.key());
    assert_eq!(at(m.lower_bound(Included(&6))), Some(7));
    assert_eq!(at(m.lower_bound(Excluded(&7))), Some(9));
    assert_eq!(at(m.lower_bound(Unbounded)), Some(1));
    assert_eq!(at(m.lower_bound(Excluded(&9))), None);
    assert_eq!(at(m.upper_bound(Included(&6))), Some(5));
    assert_eq!(at(m.upper_bound(Excluded(&5))), Some(4));
    assert_eq!(at(m.upper_bound(Unbounded)), Some(9));
    assert_eq!(at(m.upper_bound(Excluded(&1))), None);
    assert_eq!(keys(&m), [1, 3, 4, 5, 7, 9]);
    assert_eq!(
        m.range(3..=7).map(|e| *e.key()).collect::<Vec<_>>(),
        [3, 4, 5, 7]
    );
    assert_eq!(m.range((Excluded(3), Excluded(7))).count(), 2);
    assert_eq!(m.remove(&5).unwrap().value(), "5");
    assert!(m.remove(&5).is_none());
    assert_eq!(at(m.pop_first()), Some(1));
    assert_eq!(at(m.pop_last()), Some(9));
    assert_eq!(at(m.first()), Some(3));
    assert_eq!(at(m.last()), Some(7));
    assert_eq!(m.len(), 3);
    m.check_invariants();
    assert_eq!(format!("{m:?}"), r#"{3: "three", 4: "4", 7: "7"}"#);
    m.clear();
    assert!(m.is_empty() && m.iter().next().is_none());
    m.check_invariants();
}

// Tests named `*own*` use only own domains, so they free everything they
// allocate: CI runs them under Miri with its leak check on.
#[test]
fn basics_epoch_own() {
    basics::<Epoch>(SkipList::with_own_domain());
}

#[test]
fn basics_hazard_own() {
    basics::<Hazard>(SkipList::with_own_domain());
}

#[test]
fn basics_asym_hazard_own() {
    basics::<AsymHazard>(SkipList::with_own_domain());
}

#[test]
fn basics_global_domains_and_leak() {
    basics::<Epoch>(SkipList::new());
    basics::<Hazard>(SkipList::new());
    basics::<AsymHazard>(SkipList::new());
    basics::<Leak>(SkipList::new());
}

#[test]
fn towers_of_every_height_own() {
    // Explicit heights build a known shape: every level is used, and
    // removing tall nodes must unlink them everywhere.
    let mut m: SkipList<u32, u32, Hazard> = SkipList::with_own_domain();
    for k in 0..64u32 {
        let h = 1 + (k as usize % MAX_HEIGHT);
        assert!(m.try_insert_with_height(k, k, h).is_ok());
    }
    m.check_invariants();
    for k in (0..64).step_by(3) {
        assert!(m.remove(&k).is_some());
    }
    m.check_invariants();
    // A replacement of a tall entry by a short one, and back.
    m.insert_with_height(1, 100, 1);
    m.insert_with_height(2, 200, MAX_HEIGHT);
    assert_eq!(*m.get(&1).unwrap().value(), 100);
    assert_eq!(*m.get(&2).unwrap().value(), 200);
    m.check_invariants();
    assert_eq!(m.len(), 64 - 22);
}

#[test]
fn ref_remove_takes_an_entry_once() {
    let m: SkipList<(usize, usize), (), Hazard> = SkipList::with_own_domain();
    m.insert((64, 1), ());
    m.insert((128, 2), ());
    let a = m.lower_bound(Included(&(100, 0))).unwrap();
    let b = m.lower_bound(Included(&(100, 0))).unwrap();
    assert!(a.remove());
    assert!(!b.remove() && b.is_removed());
    assert!(m.lower_bound(Included(&(100, 0))).is_none());
    assert_eq!(m.len(), 1);
}

#[test]
fn removed_entry_stays_readable_until_its_ref_drops_own() {
    use std::sync::Arc;
    let v = Arc::new(());
    {
        let m: SkipList<u8, Arc<()>, Hazard> = SkipList::with_own_domain();
        m.insert_with_height(1, v.clone(), MAX_HEIGHT);
        let e = m.get(&1).unwrap();
        let removed = m.remove(&1).unwrap();
        assert!(e.is_removed() && removed.is_removed());
        m.domain().collect();
        assert_eq!(Arc::strong_count(&v), 2, "reclaimed while protected");
        drop((e, removed));
        m.domain().collect();
        assert_eq!(Arc::strong_count(&v), 1, "not reclaimed once unprotected");
    }
    assert_eq!(Arc::strong_count(&v), 1);
}

#[test]
fn replaced_and_unpublished_values_are_dropped_once_own() {
    use std::sync::Arc;
    let v = Arc::new(());
    let m: SkipList<u32, Arc<()>, Epoch> = SkipList::with_own_domain();
    for k in 0..40 {
        m.insert(k % 10, v.clone()); // 30 replacements
        let _ = m.try_insert(k % 10, v.clone()); // always refused
        m.get_or_insert(k % 10, v.clone());
    }
    for k in 0..5 {
        m.remove(&k);
    }
    assert_eq!(m.len(), 5);
    drop(m);
    assert_eq!(Arc::strong_count(&v), 1);
}

#[test]
fn borrowed_keys_with_own_domain() {
    let words: Vec<String> = ["pear", "apple", "fig"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let s: SkipSet<&str, Hazard> = SkipSet::with_own_domain();
    for w in &words {
        s.insert(w.as_str());
    }
    assert!(s.remove(&"fig"));
    assert_eq!(
        s.iter().map(|e| *e.key()).collect::<Vec<_>>(),
        ["apple", "pear"]
    );
    assert_eq!(format!("{s:?}"), r#"{"apple", "pear"}"#);
}

#[test]
fn set_operations() {
    let mut s: SkipSet<u16> = (0..10).rev().collect();
    s.extend([20, 5]);
    assert_eq!(s.len(), 11);
    assert!(s.contains(&20) && s.get(&7).is_some());
    assert_eq!(s.take(&7).map(|e| *e.key()), Some(7));
    assert_eq!(s.pop_first().map(|e| *e.key()), Some(0));
    assert_eq!(s.pop_last().map(|e| *e.key()), Some(20));
    assert_eq!(s.first().map(|e| *e.key()), Some(1));
    assert_eq!(s.last().map(|e| *e.key()), Some(9));
    assert_eq!(*s.get_or_insert(30).key(), 30);
    assert_eq!(s.lower_bound(Included(&10)).map(|e| *e.key()), Some(30));
    assert_eq!(s.upper_bound(Excluded(&30)).map(|e| *e.key()), Some(9));
    assert_eq!(s.range(2..4).count(), 2);
    assert_eq!((&s).into_iter().count(), s.len());
    s.check_invariants();
    s.clear();
    assert!(s.is_empty());
}

#[test]
fn long_map_drops_without_recursion() {
    let n = if cfg!(miri) { 300 } else { 200_000 };
    let m: SkipList<u32, ()> = (0..n).map(|k| (k, ())).collect();
    assert_eq!(m.len(), n as usize);
    drop(m);
}

#[test]
fn double_ended_iteration_meets_in_the_middle() {
    for n in [0u32, 1, 2, 7, 8] {
        let m: SkipList<u32, ()> = (0..n).map(|k| (k, ())).collect();
        assert_eq!(
            m.iter().rev().map(|e| *e.key()).collect::<Vec<_>>(),
            (0..n).rev().collect::<Vec<_>>()
        );
        // Alternate ends: every key once.
        let mut it = m.iter();
        let mut seen = Vec::new();
        for i in 0.. {
            let e = if i % 2 == 0 {
                it.next()
            } else {
                it.next_back()
            };
            match e {
                Some(e) => seen.push(*e.key()),
                None => break,
            }
        }
        assert!(it.next().is_none() && it.next_back().is_none());
        seen.sort_unstable();
        assert_eq!(seen, (0..n).collect::<Vec<_>>(), "n = {n}");
        // Ranges from the back respect both bounds.
        assert_eq!(
            m.range(2..6).rev().map(|e| *e.key()).collect::<Vec<_>>(),
            (2..6.min(n)).rev().collect::<Vec<_>>()
        );
        let mut r = m.range(1..=4);
        let (a, b) = (r.next_back().map(|e| *e.key()), r.next().map(|e| *e.key()));
        if n > 4 {
            assert_eq!((a, b), (Some(4), Some(1)));
            assert_eq!(r.map(|e| *e.key()).collect::<Vec<_>>(), [2, 3]);
        }
    }
}

#[test]
fn const_constructible_in_statics() {
    static MAP: SkipList<u64, u64> = SkipList::new();
    static SET: SkipSet<u64, Hazard> = SkipSet::new();
    MAP.insert(1, 2);
    assert!(SET.insert(1));
    assert_eq!((MAP.len(), SET.len()), (1, 1));
}

#[test]
fn send_sync_bounds() {
    fn is_send_sync<X: Send + Sync>() {}
    is_send_sync::<SkipList<String, Vec<u8>, Epoch>>();
    is_send_sync::<SkipSet<u64, Hazard>>();
}

/// One step of the model test.
#[derive(Debug, Clone)]
enum Step {
    Insert(u8, u16),
    TryInsert(u8, u16),
    Remove(u8),
    Get(u8),
    PopFirst,
    PopLast,
    LowerBound(u8),
    UpperBound(u8),
    Range(u8, u8),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        (0u8..24, any::<u16>()).prop_map(|(k, v)| Step::Insert(k, v)),
        (0u8..24, any::<u16>()).prop_map(|(k, v)| Step::TryInsert(k, v)),
        (0u8..24).prop_map(Step::Remove),
        (0u8..24).prop_map(Step::Get),
        Just(Step::PopFirst),
        Just(Step::PopLast),
        (0u8..24).prop_map(Step::LowerBound),
        (0u8..24).prop_map(Step::UpperBound),
        (0u8..24, 0u8..24).prop_map(|(a, b)| Step::Range(a.min(b), a.max(b))),
    ]
}

/// Runs `steps` on the map and on a `BTreeMap`; every result, the
/// invariants and the final contents must agree.
fn agrees_with_btreemap<R: Reclaim>(mut map: SkipList<u8, u16, R>, steps: &[Step]) {
    let mut model = BTreeMap::new();
    let pair = |e: Ref<'_, u8, u16, R>| (*e.key(), *e.value());
    let kv = |(&k, &v): (&u8, &u16)| (k, v);
    for s in steps {
        match *s {
            Step::Insert(k, v) => {
                model.insert(k, v);
                assert_eq!(pair(map.insert(k, v)), (k, v));
            }
            Step::TryInsert(k, v) => {
                let fresh = !model.contains_key(&k);
                if fresh {
                    model.insert(k, v);
                }
                assert_eq!(map.try_insert(k, v).is_ok(), fresh, "{s:?}");
            }
            Step::Remove(k) => {
                assert_eq!(map.remove(&k).map(pair), model.remove(&k).map(|v| (k, v)))
            }
            Step::Get(k) => assert_eq!(map.get(&k).map(pair), model.get_key_value(&k).map(kv)),
            Step::PopFirst => assert_eq!(map.pop_first().map(pair), model.pop_first()),
            Step::PopLast => assert_eq!(map.pop_last().map(pair), model.pop_last()),
            Step::LowerBound(k) => assert_eq!(
                map.lower_bound(Included(&k)).map(pair),
                model.range(k..).next().map(kv)
            ),
            Step::UpperBound(k) => assert_eq!(
                map.upper_bound(Excluded(&k)).map(pair),
                model.range(..k).next_back().map(kv)
            ),
            Step::Range(a, b) => {
                assert_eq!(
                    map.range(a..b).map(pair).collect::<Vec<_>>(),
                    model.range(a..b).map(kv).collect::<Vec<_>>()
                );
                assert_eq!(
                    map.range(a..=b).rev().map(pair).collect::<Vec<_>>(),
                    model.range(a..=b).rev().map(kv).collect::<Vec<_>>()
                );
            }
        }
        assert_eq!(map.len(), model.len());
    }
    map.check_invariants();
    let all: Vec<_> = map.iter().map(pair).collect();
    assert_eq!(all, model.into_iter().collect::<Vec<_>>());
}

/// Steps per case: fewer under Miri, which runs about 1000x slower.
const STEPS: usize = if cfg!(miri) { 16 } else { 96 };

/// 256 cases; under Miri 4, and no failure file (Miri's isolation has
/// no working directory).
fn config() -> ProptestConfig {
    let mut config = ProptestConfig::with_cases(if cfg!(miri) { 4 } else { 256 });
    if cfg!(miri) {
        config.failure_persistence = None;
    }
    config
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn model_epoch_own(steps in prop::collection::vec(step(), 0..STEPS)) {
        agrees_with_btreemap::<Epoch>(SkipList::with_own_domain(), &steps);
    }

    #[test]
    fn model_hazard_own(steps in prop::collection::vec(step(), 0..STEPS)) {
        agrees_with_btreemap::<Hazard>(SkipList::with_own_domain(), &steps);
    }

    #[test]
    fn model_leak(steps in prop::collection::vec(step(), 0..STEPS)) {
        agrees_with_btreemap::<Leak>(SkipList::new(), &steps);
    }
}
