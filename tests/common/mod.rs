//! Shared helpers of the integration tests: values that count their drops.
//!
//! The tests keep their bookkeeping in `std`'s atomics directly: it is the
//! test's own record, outside the structures under test and outside loom.
#![allow(dead_code)]

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

pub(crate) mod lincheck;
