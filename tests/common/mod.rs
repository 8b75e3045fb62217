//! Shared helpers of the integration tests: values that count their drops.
//!
//! The tests keep their bookkeeping in `std`'s atomics directly: it is the
//! test's own record, outside the structures under test and outside loom.
#![allow(dead_code)]

use std::collections::HashMap;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;

/// Drop counts for ids `0..n`.
#[derive(Clone)]
pub(crate) struct DropLedger(Arc<Vec<AtomicU8>>);

impl DropLedger {
    pub(crate) fn new(n: usize) -> Self {
        Self(Arc::new((0..n).map(|_| AtomicU8::new(0)).collect()))
    }

    /// A value with id `id` that records its drop here.
    pub(crate) fn value(&self, id: usize) -> Tracked {
        Tracked {
            id,
            ledger: self.clone(),
        }
    }

    /// How often `id` was dropped.
    pub(crate) fn drops(&self, id: usize) -> u8 {
        self.0[id].load(Ordering::SeqCst)
    }

    /// Asserts every id was dropped exactly once.
    pub(crate) fn assert_all_dropped_once(&self) {
        for id in 0..self.0.len() {
            assert_eq!(
                self.drops(id),
                1,
                "value {id} dropped {} times",
                self.drops(id)
            );
        }
    }

    /// Asserts no id was dropped yet.
    pub(crate) fn assert_none_dropped(&self) {
        for id in 0..self.0.len() {
            assert_eq!(self.drops(id), 0, "value {id} dropped early");
        }
    }
}

/// A value that records its drop in a [`DropLedger`].
pub(crate) struct Tracked {
    pub(crate) id: usize,
    ledger: DropLedger,
}

impl Drop for Tracked {
    fn drop(&mut self) {
        let before = self.ledger.0[self.id].fetch_add(1, Ordering::SeqCst);
        assert_eq!(before, 0, "value {} dropped twice", self.id);
    }
}

impl std::fmt::Debug for Tracked {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Tracked({})", self.id)
    }
}

/// What one thread of a map stress test saw succeed: (key, value id)
/// inserted and removed.
#[derive(Default)]
pub(crate) struct Log {
    pub(crate) inserted: Vec<(u64, usize)>,
    /// Ids of values whose insert found the key present.
    pub(crate) rejected: Vec<usize>,
    pub(crate) removed: Vec<(u64, usize)>,
}

/// What a stress run leaves to check: the drop ledger and the ids of every
/// value it created.
pub(crate) struct Run {
    pub(crate) ledger: DropLedger,
    pub(crate) created: Vec<usize>,
}

impl Run {
    pub(crate) fn assert_all_dropped_once(&self) {
        for &id in &self.created {
            let n = self.ledger.drops(id);
            assert_eq!(n, 1, "value {id} dropped {n} times");
        }
    }
}

/// Checks a map stress run's net effect: each inserted id was removed once
/// or `remaining` (the map's (key, id) pairs, `len` its `len()`) holds it,
/// under its key, and nothing else was removed or remains; rejected values
/// were dropped at once, remaining ones only by `drop_map`.
pub(crate) fn check_net_effect(
    logs: &[Log],
    remaining: &[(u64, usize)],
    len: usize,
    ledger: DropLedger,
    drop_map: impl FnOnce(),
) -> Run {
    let mut inserted: HashMap<usize, u64> = HashMap::new();
    for log in logs {
        for &(k, id) in &log.inserted {
            assert!(inserted.insert(id, k).is_none());
        }
    }
    let mut accounted: HashMap<usize, u64> = HashMap::new();
    let removed = logs.iter().flat_map(|l| l.removed.iter().copied());
    for (k, id) in removed.chain(remaining.iter().copied()) {
        assert_eq!(
            inserted.get(&id),
            Some(&k),
            "id {id} under key {k} was never inserted there"
        );
        assert!(
            accounted.insert(id, k).is_none(),
            "id {id} removed or present twice"
        );
    }
    assert_eq!(
        accounted.len(),
        inserted.len(),
        "some inserted values were lost"
    );
    assert_eq!(len, remaining.len());
    let rejected: Vec<usize> = logs
        .iter()
        .flat_map(|l| l.rejected.iter().copied())
        .collect();
    for &id in &rejected {
        assert_eq!(ledger.drops(id), 1, "rejected insert {id} not dropped");
    }
    for (_, id) in remaining {
        assert_eq!(ledger.drops(*id), 0, "value {id} in the map was dropped");
    }
    drop_map();
    for (_, id) in remaining {
        assert_eq!(ledger.drops(*id), 1, "value {id} not dropped with the map");
    }
    let created = inserted.keys().copied().chain(rejected).collect();
    Run { ledger, created }
}

/// A xorshift step: the tests' cheap, seeded pseudo-random numbers.
pub(crate) fn xorshift(seed: &mut u64) -> u64 {
    *seed ^= *seed << 13;
    *seed ^= *seed >> 7;
    *seed ^= *seed << 17;
    *seed
}

pub(crate) mod lincheck;
