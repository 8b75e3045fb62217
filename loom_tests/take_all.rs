//! Loom models of `TakeAllStack` and `IntrusiveTakeAll` (`src/take_all.rs`,
//! the latter the heap pages' remote-free list), and of their two seeded
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
use vvmalloc::take_all::{seeded_weaken, IntrusiveTakeAll};
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

/// A block of the intrusive list: the link in its first word (raw memory,
/// as a freed heap block's), the payload in a loom cell.
#[repr(C)]
struct Block {
    link: *mut u8,
    value: loom::cell::UnsafeCell<u32>,
}

/// What a taker writes over a taken block's first word: the block is the
/// taker's now (the heap reuses it), and no push may write it again.
const REUSED: usize = 0x5a5a;

/// Takes the whole list, reading each block's value and marking it
/// reused; returns (value, block address) pairs, newest first.
fn take_blocks(list: &IntrusiveTakeAll) -> Vec<(u32, usize)> {
    let mut got = Vec::new();
    let mut p = list.take_all();
    while !p.is_null() {
        let b = p.cast::<Block>();
        // SAFETY: a taken block is the taker's; the value cell is read
        // after the take, which acquires the push that published it.
        let (value, next) = unsafe { ((*b).value.with(|v| *v), (*b).link) };
        // SAFETY: as above; the block is ours.
        unsafe { (*b).link = REUSED as *mut u8 };
        got.push((value, b as usize));
        p = next;
    }
    got
}

/// Two producers each write a block's payload and push it while a consumer
/// takes once and reuses what it took; then a final take gets the rest.
/// Every block is taken once, with its payload, and a block taken early is
/// not written again by its pusher after the take. Returns the values the
/// concurrent take got, sorted.
fn two_intrusive_pushes_race_a_take() -> Vec<u32> {
    let list = Arc::new(IntrusiveTakeAll::new());
    let producers: Vec<_> = [1u32, 2]
        .into_iter()
        .map(|v| {
            let list = list.clone();
            thread::spawn(move || {
                let b = Box::into_raw(Box::new(Block {
                    link: std::ptr::null_mut(),
                    value: loom::cell::UnsafeCell::new(0),
                }));
                // SAFETY: the block is ours until the push publishes it.
                unsafe { (*b).value.with_mut(|x| *x = v) };
                // SAFETY: a live, aligned block the list owns from now on.
                unsafe { list.push(b.cast()) };
            })
        })
        .collect();
    let taker = {
        let list = list.clone();
        thread::spawn(move || take_blocks(&list))
    };
    producers.into_iter().for_each(|p| p.join().unwrap());
    let early = taker.join().unwrap();
    for &(_, b) in &early {
        // SAFETY: the block is the taker's (now ours: it was joined).
        let link = unsafe { (*(b as *mut Block)).link } as usize;
        assert_eq!(link, REUSED, "a pusher wrote a block after it was taken");
    }
    let rest = take_blocks(&list);
    let mut all: Vec<u32> = early.iter().chain(&rest).map(|&(v, _)| v).collect();
    all.sort();
    assert_eq!(all, [1, 2], "every block taken exactly once");
    for &(_, b) in early.iter().chain(&rest) {
        // SAFETY: every block was taken once; we free each once.
        drop(unsafe { Box::from_raw(b as *mut Block) });
    }
    let mut early: Vec<u32> = early.into_iter().map(|(v, _)| v).collect();
    early.sort();
    early
}

/// The intrusive list: the concurrent take sees nothing, either block, or
/// both.
#[test]
fn intrusive_pushes_race_a_take() {
    let outcomes = Outcomes::new();
    let seen = outcomes.clone();
    model(move || seen.record(two_intrusive_pushes_race_a_take()));
    outcomes.assert_saw(&[vec![], vec![1], vec![2], vec![1, 2]]);
}

/// The seeded bugs (shared with `TakeAllStack`: the same orderings) on the
/// intrusive list: the taker reads a payload its push did not publish.
#[test]
fn seeded_relaxed_intrusive_push_is_caught() {
    assert_seeded_race_caught(
        |on| seeded_weaken(on, false),
        || {
            let _ = two_intrusive_pushes_race_a_take();
        },
    );
}

#[test]
fn seeded_relaxed_intrusive_take_is_caught() {
    assert_seeded_race_caught(
        |on| seeded_weaken(false, on),
        || {
            let _ = two_intrusive_pushes_race_a_take();
        },
    );
}
