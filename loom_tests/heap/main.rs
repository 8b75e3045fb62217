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

#[path = "../common/mod.rs"]
mod common;
mod fork_gate;
mod huge;
mod intrusive;
mod large;
mod pages;

use std::alloc::Layout;
use std::collections::BTreeSet;
use std::ptr::NonNull;

use common::{assert_seeded_bug_caught, assert_seeded_race_caught, model, Outcomes};
use loom::sync::{Arc, Mutex};
use loom::thread;
use vvmalloc::heap::{seeded_page_bug, FreeIndex, HeapConfig, PageBug, SkipIndex, SPAN};
use vvmalloc::intrusive::{IntrusiveStack, Link};
use vvmalloc::Heap;

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
