//! Multi-threaded tests of `TakeAllStack`: every value pushed is taken
//! exactly once and dropped exactly once, and the order is the stack's:
//! batches in take order, each reversed, give every producer's values in
//! the order it pushed them (a push is never taken before an earlier push
//! of the same thread, nor after a later one).
#![cfg(not(loom))]

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier, Mutex};
use std::thread;

use common::{DropLedger, Tracked};
use vvmalloc::TakeAllStack;

const PRODUCERS: usize = if cfg!(miri) { 2 } else { 3 };
const CONSUMERS: usize = 2;
const PER: usize = if cfg!(miri) { 30 } else { 20_000 };

/// Runs `PRODUCERS` pushing threads against `CONSUMERS` taking threads;
/// returns the batches each consumer took, in its take order.
fn run(stack: &TakeAllStack<Tracked>, ledger: &DropLedger) -> Vec<Vec<Vec<usize>>> {
    let done = AtomicBool::new(false);
    let barrier = Barrier::new(PRODUCERS + CONSUMERS);
    let batches = Mutex::new(Vec::new());
    thread::scope(|s| {
        let producers: Vec<_> = (0..PRODUCERS)
            .map(|p| {
                let (barrier, ledger) = (&barrier, ledger);
                s.spawn(move || {
                    barrier.wait();
                    for i in 0..PER {
                        stack.push(ledger.value(p * PER + i));
                    }
                })
            })
            .collect();
        for _ in 0..CONSUMERS {
            let (barrier, done, batches) = (&barrier, &done, &batches);
            s.spawn(move || {
                barrier.wait();
                let mut mine = Vec::new();
                loop {
                    // Read before the take: a take after `done` gets the rest.
                    let last = done.load(Ordering::SeqCst);
                    let batch: Vec<usize> = stack.take_all().map(|v| v.id).collect();
                    if !batch.is_empty() {
                        mine.push(batch);
                    }
                    if last {
                        break;
                    }
                    thread::yield_now();
                }
                batches.lock().unwrap().push(mine);
            });
        }
        producers.into_iter().for_each(|p| p.join().unwrap());
        done.store(true, Ordering::SeqCst);
    });
    batches.into_inner().unwrap()
}

#[test]
fn every_value_taken_once_in_push_order_per_producer() {
    let ledger = DropLedger::new(PRODUCERS * PER);
    let stack = TakeAllStack::new();
    let per_consumer = run(&stack, &ledger);
    assert!(stack.is_empty());
    // Every value dropped once (the iterators moved them out and dropped
    // them as they were collected).
    ledger.assert_all_dropped_once();
    let mut seen = vec![0u8; PRODUCERS * PER];
    for batches in &per_consumer {
        // One consumer's takes are ordered: per producer, each batch
        // reversed continues where the previous batches left off.
        let mut next = [0usize; PRODUCERS];
        for batch in batches {
            for &id in batch.iter().rev() {
                seen[id] += 1;
                let (p, i) = (id / PER, id % PER);
                assert!(i >= next[p], "producer {p}: {i} taken after a later push");
                next[p] = i + 1;
            }
        }
    }
    assert!(seen.iter().all(|&n| n == 1), "a value taken twice or never");
}

#[test]
fn dropping_the_stack_or_a_batch_drops_every_value_once() {
    let ledger = DropLedger::new(100);
    let later = DropLedger::new(10);
    let stack: TakeAllStack<Tracked> = (0..100).map(|i| ledger.value(i)).collect();
    let mut batch = stack.take_all();
    assert_eq!(batch.next().map(|v| v.id), Some(99));
    for i in 0..10 {
        stack.push(later.value(i));
    }
    // The rest of the batch is dropped with it; the later pushes stay.
    drop(batch);
    ledger.assert_all_dropped_once();
    later.assert_none_dropped();
    drop(stack);
    later.assert_all_dropped_once();
}

#[test]
fn batches_can_move_between_threads() {
    let stack = Arc::new(TakeAllStack::new());
    stack.push(String::from("a"));
    let batch = stack.take_all();
    let got: Vec<String> = thread::spawn(move || batch.collect()).join().unwrap();
    assert_eq!(got, ["a"]);
}
