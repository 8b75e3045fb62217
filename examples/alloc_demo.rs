//! The main job of vvmalloc, at this stage of the project.
//!
//! The size-class allocator is not built yet (it is an open issue). What an
//! allocator's central heaps are made of is a shared free list of blocks, and
//! that is what this demo measures today: threads take 64-byte blocks from a
//! shared pool and give them back, through
//!
//! - `TreiberStack` under each reclamation scheme (`Epoch`, `Hazard`, `Leak`),
//! - a `Mutex<Vec<_>>` pool (the locking baseline),
//! - the system allocator itself (`malloc`/`free` of each block),
//!
//! at 1 and 2 threads, and prints throughput and ratios. Run it with
//! `cargo run --release --example alloc_demo` (about 10 seconds); `--quick`
//! runs a twentieth of the operations.

use std::alloc::{GlobalAlloc, Layout, System};
use std::io::Write;
use std::sync::{Arc, Barrier, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use vvmalloc::reclaim::{Epoch, Hazard, Leak, Reclaim};
use vvmalloc::TreiberStack;

const BLOCK: Layout = match Layout::from_size_align(64, 16) {
    Ok(l) => l,
    Err(_) => panic!("bad layout"),
};
/// Blocks each thread holds at most before giving some back.
const HELD: usize = 16;

/// A block of memory owned by whoever holds the pointer.
struct Block(*mut u8);
// SAFETY: a `Block` is plain memory owned by its holder; moving it to another
// thread moves that ownership.
unsafe impl Send for Block {}

impl Block {
    fn new() -> Self {
        // SAFETY: `BLOCK` has a non-zero size.
        let p = unsafe { System.alloc(BLOCK) };
        assert!(!p.is_null(), "out of memory");
        Block(p)
    }
    fn touch(&self, v: u8) {
        // SAFETY: the holder owns the block's 64 bytes.
        unsafe { self.0.write_volatile(v) };
    }
}

impl Drop for Block {
    fn drop(&mut self) {
        // SAFETY: allocated by `System` with `BLOCK`, freed once.
        unsafe { System.dealloc(self.0, BLOCK) };
    }
}

/// A shared pool of blocks.
trait Pool: Send + Sync + 'static {
    fn name(&self) -> String;
    fn take(&self) -> Block;
    fn give(&self, b: Block);
}

impl<R: Reclaim> Pool for TreiberStack<Block, R> {
    fn name(&self) -> String {
        format!("TreiberStack<{}>", R::NAME)
    }
    fn take(&self) -> Block {
        self.pop().unwrap_or_else(Block::new)
    }
    fn give(&self, b: Block) {
        self.push(b)
    }
}

struct MutexPool(Mutex<Vec<Block>>);
impl Pool for MutexPool {
    fn name(&self) -> String {
        "Mutex<Vec>".into()
    }
    fn take(&self) -> Block {
        self.0.lock().unwrap().pop().unwrap_or_else(Block::new)
    }
    fn give(&self, b: Block) {
        self.0.lock().unwrap().push(b)
    }
}

/// No pool: every block comes from `malloc` and goes back to `free`.
struct SystemMalloc;
impl Pool for SystemMalloc {
    fn name(&self) -> String {
        "system malloc/free".into()
    }
    fn take(&self) -> Block {
        Block::new()
    }
    fn give(&self, b: Block) {
        drop(b)
    }
}

/// Runs `ops` take/give pairs on each of `threads` threads; returns the time.
fn run(pool: Arc<dyn Pool>, threads: usize, ops: usize) -> Duration {
    let barrier = Arc::new(Barrier::new(threads + 1));
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let (pool, barrier) = (pool.clone(), barrier.clone());
            thread::spawn(move || {
                let mut held: Vec<Block> = Vec::with_capacity(HELD);
                let mut seed = 0x9E37_79B9_7F4A_7C15u64 ^ t as u64;
                barrier.wait();
                for i in 0..ops {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    // Hold between 0 and HELD blocks: take when few are held,
                    // give back (a random one) when many are.
                    if held.len() < HELD / 2 || (held.len() < HELD && seed & 1 == 0) {
                        let b = pool.take();
                        b.touch(i as u8);
                        held.push(b);
                    } else {
                        let j = (seed >> 8) as usize % held.len();
                        pool.give(held.swap_remove(j));
                    }
                }
                for b in held {
                    pool.give(b);
                }
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

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let ops = if quick { 500_000 } else { 10_000_000 };
    let pools: Vec<fn() -> Arc<dyn Pool>> = vec![
        || Arc::new(TreiberStack::<Block, Epoch>::new()),
        || Arc::new(TreiberStack::<Block, Hazard>::new()),
        || Arc::new(TreiberStack::<Block, Leak>::new()),
        || Arc::new(MutexPool(Mutex::new(Vec::new()))),
        || Arc::new(SystemMalloc),
    ];
    let thread_counts = [1, 2];
    let total = pools.len() * thread_counts.len();
    println!(
        "vvmalloc alloc_demo: a shared free list of 64-byte blocks, {ops} take/give operations per thread"
    );
    println!(
        "(the size-class allocator is not built yet; this measures its free-list primitive)\n"
    );

    let mut rows = Vec::new();
    for (n, &threads) in thread_counts.iter().enumerate() {
        for (k, make) in pools.iter().enumerate() {
            let done = n * pools.len() + k;
            let bar: String = (0..total)
                .map(|i| if i < done { '#' } else { '.' })
                .collect();
            eprint!("\r[{bar}] {done}/{total}");
            std::io::stderr().flush().ok();
            let pool = make();
            let name = pool.name();
            let time = run(pool, threads, ops);
            let mops = (threads * ops) as f64 / time.as_secs_f64() / 1e6;
            rows.push((threads, name, mops));
        }
    }
    eprintln!("\r[{}] {total}/{total}", "#".repeat(total));

    println!(
        "{:>7}  {:<22} {:>10}  {:>14}",
        "threads", "pool", "Mops/s", "vs Mutex<Vec>"
    );
    for &threads in &thread_counts {
        let base = rows
            .iter()
            .find(|r| r.0 == threads && r.1 == "Mutex<Vec>")
            .map(|r| r.2)
            .unwrap_or(f64::NAN);
        for (t, name, mops) in rows.iter().filter(|r| r.0 == threads) {
            println!("{t:>7}  {name:<22} {mops:>10.2}  {:>13.2}x", mops / base);
        }
    }
    println!(
        "\nMops/s counts take and give operations over all threads. Each push of the \
         Treiber stack allocates a node, so its rows include one system malloc/free per \
         operation; the intrusive stack of the allocator issue removes that."
    );
}
