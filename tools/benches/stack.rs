//! Criterion benchmarks of `TreiberStack` under each reclamation scheme,
//! against the pools a user would otherwise reach for: `Mutex<Vec>`,
//! `crossbeam_queue::SegQueue` and `ArrayQueue`.
//!
//! `cargo bench --bench stack`. Each iteration is one push followed by one
//! pop; the threaded groups run that pair on every thread at once, timed
//! from a common start (`iter_custom`).

// criterion_group! generates an undocumented public function.
#![allow(missing_docs)]

use vvmalloc_tools::bench as common;

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use common::targets::{pools, Pool};
use common::timed_threads;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};

/// Runs `iters` push/pop pairs on each of `threads` threads.
fn run(pool: &Arc<dyn Pool>, threads: usize, iters: u64) -> Duration {
    let pool = pool.clone();
    timed_threads(threads, move |_| {
        for i in 0..iters {
            pool.put(i);
            black_box(pool.take());
        }
    })
}

fn push_pop(c: &mut Criterion) {
    for threads in [1, 2] {
        let mut group = c.benchmark_group(format!("push_pop/{threads}t"));
        for (name, pool) in pools() {
            group.bench_function(BenchmarkId::from_parameter(name), |b| {
                if threads == 1 {
                    b.iter(|| {
                        pool.put(1);
                        black_box(pool.take())
                    })
                } else {
                    b.iter_custom(|iters| run(&pool, threads, iters))
                }
            });
        }
        group.finish();
    }
}

criterion_group!(benches, push_pop);
criterion_main!(benches);
