//! Loom models of the allocator's concurrent paths, on `Heap` instances and
//! on the structures it is made of, with a deliberately broken variant that
//! loom must catch.
//!
//! Run with `RUSTFLAGS="--cfg loom" cargo test --release --test loom_heap`.
//!
//! - `IntrusiveStack` (the central heaps' and pools' stack): the ABA
//!   schedule (one thread pops while another pops two nodes and pushes the
//!   first back) leaves every node owned once; the untagged variant is
//!   caught.
//! - Batch exchange and cross-thread free: two thread caches on one heap,
//!   one allocating and handing blocks over, the other freeing them; blocks
//!   are never handed out twice, and the heap's counts add up.
//! - The free index: concurrent claims and returns of the large heap's free
//!   runs claim each run once and lose none.

#![cfg(loom)]

mod common;

use std::alloc::Layout;
use std::collections::BTreeSet;
use std::ptr::NonNull;

use common::{model, Outcomes};
use loom::sync::{Arc, Mutex};
use loom::thread;
use vvmalloc::heap::{FreeIndex, HeapConfig, SkipIndex};
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

/// A small checked heap, built on a loom thread with a 1 MiB stack: `Heap`
/// is a large struct (its per-class state is inline), and loom runs the
/// model's own thread on a 32 KiB stack, which building it overflowed.
fn heap() -> Arc<Heap> {
    thread::Builder::new()
        .stack_size(1 << 20)
        .spawn(|| {
            Arc::new(Heap::with_config(HeapConfig {
                arena_bytes: 2 << 20,
                checked: true,
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
