//! Loom models of `TakeAllStack` (`src/take_all.rs`), and of its two seeded
//! bugs, which the models must catch.
//!
//! Run with `RUSTFLAGS="--cfg loom" cargo test --release --test loom_take_all`.
//!
//! The nodes' values and links live in loom-tracked cells, so a value or
//! link read by the taker without a happens-before edge from the push that
//! wrote it is a loom causality report. Each model checks that every value
//! pushed is taken exactly once (across the concurrent takes and a final
//! take after the joins), in an order the stack allows, and that the set of
//! outcomes seen across executions is the whole set of possible ones.
#![cfg(loom)]

mod common;

use common::{assert_seeded_race_caught, model, Outcomes};
use loom::sync::Arc;
use loom::thread;
use vvmalloc::take_all::seeded_weaken;
use vvmalloc::TakeAllStack;

/// Two producers push one value each while a consumer takes once; then a
/// final take gets the rest. Returns what the concurrent take got (sorted)
/// and checks everything was taken once.
fn two_pushes_race_a_take() -> Vec<u32> {
    let stack = Arc::new(TakeAllStack::new());
    let producers: Vec<_> = [1u32, 2]
        .into_iter()
        .map(|v| {
            let stack = stack.clone();
            thread::spawn(move || stack.push(Box::new(v)))
        })
        .collect();
    let taker = {
        let stack = stack.clone();
        thread::spawn(move || stack.take_all().map(|b| *b).collect::<Vec<u32>>())
    };
    producers.into_iter().for_each(|p| p.join().unwrap());
    let mut early = taker.join().unwrap();
    let rest: Vec<u32> = stack.take_all().map(|b| *b).collect();
    let mut all: Vec<u32> = early.iter().chain(&rest).copied().collect();
    all.sort();
    assert_eq!(all, [1, 2], "every value taken exactly once");
    early.sort();
    early
}

/// The concurrent take sees nothing, either value, or both.
#[test]
fn pushes_race_a_take() {
    let outcomes = Outcomes::new();
    let seen = outcomes.clone();
    model(move || seen.record(two_pushes_race_a_take()));
    outcomes.assert_saw(&[vec![], vec![1], vec![2], vec![1, 2]]);
}

/// One producer pushes twice while a consumer takes twice: per producer,
/// values come out in push order across batches (each batch newest first).
#[test]
fn one_producer_order_is_kept_across_takes() {
    let outcomes = Outcomes::new();
    let seen = outcomes.clone();
    model(move || {
        let stack = Arc::new(TakeAllStack::new());
        let producer = {
            let stack = stack.clone();
            thread::spawn(move || {
                stack.push(Box::new(1u32));
                stack.push(Box::new(2u32));
            })
        };
        let taker = {
            let stack = stack.clone();
            thread::spawn(move || {
                let a: Vec<u32> = stack.take_all().map(|b| *b).collect();
                let b: Vec<u32> = stack.take_all().map(|b| *b).collect();
                (a, b)
            })
        };
        producer.join().unwrap();
        let (a, b) = taker.join().unwrap();
        let c: Vec<u32> = stack.take_all().map(|b| *b).collect();
        // Batches in take order, each reversed: the push order.
        let order: Vec<u32> = [&a, &b, &c]
            .iter()
            .flat_map(|batch| batch.iter().rev().copied())
            .collect();
        assert_eq!(order, [1, 2], "batches {a:?} {b:?} {c:?}");
        seen.record((a.len(), b.len()));
    });
    // Everything the two takes can split off: nothing, one, or both values
    // in the first take, and what is left in the second.
    outcomes.assert_saw(&[(0, 0), (0, 1), (0, 2), (1, 0), (1, 1), (2, 0)]);
}

/// Runs the race of two pushes and a take with the seeded ordering bugs
/// `push` and `take` switched on (restored afterwards whatever happens):
/// loom must report a causality violation on the nodes' tracked cells.
fn assert_seeded_caught(push: bool, take: bool) {
    assert_seeded_race_caught(
        |on| seeded_weaken(on && push, on && take),
        || {
            let _ = two_pushes_race_a_take();
        },
    );
}

/// The seeded bug: `push` publishes with a `Relaxed` CAS. The taker then
/// reads a node's value and link without a happens-before edge from their
/// writes.
#[test]
fn seeded_relaxed_push_is_caught() {
    assert_seeded_caught(true, false);
}

/// The seeded bug: `take_all` swaps with `Relaxed`, so it acquires nothing.
#[test]
fn seeded_relaxed_take_is_caught() {
    assert_seeded_caught(false, true);
}
