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

use vvmalloc_tools::bench as common;

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use common::targets::{self, list_maps, Map, MIXED};
use common::{timed_threads, xorshift};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};

/// One operation of the mix, chosen by `r`.
#[inline]
fn op(map: &dyn Map, r: u64, keys: u64) -> bool {
    targets::op(map, MIXED, r, keys)
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
            for (name, map) in list_maps(keys) {
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
