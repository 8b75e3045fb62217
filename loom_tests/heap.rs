//! Loom models of the allocator's concurrent paths, on `Heap` instances and
//! on the structures it is made of, with a deliberately broken variant that
//! loom must catch.
//!
//! Run with `RUSTFLAGS="--cfg loom" cargo test --release --test loom_heap`.
//!
//! - `IntrusiveStack` (the pools' and page lists' stack; its tagged head is
//!   a loom `AtomicU64` in the loom build, so loom checks its orderings):
//!   the ABA schedule (one thread pops while another pops two nodes and
//!   pushes the first back) leaves every node owned once, and the untagged
//!   variant is caught; a chain and a node pushed while another thread pops
//!   and takes all hand over their payloads (loom cells) and links.
//! - Pages owned by thread heaps: remote frees, abandoned pages and their
//!   adoption, emptied pages going back to the pool and their next taker.
//!   A page's owner's part is a loom-tracked cell, so a step of the
//!   protocol that lets two threads write it without a happens-before edge
//!   is a causality report; each of the seeded bugs ([`PageBug`]) moves
//!   or drops one such step and must be caught. Span carving: two threads
//!   carving fresh spans from the arena's bump at once get one each (the
//!   bump's CAS replaced by a load and a store is caught). Blocks are
//!   never handed out twice, and the heap's counts add up.
//! - Large blocks: a free into the large-block cache racing an allocation
//!   the cache serves (the descriptor pushed before the block is written
//!   into it is caught), and two frees of one block, of which the swap of
//!   its page record (a loom atomic) lets exactly one win (the record
//!   cleared with a load and a store is caught).
//! - The free index: concurrent claims and returns of the large heap's free
//!   runs claim each run once and lose none.

#![cfg(loom)]

mod common;

use std::alloc::Layout;
use std::collections::BTreeSet;
use std::ptr::NonNull;

use common::{assert_seeded_bug_caught, assert_seeded_race_caught, model, Outcomes};
use loom::sync::{Arc, Mutex};
use loom::thread;
use vvmalloc::heap::{seeded_page_bug, FreeIndex, HeapConfig, PageBug, SkipIndex, SPAN};
use vvmalloc::intrusive::{IntrusiveStack, Link};
use vvmalloc::Heap;

#[repr(C)]
struct Node {
    link: Link,
    id: usize,
}

fn id(l: NonNull<Link>) -> usize {
    // SAFETY: every link here is the first field of a `Node`.
    unsafe { l.cast::<Node>().as_ref().id }
}

/// Stack `[A, B]` (A on top). Thread 1 pops once; thread 2 pops A, pops B and
/// pushes A back. Every node ends up owned exactly once.
fn aba(untagged: bool) {
    let outcomes = Outcomes::new();
    let seen = outcomes.clone();
    model(move || {
        let nodes: Arc<Vec<Node>> = Arc::new(
            (0..2)
                .map(|id| Node {
                    link: Link::new(),
                    id,
                })
                .collect(),
        );
        let s = Arc::new(IntrusiveStack::new());
        for n in nodes.iter().rev() {
            // SAFETY: `nodes` outlives every use of `s` (both are dropped
            // after the threads are joined).
            unsafe { s.push(NonNull::from(&n.link)) };
        }
        let t1 = {
            let s = s.clone();
            thread::spawn(move || {
                let top = if untagged {
                    s.seeded_bug_pop_untagged()
                } else {
                    s.pop()
                };
                top.map(id)
            })
        };
        let t2 = {
            let s = s.clone();
            thread::spawn(move || {
                let a = s.pop();
                let b = s.pop();
                if let Some(a) = a {
                    // SAFETY: we own `a`; `nodes` outlives the stack's use.
                    unsafe { s.push(a) };
                }
                b.map(id)
            })
        };
        let got1 = t1.join().unwrap();
        let got2 = t2.join().unwrap();
        let mut owned: Vec<usize> = got1.into_iter().chain(got2).collect();
        while let Some(n) = s.pop() {
            owned.push(id(n));
        }
        owned.sort_unstable();
        assert_eq!(owned, [0, 1], "a node is owned twice or lost: {owned:?}");
        seen.record((got1, got2));
        drop(nodes);
    });
    if !untagged {
        // (T1's pop, T2's second pop), A = 0, B = 1:
        // - T1 before T2: T1 takes A, T2 takes B then nothing: (A, None).
        // - T2 pops A and B, T1 finds the stack empty: (None, B).
        // - T2 pops A, T1 takes B, T2 finds nothing: (B, None).
        // - T2 pops A and B and pushes A back, T1 takes A: (A, B).
        outcomes.assert_saw(&[
            (Some(0), Some(1)),
            (None, Some(1)),
            (Some(1), None),
            (Some(0), None),
        ]);
    }
}

#[test]
fn intrusive_stack_is_aba_safe() {
    aba(false);
}

#[test]
#[should_panic(expected = "a node is owned twice or lost")]
fn seeded_untagged_pop_is_caught() {
    aba(true);
}

/// A node whose payload is a loom cell: a read not ordered after the write
/// that its pusher made before the push is a causality report.
#[repr(C)]
struct Cargo {
    link: Link,
    payload: loom::cell::UnsafeCell<usize>,
}

// SAFETY: the payload is written by the node's owner only (before its push,
// or after the pop or take that handed the node over); loom checks that.
unsafe impl Sync for Cargo {}

fn payload(l: NonNull<Link>) -> usize {
    // SAFETY: every link here is the first field of a `Cargo` we own.
    unsafe { l.cast::<Cargo>().as_ref().payload.with(|p| *p) }
}

/// The intrusive stack publishes what its pushers wrote: thread 1 writes
/// two nodes' payloads, links them with `set_next` and pushes them as one
/// chain; thread 2 writes a third node and pushes it; the main thread pops
/// one node and takes the rest at once, reading each payload, then drains
/// what the threads pushed after. Every node comes out once, with its
/// payload.
fn intrusive_stack_publishes_what_pushers_wrote() {
    let nodes: Arc<Vec<Cargo>> = Arc::new(
        (0..3)
            .map(|_| Cargo {
                link: Link::new(),
                payload: loom::cell::UnsafeCell::new(0),
            })
            .collect(),
    );
    let s = Arc::new(IntrusiveStack::new());
    let chain = {
        let (s, nodes) = (s.clone(), nodes.clone());
        thread::spawn(move || {
            for (i, n) in nodes[..2].iter().enumerate() {
                // SAFETY: not pushed yet: ours.
                n.payload.with_mut(|p| unsafe { *p = 10 + i });
            }
            nodes[0]
                .link
                .set_next(NonNull::from(&nodes[1].link).as_ptr());
            // SAFETY: nodes 0 and 1 are linked and ours; `nodes` outlives
            // every use of `s`.
            unsafe { s.push_chain(NonNull::from(&nodes[0].link), NonNull::from(&nodes[1].link)) };
        })
    };
    let single = {
        let (s, nodes) = (s.clone(), nodes.clone());
        thread::spawn(move || {
            // SAFETY: not pushed yet: ours.
            nodes[2].payload.with_mut(|p| unsafe { *p = 12 });
            // SAFETY: ours; `nodes` outlives every use of `s`.
            unsafe { s.push(NonNull::from(&nodes[2].link)) };
        })
    };
    let mut got: Vec<usize> = s.pop().map(payload).into_iter().collect();
    let mut next = s.take_all().map_or(std::ptr::null_mut(), NonNull::as_ptr);
    while let Some(l) = NonNull::new(next) {
        got.push(payload(l));
        // SAFETY: taken: the chain is ours.
        next = unsafe { l.as_ref() }.next();
    }
    chain.join().unwrap();
    single.join().unwrap();
    while let Some(l) = s.pop() {
        got.push(payload(l));
    }
    got.sort_unstable();
    assert_eq!(
        got,
        [10, 11, 12],
        "a node lost, doubled or read before its payload"
    );
}

#[test]
fn intrusive_stack_publishes_payloads() {
    model(intrusive_stack_publishes_what_pushers_wrote);
}

/// `take_all` racing a push: the stack holds one node when a thread pushes
/// a second while the main thread takes all; whatever the take got is not
/// in the stack any more (a failed CAS must retry, not return), and
/// every node comes out once.
fn intrusive_take_all_races_push() {
    let nodes: Arc<Vec<Cargo>> = Arc::new(
        (0..2)
            .map(|i| Cargo {
                link: Link::new(),
                payload: loom::cell::UnsafeCell::new(20 + i),
            })
            .collect(),
    );
    let s = Arc::new(IntrusiveStack::new());
    // SAFETY: ours; `nodes` outlives every use of `s`.
    unsafe { s.push(NonNull::from(&nodes[0].link)) };
    let pusher = {
        let (s, nodes) = (s.clone(), nodes.clone());
        // SAFETY: as above.
        thread::spawn(move || unsafe { s.push(NonNull::from(&nodes[1].link)) })
    };
    let mut got = Vec::new();
    let mut next = s.take_all().map_or(std::ptr::null_mut(), NonNull::as_ptr);
    while let Some(l) = NonNull::new(next) {
        got.push(payload(l));
        // SAFETY: taken: the chain is ours.
        next = unsafe { l.as_ref() }.next();
    }
    pusher.join().unwrap();
    while let Some(l) = s.pop() {
        got.push(payload(l));
    }
    got.sort_unstable();
    assert_eq!(got, [20, 21], "a node taken twice or lost");
}

#[test]
fn intrusive_take_all_races_a_push() {
    model(intrusive_take_all_races_push);
}

/// A small checked heap, built on a loom thread with a 1 MiB stack: `Heap`
/// is a large struct (its per-class state is inline), and loom runs the
/// model's own thread on a 32 KiB stack, which building it overflowed.
fn heap() -> Arc<Heap> {
    heap_with(true)
}

/// As [`heap`], checked or not (the checked mode stops the process at a
/// misuse, which a model of a double free needs counted instead).
fn heap_with(checked: bool) -> Arc<Heap> {
    thread::Builder::new()
        .stack_size(1 << 20)
        .spawn(move || {
            Arc::new(Heap::with_config(HeapConfig {
                arena_bytes: 2 << 20,
                checked,
            }))
        })
        .unwrap()
        .join()
        .unwrap()
}

/// Thread A allocates through its thread heap and hands blocks to thread B,
/// which frees them through its own: remote frees, pushed on the pages'
/// thread-free lists, which A takes back when it allocates again (possibly
/// getting B's blocks back) or which stay with the pages A abandons on exit.
/// No block is ever held twice, the heap's counts add up (the main thread
/// frees A's second blocks through the cache-less path), and `trim` takes
/// every page back.
#[test]
fn remote_frees_abandon_and_trim() {
    // 16 KiB blocks (the request leaves room for the checked mode's 8-byte
    // guard): 4 blocks per span, batches of 4.
    let layout = Layout::from_size_align(16 * 1024 - 8, 16).unwrap();
    model(move || {
        let heap = heap();
        let handoff: Arc<Mutex<Vec<usize>>> = Arc::new(Mutex::new(Vec::new()));
        let a = {
            let (heap, handoff) = (heap.clone(), handoff.clone());
            thread::spawn(move || {
                let local = heap.local();
                let first: Vec<usize> = (0..4).map(|_| local.alloc(layout) as usize).collect();
                for &p in &first {
                    assert!(p != 0);
                    // SAFETY: a live 16 KiB block.
                    unsafe { (p as *mut usize).add(1).write(0xA) };
                }
                handoff.lock().unwrap().extend(&first);
                let second: Vec<usize> = (0..4).map(|_| local.alloc(layout) as usize).collect();
                for &p in &second {
                    // SAFETY: a live block: nobody else may write it.
                    unsafe { (p as *mut usize).add(1).write(0xB) };
                }
                second
            })
        };
        let b = {
            let (heap, handoff) = (heap.clone(), handoff.clone());
            thread::spawn(move || {
                let local = heap.local();
                let mut freed = 0;
                while freed < 4 {
                    let got: Vec<usize> = std::mem::take(&mut *handoff.lock().unwrap());
                    for p in got {
                        // SAFETY: A wrote it before handing it over.
                        assert_eq!(unsafe { (p as *const usize).add(1).read() }, 0xA);
                        // SAFETY: from this heap with `layout`, handed to us.
                        unsafe { local.dealloc(p as *mut u8, layout) };
                        freed += 1;
                    }
                    thread::yield_now();
                }
                // Dropping the thread heap reports its remote frees.
            })
        };
        let second = a.join().unwrap();
        b.join().unwrap();
        let distinct: BTreeSet<usize> = second.iter().copied().collect();
        assert_eq!(distinct.len(), 4, "a block was handed out twice");
        for &p in &second {
            // SAFETY: still live and only A's.
            assert_eq!(unsafe { (p as *const usize).add(1).read() }, 0xB);
            // SAFETY: from this heap with `layout` (the cache-less path).
            unsafe { heap.dealloc(p as *mut u8, layout) };
        }
        let st = heap.stats();
        assert_eq!(st.misuse, 0);
        assert_eq!(st.in_use_bytes, 0, "{st:?}");
        // Every block of every page is free: `trim` takes them all back.
        heap.trim();
        let st = heap.stats();
        let c = st.small.iter().position(|c| c.size == 16 * 1024).unwrap();
        assert_eq!(st.small[c].spans, 0, "{st:?}");
    });
}

/// 16 KiB blocks (the request leaves room for the checked mode's 8-byte
/// guard): 4 blocks per page, carved 4 at a time.
fn big() -> Layout {
    Layout::from_size_align(16 * 1024 - 8, 16).unwrap()
}

/// 8 KiB blocks: another size class, for a page taken from the pool.
fn other() -> Layout {
    Layout::from_size_align(8 * 1024 - 8, 16).unwrap()
}

/// Writes `tag` into the live block `p` (its second word: the first is the
/// free list's link once it is freed).
fn tag(p: usize, tag: usize) {
    assert!(p != 0, "allocation failed");
    // SAFETY: a live block of at least 16 bytes, ours alone.
    unsafe { (p as *mut usize).add(1).write(tag) };
}

fn tagged(p: usize) -> usize {
    // SAFETY: a live block, written by whoever handed it to us.
    unsafe { (p as *const usize).add(1).read() }
}

/// Whether two blocks lie in one span (spans are `SPAN`-aligned).
fn same_span(p: usize, q: usize) -> bool {
    p / SPAN == q / SPAN
}

/// Every block was freed and nothing misused: `trim` takes every page back.
fn assert_all_back(heap: &Heap) {
    let st = heap.stats();
    assert_eq!(st.misuse, 0, "{st:?}");
    assert_eq!(st.in_use_bytes, 0, "{st:?}");
    heap.trim();
    let st = heap.stats();
    for c in &st.small {
        assert_eq!(c.spans, 0, "{st:?}");
    }
}

/// A remote free racing the owner's allocation and collection: A allocates
/// two blocks of one page, hands the first to B and keeps allocating from
/// the same page (its fourth allocation empties the free list and takes
/// the remote frees) while B frees the first block through its own heap.
fn remote_free_races_owner() {
    let heap = heap();
    let handoff: Arc<Mutex<Option<usize>>> = Arc::new(Mutex::new(None));
    let a = {
        let (heap, handoff) = (heap.clone(), handoff.clone());
        thread::spawn(move || {
            let local = heap.local();
            let x = local.alloc(big()) as usize;
            tag(x, 0xA);
            *handoff.lock().unwrap() = Some(x);
            let mine: Vec<usize> = (0..4).map(|_| local.alloc(big()) as usize).collect();
            for &p in &mine {
                tag(p, 0xB);
            }
            mine
        })
    };
    let b = {
        let (heap, handoff) = (heap.clone(), handoff.clone());
        thread::spawn(move || {
            let local = heap.local();
            let x = loop {
                if let Some(x) = handoff.lock().unwrap().take() {
                    break x;
                }
                thread::yield_now();
            };
            assert_eq!(tagged(x), 0xA);
            // SAFETY: from this heap with `big()`, handed to us.
            unsafe { local.dealloc(x as *mut u8, big()) };
        })
    };
    let mine = a.join().unwrap();
    b.join().unwrap();
    let distinct: BTreeSet<usize> = mine.iter().copied().collect();
    assert_eq!(distinct.len(), 4, "a block was handed out twice");
    for &p in &mine {
        assert_eq!(tagged(p), 0xB, "a live block was overwritten");
        // SAFETY: from this heap with `big()`, live and ours.
        unsafe { heap.dealloc(p as *mut u8, big()) };
    }
    assert_all_back(&heap);
}

#[test]
fn remote_free_races_owner_allocation() {
    model(remote_free_races_owner);
}

/// The seeded bug: the free skips the owner check, so B pushes on A's
/// page's own free list while A pops it.
#[test]
fn seeded_owner_check_skipped_is_caught() {
    assert_seeded_race_caught(
        |on| seeded_page_bug(on.then_some(PageBug::OwnerCheckSkipped)),
        remote_free_races_owner,
    );
}

/// Span carving: two threads' first allocations (different classes) each
/// carve a fresh span from the arena's bump at once. Each gets its own span
/// (formatting a span writes its record's owner's part, a loom cell, so two
/// threads formatting one span is also a causality report).
fn fresh_spans_race() {
    let heap = heap();
    let carve = |layout: Layout| {
        let heap = heap.clone();
        thread::spawn(move || {
            let local = heap.local();
            let p = local.alloc(layout) as usize;
            assert!(p != 0);
            tag(p, layout.size());
            p
        })
    };
    let (a, b) = (carve(big()), carve(other()));
    let (a, b) = (a.join().unwrap(), b.join().unwrap());
    assert!(!same_span(a, b), "two threads carved one span");
    assert_eq!((tagged(a), tagged(b)), (big().size(), other().size()));
    // SAFETY: from this heap with these layouts, live and ours.
    unsafe {
        heap.dealloc(a as *mut u8, big());
        heap.dealloc(b as *mut u8, other());
    }
    assert_all_back(&heap);
}

#[test]
fn fresh_spans_are_carved_once() {
    model(fresh_spans_race);
}

/// The seeded bug: the bump advances with a load and a store, not a CAS.
#[test]
fn seeded_bump_without_cas_is_caught() {
    assert_seeded_bug_caught(
        |on| seeded_page_bug(on.then_some(PageBug::BumpWithoutCas)),
        fresh_spans_race,
        &["Causality violation", "two threads carved one span"],
    );
}

/// The smallest large block: 16 KiB and a byte, 5 pages (`large_cache.rs`
/// keeps blocks of this size under loom).
fn large() -> Layout {
    Layout::from_size_align(16 * 1024 + 1, 16).unwrap()
}

/// The bytes a large block of [`large`] spans: its page record's length.
const LARGE_BYTES: usize = 5 * 4096;

/// The large-block cache: A frees a large block into the cache while B
/// allocates one of the same size. The cache already holds a block freed
/// before the threads start, so B is served by the cache (it never reaches
/// the free index) and may get either block. The cache's descriptors hand
/// the blocks over (their `head` is a loom cell, published by the push and
/// read by the pop), and the page records that a free clears and an
/// allocation sets are loom atomics.
fn large_cache_race() {
    let heap = heap_with(false);
    let x = heap.alloc(large()) as usize;
    let y0 = heap.alloc(large()) as usize;
    assert!(x != 0 && y0 != 0 && x != y0);
    // SAFETY: from this heap with `large()`, live and ours.
    unsafe { heap.dealloc(y0 as *mut u8, large()) };
    let a = {
        let heap = heap.clone();
        // SAFETY: as above; the block is handed to A alone.
        thread::spawn(move || unsafe { heap.dealloc(x as *mut u8, large()) })
    };
    let b = {
        let heap = heap.clone();
        thread::spawn(move || {
            let y = heap.alloc(large()) as usize;
            tag(y, 0xB);
            y
        })
    };
    a.join().unwrap();
    let y = b.join().unwrap();
    assert!(y == x || y == y0, "the cache did not serve the allocation");
    assert_eq!(heap.usable_size(y as *const u8), Some(LARGE_BYTES));
    assert_eq!(tagged(y), 0xB);
    // The other block is still cached, once.
    let z = heap.alloc(large()) as usize;
    assert_eq!(z, if y == x { y0 } else { x }, "a cached block was lost");
    // SAFETY: from this heap with `large()`, live and ours.
    unsafe {
        heap.dealloc(y as *mut u8, large());
        heap.dealloc(z as *mut u8, large());
    }
    assert_all_back(&heap);
}

#[test]
fn large_cache_hands_blocks_over() {
    model(large_cache_race);
}

/// The seeded bug: `cache_put` pushes the descriptor before writing the
/// block into it, so B's pop reads the descriptor while A writes it.
#[test]
fn seeded_large_cache_publishing_first_is_caught() {
    assert_seeded_race_caught(
        |on| seeded_page_bug(on.then_some(PageBug::CachePublishesFirst)),
        large_cache_race,
    );
}

/// Two frees of one large block race (a program's double free, in a heap
/// that counts misuse): the swap that clears the block's page record lets
/// exactly one of them free it; the other is counted as misuse, and the
/// block is cached once.
fn large_double_free_race() {
    let heap = heap_with(false);
    let x = heap.alloc(large()) as usize;
    assert!(x != 0);
    let frees: Vec<_> = (0..2)
        .map(|_| {
            let heap = heap.clone();
            // SAFETY: the double free under test; the heap must detect
            // one of the two (a large block's free validates its record).
            thread::spawn(move || unsafe { heap.dealloc(x as *mut u8, large()) })
        })
        .collect();
    frees.into_iter().for_each(|f| f.join().unwrap());
    assert_eq!(
        heap.stats().misuse,
        1,
        "not exactly one free of a large block won"
    );
    let (p, q) = (heap.alloc(large()) as usize, heap.alloc(large()) as usize);
    assert_eq!(p, x, "the freed block was not cached");
    assert_ne!(q, x, "a large block was cached twice");
    // SAFETY: from this heap with `large()`, live and ours.
    unsafe {
        heap.dealloc(p as *mut u8, large());
        heap.dealloc(q as *mut u8, large());
    }
    assert_eq!(heap.stats().in_use_bytes, 0);
}

#[test]
fn large_double_free_wins_once() {
    model(large_double_free_race);
}

/// The seeded bug: the free clears the page record with a load and a
/// store, so both frees may read it set and both win.
#[test]
fn seeded_large_record_cleared_without_swap_is_caught() {
    assert_seeded_bug_caught(
        |on| seeded_page_bug(on.then_some(PageBug::RecordClearedWithoutSwap)),
        large_double_free_race,
        &["not exactly one free of a large block won"],
    );
}

/// A page abandoned at thread exit racing its adoption: A allocates a block
/// and drops its heap (the page, with the block in use, goes on the
/// abandoned stack) while B allocates from the same class (adopting the
/// page when A has abandoned it, else taking a fresh one) and drops its
/// heap in turn; the main thread frees both blocks (cache-less frees into
/// abandoned pages).
fn abandon_races_adoption() -> bool {
    let heap = heap();
    let [a, b] = [0xA, 0xB].map(|t| {
        let heap = heap.clone();
        thread::spawn(move || {
            let local = heap.local();
            let x = local.alloc(big()) as usize;
            tag(x, t);
            x
        })
    });
    let x = a.join().unwrap();
    let y = b.join().unwrap();
    assert_ne!(x, y, "a block was handed out twice");
    assert_eq!(tagged(x), 0xA, "a live block was overwritten");
    assert_eq!(tagged(y), 0xB, "a live block was overwritten");
    // SAFETY: both from this heap with `big()`, live.
    unsafe {
        heap.dealloc(x as *mut u8, big());
        heap.dealloc(y as *mut u8, big());
    }
    assert_all_back(&heap);
    same_span(x, y)
}

/// Both outcomes happen: B adopts A's page (its block in the same span as
/// A's), or takes a fresh one.
#[test]
fn abandoned_page_races_adoption() {
    let outcomes = Outcomes::new();
    let seen = outcomes.clone();
    model(move || seen.record(abandon_races_adoption()));
    outcomes.assert_saw(&[false, true]);
}

/// The seeded bug: `abandon` publishes the page before unlinking it.
#[test]
fn seeded_abandon_publishing_first_is_caught() {
    assert_seeded_race_caught(
        |on| seeded_page_bug(on.then_some(PageBug::AbandonPublishesFirst)),
        || {
            abandon_races_adoption();
        },
    );
}

/// A page going back to the pool racing its next taker, after a late
/// remote free: A allocates two blocks of one page, hands one to B and
/// frees the other; B frees its block (a remote free, the page's last block
/// in use), tells A, and allocates from another class; A, told, flushes:
/// it takes the remote free and puts the emptied page in the pool, where
/// B's allocation may find it.
fn retire_races_remote_free() -> bool {
    let heap = heap();
    // The block handed over, and whether B has freed it.
    let handoff: Arc<Mutex<(Option<usize>, bool)>> = Arc::new(Mutex::new((None, false)));
    let a = {
        let (heap, handoff) = (heap.clone(), handoff.clone());
        thread::spawn(move || {
            let local = heap.local();
            let x = local.alloc(big()) as usize;
            let y = local.alloc(big()) as usize;
            tag(x, 0xA);
            handoff.lock().unwrap().0 = Some(x);
            // SAFETY: from this heap with `big()`, ours.
            unsafe { local.dealloc(y as *mut u8, big()) };
            while !handoff.lock().unwrap().1 {
                thread::yield_now();
            }
            local.flush();
        })
    };
    let b = {
        let (heap, handoff) = (heap.clone(), handoff.clone());
        thread::spawn(move || {
            let local = heap.local();
            let x = loop {
                if let Some(x) = handoff.lock().unwrap().0.take() {
                    break x;
                }
                thread::yield_now();
            };
            assert_eq!(tagged(x), 0xA);
            // SAFETY: from this heap with `big()`, handed to us.
            unsafe { local.dealloc(x as *mut u8, big()) };
            handoff.lock().unwrap().1 = true;
            // A may flush before or after this allocation; the yield lets
            // loom run A here without spending a preemption on it.
            thread::yield_now();
            let z = local.alloc(other()) as usize;
            tag(z, 0xB);
            assert_eq!(tagged(z), 0xB);
            // SAFETY: from this heap with `other()`, ours.
            unsafe { local.dealloc(z as *mut u8, other()) };
            same_span(x, z)
        })
    };
    a.join().unwrap();
    let reused = b.join().unwrap();
    assert_all_back(&heap);
    reused
}

/// Both outcomes happen: B's allocation takes the page A emptied (its block
/// in the span of the block B freed), or a fresh one.
#[test]
fn emptied_page_races_late_remote_free() {
    let outcomes = Outcomes::new();
    let seen = outcomes.clone();
    model(move || seen.record(retire_races_remote_free()));
    outcomes.assert_saw(&[false, true]);
}

/// The seeded bug: `flush` puts the emptied page in the pool before
/// unlinking it, and B's allocation formats it meanwhile.
#[test]
fn seeded_retire_publishing_first_is_caught() {
    assert_seeded_race_caught(
        |on| seeded_page_bug(on.then_some(PageBug::RetirePublishesFirst)),
        || {
            retire_races_remote_free();
        },
    );
}

/// One thread claims a run from the free index (best fit: the smallest that
/// fits, which the other thread's concurrent return may provide) while the
/// other returns a run: each run is claimed at most once and none is lost.
#[test]
fn free_index_take_and_return() {
    // Each index operation is two skip-list operations, and with
    // `--cfg crossbeam_loom` every pin of the epoch is modelled too: the
    // model needs more than loom's default 1000 branches per execution.
    let mut builder = loom::model::Builder::new();
    builder.max_branches = 20_000;
    if builder.preemption_bound.is_none() {
        builder.preemption_bound = Some(2);
    }
    builder.check(|| {
        let ix = Arc::new(SkipIndex::new());
        ix.insert(0x10000, 0x1000);
        ix.insert(0x30000, 0x2000);
        let t1 = {
            let ix = ix.clone();
            thread::spawn(move || ix.take_fit(0x1000))
        };
        let t2 = {
            let ix = ix.clone();
            thread::spawn(move || ix.insert(0x50000, 0x1000))
        };
        let taken = t1.join().unwrap();
        t2.join().unwrap();
        assert!(taken.is_some(), "a claim failed although runs were free");
        let mut runs: Vec<(usize, usize)> = taken.into_iter().collect();
        while let Some(r) = ix.take_fit(1) {
            runs.push(r);
        }
        runs.sort_unstable();
        assert_eq!(
            runs,
            [(0x10000, 0x1000), (0x30000, 0x2000), (0x50000, 0x1000)]
        );
    });
}

/// The fork gate: a large operation (`enter`, then a write of the runs it
/// holds, a loom cell) racing a fork (`close`, then the fork's own use of
/// the same state, then `open`). Either the fork waits for the operation to
/// leave, or the operation waits for the fork to end: the two writes are
/// always ordered by happens-before, and both happen.
fn fork_gate_excludes_large_operations() {
    use vvmalloc::heap::ModelForkGate;
    let gate = Arc::new(ModelForkGate::new());
    let runs = Arc::new(loom::cell::UnsafeCell::new(0usize));
    let op = {
        let (gate, runs) = (gate.clone(), runs.clone());
        thread::spawn(move || {
            let _in = gate.enter();
            // SAFETY: the gate keeps the fork out (the property checked).
            runs.with_mut(|r| unsafe { *r += 1 });
        })
    };
    gate.close();
    // SAFETY: as above, from the fork's side.
    runs.with_mut(|r| unsafe { *r += 10 });
    gate.open();
    op.join().unwrap();
    // SAFETY: both threads are done.
    assert_eq!(runs.with(|r| unsafe { *r }), 11);
}

#[test]
fn fork_gate_holds_large_operations_out_of_a_fork() {
    model(fork_gate_excludes_large_operations);
}

/// The seeded bug: `enter` reads the flag before raising its count. A
/// `close` between the two sees no operation in flight, and the
/// operation saw no fork: both write the runs at once.
#[test]
fn seeded_fork_gate_flag_first_is_caught() {
    assert_seeded_race_caught(
        vvmalloc::heap::seeded_fork_gate_bug,
        fork_gate_excludes_large_operations,
    );
}

/// The huge table (`src/heap/huge_table.rs`), its slots being loom atomics
/// in the loom build. A free without a size finds a huge block's length
/// through it, so a lookup that finds the key must read that block's
/// length; and a cache slot handed a freed mapping must hand out the
/// mapping's length with it.
///
/// The lookups run on a thread of their own that yields first. Loom's
/// partial-order reduction keeps one last access per atomic, so the
/// insert's first (hint) load of the slot hides its CAS from a lookup that
/// ran before it: without the yield no explored execution has the lookup
/// find the block. And the lookup thread is not the table's creator: loom
/// never lets a thread read a stale value it saw before its last yield,
/// which would hide the initial length from the creator.
fn huge_table_publishes_lengths() {
    use vvmalloc::heap::ModelHugeTable;
    let t = Arc::new(ModelHugeTable::new(2));
    let other = {
        let t = t.clone();
        thread::spawn(move || {
            assert!(t.insert(0x4000_0000, 3 << 20));
            assert!(t.offer(0x8000_0000, 5 << 20));
        })
    };
    let lookups = {
        let t = t.clone();
        thread::spawn(move || {
            thread::yield_now();
            if let Some(len) = t.len_of(0x4000_0000) {
                assert_eq!(len, 3 << 20, "a huge block found before its length");
            }
            if let Some((addr, len)) = t.claim() {
                assert_eq!(
                    (addr, len),
                    (0x8000_0000, 5 << 20),
                    "a cached mapping claimed before its length"
                );
            }
        })
    };
    other.join().unwrap();
    lookups.join().unwrap();
}

/// Two frees of one huge block race a new block's insert into the only
/// slot: exactly one free wins (the other is a detected double free), the
/// insert can reuse the slot only once it is tombstoned, and afterwards
/// the table holds exactly what the winners left.
fn huge_table_double_free_races_reuse() {
    use vvmalloc::heap::ModelHugeTable;
    let t = Arc::new(ModelHugeTable::new(1));
    assert!(t.insert(0x4000_0000, 3 << 20));
    let frees: Vec<_> = (0..2)
        .map(|_| {
            let t = t.clone();
            thread::spawn(move || t.remove(0x4000_0000))
        })
        .collect();
    let inserted = t.insert(0x8000_0000, 7 << 20);
    let won: Vec<_> = frees
        .into_iter()
        .filter_map(|f| f.join().unwrap())
        .collect();
    assert_eq!(won, [3 << 20], "not exactly one free of a huge block won");
    assert_eq!(t.len_of(0x4000_0000), None);
    if inserted {
        assert_eq!(t.len_of(0x8000_0000), Some(7 << 20));
    }
}

/// A cached mapping that one claimer puts back (it does not fit) keeps its
/// length for the next claimer, which may read the put-back's key and not
/// the offer's: the put-back must publish what the offer did.
fn huge_cache_put_back_keeps_the_length() {
    use vvmalloc::heap::ModelHugeTable;
    let t = Arc::new(ModelHugeTable::new(1));
    let offer = {
        let t = t.clone();
        thread::spawn(move || assert!(t.offer(0x8000_0000, 5 << 20)))
    };
    let misfit = {
        let t = t.clone();
        thread::spawn(move || t.claim_misfit())
    };
    if let Some(got) = t.claim() {
        assert_eq!(
            got,
            (0x8000_0000, 5 << 20),
            "a put-back mapping lost its length"
        );
    }
    offer.join().unwrap();
    misfit.join().unwrap();
}

#[test]
fn huge_cache_put_back_publishes_the_length() {
    model(huge_cache_put_back_keeps_the_length);
}

#[test]
fn huge_table_lookups_see_published_lengths() {
    model(huge_table_publishes_lengths);
}

#[test]
fn huge_table_double_free_wins_once_and_slots_are_reused() {
    model(huge_table_double_free_races_reuse);
}

/// Runs `f` under loom with the huge table's seeded `bug`, which must fail
/// with `report`.
fn assert_huge_bug_caught(bug: vvmalloc::heap::HugeTableBug, f: fn(), report: &str) {
    use vvmalloc::heap::{seeded_huge_table_bug, HugeTableBug};
    assert_seeded_bug_caught(
        |on| seeded_huge_table_bug(if on { bug } else { HugeTableBug::None }),
        f,
        &[report],
    );
}

/// Seeded: `insert` and `offer` publish the key before the length. A
/// lookup that sees the key reads the slot's old length.
#[test]
fn seeded_huge_table_key_before_length_is_caught() {
    assert_huge_bug_caught(
        vvmalloc::heap::HugeTableBug::KeyBeforeLength,
        huge_table_publishes_lengths,
        "before its length",
    );
}

/// Seeded: `remove` ignores the result of its CAS, so both frees of one
/// block win (and the block would be unmapped twice).
#[test]
fn seeded_huge_table_remove_ignoring_its_cas_is_caught() {
    assert_huge_bug_caught(
        vvmalloc::heap::HugeTableBug::RemoveIgnoresCas,
        huge_table_double_free_races_reuse,
        "not exactly one free",
    );
}
