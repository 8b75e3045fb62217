//! Shared harness of the loom models.
//!
//! - [`model`] runs a model with a preemption bound of 2 unless
//!   `LOOM_MAX_PREEMPTIONS` says otherwise, so the whole suite finishes in
//!   minutes on 2 cores (crossbeam and tokio bound their CI the same way).
//! - [`Outcomes`] collects what each execution observed, so a model can assert
//!   that it saw every expected outcome: a model that explored a single
//!   interleaving (loom issue #392, or a harness mistake) fails instead of
//!   passing vacuously. Per loom #392, all concurrent work runs in spawned
//!   threads and the model's main thread only joins them.
//! - [`Tracked`] values count their drops per execution.
//!
//! The bookkeeping uses `std`'s `Mutex` and atomics on purpose: it is the
//! test's record across executions, not part of the modelled program, and
//! loom runs every model thread on one OS thread.
#![allow(dead_code)]

use std::collections::BTreeSet;
use std::fmt::Debug;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// Runs `f` under loom with the crate's default bounds.
pub(crate) fn model<F>(f: F)
where
    F: Fn() + Sync + Send + 'static,
{
    model_bounded(2, f)
}

/// Runs `f` under loom with a preemption bound of `bound`, unless
/// `LOOM_MAX_PREEMPTIONS` says otherwise.
pub(crate) fn model_bounded<F>(bound: usize, f: F)
where
    F: Fn() + Sync + Send + 'static,
{
    let mut builder = loom::model::Builder::new();
    if builder.preemption_bound.is_none() {
        builder.preemption_bound = Some(bound);
    }
    builder.check(f);
}

/// The set of outcomes seen across all executions of a model.
pub(crate) struct Outcomes<T: Ord>(Arc<Mutex<BTreeSet<T>>>);

impl<T: Ord> Clone for Outcomes<T> {
    fn clone(&self) -> Self {
        Self(self.0.clone())
    }
}

impl<T: Ord + Debug + Clone> Outcomes<T> {
    pub(crate) fn new() -> Self {
        Self(Arc::new(Mutex::new(BTreeSet::new())))
    }

    /// Records one execution's outcome.
    pub(crate) fn record(&self, outcome: T) {
        self.0.lock().unwrap().insert(outcome);
    }

    /// Asserts the model saw exactly `expected`.
    pub(crate) fn assert_saw(&self, expected: &[T]) {
        let seen = self.0.lock().unwrap().clone();
        let expected: BTreeSet<T> = expected.iter().cloned().collect();
        assert_eq!(seen, expected, "the model saw other outcomes than expected");
    }
}

/// Drop counts of one execution, by id.
#[derive(Clone)]
pub(crate) struct Ledger(Arc<Vec<AtomicUsize>>);

impl Ledger {
    pub(crate) fn new(n: usize) -> Self {
        Self(Arc::new((0..n).map(|_| AtomicUsize::new(0)).collect()))
    }

    pub(crate) fn value(&self, id: usize) -> Tracked {
        Tracked {
            id,
            ledger: self.clone(),
        }
    }

    pub(crate) fn assert_all_dropped_once(&self) {
        for (id, n) in self.0.iter().enumerate() {
            assert_eq!(
                n.load(Ordering::SeqCst),
                1,
                "value {id}: wrong number of drops"
            );
        }
    }
}

/// A value that counts its drops in a [`Ledger`].
pub(crate) struct Tracked {
    pub(crate) id: usize,
    ledger: Ledger,
}

impl Drop for Tracked {
    fn drop(&mut self) {
        let before = self.ledger.0[self.id].fetch_add(1, Ordering::SeqCst);
        assert_eq!(before, 0, "value {} dropped twice", self.id);
    }
}
