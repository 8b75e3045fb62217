//! A seeded generator of workload traces: the same seed gives the same
//! trace, on any machine.
//!
//! Each of the `threads` logical threads runs its own state machine with its
//! own random stream; their requests are interleaved one at a time in the
//! file, so a replay with fewer threads than the trace names still runs
//! every thread's work, and cross-thread frees follow their allocations.
//!
//! ```
//! use vvmalloc_tools::trace::gen::{generate, Workload};
//!
//! let t = generate(Workload::ProducerConsumer, 7, 2, 1000);
//! assert_eq!(t.threads(), 2);
//! assert!(t.ops().len() >= 1000);
//! // The same seed, the same trace.
//! assert_eq!(t.to_text(), generate(Workload::ProducerConsumer, 7, 2, 1000).to_text());
//! ```

use std::collections::VecDeque;
use std::fmt::Write;

use super::Trace;

/// The kinds of trace the generator makes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Workload {
    /// Small-object churn: each thread holds up to 1024 blocks of 16-512
    /// bytes and frees or allocates one at random.
    Churn,
    /// Binary-tree building: each thread builds a tree of 48-112 byte nodes
    /// depth-first, then frees it, again and again.
    Tree,
    /// Power-law sizes: 16 bytes to 1 MiB, Pareto distributed (most blocks
    /// small, a few large), 256 blocks per thread freed at random.
    PowerLaw,
    /// Realloc growth: blocks grow from 16-32 bytes by half their size per
    /// `realloc` until they pass 1 MiB (up to 1.5 MiB), then are freed.
    Realloc,
    /// Producer/consumer: threads in pairs; the producer allocates 16-256
    /// byte blocks, the consumer frees each 65 of the producer's allocations
    /// later (one thread: it frees its own).
    ProducerConsumer,
    /// Large-block fragmentation: 32 KiB to 4 MiB blocks, freed in an
    /// order that leaves holes, then asked for in sizes that fit them
    /// badly.
    LargeFrag,
}

impl Workload {
    /// Every kind, in the order of the trace set.
    pub const ALL: [Workload; 6] = [
        Workload::Churn,
        Workload::Tree,
        Workload::PowerLaw,
        Workload::Realloc,
        Workload::ProducerConsumer,
        Workload::LargeFrag,
    ];

    /// The name used on the command line and in file names.
    pub fn name(self) -> &'static str {
        match self {
            Workload::Churn => "churn",
            Workload::Tree => "tree",
            Workload::PowerLaw => "powerlaw",
            Workload::Realloc => "realloc",
            Workload::ProducerConsumer => "prodcons",
            Workload::LargeFrag => "largefrag",
        }
    }

    /// The kind named `name`.
    pub fn from_name(name: &str) -> Option<Workload> {
        Workload::ALL.into_iter().find(|w| w.name() == name)
    }
}

/// xorshift64: small, fast and the same everywhere.
struct Rng(u64);

impl Rng {
    fn new(seed: u64, stream: u64) -> Rng {
        // splitmix64 of the pair, so that nearby seeds give unrelated streams.
        let mut z = seed
            .wrapping_add(stream.wrapping_mul(0x9E37_79B9_7F4A_7C15))
            .wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        Rng((z ^ (z >> 31)) | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn range(&mut self, lo: usize, hi: usize) -> usize {
        lo + self.below((hi - lo) as u64) as usize
    }

    /// Uniform in (0, 1].
    fn unit(&mut self) -> f64 {
        ((self.next() >> 11) + 1) as f64 / (1u64 << 53) as f64
    }
}

/// One logical thread's state.
struct Thread {
    t: u32,
    rng: Rng,
    /// Slot -> live size (0: free). Ids are `base + slot`.
    slots: Vec<usize>,
    base: u64,
    /// Realloc growth: the current block's size; tree: nodes built.
    cur: usize,
    phase: usize,
    /// Producer/consumer: ids produced and not yet consumed.
    queue: VecDeque<u64>,
    next_id: u64,
}

/// The trace being written.
struct Out {
    text: String,
    ops: usize,
}

impl Out {
    fn a(&mut self, id: u64, size: usize, t: u32) {
        let _ = write!(self.text, "a {id} {size}");
        self.end(t);
    }

    fn f(&mut self, id: u64, t: u32) {
        let _ = write!(self.text, "f {id}");
        self.end(t);
    }

    fn r(&mut self, id: u64, size: usize, t: u32) {
        let _ = write!(self.text, "r {id} {size}");
        self.end(t);
    }

    fn end(&mut self, t: u32) {
        if t != 0 {
            let _ = write!(self.text, " @{t}");
        }
        self.text.push('\n');
        self.ops += 1;
    }
}

const ID_SPACE: u64 = 1 << 24;

impl Thread {
    fn new(t: u32, seed: u64, slots: usize) -> Thread {
        Thread {
            t,
            rng: Rng::new(seed, t as u64),
            slots: vec![0; slots],
            base: t as u64 * ID_SPACE,
            cur: 0,
            phase: 0,
            queue: VecDeque::new(),
            next_id: t as u64 * ID_SPACE,
        }
    }

    /// Allocates or frees slot `i` with a block of `size` bytes.
    fn toggle(&mut self, out: &mut Out, i: usize, size: usize) {
        let id = self.base + i as u64;
        if self.slots[i] == 0 {
            out.a(id, size, self.t);
            self.slots[i] = size;
        } else {
            out.f(id, self.t);
            self.slots[i] = 0;
        }
    }

    fn step(&mut self, w: Workload, out: &mut Out, peer: Option<&mut Thread>) {
        match w {
            Workload::Churn => {
                let i = self.rng.below(self.slots.len() as u64) as usize;
                let size = self.rng.range(16, 513);
                self.toggle(out, i, size);
            }
            Workload::PowerLaw => {
                let i = self.rng.below(self.slots.len() as u64) as usize;
                // Pareto with alpha 1.2 from 16 bytes, capped at 1 MiB.
                let size = (16.0 * self.rng.unit().powf(-1.0 / 1.2)).min((1 << 20) as f64);
                self.toggle(out, i, size as usize);
            }
            Workload::Tree => {
                // Nodes 0..n built in order (a complete tree laid out
                // breadth-first is built depth-first by allocating in index
                // order of a pre-order walk: equivalent for the allocator),
                // then freed from the leaves up.
                let n = self.slots.len();
                if self.phase == 0 {
                    let size = self.rng.range(48, 113);
                    self.toggle(out, self.cur, size);
                    self.cur += 1;
                    if self.cur == n {
                        self.phase = 1;
                    }
                } else {
                    self.cur -= 1;
                    self.toggle(out, self.cur, 0);
                    if self.cur == 0 {
                        self.phase = 0;
                    }
                }
            }
            Workload::Realloc => {
                let id = self.base;
                if self.cur == 0 {
                    self.cur = self.rng.range(16, 33);
                    out.a(id, self.cur, self.t);
                } else if self.cur < 1 << 20 {
                    self.cur += self.cur / 2;
                    out.r(id, self.cur, self.t);
                } else {
                    out.f(id, self.t);
                    self.cur = 0;
                }
            }
            Workload::ProducerConsumer => match peer {
                // A producer allocates; its consumer (the peer) frees.
                Some(consumer) => {
                    let id = self.next_id;
                    self.next_id = self.base + (self.next_id + 1 - self.base) % ID_SPACE;
                    out.a(id, self.rng.range(16, 257), self.t);
                    consumer.queue.push_back(id);
                }
                None => {
                    if self.queue.len() > 64 {
                        let id = self.queue.pop_front().unwrap();
                        out.f(id, self.t);
                    } else if self.slots.is_empty() {
                        // A lone thread: produce for itself.
                        let id = self.next_id;
                        self.next_id += 1;
                        out.a(id, self.rng.range(16, 257), self.t);
                        self.queue.push_back(id);
                    }
                }
            },
            Workload::LargeFrag => {
                // Phase 0 fills every slot with alternating small and big
                // large blocks; phase 1 frees the small ones (holes between
                // big ones); phase 2 asks for blocks a little bigger than the
                // holes; then everything is freed and it starts again.
                let n = self.slots.len();
                match self.phase {
                    0 => {
                        let size = if self.cur % 2 == 0 {
                            self.rng.range(32 << 10, 256 << 10)
                        } else {
                            self.rng.range(256 << 10, 4 << 20)
                        };
                        self.toggle(out, self.cur, size);
                        self.cur += 1;
                    }
                    1 => {
                        self.toggle(out, self.cur * 2, 0);
                        self.cur += 1;
                    }
                    2 => {
                        let size = self.rng.range(260 << 10, 600 << 10);
                        self.toggle(out, self.cur * 2, size);
                        self.cur += 1;
                    }
                    _ => {
                        self.toggle(out, self.cur, 0);
                        self.cur += 1;
                    }
                }
                let end = if self.phase == 1 || self.phase == 2 {
                    n / 2
                } else {
                    n
                };
                if self.cur == end {
                    self.cur = 0;
                    self.phase = (self.phase + 1) % 4;
                }
            }
        }
    }
}

/// Generates a trace of about `ops` requests made by `threads` threads.
/// Every block is freed by the end.
pub fn generate(w: Workload, seed: u64, threads: usize, ops: usize) -> Trace {
    let threads = threads.clamp(1, super::MAX_THREADS as usize);
    let slots = match w {
        Workload::Churn => 1024,
        Workload::PowerLaw => 256,
        Workload::Tree => 511,
        Workload::LargeFrag => 64,
        // A lone producer/consumer thread marks itself by having no slots.
        Workload::ProducerConsumer if threads == 1 => 0,
        _ => 1,
    };
    let mut ts: Vec<Thread> = (0..threads as u32)
        .map(|t| Thread::new(t, seed, slots))
        .collect();
    let mut out = Out {
        text: String::new(),
        ops: 0,
    };
    while out.ops < ops {
        for t in 0..threads {
            let producer = w == Workload::ProducerConsumer && threads > 1 && t % 2 == 0;
            if producer && t + 1 < threads {
                let (a, b) = ts.split_at_mut(t + 1);
                a[t].step(w, &mut out, Some(&mut b[0]));
            } else if producer {
                // An odd thread out: a lone producer/consumer of its own.
                ts[t].slots.clear();
                ts[t].step(w, &mut out, None);
            } else {
                ts[t].step(w, &mut out, None);
            }
        }
    }
    // Free what is left, each by its own thread.
    for th in &mut ts {
        for i in 0..th.slots.len() {
            if th.slots[i] != 0 {
                th.toggle(&mut out, i, 0);
            }
        }
        if w == Workload::Realloc && th.cur != 0 {
            out.f(th.base, th.t);
        }
        while let Some(id) = th.queue.pop_front() {
            out.f(id, th.t);
        }
    }
    let name = format!("{}-s{seed}-t{threads}", w.name());
    Trace::parse(&name, &out.text).expect("the generator writes valid traces")
}
