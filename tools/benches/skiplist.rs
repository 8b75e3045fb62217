//! Criterion benchmarks of the `SkipList` under each scheme against
//! `crossbeam_skiplist::SkipMap`, `Mutex<BTreeMap>` and `RwLock<BTreeMap>`.
//!
//! `cargo bench --bench skiplist`. Each iteration is one operation on a
//! uniformly random key of the range, drawn from a workload: read-mostly
//! (90% `get`, 5% `insert`, 5% `remove`), mixed (50/25/25) and write-heavy
//! (10/45/45). Ranges of 1 000 and 1 000 000 keys start half full and stay
//! about half full. One and two threads (the machine has two cores).
//!
//! `skiplist/scan`: one full pass of the iterator over 10 000 entries,
//! single-threaded, for each scheme and crossbeam's `SkipMap` (every step
//! takes a protected entry and the iterator's own second protection: a pin
//! for epochs, a hazard and a fence for hazard pointers, a hazard and a
//! compiler fence for the asymmetric ones).

// criterion_group! generates an undocumented public function.
#![allow(missing_docs)]

use vvmalloc_tools::bench as common;

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use common::targets::{op, skiplist_maps, Map, Mix, MIXED, READ_MOSTLY, WRITE_HEAVY};
use common::{timed_threads, xorshift};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};

const WORKLOADS: [Mix; 3] = [READ_MOSTLY, MIXED, WRITE_HEAVY];

fn run(map: &Arc<dyn Map>, w: Mix, threads: usize, keys: u64, iters: u64) -> Duration {
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
        let maps = skiplist_maps(keys);
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

fn scan(c: &mut Criterion) {
    use vvmalloc::reclaim::{AsymHazard, Epoch, Hazard, Leak};
    const N: u64 = 10_000;
    let epoch: vvmalloc::SkipList<u64, u64, Epoch> = (0..N).map(|k| (k, k)).collect();
    let hazard: vvmalloc::SkipList<u64, u64, Hazard> = (0..N).map(|k| (k, k)).collect();
    let asym: vvmalloc::SkipList<u64, u64, AsymHazard> = (0..N).map(|k| (k, k)).collect();
    let leak: vvmalloc::SkipList<u64, u64, Leak> = (0..N).map(|k| (k, k)).collect();
    let crossbeam: crossbeam_skiplist::SkipMap<u64, u64> = (0..N).map(|k| (k, k)).collect();
    let mut group = c.benchmark_group("skiplist/scan/10000keys");
    group
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(20);
    group.bench_function("epoch", |b| {
        b.iter(|| epoch.iter().map(|e| *e.value()).sum::<u64>())
    });
    group.bench_function("hazard", |b| {
        b.iter(|| hazard.iter().map(|e| *e.value()).sum::<u64>())
    });
    group.bench_function("asym-hazard", |b| {
        b.iter(|| asym.iter().map(|e| *e.value()).sum::<u64>())
    });
    group.bench_function("leak", |b| {
        b.iter(|| leak.iter().map(|e| *e.value()).sum::<u64>())
    });
    group.bench_function("crossbeam", |b| {
        b.iter(|| crossbeam.iter().map(|e| *e.value()).sum::<u64>())
    });
    group.finish();
}

criterion_group!(benches, workloads, scan);
criterion_main!(benches);
