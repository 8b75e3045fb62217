//! The structures against models: an arbitrary sequence of operations on a
//! `SkipList`, a `List` and a `TreiberStack` (epoch reclamation, and the
//! skip list also under hazard pointers), each result compared with a
//! `BTreeMap` or a `Vec`, the structures' own invariant checks run at the
//! end, and every value dropped exactly once (counted).
#![no_main]

use std::collections::BTreeMap;
use std::ops::Bound::{Excluded, Included, Unbounded};
use std::sync::atomic::{AtomicIsize, Ordering};

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use vvmalloc::reclaim::{Domain, Hazard};
use vvmalloc::{List, SkipList, TreiberStack};

/// Values alive (created and not dropped).
static LIVE: AtomicIsize = AtomicIsize::new(0);

#[derive(Debug, PartialEq)]
struct Val(u16);

impl Val {
    fn new(v: u16) -> Self {
        // Relaxed: a counter read by the same (single) thread.
        LIVE.fetch_add(1, Ordering::Relaxed);
        Val(v)
    }
}

impl Drop for Val {
    fn drop(&mut self) {
        // Relaxed: as in `Val::new`.
        LIVE.fetch_sub(1, Ordering::Relaxed);
    }
}

#[derive(Arbitrary, Debug)]
enum Op {
    Insert(u8, u16),
    Remove(u8),
    Get(u8),
    PopFirst,
    PopLast,
    LowerBound(u8, bool),
    Push(u16),
    Pop,
}

fuzz_target!(|ops: Vec<Op>| {
    {
        // Own domains: dropping them frees every retired node, so the
        // drop count below is exact.
        let mut skip: SkipList<u8, Val> = SkipList::with_domain(Domain::new());
        let mut skip_h: SkipList<u8, Val, Hazard> = SkipList::with_domain(Domain::new());
        let mut list: List<u8, Val> = List::with_domain(Domain::new());
        let stack: TreiberStack<Val> = TreiberStack::with_domain(Domain::new());
        let mut m_skip: BTreeMap<u8, u16> = BTreeMap::new();
        let mut m_list: BTreeMap<u8, u16> = BTreeMap::new();
        let mut m_stack: Vec<u16> = Vec::new();
        for op in &ops {
            match *op {
                Op::Insert(k, v) => {
                    skip.insert(k, Val::new(v));
                    skip_h.insert(k, Val::new(v));
                    m_skip.insert(k, v);
                    let fresh = list.insert(k, Val::new(v));
                    assert_eq!(fresh, !m_list.contains_key(&k));
                    m_list.entry(k).or_insert(v);
                }
                Op::Remove(k) => {
                    let want = m_skip.remove(&k);
                    assert_eq!(skip.remove(&k).map(|e| e.value().0), want);
                    assert_eq!(skip_h.remove(&k).map(|e| e.value().0), want);
                    assert_eq!(list.remove(&k).map(|e| e.value().0), m_list.remove(&k));
                }
                Op::Get(k) => {
                    let want = m_skip.get(&k).copied();
                    assert_eq!(skip.get(&k).map(|e| e.value().0), want);
                    assert_eq!(skip_h.get(&k).map(|e| e.value().0), want);
                    assert_eq!(list.get(&k).map(|e| e.value().0), m_list.get(&k).copied());
                }
                Op::PopFirst => {
                    let want = m_skip.pop_first().map(|(k, v)| (k, v));
                    assert_eq!(skip.pop_first().map(|e| (*e.key(), e.value().0)), want);
                    assert_eq!(skip_h.pop_first().map(|e| (*e.key(), e.value().0)), want);
                    assert_eq!(
                        list.pop_first().map(|e| (*e.key(), e.value().0)),
                        m_list.pop_first()
                    );
                }
                Op::PopLast => {
                    let want = m_skip.pop_last();
                    assert_eq!(skip.pop_last().map(|e| (*e.key(), e.value().0)), want);
                    assert_eq!(skip_h.pop_last().map(|e| (*e.key(), e.value().0)), want);
                }
                Op::LowerBound(k, inclusive) => {
                    let b = if inclusive {
                        Included(&k)
                    } else {
                        Excluded(&k)
                    };
                    let want = m_skip.range((b, Unbounded)).next().map(|(k, v)| (*k, *v));
                    assert_eq!(skip.lower_bound(b).map(|e| (*e.key(), e.value().0)), want);
                    let want = m_list.range((b, Unbounded)).next().map(|(k, v)| (*k, *v));
                    assert_eq!(list.lower_bound(b).map(|e| (*e.key(), e.value().0)), want);
                }
                Op::Push(v) => {
                    stack.push(Val::new(v));
                    m_stack.push(v);
                }
                Op::Pop => assert_eq!(stack.pop().map(|v| v.0), m_stack.pop()),
            }
        }
        skip.check_invariants();
        skip_h.check_invariants();
        list.check_invariants();
        let keys: Vec<(u8, u16)> = skip.iter().map(|e| (*e.key(), e.value().0)).collect();
        assert_eq!(
            keys,
            m_skip.iter().map(|(k, v)| (*k, *v)).collect::<Vec<_>>()
        );
        let keys: Vec<(u8, u16)> = list.iter().map(|e| (*e.key(), e.value().0)).collect();
        assert_eq!(
            keys,
            m_list.iter().map(|(k, v)| (*k, *v)).collect::<Vec<_>>()
        );
        assert_eq!(skip.len(), m_skip.len());
        assert_eq!(list.len(), m_list.len());
    }
    // Every structure and its domain dropped: every value dropped once.
    assert_eq!(
        // Relaxed: as in `Val::new`.
        LIVE.load(Ordering::Relaxed),
        0,
        "values leaked or dropped twice"
    );
});
