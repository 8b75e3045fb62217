//! Criterion benchmarks of the `SkipList` under each scheme against
//! `crossbeam_skiplist::SkipMap`, `Mutex<BTreeMap>` and `RwLock<BTreeMap>`.
//!
//! `cargo bench --bench skiplist`. Each iteration is one operation on a
//! uniformly random key of the range, drawn from a workload: read-mostly
//! (90% `get`, 5% `insert`, 5% `remove`), mixed (50/25/25) and write-heavy
//! (10/45/45). Ranges of 1 000 and 1 000 000 keys start half full and stay
//! about half full. One and two threads (the machine has two cores).

// criterion_group! generates an undocumented public function.
#![allow(missing_docs)]

mod common;

use std::collections::BTreeMap;
use std::hint::black_box;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use common::{timed_threads, xorshift};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use vvmalloc::reclaim::{Epoch, Hazard, Reclaim};
use vvmalloc::SkipList;

trait Map: Send + Sync + 'static {
    fn get(&self, k: u64) -> bool;
    fn insert(&self, k: u64);
    fn remove(&self, k: u64) -> bool;
}

impl<R: Reclaim> Map for SkipList<u64, u64, R> {
    fn get(&self, k: u64) -> bool {
        SkipList::get(self, &k).is_some()
    }
    fn insert(&self, k: u64) {
        SkipList::insert(self, k, k);
    }
    fn remove(&self, k: u64) -> bool {
        SkipList::remove(self, &k).is_some()
    }
}

impl Map for crossbeam_skiplist::SkipMap<u64, u64> {
    fn get(&self, k: u64) -> bool {
        crossbeam_skiplist::SkipMap::get(self, &k).is_some()
    }
    fn insert(&self, k: u64) {
        crossbeam_skiplist::SkipMap::insert(self, k, k);
    }
    fn remove(&self, k: u64) -> bool {
        crossbeam_skiplist::SkipMap::remove(self, &k).is_some()
    }
}

impl Map for Mutex<BTreeMap<u64, u64>> {
    fn get(&self, k: u64) -> bool {
        self.lock().unwrap().contains_key(&k)
    }
    fn insert(&self, k: u64) {
        self.lock().unwrap().insert(k, k);
    }
    fn remove(&self, k: u64) -> bool {
        self.lock().unwrap().remove(&k).is_some()
    }
}

impl Map for RwLock<BTreeMap<u64, u64>> {
    fn get(&self, k: u64) -> bool {
        self.read().unwrap().contains_key(&k)
    }
    fn insert(&self, k: u64) {
        self.write().unwrap().insert(k, k);
    }
    fn remove(&self, k: u64) -> bool {
        self.write().unwrap().remove(&k).is_some()
    }
}

/// Every map, filled with the even keys of `0..keys`, in random order (so
/// that the skip lists' node addresses are not in key order either).
fn maps(keys: u64) -> Vec<(&'static str, Arc<dyn Map>)> {
    let maps: Vec<(&'static str, Arc<dyn Map>)> = vec![
        (
            "skiplist-epoch",
            Arc::new(SkipList::<u64, u64, Epoch>::new()),
        ),
        (
            "skiplist-hazard",
            Arc::new(SkipList::<u64, u64, Hazard>::new()),
        ),
        (
            "crossbeam-skipmap",
            Arc::new(crossbeam_skiplist::SkipMap::new()),
        ),
        ("mutex-btreemap", Arc::new(Mutex::new(BTreeMap::new()))),
        ("rwlock-btreemap", Arc::new(RwLock::new(BTreeMap::new()))),
    ];
    let mut order: Vec<u64> = (0..keys).step_by(2).collect();
    let mut s = 0x1234_5678_9ABC_DEF1;
    for i in (1..order.len()).rev() {
        order.swap(i, (xorshift(&mut s) % (i as u64 + 1)) as usize);
    }
    for (_, m) in &maps {
        for &k in &order {
            m.insert(k);
        }
    }
    maps
}

/// A workload: percentages of `get` and `insert` (the rest is `remove`).
#[derive(Clone, Copy)]
struct Workload {
    name: &'static str,
    get: u64,
    insert: u64,
}

const WORKLOADS: [Workload; 3] = [
    Workload {
        name: "read-mostly",
        get: 90,
        insert: 5,
    },
    Workload {
        name: "mixed",
        get: 50,
        insert: 25,
    },
    Workload {
        name: "write-heavy",
        get: 10,
        insert: 45,
    },
];

/// One operation of the workload, chosen by `r`.
#[inline]
fn op(map: &dyn Map, w: Workload, r: u64, keys: u64) -> bool {
    let k = (r >> 8) % keys;
    let p = r % 100;
    if p < w.get {
        map.get(k)
    } else if p < w.get + w.insert {
        map.insert(k);
        true
    } else {
        map.remove(k)
    }
}

fn run(map: &Arc<dyn Map>, w: Workload, threads: usize, keys: u64, iters: u64) -> Duration {
    let map = map.clone();
    timed_threads(threads, move |t| {
        let mut s = 0x9E37_79B9_7F4A_7C15 ^ (t as u64 + 1);
        for _ in 0..iters {
            black_box(op(&*map, w, xorshift(&mut s), keys));
        }
    })
}

fn workloads(c: &mut Criterion) {
    for keys in [1_000u64, 1_000_000] {
        let maps = maps(keys);
        for w in WORKLOADS {
            for threads in [1, 2] {
                let mut group =
                    c.benchmark_group(format!("skiplist/{}/{threads}t/{keys}keys", w.name));
                group
                    .warm_up_time(Duration::from_millis(500))
                    .measurement_time(Duration::from_secs(2))
                    .sample_size(20);
                for (name, map) in &maps {
                    group.bench_function(BenchmarkId::from_parameter(name), |b| {
                        if threads == 1 {
                            let mut s = 0x2545_F491_4F6C_DD1D;
                            b.iter(|| op(&**map, w, xorshift(&mut s), keys))
                        } else {
                            b.iter_custom(|iters| run(map, w, threads, keys, iters))
                        }
                    });
                }
                group.finish();
            }
        }
    }
}

criterion_group!(benches, workloads);
criterion_main!(benches);
