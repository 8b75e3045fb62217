//! What the structure benchmarks and the report share: their targets
//! ([`targets`]), how they time threads, and their random numbers.

use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

/// Runs `body(t)` on threads `t = 0..threads`, all released at once, and
/// returns the wall time from the release until the last one finished
/// (thread start-up is not counted).
pub fn timed_threads<F>(threads: usize, body: F) -> Duration
where
    F: Fn(usize) + Send + Sync + 'static,
{
    let body = Arc::new(body);
    let barrier = Arc::new(Barrier::new(threads + 1));
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let (body, barrier) = (body.clone(), barrier.clone());
            thread::spawn(move || {
                barrier.wait();
                body(t)
            })
        })
        .collect();
    barrier.wait();
    let start = Instant::now();
    for h in handles {
        h.join().unwrap();
    }
    start.elapsed()
}

/// A xorshift step: cheap pseudo-random numbers for choosing operations.
pub fn xorshift(s: &mut u64) -> u64 {
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    *s
}

pub mod targets;
