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

/// Drop counts of one execution, by id; ids not created stay at zero.
#[derive(Clone)]
pub(crate) struct Ledger(Arc<Vec<AtomicUsize>>, Arc<Vec<AtomicUsize>>);

impl Ledger {
    pub(crate) fn new(n: usize) -> Self {
        let counters = || Arc::new((0..n).map(|_| AtomicUsize::new(0)).collect());
        Self(counters(), counters())
    }

    /// Creates the value with id `id` (once per id per execution).
    pub(crate) fn value(&self, id: usize) -> Tracked {
        let before = self.1[id].fetch_add(1, Ordering::SeqCst);
        assert_eq!(before, 0, "value {id} created twice");
        Tracked {
            id,
            ledger: self.clone(),
        }
    }

    /// Every value created was dropped exactly once.
    pub(crate) fn assert_all_created_dropped_once(&self) {
        for (id, (made, dropped)) in self.1.iter().zip(self.0.iter()).enumerate() {
            let (made, dropped) = (made.load(Ordering::SeqCst), dropped.load(Ordering::SeqCst));
            assert_eq!(
                dropped, made,
                "value {id}: created {made} times, dropped {dropped}"
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

/// A structure under model checking, with its sequential specification.
///
/// A model runs some `setup` calls on the main thread, then starts one loom
/// thread per list of calls, joins them, and reads what the structure holds.
/// [`check`] then verifies, in every execution, that the results and the
/// final contents are those of *some* sequential order of the same calls
/// (so every explored execution is linearizable), that each value was
/// dropped at most once, and exactly once after the structure is dropped
/// where reclamation runs under loom; and, over all executions, that the
/// outcomes seen are exactly all the sequentially possible ones.
pub(crate) trait Subject: Sized + Send + Sync + 'static {
    /// One call.
    type Op: Copy + Debug + Send + Sync + 'static;
    /// A call's result, as recorded.
    type Ret: Clone + Ord + Debug + Send + Sync + 'static;
    /// The sequential specification's state; its contents are compared
    /// with the structure's at the end.
    type Spec: Clone + Default;
    /// What the structure holds at the end, in a comparable form.
    type Contents: Clone + Ord + Debug + Send + Sync + 'static;

    fn new() -> Self;
    /// Runs `op`; values it creates come from `ledger`.
    fn apply(&self, op: Self::Op, ledger: &Ledger) -> Self::Ret;
    /// What the structure holds (called once all threads are joined).
    fn contents(&mut self) -> Self::Contents;
    /// Whether reclamation really runs in this build, so that every value
    /// must have been dropped once the structure is dropped.
    fn reclaims() -> bool;
    /// The id of the value `op` creates, if any.
    fn creates(op: Self::Op) -> Option<usize>;

    fn spec_apply(spec: &mut Self::Spec, op: Self::Op) -> Self::Ret;
    fn spec_contents(spec: &Self::Spec) -> Self::Contents;
}

/// One execution's outcome: each thread's results, and the final contents.
pub(crate) type Outcome<S> = (Vec<Vec<<S as Subject>::Ret>>, <S as Subject>::Contents);

/// Every outcome that some sequential order of `threads`' calls (each
/// thread's in program order) gives after `setup`.
fn sequential_outcomes<S: Subject>(
    setup: &[S::Op],
    threads: &[Vec<S::Op>],
) -> BTreeSet<Outcome<S>> {
    fn go<S: Subject>(
        spec: &S::Spec,
        threads: &[Vec<S::Op>],
        next: &mut [usize],
        results: &mut Vec<Vec<S::Ret>>,
        out: &mut BTreeSet<Outcome<S>>,
    ) {
        let mut done = true;
        for t in 0..threads.len() {
            if next[t] == threads[t].len() {
                continue;
            }
            done = false;
            let mut after = spec.clone();
            let ret = S::spec_apply(&mut after, threads[t][next[t]]);
            next[t] += 1;
            results[t].push(ret);
            go::<S>(&after, threads, next, results, out);
            results[t].pop();
            next[t] -= 1;
        }
        if done {
            out.insert((results.clone(), S::spec_contents(spec)));
        }
    }
    let mut spec = S::Spec::default();
    for &op in setup {
        S::spec_apply(&mut spec, op);
    }
    let mut out = BTreeSet::new();
    go::<S>(
        &spec,
        threads,
        &mut vec![0; threads.len()],
        &mut vec![Vec::new(); threads.len()],
        &mut out,
    );
    out
}

/// Model-checks `S` with a preemption bound of `bound` (see [`Subject`]).
pub(crate) fn check<S: Subject>(bound: usize, setup: &[S::Op], threads: &[Vec<S::Op>]) {
    let expected = sequential_outcomes::<S>(setup, threads);
    let ids = setup
        .iter()
        .chain(threads.iter().flatten())
        .filter_map(|&op| S::creates(op))
        .max()
        .map_or(0, |m| m + 1);
    let outcomes = Outcomes::new();
    let (setup, threads) = (setup.to_vec(), threads.to_vec());
    let (seen, possible) = (outcomes.clone(), expected.clone());
    model_bounded(bound, move || {
        let ledger = Ledger::new(ids);
        let subject = loom::sync::Arc::new(S::new());
        for &op in &setup {
            subject.apply(op, &ledger);
        }
        let handles: Vec<_> = threads
            .iter()
            .map(|ops| {
                let (subject, ledger, ops) = (subject.clone(), ledger.clone(), ops.clone());
                loom::thread::spawn(move || {
                    ops.into_iter()
                        .map(|op| subject.apply(op, &ledger))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let results: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        let mut subject = loom::sync::Arc::try_unwrap(subject)
            .ok()
            .expect("threads joined");
        let outcome = (results, subject.contents());
        assert!(
            possible.contains(&outcome),
            "not linearizable: {outcome:?} is no sequential outcome"
        );
        seen.record(outcome);
        drop(subject);
        if S::reclaims() {
            ledger.assert_all_created_dropped_once();
        }
    });
    outcomes.assert_saw(&expected.into_iter().collect::<Vec<_>>());
}

/// Runs `f`, which must panic with a message containing one of `reports`:
/// a seeded bug must be caught by loom or by the model's own checks, not by
/// some unrelated failure.
pub(crate) fn assert_caught(f: impl FnOnce() + std::panic::UnwindSafe, reports: &[&str]) {
    let err = std::panic::catch_unwind(f).expect_err("loom missed the seeded bug");
    let msg = err
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| err.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_default();
    assert!(
        reports.iter().any(|r| msg.contains(r)),
        "caught, but by an unexpected failure: {msg}"
    );
}

/// What a use after free looks like to loom: the poisoning write races the
/// read (a causality report), or precedes it (the liveness check fails); and
/// a double free: the second poisoning finds the node dead.
pub(crate) const UAF_REPORTS: &[&str] =
    &["Causality violation", "use after reclaim", "double reclaim"];

/// Runs `model` with a seeded bug switched on by `switch(true)`, switching it
/// off afterwards whatever happens; loom must report a causality violation.
pub(crate) fn assert_seeded_race_caught(
    switch: impl Fn(bool),
    model: impl Fn() + Sync + Send + 'static,
) {
    assert_seeded_bug_caught(switch, model, &["Causality violation"]);
}

/// Runs `model` with a seeded bug switched on by `switch(true)`, switching it
/// off afterwards whatever happens; the run must fail with one of `reports`
/// (loom's own, or the model's checks).
pub(crate) fn assert_seeded_bug_caught(
    switch: impl Fn(bool),
    model: impl Fn() + Sync + Send + 'static,
    reports: &[&str],
) {
    switch(true);
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        assert_caught(std::panic::AssertUnwindSafe(|| self::model(model)), reports)
    }));
    switch(false);
    if let Err(e) = result {
        std::panic::resume_unwind(e);
    }
}
