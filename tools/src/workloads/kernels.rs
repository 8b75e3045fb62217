//! The per-thread bodies of the workloads: what each thread of each
//! workload does with its allocator handle.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use crate::trace::replay::ThreadAlloc;
use crossbeam_queue::ArrayQueue;

use super::*;

/// The fast path alone: a 32-byte block allocated, written and freed at
/// once, over and over; one operation per pair.
pub(crate) fn pair(a: &mut dyn ThreadAlloc, b: &Budget) {
    let mut c = Counter::new();
    while b.more(&c) {
        let p = alloc(a, 32, 8);
        // SAFETY: allocated just above with (32, 8).
        unsafe { free(a, p, 32, 8) };
        c.op(0);
    }
}

/// Small-object churn: each thread holds up to 16384 blocks of 16–512 bytes
/// and frees or allocates one at random.
pub(crate) fn churn(a: &mut dyn ThreadAlloc, seed: u64, b: &Budget) {
    let mut rng = Rng(seed);
    let mut slots: Vec<(*mut u8, usize)> = vec![(std::ptr::null_mut(), 0); 16384];
    let mut c = Counter::new();
    while b.more(&c) {
        let i = rng.below(slots.len() as u64) as usize;
        let (p, size) = slots[i];
        if p.is_null() {
            let size = rng.range(16, 512);
            slots[i] = (alloc(a, size, 8), size);
            c.op(size as isize);
        } else {
            // SAFETY: allocated above with this layout.
            unsafe { free(a, p, size, 8) };
            slots[i].0 = std::ptr::null_mut();
            c.op(-(size as isize));
        }
    }
    free_all(a, slots, 8, &mut c);
}

/// Frees every non-null block of `slots`.
pub(crate) fn free_all(
    a: &mut dyn ThreadAlloc,
    slots: Vec<(*mut u8, usize)>,
    align: usize,
    c: &mut Counter,
) {
    for (p, size) in slots {
        if !p.is_null() {
            // SAFETY: the workloads keep only live blocks of `a`'s
            // allocator, allocated with `align`, in their slots.
            unsafe { free(a, p, size, align) };
            c.op(-(size as isize));
        }
    }
}

/// Producer/consumer pairs: one thread allocates 64–256-byte blocks and
/// passes them through a bounded queue to another, which frees them: every
/// block is freed by a thread other than its allocator's.
pub(crate) fn producer(
    a: &mut dyn ThreadAlloc,
    q: &ArrayQueue<(usize, usize)>,
    seed: u64,
    b: &Budget,
) {
    let mut rng = Rng(seed);
    let mut c = Counter::new();
    while b.more(&c) {
        let size = rng.range(64, 256);
        let p = alloc(a, size, 8);
        c.op(size as isize);
        let mut item = (p as usize, size);
        while let Err(back) = q.push(item) {
            item = back;
            std::hint::spin_loop();
        }
    }
}

pub(crate) fn consumer(a: &mut dyn ThreadAlloc, q: &ArrayQueue<(usize, usize)>, done: &AtomicBool) {
    let mut c = Counter::new();
    loop {
        match q.pop() {
            Some((p, size)) => {
                // SAFETY: allocated by the producer with this layout.
                unsafe { free(a, p as *mut u8, size, 8) };
                c.op(-(size as isize));
            }
            // Acquire: pairs with the producer's Release store after its last push.
            None if done.load(Ordering::Acquire) && q.is_empty() => return,
            None => std::hint::spin_loop(),
        }
    }
}

/// Mixed sizes: mostly small, some medium, a few large (64 KiB–1 MiB) and
/// rare huge (4–8 MiB) blocks, 512 held per thread, with `realloc` growth.
pub(crate) fn mixed(a: &mut dyn ThreadAlloc, seed: u64, b: &Budget) {
    let mut rng = Rng(seed);
    let mut slots: Vec<(*mut u8, usize)> = vec![(std::ptr::null_mut(), 0); 512];
    let mut c = Counter::new();
    while b.more(&c) {
        let i = rng.below(slots.len() as u64) as usize;
        let (p, size) = slots[i];
        let r = rng.below(1000);
        if p.is_null() {
            let size = match r {
                0..=899 => rng.range(16, 1024),
                900..=979 => rng.range(1024, 64 << 10),
                980..=998 => rng.range(64 << 10, 1 << 20),
                _ => rng.range(4 << 20, 8 << 20),
            };
            slots[i] = (alloc(a, size, 16), size);
            c.op(size as isize);
        } else if r < 100 && size < (1 << 20) {
            let new = size + size / 2 + 8;
            // SAFETY: allocated above with this layout.
            let q = unsafe { a.realloc(p, layout(size, 16), new) };
            assert!(!q.is_null(), "out of memory");
            touch(q, new);
            slots[i] = (q, new);
            c.op((new - size) as isize);
        } else {
            // SAFETY: as above.
            unsafe { free(a, p, size, 16) };
            slots[i].0 = std::ptr::null_mut();
            c.op(-(size as isize));
        }
    }
    free_all(a, slots, 16, &mut c);
}

/// Realloc growth: each thread grows a buffer from 16 bytes to about 1 MiB
/// by factors of 1.5 through `realloc`, writing its new tail, then frees it.
/// One operation is one `realloc` (or the first allocation, or the free).
pub(crate) fn realloc_growth(a: &mut dyn ThreadAlloc, seed: u64, b: &Budget) {
    let mut rng = Rng(seed);
    let mut c = Counter::new();
    while b.more(&c) {
        let mut size = rng.range(16, 31);
        let mut p = alloc(a, size, 8);
        c.op(size as isize);
        while size < (1 << 20) && b.more(&c) {
            let new = size + size / 2;
            // SAFETY: allocated with this layout.
            p = unsafe { a.realloc(p, layout(size, 8), new) };
            assert!(!p.is_null(), "out of memory");
            touch_range(p, size, new);
            c.op((new - size) as isize);
            size = new;
        }
        // SAFETY: as above.
        unsafe { free(a, p, size, 8) };
        c.op(-(size as isize));
    }
}

/// A growing buffer as Rust's `Vec<u8>` (and so `String`) keeps it: a
/// block of `cap` bytes, `len` of them written.
pub(crate) struct Grown {
    p: *mut u8,
    cap: usize,
    len: usize,
}

impl Grown {
    const EMPTY: Grown = Grown {
        p: std::ptr::null_mut(),
        cap: 0,
        len: 0,
    };

    /// Appends `n` written bytes, growing the block as `Vec` does: to the
    /// larger of twice its capacity and what is needed, at least 8 bytes,
    /// through `realloc`.
    fn push(&mut self, a: &mut dyn ThreadAlloc, n: usize, c: &mut Counter) {
        if self.len + n > self.cap {
            let cap = (self.cap * 2).max(self.len + n).max(8);
            self.p = if self.cap == 0 {
                a.alloc(layout(cap, 1))
            } else {
                // SAFETY: `p` is live with `layout(self.cap, 1)`.
                unsafe { a.realloc(self.p, layout(self.cap, 1), cap) }
            };
            assert!(!self.p.is_null(), "out of memory growing to {cap} bytes");
            c.op((cap - self.cap) as isize);
            self.cap = cap;
        }
        // SAFETY: `[len, len + n)` is inside the block.
        unsafe { self.p.add(self.len).write_bytes(self.len as u8, n) };
        self.len += n;
    }

    fn free(self, a: &mut dyn ThreadAlloc, c: &mut Counter) {
        if self.cap > 0 {
            // SAFETY: live with `layout(cap, 1)`.
            unsafe { a.dealloc(self.p, layout(self.cap, 1)) };
            c.op(-(self.cap as isize));
        }
    }
}

/// Bytes the vector of [`vec_growth`] grows to.
pub(crate) const VEC_BYTES: usize = 64 << 20;
/// The strings of [`vec_growth`] that grow beside it.
pub(crate) const VEC_STRINGS: usize = 256;

/// What a Rust program does when it builds its data with `push`: one
/// `Vec<u8>` grown by 4 KiB `extend`s to 64 MiB, and beside it 256 `String`s
/// grown by 16-byte pushes to random lengths of 16 bytes to 4 KiB, growing
/// as `Vec` grows (doubling, through `realloc`), every byte written; then
/// all freed. Each allocation, reallocation and free is an operation. Most
/// of the time is the program's own writes, as in a real program: what the
/// allocator adds is its copies (a block moved to grow) and its page
/// faults.
pub(crate) fn vec_growth(a: &mut dyn ThreadAlloc, seed: u64, b: &Budget) {
    let mut rng = Rng(seed);
    let mut c = Counter::new();
    while b.more(&c) {
        let mut v = Grown::EMPTY;
        let mut strings: Vec<(Grown, usize)> = (0..VEC_STRINGS)
            .map(|_| (Grown::EMPTY, rng.range(1, 256) * 16))
            .collect();
        while v.len < VEC_BYTES && b.more(&c) {
            v.push(a, 4096, &mut c);
            for (s, target) in &mut strings {
                if s.len < *target && rng.below(8) == 0 {
                    s.push(a, 16, &mut c);
                }
            }
        }
        // The peak: count it before the frees (the counter is flushed
        // every 1024 operations, which would miss it).
        c.flush();
        v.free(a, &mut c);
        for (s, _) in strings {
            s.free(a, &mut c);
        }
    }
    c.flush();
}

/// Larson's slots per thread, and the operations of one round.
pub(crate) const LARSON_SLOTS: usize = 1000;
pub(crate) const LARSON_ROUND: usize = 20_000;

/// One thread of one Larson round (after Larson and Krishnan, "Memory
/// allocation for long-running server applications", ISMM 1998): the
/// thread owns an array of blocks of 8–1000 bytes it inherited from a
/// thread of the previous round, and replaces a random one with a new block
/// `LARSON_ROUND` times. Its successor inherits the array, so most blocks
/// are freed by a thread other than the one that allocated them, and
/// threads come and go like a server's connections.
pub(crate) fn larson_round(
    a: &mut dyn ThreadAlloc,
    slots: &mut [(usize, usize)],
    seed: u64,
    b: &Budget,
) {
    let mut rng = Rng(seed);
    let mut c = Counter::new();
    for _ in 0..LARSON_ROUND {
        if !b.more(&c) {
            break;
        }
        let i = rng.below(slots.len() as u64) as usize;
        let (p, size) = slots[i];
        if p != 0 {
            // SAFETY: the slots hold live blocks of 8-byte alignment.
            unsafe { free(a, p as *mut u8, size, 8) };
        }
        let new = rng.range(8, 1000);
        slots[i] = (alloc(a, new, 8) as usize, new);
        c.op(new as isize - size as isize);
    }
}

/// Blocks per xmalloc batch, and batches in flight.
pub(crate) const XM_BATCH: usize = 64;
pub(crate) const XM_QUEUE: usize = 256;
pub(crate) type Batch = [(usize, usize); XM_BATCH];

/// xmalloc (after Lever and Boreham's xmalloc-test, "malloc() performance
/// in a multithreaded Linux environment", USENIX 2000): producer threads
/// allocate batches of 64 blocks of 16–1024 bytes and put them on one
/// shared queue; consumer threads take batches and free every block. With
/// one thread it does both in turn. One operation is one allocation or one
/// free.
pub(crate) fn xmalloc_producer(
    a: &mut dyn ThreadAlloc,
    q: &ArrayQueue<Batch>,
    seed: u64,
    b: &Budget,
) {
    let mut rng = Rng(seed);
    let mut c = Counter::new();
    while b.more(&c) {
        let mut batch = make_batch(a, &mut rng, &mut c);
        while let Err(back) = q.push(batch) {
            batch = back;
            // Relaxed: see `Budget::more`.
            if b.stop.load(Ordering::Relaxed) {
                // The consumers may be gone: free it here.
                free_batch(a, &batch, &mut c);
                return;
            }
            thread::yield_now();
        }
    }
}

pub(crate) fn make_batch(a: &mut dyn ThreadAlloc, rng: &mut Rng, c: &mut Counter) -> Batch {
    let mut batch = [(0, 0); XM_BATCH];
    for slot in &mut batch {
        let size = rng.range(16, 1024);
        *slot = (alloc(a, size, 8) as usize, size);
        c.op(size as isize);
    }
    batch
}

pub(crate) fn free_batch(a: &mut dyn ThreadAlloc, batch: &Batch, c: &mut Counter) {
    for &(p, size) in batch {
        // SAFETY: a batch holds live blocks of 8-byte alignment.
        unsafe { free(a, p as *mut u8, size, 8) };
        c.op(-(size as isize));
    }
}

pub(crate) fn xmalloc_consumer(
    a: &mut dyn ThreadAlloc,
    q: &ArrayQueue<Batch>,
    producing: &AtomicUsize,
) {
    let mut c = Counter::new();
    loop {
        match q.pop() {
            Some(batch) => free_batch(a, &batch, &mut c),
            // Acquire: pairs with the producers' Release decrement, after
            // their last push.
            None if producing.load(Ordering::Acquire) == 0 && q.is_empty() => return,
            None => thread::yield_now(),
        }
    }
}

pub(crate) fn xmalloc_alone(a: &mut dyn ThreadAlloc, seed: u64, b: &Budget) {
    let mut rng = Rng(seed);
    let mut c = Counter::new();
    while b.more(&c) {
        let batch = make_batch(a, &mut rng, &mut c);
        free_batch(a, &batch, &mut c);
    }
}

/// Writes the first byte of an 8-byte object `writes` times, as Hoard's
/// cache tests do: false sharing makes each write a cache-line transfer.
pub(crate) fn hammer(p: *mut u8, writes: usize) {
    for i in 0..writes {
        // SAFETY: `p` is a live block of at least 8 bytes; volatile so that
        // every write happens.
        unsafe { p.write_volatile(i as u8) };
    }
}

/// Writes to each object of the cache tests.
pub(crate) const CACHE_WRITES: usize = 100;

/// cache-thrash (Berger et al., "Hoard: a scalable memory allocator for
/// multithreaded applications", ASPLOS 2000): each thread allocates an
/// 8-byte object, writes it 100 times and frees it, over and over. An
/// allocator that hands neighbouring objects to different threads makes
/// them share cache lines (active false sharing). One operation is one
/// allocate-write-free.
pub(crate) fn cache_thrash(a: &mut dyn ThreadAlloc, b: &Budget) {
    let mut c = Counter::new();
    while b.more(&c) {
        let p = alloc(a, 8, 8);
        hammer(p, CACHE_WRITES);
        // SAFETY: allocated just above.
        unsafe { free(a, p, 8, 8) };
        c.op(0);
    }
}

/// cache-scratch (Hoard paper): the runner allocates one 8-byte object per
/// thread, all in a row (so they likely share cache lines), and hands one
/// to each thread; each frees it and then runs cache-thrash's loop. An
/// allocator that gives the freed object back to the thread that freed it
/// keeps the objects of several threads in one line (passive false
/// sharing).
pub(crate) fn cache_scratch(a: &mut dyn ThreadAlloc, given: usize, b: &Budget) {
    // SAFETY: the runner allocated it with (8, 8) and gave it to this
    // thread only.
    unsafe { free(a, given as *mut u8, 8, 8) };
    cache_thrash(a, b);
}

/// threadtest (Hoard paper): each thread allocates 10 000 objects of 64
/// bytes, then frees them all, over and over. One operation is one
/// allocation or free.
pub(crate) fn threadtest(a: &mut dyn ThreadAlloc, b: &Budget) {
    const OBJECTS: usize = 10_000;
    let mut c = Counter::new();
    let mut held = Vec::with_capacity(OBJECTS);
    while b.more(&c) {
        for _ in 0..OBJECTS {
            held.push(alloc(a, 64, 8));
            c.op(64);
        }
        for p in held.drain(..) {
            // SAFETY: allocated above with (64, 8).
            unsafe { free(a, p, 64, 8) };
            c.op(-64);
        }
    }
}

/// A size-varied test after MicroQuill's sh6bench: each round allocates
/// 2000 blocks whose sizes sweep 1–1000 bytes with one in 64 of 1–16 KiB,
/// frees the first half in reverse order (LIFO), allocates 1000 more, and
/// frees all that remain in allocation order (FIFO).
pub(crate) fn sh6bench(a: &mut dyn ThreadAlloc, seed: u64, b: &Budget) {
    let mut rng = Rng(seed);
    let mut c = Counter::new();
    let mut held: Vec<(*mut u8, usize)> = Vec::with_capacity(3000);
    let size_of = |i: usize, rng: &mut Rng| {
        if i % 64 == 63 {
            rng.range(1024, 16 << 10)
        } else {
            1 + (i * 7 + rng.below(8) as usize) % 1000
        }
    };
    while b.more(&c) {
        for i in 0..2000 {
            let size = size_of(i, &mut rng);
            held.push((alloc(a, size, 8), size));
            c.op(size as isize);
        }
        for (p, size) in held.drain(..1000).rev() {
            // SAFETY: allocated above with 8-byte alignment.
            unsafe { free(a, p, size, 8) };
            c.op(-(size as isize));
        }
        for i in 0..1000 {
            let size = size_of(i, &mut rng);
            held.push((alloc(a, size, 8), size));
            c.op(size as isize);
        }
        for (p, size) in held.drain(..) {
            // SAFETY: as above.
            unsafe { free(a, p, size, 8) };
            c.op(-(size as isize));
        }
    }
}

/// Large-block fragmentation: each thread fills 64 slots with alternating
/// smaller (32–256 KiB) and bigger (256 KiB–4 MiB) blocks, frees the smaller
/// ones (holes between the bigger ones), asks for 32 blocks a little bigger
/// than the holes, then frees everything and starts again. An allocator
/// that cannot reuse the holes grows; one that splits and coalesces well
/// does not. Every page of every block is written.
pub(crate) fn largefrag(a: &mut dyn ThreadAlloc, seed: u64, b: &Budget) {
    const SLOTS: usize = 64;
    let mut rng = Rng(seed);
    let mut c = Counter::new();
    let mut slots: Vec<(*mut u8, usize)> = Vec::with_capacity(SLOTS + SLOTS / 2);
    while b.more(&c) {
        for i in 0..SLOTS {
            let size = if i % 2 == 0 {
                rng.range(32 << 10, 256 << 10)
            } else {
                rng.range(256 << 10, 4 << 20)
            };
            slots.push((alloc(a, size, 16), size));
            c.op(size as isize);
        }
        let mut kept = Vec::with_capacity(SLOTS);
        for (i, (p, size)) in slots.drain(..).enumerate() {
            if i % 2 == 0 {
                // SAFETY: allocated above with 16-byte alignment.
                unsafe { free(a, p, size, 16) };
                c.op(-(size as isize));
            } else {
                kept.push((p, size));
            }
        }
        for _ in 0..SLOTS / 2 {
            let size = rng.range(256 << 10, 320 << 10);
            kept.push((alloc(a, size, 16), size));
            c.op(size as isize);
        }
        free_all(a, std::mem::take(&mut kept), 16, &mut c);
    }
}
