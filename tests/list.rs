//! Multi-threaded tests of `List`: stress with drop counting (every
//! successful insert is removed exactly once or remains; every value is
//! dropped exactly once), and linearizability of recorded histories.
#![cfg(not(loom))]

mod common;

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::{Arc, Barrier};
use std::thread;

use common::lincheck::{self, Spec};
use common::{check_net_effect, xorshift, DropLedger, Log, Run, Tracked};
use vvmalloc::reclaim::{AsymHazard, Domain, Epoch, Hazard, Leak, Reclaim};
use vvmalloc::List;

// Tests named `*own*` use only own domains, so they free everything they
// allocate: CI runs them under Miri with its leak check on.

const THREADS: usize = if cfg!(miri) { 2 } else { 4 };
const OPS: usize = if cfg!(miri) { 60 } else { 20_000 };
/// Keys overlap between threads, so inserts and removes of one key race.
const KEYS: u64 = if cfg!(miri) { 8 } else { 64 };

fn stress<R: Reclaim>(list: List<u64, Tracked, R>) -> Run {
    let list = Arc::new(list);
    let ledger = DropLedger::new(THREADS * OPS);
    let barrier = Arc::new(Barrier::new(THREADS));
    let handles: Vec<_> = (0..THREADS)
        .map(|t| {
            let (list, ledger, barrier) = (list.clone(), ledger.clone(), barrier.clone());
            thread::spawn(move || {
                let mut log = Log::default();
                let mut seed = 0x2545_F491_4F6C_DD1D ^ (t as u64 + 1);
                barrier.wait();
                for i in 0..OPS {
                    let r = xorshift(&mut seed);
                    let key = r % KEYS;
                    let id = t * OPS + i;
                    match (r >> 32) % 8 {
                        0..=2 => {
                            if list.insert(key, ledger.value(id)) {
                                log.inserted.push((key, id));
                            } else {
                                log.rejected.push(id);
                            }
                        }
                        3..=4 => {
                            if let Some(e) = list.remove(&key) {
                                assert_eq!(*e.key(), key);
                                log.removed.push((key, e.value().id));
                            }
                        }
                        5 => {
                            if let Some(e) = list.pop_first() {
                                log.removed.push((*e.key(), e.value().id));
                            }
                        }
                        6 => {
                            if let Some(e) = list.lower_bound(Bound::Included(&key)) {
                                assert!(*e.key() >= key);
                            }
                        }
                        _ => {
                            if let Some(e) = list.get(&key) {
                                assert_eq!(*e.key(), key);
                            }
                        }
                    }
                }
                log
            })
        })
        .collect();
    let logs: Vec<Log> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    let mut list = Arc::into_inner(list).expect("threads joined");
    list.check_invariants();

    let remaining: Vec<(u64, usize)> = list.iter().map(|e| (*e.key(), e.value().id)).collect();
    let len = list.len();
    check_net_effect(&logs, &remaining, len, ledger, move || drop(list))
}

#[test]
fn stress_epoch_own() {
    // The own collector is dropped with the list: every value is dropped.
    stress::<Epoch>(List::with_own_domain()).assert_all_dropped_once();
}

#[test]
fn stress_hazard_own() {
    stress::<Hazard>(List::with_own_domain()).assert_all_dropped_once();
}

#[test]
fn stress_asym_hazard_own() {
    stress::<AsymHazard>(List::with_own_domain()).assert_all_dropped_once();
}

#[test]
fn stress_global_domains_and_leak() {
    // Removed values wait for the global domains (or forever, with `Leak`);
    // `Tracked` still fails on any second drop.
    stress::<Epoch>(List::new());
    stress::<Hazard>(List::with_domain(Domain::global()));
    stress::<AsymHazard>(List::with_domain(Domain::global()));
    stress::<Leak>(List::new());
}

// ---------------------------------------------------------------------------
// Linearizability

#[derive(Debug, Clone, Copy)]
enum Op {
    Insert(u8, u8),
    Remove(u8),
    Get(u8),
    PopFirst,
    LowerBound(u8),
    PopLast,
    UpperBound(u8),
}

#[derive(Debug, Clone, PartialEq)]
enum Ret {
    Inserted(bool),
    Entry(Option<(u8, u8)>),
}

#[derive(Clone, PartialEq, Eq, Hash, Default)]
struct MapSpec(BTreeMap<u8, u8>);

impl Spec for MapSpec {
    type Op = Op;
    type Ret = Ret;
    fn apply(&mut self, op: &Op) -> Ret {
        match *op {
            Op::Insert(k, v) => Ret::Inserted(match self.0.entry(k) {
                std::collections::btree_map::Entry::Occupied(_) => false,
                std::collections::btree_map::Entry::Vacant(e) => {
                    e.insert(v);
                    true
                }
            }),
            Op::Remove(k) => Ret::Entry(self.0.remove(&k).map(|v| (k, v))),
            Op::Get(k) => Ret::Entry(self.0.get(&k).map(|&v| (k, v))),
            Op::PopFirst => Ret::Entry(self.0.pop_first()),
            Op::LowerBound(k) => Ret::Entry(self.0.range(k..).next().map(|(&k, &v)| (k, v))),
            Op::PopLast => Ret::Entry(self.0.pop_last()),
            Op::UpperBound(k) => Ret::Entry(self.0.range(..=k).next_back().map(|(&k, &v)| (k, v))),
        }
    }
}

fn run_op<R: Reclaim>(list: &List<u8, u8, R>, op: &Op) -> Ret {
    let pair = |e: vvmalloc::list::Ref<'_, u8, u8, R>| (*e.key(), *e.value());
    match *op {
        Op::Insert(k, v) => Ret::Inserted(list.insert(k, v)),
        Op::Remove(k) => Ret::Entry(list.remove(&k).map(pair)),
        Op::Get(k) => Ret::Entry(list.get(&k).map(pair)),
        Op::PopFirst => Ret::Entry(list.pop_first().map(pair)),
        Op::LowerBound(k) => Ret::Entry(list.lower_bound(Bound::Included(&k)).map(pair)),
        Op::PopLast => Ret::Entry(list.pop_last().map(pair)),
        Op::UpperBound(k) => Ret::Entry(list.upper_bound(Bound::Included(&k)).map(pair)),
    }
}

/// One call: 4 keys, every kind of operation.
fn gen_op(r: u64, _thread: usize, _call: usize) -> Op {
    let k = (r % 4) as u8;
    match (r >> 8) % 7 {
        0 => Op::Insert(k, (r >> 16) as u8),
        1 => Op::Remove(k),
        2 => Op::Get(k),
        3 => Op::PopFirst,
        4 => Op::PopLast,
        5 => Op::UpperBound(k),
        _ => Op::LowerBound(k),
    }
}

/// Many short runs: 3 threads, a few calls each, on 4 keys; each recorded
/// history must be linearizable.
fn linearizable<R: Reclaim + 'static>(new: impl Fn() -> List<u8, u8, R>)
where
    List<u8, u8, R>: Send + Sync,
{
    let (rounds, per_thread) = if cfg!(miri) { (4, 4) } else { (300, 8) };
    let runs = lincheck::Runs {
        rounds,
        threads: 3,
        per_thread,
        seed: 7,
    };
    lincheck::run_rounds(&MapSpec::default(), &runs, new, gen_op, run_op, drop)
        .unwrap_or_else(|e| panic!("{e}"));
}

#[test]
fn linearizable_epoch_own() {
    linearizable::<Epoch>(List::with_own_domain);
}

#[test]
fn linearizable_hazard_own() {
    linearizable::<Hazard>(List::with_own_domain);
}

#[test]
fn linearizable_asym_hazard_own() {
    linearizable::<AsymHazard>(List::with_own_domain);
}

#[test]
fn linearizable_global_domains() {
    linearizable::<Epoch>(List::new);
    linearizable::<Hazard>(List::new);
    linearizable::<AsymHazard>(List::new);
}
