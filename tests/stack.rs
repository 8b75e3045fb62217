//! Multi-threaded stress tests of `TreiberStack` under every scheme: every
//! value pushed is popped exactly once or remains, and every value is dropped
//! exactly once (none lost, none dropped twice, none leaked); and
//! linearizability of recorded histories against a sequential stack.
#![cfg(not(loom))]

mod common;

use std::collections::VecDeque;
use std::sync::{Arc, Barrier, Mutex};
use std::thread;

use common::lincheck::{self, Clock, Spec};
use common::{DropLedger, Tracked};
use vvmalloc::reclaim::{AsymHazard, Domain, Epoch, Hazard, Leak, Reclaim};
use vvmalloc::TreiberStack;

// Tests named `*own*` use only own domains, so they free everything they
// allocate: CI runs them under Miri with its leak check on.

/// Sizes scaled down under Miri, which runs about 1000x slower.
const THREADS: usize = if cfg!(miri) { 2 } else { 4 };
const PER_THREAD: usize = if cfg!(miri) { 40 } else { 20_000 };

/// Each thread pushes its own ids and pops after every push with some
/// probability, keeping what it popped. Returns (popped per thread, ledger).
fn churn<R: Reclaim>(stack: Arc<TreiberStack<Tracked, R>>) -> (Vec<Vec<Tracked>>, DropLedger) {
    let ledger = DropLedger::new(THREADS * PER_THREAD);
    let barrier = Arc::new(Barrier::new(THREADS));
    let handles: Vec<_> = (0..THREADS)
        .map(|t| {
            let (stack, ledger, barrier) = (stack.clone(), ledger.clone(), barrier.clone());
            thread::spawn(move || {
                barrier.wait();
                let mut popped = Vec::new();
                let mut seed = t as u64 + 1;
                for i in 0..PER_THREAD {
                    stack.push(ledger.value(t * PER_THREAD + i));
                    // xorshift: pop about 3 times in 4, so the stack stays
                    // short and pushes and pops race on `head`.
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    if seed % 4 != 0 {
                        popped.extend(stack.pop());
                    }
                }
                popped
            })
        })
        .collect();
    let popped = handles.into_iter().map(|h| h.join().unwrap()).collect();
    (popped, ledger)
}

/// Every id appears exactly once among `popped` and `rest`; nothing dropped yet.
fn assert_exactly_once(popped: &[Vec<Tracked>], rest: &[Tracked], ledger: &DropLedger) {
    let mut seen = vec![0u8; THREADS * PER_THREAD];
    for v in popped.iter().flatten().chain(rest) {
        seen[v.id] += 1;
    }
    for (id, n) in seen.iter().enumerate() {
        assert_eq!(*n, 1, "value {id} seen {n} times");
    }
    ledger.assert_none_dropped();
}

fn stress_drain<R: Reclaim>(domain: Domain<R>) {
    let stack = Arc::new(TreiberStack::with_domain(domain));
    let (popped, ledger) = churn(stack.clone());
    let rest: Vec<Tracked> = std::iter::from_fn(|| stack.pop()).collect();
    assert!(stack.is_empty());
    assert_exactly_once(&popped, &rest, &ledger);
    drop((popped, rest));
    ledger.assert_all_dropped_once();
    drop(stack);
}

fn stress_drop_remaining<R: Reclaim>(domain: Domain<R>) {
    let stack = Arc::new(TreiberStack::with_domain(domain));
    let (popped, ledger) = churn(stack.clone());
    let stack = Arc::into_inner(stack).expect("threads joined");
    drop(popped);
    // The stack's `Drop` must drop every value still in it, once.
    drop(stack);
    ledger.assert_all_dropped_once();
}

#[test]
fn stress_epoch_global() {
    stress_drain::<Epoch>(Domain::global());
    stress_drop_remaining::<Epoch>(Domain::global());
}

#[test]
fn stress_epoch_own() {
    stress_drain::<Epoch>(Domain::new());
    stress_drop_remaining::<Epoch>(Domain::new());
}

#[test]
fn stress_hazard_global() {
    stress_drain::<Hazard>(Domain::global());
    stress_drop_remaining::<Hazard>(Domain::global());
}

#[test]
fn stress_hazard_own() {
    stress_drain::<Hazard>(Domain::new());
    stress_drop_remaining::<Hazard>(Domain::new());
}

#[test]
fn stress_asym_hazard_global() {
    stress_drain::<AsymHazard>(Domain::global());
    stress_drop_remaining::<AsymHazard>(Domain::global());
}

#[test]
fn stress_asym_hazard_own() {
    stress_drain::<AsymHazard>(Domain::new());
    stress_drop_remaining::<AsymHazard>(Domain::new());
}

#[test]
fn stress_leak() {
    stress_drain::<Leak>(Domain::global());
    stress_drop_remaining::<Leak>(Domain::global());
}

/// Producers and consumers on separate threads: every value crosses threads.
fn producer_consumer<R: Reclaim>(domain: Domain<R>) {
    let n = THREADS / 2 * PER_THREAD;
    let ledger = DropLedger::new(n);
    let stack = Arc::new(TreiberStack::with_domain(domain));
    let producers: Vec<_> = (0..THREADS / 2)
        .map(|t| {
            let (stack, ledger) = (stack.clone(), ledger.clone());
            thread::spawn(move || {
                for i in 0..PER_THREAD {
                    stack.push(ledger.value(t * PER_THREAD + i));
                }
            })
        })
        .collect();
    let consumers: Vec<_> = (0..THREADS / 2)
        .map(|_| {
            let stack = stack.clone();
            thread::spawn(move || {
                let mut ids = Vec::new();
                for _ in 0..PER_THREAD * 4 {
                    match stack.pop() {
                        Some(v) => ids.push(v.id),
                        None => thread::yield_now(),
                    }
                }
                ids
            })
        })
        .collect();
    for p in producers {
        p.join().unwrap();
    }
    let mut ids: Vec<usize> = consumers
        .into_iter()
        .flat_map(|c| c.join().unwrap())
        .collect();
    ids.extend(std::iter::from_fn(|| stack.pop()).map(|v| v.id));
    ids.sort_unstable();
    assert_eq!(ids, (0..n).collect::<Vec<_>>());
    ledger.assert_all_dropped_once();
}

#[test]
fn producer_consumer_own_domains() {
    producer_consumer::<Epoch>(Domain::new());
    producer_consumer::<Hazard>(Domain::new());
    producer_consumer::<AsymHazard>(Domain::new());
}

#[test]
fn producer_consumer_global_domains_and_leak() {
    producer_consumer::<Epoch>(Domain::global());
    producer_consumer::<Hazard>(Domain::global());
    producer_consumer::<AsymHazard>(Domain::global());
    producer_consumer::<Leak>(Domain::global());
}

/// The stack keeps LIFO order per thread: a thread that pushes a, b and then
/// pops twice, with no other thread popping, gets b then a, whatever other
/// threads push in between.
#[test]
fn per_thread_lifo_with_concurrent_pushers_own() {
    let stack: Arc<TreiberStack<(usize, usize), Hazard>> =
        Arc::new(TreiberStack::with_domain(Domain::new()));
    let pushers: Vec<_> = (1..THREADS)
        .map(|t| {
            let stack = stack.clone();
            thread::spawn(move || {
                for i in 0..PER_THREAD {
                    stack.push((t, i));
                }
            })
        })
        .collect();
    for p in pushers {
        p.join().unwrap();
    }
    // Single popper: the values of each pusher come out in reverse order.
    let mut last = [usize::MAX; THREADS];
    while let Some((t, i)) = stack.pop() {
        assert!(i < last[t], "thread {t}: {i} popped after {}", last[t]);
        last[t] = i;
    }
    assert!(last[1..].iter().all(|&l| l == 0));
}

// ---------------------------------------------------------------------------
// Linearizability

#[derive(Debug, Clone, Copy)]
enum Op {
    Push(u8),
    Pop,
    IsEmpty,
}

#[derive(Debug, Clone, PartialEq)]
enum Ret {
    Pushed,
    Popped(Option<u8>),
    Empty(bool),
}

/// The sequential specification: a `Vec` used as a stack.
#[derive(Clone, PartialEq, Eq, Hash, Default)]
struct StackSpec(Vec<u8>);

impl Spec for StackSpec {
    type Op = Op;
    type Ret = Ret;
    fn apply(&mut self, op: &Op) -> Ret {
        match *op {
            Op::Push(v) => {
                self.0.push(v);
                Ret::Pushed
            }
            Op::Pop => Ret::Popped(self.0.pop()),
            Op::IsEmpty => Ret::Empty(self.0.is_empty()),
        }
    }
}

/// Something that takes the stack's calls: the stack itself, or the broken
/// stand-in the checker must reject.
trait Subject: Send + Sync + 'static {
    fn call(&self, op: &Op) -> Ret;
}

impl<R: Reclaim + 'static> Subject for TreiberStack<u8, R>
where
    Self: Send + Sync,
{
    fn call(&self, op: &Op) -> Ret {
        match *op {
            Op::Push(v) => {
                self.push(v);
                Ret::Pushed
            }
            Op::Pop => Ret::Popped(self.pop()),
            Op::IsEmpty => Ret::Empty(self.is_empty()),
        }
    }
}

/// Not a stack: a FIFO queue (correctly synchronised, so only its order is
/// wrong). Recorded against the stack's specification it must fail.
#[derive(Default)]
struct QueuePosingAsStack(Mutex<VecDeque<u8>>);

impl Subject for QueuePosingAsStack {
    fn call(&self, op: &Op) -> Ret {
        let mut q = self.0.lock().unwrap();
        match *op {
            Op::Push(v) => {
                q.push_back(v);
                Ret::Pushed
            }
            Op::Pop => Ret::Popped(q.pop_front()),
            Op::IsEmpty => Ret::Empty(q.is_empty()),
        }
    }
}

/// Calls per thread of a recorded run.
const CALLS: usize = if cfg!(miri) { 4 } else { 8 };

/// One call: a push of a value no other call pushes, a pop, or a check.
fn gen_op(r: u64, thread: usize, call: usize) -> Op {
    match r % 5 {
        0..=1 => Op::Push((thread * CALLS + call) as u8),
        2..=3 => Op::Pop,
        _ => Op::IsEmpty,
    }
}

fn apply<S: Subject>(s: &S, op: &Op) -> Ret {
    s.call(op)
}

/// Many short runs: 3 threads, a few calls each; each recorded history is
/// checked. Returns the first failure, if any.
fn histories<S: Subject>(new: impl Fn() -> S) -> Result<(), String> {
    let runs = lincheck::Runs {
        rounds: if cfg!(miri) { 4 } else { 300 },
        threads: 3,
        per_thread: CALLS,
        seed: 11,
    };
    lincheck::run_rounds(&StackSpec::default(), &runs, new, gen_op, apply, drop)
}

#[test]
fn linearizable_own_domains() {
    histories(|| TreiberStack::<u8, Epoch>::with_domain(Domain::new())).unwrap();
    histories(|| TreiberStack::<u8, Hazard>::with_domain(Domain::new())).unwrap();
    histories(|| TreiberStack::<u8, AsymHazard>::with_domain(Domain::new())).unwrap();
}

#[test]
fn linearizable_global_domains_and_leak() {
    histories(TreiberStack::<u8, Epoch>::new).unwrap();
    histories(|| TreiberStack::<u8, Hazard>::with_domain(Domain::global())).unwrap();
    histories(|| TreiberStack::<u8, AsymHazard>::with_domain(Domain::global())).unwrap();
    histories(TreiberStack::<u8, Leak>::new).unwrap();
}

/// The check can fail: a FIFO queue recorded as a stack is caught, on one
/// thread (push 1, push 2, pop gives 1) and in the concurrent runs.
#[test]
fn lincheck_rejects_a_queue_posing_as_a_stack() {
    let q = QueuePosingAsStack::default();
    let clock = Clock::default();
    let history: Vec<_> = [Op::Push(1), Op::Push(2), Op::Pop]
        .into_iter()
        .map(|op| clock.record(0, op, |op| q.call(op)))
        .collect();
    assert_eq!(history[2].ret, Ret::Popped(Some(1)));
    assert!(lincheck::check(&StackSpec::default(), &history).is_err());
    if !cfg!(miri) {
        let e = histories(QueuePosingAsStack::default).unwrap_err();
        assert!(e.contains("not linearizable"), "{e}");
    }
}
