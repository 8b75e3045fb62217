//! Values that count their drops, and the net-effect check of a map stress
//! run: how the stress tests and the soak test check that a structure drops every value it was given
//! exactly once, none early and none twice.
//!
//! The ledger keeps its counts in `std`'s atomics: it is the test's own
//! record, outside the structures under test and outside loom (the loom
//! models keep theirs in loom's atomics, in `loom_tests/common`).
//!
//! ```
//! # if vvmalloc::LOOM_BUILD { return; }
//! use vvmalloc::TreiberStack;
//! use vvmalloc_tools::ledger::{DropLedger, Tracked};
//!
//! let ledger = DropLedger::new(2);
//! let stack: TreiberStack<Tracked> = TreiberStack::new();
//! stack.push(ledger.value(0));
//! stack.push(ledger.value(1));
//! drop(stack.pop());
//! assert_eq!((ledger.drops(0), ledger.drops(1)), (0, 1));
//! drop(stack);
//! ledger.assert_all_dropped_once();
//! ```

use std::collections::HashMap;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;

/// Drop counts for the ids `0..n`, shared by every [`Tracked`] value made
/// from it.
#[derive(Clone)]
pub struct DropLedger(Arc<Vec<AtomicU8>>);

impl DropLedger {
    /// A ledger for the ids `0..n`, none dropped.
    pub fn new(n: usize) -> Self {
        Self(Arc::new((0..n).map(|_| AtomicU8::new(0)).collect()))
    }

    /// The number of ids.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether the ledger has no ids.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// A value with id `id` that records its drop here.
    ///
    /// # Panics
    ///
    /// When the value is dropped, if `id` is not below [`len`](Self::len).
    pub fn value(&self, id: usize) -> Tracked {
        Tracked {
            id,
            ledger: self.clone(),
        }
    }

    /// How often `id` was dropped.
    pub fn drops(&self, id: usize) -> u8 {
        self.0[id].load(Ordering::SeqCst)
    }

    /// Asserts every id was dropped exactly once.
    pub fn assert_all_dropped_once(&self) {
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
    pub fn assert_none_dropped(&self) {
        for id in 0..self.0.len() {
            assert_eq!(self.drops(id), 0, "value {id} dropped early");
        }
    }
}

/// A value that records its drop in a [`DropLedger`]; dropping it twice
/// panics.
pub struct Tracked {
    /// Its id in the ledger.
    pub id: usize,
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
pub struct Log {
    /// (key, value id) pairs whose insert succeeded.
    pub inserted: Vec<(u64, usize)>,
    /// Ids of values whose insert found the key present.
    pub rejected: Vec<usize>,
    /// (key, value id) pairs this thread removed.
    pub removed: Vec<(u64, usize)>,
}

/// What a stress run leaves to check: the drop ledger and the ids of every
/// value it created.
pub struct Run {
    /// The run's ledger.
    pub ledger: DropLedger,
    /// The ids of every value the run created.
    pub created: Vec<usize>,
}

impl Run {
    /// Asserts every value the run created was dropped exactly once.
    pub fn assert_all_dropped_once(&self) {
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
pub fn check_net_effect(
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
