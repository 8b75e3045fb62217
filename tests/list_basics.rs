//! The list and its set through the public API, single-threaded: every
//! operation, drops, borrowed keys in own domains, and a property test
//! against `BTreeMap` under each scheme. Tests named `*own*` use only own
//! domains, so they free everything they allocate (Miri checks for leaks).

#![cfg(not(loom))]

use core::ops::Bound;

use proptest::prelude::*;
use std::collections::BTreeMap;
use vvmalloc::list::{List, ListSet, Ref};
use vvmalloc::reclaim::{AsymHazard, Epoch, Hazard, Leak, Reclaim};

fn basics<R: Reclaim>(m: List<u32, String, R>) {
    assert!(m.is_empty() && m.first().is_none() && m.pop_first().is_none());
    for k in [5, 1, 9, 3] {
        assert!(m.insert(k, k.to_string()));
    }
    assert!(!m.insert(3, "x".into()));
    assert_eq!(m.len(), 4);
    assert_eq!(m.get(&3).unwrap().value(), "3");
    assert!(m.get(&4).is_none() && !m.contains(&4) && m.contains(&9));
    assert_eq!(
        m.lower_bound(Bound::Included(&4)).map(|e| *e.key()),
        Some(5)
    );
    assert_eq!(
        m.lower_bound(Bound::Excluded(&5)).map(|e| *e.key()),
        Some(9)
    );
    assert!(m.lower_bound(Bound::Excluded(&9)).is_none());
    let keys: Vec<u32> = m.iter().map(|e| *e.key()).collect();
    assert_eq!(keys, [1, 3, 5, 9]);
    assert_eq!(m.remove(&5).unwrap().value(), "5");
    assert!(m.remove(&5).is_none());
    assert_eq!(m.pop_first().map(|e| *e.key()), Some(1));
    assert_eq!(m.first().map(|e| *e.key()), Some(3));
    assert_eq!(m.len(), 2);
    assert_eq!(format!("{m:?}"), r#"{3: "3", 9: "9"}"#);
}

// Tests named `*own*` use only own domains, so they free everything they
// allocate: CI runs them under Miri with its leak check on.
#[test]
fn basics_epoch_own() {
    basics::<Epoch>(List::with_own_domain());
}

#[test]
fn basics_hazard_own() {
    basics::<Hazard>(List::with_own_domain());
}

#[test]
fn basics_asym_hazard_own() {
    basics::<AsymHazard>(List::with_own_domain());
}

#[test]
fn basics_global_domains_and_leak() {
    basics::<Epoch>(List::new());
    basics::<Hazard>(List::new());
    basics::<AsymHazard>(List::new());
    basics::<Leak>(List::new());
}

#[test]
fn try_insert_gives_the_pair_back() {
    let m: List<u8, Vec<u8>, Hazard> = List::with_own_domain();
    assert_eq!(m.try_insert(1, vec![1]).unwrap().value(), &[1]);
    let (k, v) = m.try_insert(1, vec![2]).unwrap_err();
    assert_eq!((k, v), (1, vec![2]));
}

#[test]
fn removed_entry_stays_readable_until_its_ref_drops_own() {
    use std::sync::Arc as Rc;
    // The count of live copies shows when the list's value is dropped:
    // only once the `Ref`s go and the domain reclaims.
    let v = Rc::new(());
    {
        let m: List<u8, Rc<()>, Hazard> = List::with_own_domain();
        m.insert(1, v.clone());
        let e = m.get(&1).unwrap();
        let removed = m.remove(&1).unwrap();
        assert!(e.is_removed() && removed.is_removed());
        assert_eq!(Rc::strong_count(e.value()), 2);
        m.domain().collect();
        assert_eq!(Rc::strong_count(&v), 2, "reclaimed while protected");
        drop((e, removed));
        m.domain().collect();
        assert_eq!(Rc::strong_count(&v), 1, "not reclaimed once unprotected");
    }
    assert_eq!(Rc::strong_count(&v), 1);
}

#[test]
fn own_domain_drops_every_value_with_the_list() {
    use std::sync::Arc as Rc;
    let v = Rc::new(());
    let m: List<u32, Rc<()>, Epoch> = List::with_own_domain();
    for k in 0..50 {
        m.insert(k, v.clone());
    }
    for k in 0..25 {
        m.remove(&k);
    }
    drop(m);
    assert_eq!(Rc::strong_count(&v), 1);
}

#[test]
fn borrowed_keys_with_own_domain() {
    let words: Vec<String> = ["pear", "apple", "fig"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let s: ListSet<&str, Hazard> = ListSet::with_own_domain();
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
    let mut s: ListSet<u16> = (0..10).rev().collect();
    s.extend([20, 5]);
    assert_eq!(s.len(), 11);
    assert!(s.contains(&20) && s.get(&7).is_some());
    assert_eq!(s.take(&7).map(|e| *e.key()), Some(7));
    assert_eq!(s.pop_first().map(|e| *e.key()), Some(0));
    assert_eq!(s.first().map(|e| *e.key()), Some(1));
    assert_eq!(
        s.lower_bound(Bound::Included(&10)).map(|e| *e.key()),
        Some(20)
    );
    s.check_invariants();
}

#[test]
fn long_list_drops_without_recursion() {
    let n = if cfg!(miri) { 500 } else { 100_000 };
    // Inserting in decreasing order keeps each insert O(1).
    let m: List<u32, ()> = (0..n).rev().map(|k| (k, ())).collect();
    assert_eq!(m.len(), n as usize);
    drop(m);
}

#[test]
fn send_sync_bounds() {
    fn is_send_sync<X: Send + Sync>() {}
    is_send_sync::<List<String, Vec<u8>, Epoch>>();
    is_send_sync::<ListSet<u64, Hazard>>();
}

/// One step of the model test.
#[derive(Debug, Clone)]
enum Step {
    Insert(u8, u16),
    Remove(u8),
    Get(u8),
    PopFirst,
    LowerBound(u8),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        (0u8..16, any::<u16>()).prop_map(|(k, v)| Step::Insert(k, v)),
        (0u8..16).prop_map(Step::Remove),
        (0u8..16).prop_map(Step::Get),
        Just(Step::PopFirst),
        (0u8..16).prop_map(Step::LowerBound),
    ]
}

/// Runs `steps` on the list and on a `BTreeMap`; every result and the
/// final contents must agree.
fn agrees_with_btreemap<R: Reclaim>(mut list: List<u8, u16, R>, steps: &[Step]) {
    let mut model = BTreeMap::new();
    let pair = |e: Ref<'_, u8, u16, R>| (*e.key(), *e.value());
    for s in steps {
        match *s {
            Step::Insert(k, v) => {
                let fresh = !model.contains_key(&k);
                if fresh {
                    model.insert(k, v);
                }
                assert_eq!(list.insert(k, v), fresh, "{s:?}");
            }
            Step::Remove(k) => {
                assert_eq!(list.remove(&k).map(pair), model.remove(&k).map(|v| (k, v)))
            }
            Step::Get(k) => {
                assert_eq!(list.get(&k).map(pair), model.get(&k).map(|&v| (k, v)))
            }
            Step::PopFirst => assert_eq!(list.pop_first().map(pair), model.pop_first()),
            Step::LowerBound(k) => assert_eq!(
                list.lower_bound(Bound::Included(&k)).map(pair),
                model.range(k..).next().map(|(&k, &v)| (k, v))
            ),
        }
        assert_eq!(list.len(), model.len());
    }
    list.check_invariants();
    let all: Vec<_> = list.iter().map(pair).collect();
    assert_eq!(all, model.into_iter().collect::<Vec<_>>());
}

/// Steps per case: fewer under Miri, which runs about 1000x slower.
const STEPS: usize = if cfg!(miri) { 16 } else { 64 };

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
        agrees_with_btreemap::<Epoch>(List::with_own_domain(), &steps);
    }

    #[test]
    fn model_hazard_own(steps in prop::collection::vec(step(), 0..STEPS)) {
        agrees_with_btreemap::<Hazard>(List::with_own_domain(), &steps);
    }

    #[test]
    fn model_leak(steps in prop::collection::vec(step(), 0..STEPS)) {
        agrees_with_btreemap::<Leak>(List::new(), &steps);
    }
}
