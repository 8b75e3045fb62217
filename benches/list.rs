//! Criterion benchmarks of the Harris-Michael `List` under each scheme
//! against `Mutex<BTreeMap>`, on small key ranges (16 to 1024 keys), at 1 and
//! 2 threads.
//!
//! `cargo bench --bench list`. Each iteration is one operation drawn from a
//! mix of 50% `get`, 25% `insert`, 25% `remove` on uniformly random keys of
//! the range, which starts half full (so the map stays about half full).
//! The `-own` variants use a reclamation domain of the list's own.

// criterion_group! generates an undocumented public function.
#![allow(missing_docs)]

mod common;

use std::collections::BTreeMap;
use std::hint::black_box;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{timed_threads, xorshift};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use vvmalloc::reclaim::{Epoch, Hazard, Leak, Reclaim};
use vvmalloc::List;

trait Map: Send + Sync + 'static {
    fn get(&self, k: u64) -> bool;
    fn insert(&self, k: u64) -> bool;
    fn remove(&self, k: u64) -> bool;
}

impl<R: Reclaim> Map for List<u64, u64, R> {
    fn get(&self, k: u64) -> bool {
        List::get(self, &k).is_some()
    }
    fn insert(&self, k: u64) -> bool {
        List::insert(self, k, k)
    }
    fn remove(&self, k: u64) -> bool {
        List::remove(self, &k).is_some()
    }
}

impl Map for Mutex<BTreeMap<u64, u64>> {
    fn get(&self, k: u64) -> bool {
        self.lock().unwrap().contains_key(&k)
    }
    fn insert(&self, k: u64) -> bool {
        self.lock().unwrap().insert(k, k).is_none()
    }
    fn remove(&self, k: u64) -> bool {
        self.lock().unwrap().remove(&k).is_some()
    }
}

fn maps(keys: u64) -> Vec<(&'static str, Arc<dyn Map>)> {
    let maps: Vec<(&'static str, Arc<dyn Map>)> = vec![
        ("list-epoch", Arc::new(List::<u64, u64, Epoch>::new())),
        ("list-hazard", Arc::new(List::<u64, u64, Hazard>::new())),
        // Own domains: what non-'static keys and values cost.
        (
            "list-epoch-own",
            Arc::new(List::<u64, u64, Epoch>::with_own_domain()),
        ),
        (
            "list-hazard-own",
            Arc::new(List::<u64, u64, Hazard>::with_own_domain()),
        ),
        ("list-leak", Arc::new(List::<u64, u64, Leak>::new())),
        ("mutex-btreemap", Arc::new(Mutex::new(BTreeMap::new()))),
    ];
    for (_, m) in &maps {
        for k in (0..keys).step_by(2) {
            m.insert(k);
        }
    }
    maps
}

/// One operation of the mix, chosen by `r`.
#[inline]
fn op(map: &dyn Map, r: u64, keys: u64) -> bool {
    let k = (r >> 8) % keys;
    match r % 4 {
        0 => map.insert(k),
        1 => map.remove(k),
        _ => map.get(k),
    }
}

fn run(map: &Arc<dyn Map>, threads: usize, keys: u64, iters: u64) -> Duration {
    let map = map.clone();
    timed_threads(threads, move |t| {
        let mut s = 0x9E37_79B9_7F4A_7C15 ^ (t as u64 + 1);
        for _ in 0..iters {
            black_box(op(&*map, xorshift(&mut s), keys));
        }
    })
}

fn mixed(c: &mut Criterion) {
    for threads in [1, 2] {
        for keys in [16u64, 128, 1024] {
            let mut group = c.benchmark_group(format!("list_mixed/{threads}t/{keys}keys"));
            for (name, map) in maps(keys) {
                group.bench_function(BenchmarkId::from_parameter(name), |b| {
                    if threads == 1 {
                        let mut s = 0x2545_F491_4F6C_DD1D;
                        b.iter(|| op(&*map, xorshift(&mut s), keys))
                    } else {
                        b.iter_custom(|iters| run(&map, threads, keys, iters))
                    }
                });
            }
            group.finish();
        }
    }
}

criterion_group!(benches, mixed);
criterion_main!(benches);
