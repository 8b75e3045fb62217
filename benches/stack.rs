//! Criterion benchmarks of `TreiberStack` under each reclamation scheme,
//! against the pools a user would otherwise reach for: `Mutex<Vec>`,
//! `crossbeam_queue::SegQueue` and `ArrayQueue`.
//!
//! `cargo bench --bench stack`. Each iteration is one push followed by one
//! pop; the threaded groups run that pair on every thread at once, timed
//! from a common start (`iter_custom`).

// criterion_group! generates an undocumented public function.
#![allow(missing_docs)]

mod common;

use std::hint::black_box;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::timed_threads;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use crossbeam_queue::{ArrayQueue, SegQueue};
use vvmalloc::reclaim::{Epoch, Hazard, Leak, Reclaim};
use vvmalloc::TreiberStack;

/// What the benchmark drives: a shared pool of `u64`.
trait Pool: Send + Sync + 'static {
    fn put(&self, v: u64);
    fn take(&self) -> Option<u64>;
}

impl<R: Reclaim> Pool for TreiberStack<u64, R> {
    fn put(&self, v: u64) {
        self.push(v)
    }
    fn take(&self) -> Option<u64> {
        self.pop()
    }
}

impl Pool for Mutex<Vec<u64>> {
    fn put(&self, v: u64) {
        self.lock().unwrap().push(v)
    }
    fn take(&self) -> Option<u64> {
        self.lock().unwrap().pop()
    }
}

impl Pool for SegQueue<u64> {
    fn put(&self, v: u64) {
        self.push(v)
    }
    fn take(&self) -> Option<u64> {
        self.pop()
    }
}

impl Pool for ArrayQueue<u64> {
    fn put(&self, v: u64) {
        // Full only if more threads than capacity hold values; not here.
        let _ = self.push(v);
    }
    fn take(&self) -> Option<u64> {
        self.pop()
    }
}

fn pools() -> Vec<(&'static str, Arc<dyn Pool>)> {
    vec![
        ("treiber-epoch", Arc::new(TreiberStack::<u64, Epoch>::new())),
        (
            "treiber-hazard",
            Arc::new(TreiberStack::<u64, Hazard>::new()),
        ),
        ("treiber-leak", Arc::new(TreiberStack::<u64, Leak>::new())),
        ("mutex-vec", Arc::new(Mutex::new(Vec::new()))),
        ("segqueue", Arc::new(SegQueue::new())),
        ("arrayqueue", Arc::new(ArrayQueue::new(1024))),
    ]
}

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
