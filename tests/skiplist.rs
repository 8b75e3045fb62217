//! Multi-threaded tests of `SkipList`: stress with drop counting (every
//! successful insert is removed exactly once or remains; every value is
//! dropped exactly once), replacement under contention, and linearizability
//! of recorded histories, `pop_first`, `pop_last` and the ceiling and floor
//! searches included.
#![cfg(not(loom))]

mod common;

use std::collections::BTreeMap;
use std::ops::Bound::{Excluded, Included};
use std::sync::{Arc, Barrier};
use std::thread;

use common::lincheck::{self, Spec};
use common::{check_net_effect, xorshift, DropLedger, Log, Run, Tracked};
use vvmalloc::reclaim::{AsymHazard, Domain, Epoch, Hazard, Leak, Reclaim};
use vvmalloc::skiplist::Ref;
use vvmalloc::SkipList;

// Tests named `*own*` use only own domains, so they free everything they
// allocate: CI runs them under Miri with its leak check on.

const THREADS: usize = if cfg!(miri) { 2 } else { 4 };
const OPS: usize = if cfg!(miri) { 60 } else { 20_000 };
/// Keys overlap between threads, so inserts and removes of one key race;
/// ranges of threads overlap by half.
const KEYS: u64 = if cfg!(miri) { 8 } else { 256 };

fn stress<R: Reclaim>(map: SkipList<u64, Tracked, R>) -> Run {
    let map = Arc::new(map);
    let ledger = DropLedger::new(THREADS * OPS);
    let barrier = Arc::new(Barrier::new(THREADS));
    let handles: Vec<_> = (0..THREADS)
        .map(|t| {
            let (map, ledger, barrier) = (map.clone(), ledger.clone(), barrier.clone());
            thread::spawn(move || {
                let mut log = Log::default();
                let mut seed = 0x2545_F491_4F6C_DD1D ^ (t as u64 + 1);
                // Thread t works on [t * KEYS / 2, t * KEYS / 2 + KEYS).
                let base = t as u64 * KEYS / 2;
                barrier.wait();
                for i in 0..OPS {
                    let r = xorshift(&mut seed);
                    let key = base + r % KEYS;
                    let id = t * OPS + i;
                    match (r >> 32) % 10 {
                        0..=2 => match map.try_insert(key, ledger.value(id)) {
                            Ok(e) => {
                                assert_eq!((*e.key(), e.value().id), (key, id));
                                log.inserted.push((key, id));
                            }
                            Err((k, v)) => {
                                assert_eq!(k, key);
                                log.rejected.push(id);
                                drop(v);
                            }
                        },
                        3 => {
                            let e = map.get_or_insert(key, ledger.value(id));
                            if e.value().id == id {
                                log.inserted.push((key, id));
                            } else {
                                log.rejected.push(id);
                            }
                        }
                        4..=5 => {
                            if let Some(e) = map.remove(&key) {
                                assert_eq!(*e.key(), key);
                                log.removed.push((key, e.value().id));
                            }
                        }
                        6 => {
                            let e = if r & (1 << 20) == 0 {
                                map.pop_first()
                            } else {
                                map.pop_last()
                            };
                            if let Some(e) = e {
                                log.removed.push((*e.key(), e.value().id));
                            }
                        }
                        7 => {
                            // Best fit: a ceiling search, then take that entry.
                            if let Some(e) = map.lower_bound(Included(&key)) {
                                assert!(*e.key() >= key);
                                if e.remove() {
                                    log.removed.push((*e.key(), e.value().id));
                                }
                            }
                        }
                        8 => {
                            if let Some(e) = map.upper_bound(Excluded(&key)) {
                                assert!(*e.key() < key);
                            }
                            let mut last = None;
                            for e in map.range(key..key + 8) {
                                assert!((key..key + 8).contains(e.key()));
                                assert!(last < Some(*e.key()), "range not increasing");
                                last = Some(*e.key());
                            }
                            // From both ends at once (the ends chosen by the
                            // bits of `r`): in bounds, each end monotone, and
                            // the ends never overlap.
                            let mut both = map.range(key..=key + 8);
                            let (mut lo, mut hi): (Option<u64>, Option<u64>) = (None, None);
                            for bit in 0.. {
                                let front = (r >> (bit % 64)) & 1 == 0;
                                let e = if front { both.next() } else { both.next_back() };
                                let Some(e) = e else { break };
                                let k = *e.key();
                                assert!((key..=key + 8).contains(&k));
                                assert!(lo < Some(k) && hi.is_none_or(|h| k < h), "ends overlap");
                                if front {
                                    lo = Some(k);
                                } else {
                                    hi = Some(k);
                                }
                            }
                        }
                        _ => {
                            if let Some(e) = map.get(&key) {
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
    let mut map = Arc::into_inner(map).expect("threads joined");
    map.check_invariants();

    let remaining: Vec<(u64, usize)> = map.iter().map(|e| (*e.key(), e.value().id)).collect();
    let len = map.len();
    check_net_effect(&logs, &remaining, len, ledger, move || drop(map))
}

#[test]
fn stress_epoch_own() {
    stress::<Epoch>(SkipList::with_own_domain()).assert_all_dropped_once();
}

#[test]
fn stress_hazard_own() {
    stress::<Hazard>(SkipList::with_own_domain()).assert_all_dropped_once();
}

#[test]
fn stress_asym_hazard_own() {
    stress::<AsymHazard>(SkipList::with_own_domain()).assert_all_dropped_once();
}

#[test]
fn stress_global_domains_and_leak() {
    // Removed values wait for the global domains (or forever, with `Leak`);
    // `Tracked` still fails on any second drop.
    stress::<Epoch>(SkipList::new());
    stress::<Hazard>(SkipList::with_domain(Domain::global()));
    stress::<AsymHazard>(SkipList::with_domain(Domain::global()));
    stress::<Leak>(SkipList::new());
}

/// Threads replace the values of a few keys over and over, while others
/// read them: a reader never finds a key missing, and in the end each key
/// holds one value and every other value was dropped exactly once.
fn replace_under_contention<R: Reclaim>(map: SkipList<u64, Tracked, R>) {
    const KEYS: u64 = 4;
    let rounds = if cfg!(miri) { 20 } else { 5_000 };
    let map = Arc::new(map);
    let ledger = DropLedger::new(KEYS as usize + THREADS * rounds);
    for k in 0..KEYS {
        map.insert(k, ledger.value(k as usize));
    }
    let barrier = Arc::new(Barrier::new(THREADS));
    let handles: Vec<_> = (0..THREADS)
        .map(|t| {
            let (map, ledger, barrier) = (map.clone(), ledger.clone(), barrier.clone());
            thread::spawn(move || {
                barrier.wait();
                for i in 0..rounds {
                    let key = (i as u64 + t as u64) % KEYS;
                    if t % 2 == 0 {
                        let id = KEYS as usize + t * rounds + i;
                        assert_eq!(map.insert(key, ledger.value(id)).value().id, id);
                    } else {
                        assert!(map.get(&key).is_some(), "key {key} missing mid-replace");
                        map.insert(key, ledger.value(KEYS as usize + t * rounds + i));
                    }
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    let mut map = Arc::into_inner(map).expect("threads joined");
    map.check_invariants();
    assert_eq!(map.len(), KEYS as usize);
    let live: Vec<usize> = map.iter().map(|e| e.value().id).collect();
    drop(map);
    for id in live {
        assert_eq!(ledger.drops(id), 1);
    }
}

#[test]
fn replace_under_contention_epoch_own() {
    replace_under_contention::<Epoch>(SkipList::with_own_domain());
}

#[test]
fn replace_under_contention_hazard_own() {
    replace_under_contention::<Hazard>(SkipList::with_own_domain());
}

#[test]
fn replace_under_contention_asym_hazard_own() {
    replace_under_contention::<AsymHazard>(SkipList::with_own_domain());
}

/// Concurrent `pop_first`s and `pop_last`s drain a map: each entry is
/// taken once, and in order within each thread.
#[test]
fn pops_take_each_entry_once_own() {
    let n = if cfg!(miri) { 40 } else { 40_000 };
    let map: Arc<SkipList<u64, (), Hazard>> = Arc::new(SkipList::with_own_domain());
    for k in 0..n {
        map.insert(k, ());
    }
    let handles: Vec<_> = (0..THREADS)
        .map(|t| {
            let map = map.clone();
            thread::spawn(move || {
                let mut got = Vec::new();
                loop {
                    let e = if t % 2 == 0 {
                        map.pop_first()
                    } else {
                        map.pop_last()
                    };
                    match e {
                        Some(e) => got.push(*e.key()),
                        None => break,
                    }
                }
                if t % 2 == 0 {
                    assert!(got.windows(2).all(|w| w[0] < w[1]));
                } else {
                    assert!(got.windows(2).all(|w| w[0] > w[1]));
                }
                got
            })
        })
        .collect();
    let mut all: Vec<u64> = handles
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    all.sort_unstable();
    assert_eq!(all, (0..n).collect::<Vec<_>>());
    assert!(map.is_empty());
}

// ---------------------------------------------------------------------------
// Linearizability

#[derive(Debug, Clone, Copy)]
enum Op {
    Insert(u8, u8),
    TryInsert(u8, u8),
    Remove(u8),
    Get(u8),
    PopFirst,
    PopLast,
    LowerBound(u8),
    UpperBound(u8),
}

#[derive(Debug, Clone, PartialEq)]
enum Ret {
    Unit,
    Inserted(bool),
    Entry(Option<(u8, u8)>),
}

#[derive(Clone, PartialEq, Eq, Hash, Default)]
struct MapSpec(BTreeMap<u8, u8>);

impl Spec for MapSpec {
    type Op = Op;
    type Ret = Ret;
    fn apply(&mut self, op: &Op) -> Ret {
        let kv = |(&k, &v): (&u8, &u8)| (k, v);
        match *op {
            Op::Insert(k, v) => {
                self.0.insert(k, v);
                Ret::Unit
            }
            Op::TryInsert(k, v) => Ret::Inserted(match self.0.entry(k) {
                std::collections::btree_map::Entry::Occupied(_) => false,
                std::collections::btree_map::Entry::Vacant(e) => {
                    e.insert(v);
                    true
                }
            }),
            Op::Remove(k) => Ret::Entry(self.0.remove(&k).map(|v| (k, v))),
            Op::Get(k) => Ret::Entry(self.0.get(&k).map(|&v| (k, v))),
            Op::PopFirst => Ret::Entry(self.0.pop_first()),
            Op::PopLast => Ret::Entry(self.0.pop_last()),
            Op::LowerBound(k) => Ret::Entry(self.0.range(k..).next().map(kv)),
            Op::UpperBound(k) => Ret::Entry(self.0.range(..=k).next_back().map(kv)),
        }
    }
}

fn run_op<R: Reclaim>(map: &SkipList<u8, u8, R>, op: &Op) -> Ret {
    let pair = |e: Ref<'_, u8, u8, R>| (*e.key(), *e.value());
    match *op {
        Op::Insert(k, v) => {
            map.insert(k, v);
            Ret::Unit
        }
        Op::TryInsert(k, v) => Ret::Inserted(map.try_insert(k, v).is_ok()),
        Op::Remove(k) => Ret::Entry(map.remove(&k).map(pair)),
        Op::Get(k) => Ret::Entry(map.get(&k).map(pair)),
        Op::PopFirst => Ret::Entry(map.pop_first().map(pair)),
        Op::PopLast => Ret::Entry(map.pop_last().map(pair)),
        Op::LowerBound(k) => Ret::Entry(map.lower_bound(Included(&k)).map(pair)),
        Op::UpperBound(k) => Ret::Entry(map.upper_bound(Included(&k)).map(pair)),
    }
}

/// One call: 5 keys, every kind of operation.
fn gen_op(r: u64, _thread: usize, _call: usize) -> Op {
    let k = (r % 5) as u8;
    let v = (r >> 16) as u8;
    match (r >> 8) % 8 {
        0 => Op::Insert(k, v),
        1 => Op::TryInsert(k, v),
        2 => Op::Remove(k),
        3 => Op::Get(k),
        4 => Op::PopFirst,
        5 => Op::PopLast,
        6 => Op::LowerBound(k),
        _ => Op::UpperBound(k),
    }
}

/// Many short runs: 3 threads, a few calls each, on 5 keys; each recorded
/// history must be linearizable, and the map's invariants hold after.
fn linearizable<R: Reclaim + 'static>(new: impl Fn() -> SkipList<u8, u8, R>)
where
    SkipList<u8, u8, R>: Send + Sync,
{
    let (rounds, per_thread) = if cfg!(miri) { (4, 4) } else { (400, 8) };
    let runs = lincheck::Runs {
        rounds,
        threads: 3,
        per_thread,
        seed: 11,
    };
    let after = |mut map: SkipList<u8, u8, R>| map.check_invariants();
    lincheck::run_rounds(&MapSpec::default(), &runs, new, gen_op, run_op, after)
        .unwrap_or_else(|e| panic!("{e}"));
}

#[test]
fn linearizable_epoch_own() {
    linearizable::<Epoch>(SkipList::with_own_domain);
}

#[test]
fn linearizable_hazard_own() {
    linearizable::<Hazard>(SkipList::with_own_domain);
}

#[test]
fn linearizable_asym_hazard_own() {
    linearizable::<AsymHazard>(SkipList::with_own_domain);
}

#[test]
fn linearizable_global_domains() {
    linearizable::<Epoch>(SkipList::new);
    linearizable::<Hazard>(SkipList::new);
    linearizable::<AsymHazard>(SkipList::new);
}
