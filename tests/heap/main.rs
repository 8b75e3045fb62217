//! Tests of `Heap` instances: every path, each free index, properties,
//! threads, memory given back, misuse and failure.

#![cfg(not(loom))]

use std::alloc::Layout;
use std::collections::BTreeMap;

use proptest::prelude::*;
use vvmalloc::heap::{BTreeIndex, FreeIndex, HeapConfig, ListIndex, SkipIndex, HUGE_MIN};
use vvmalloc::reclaim::Hazard;
use vvmalloc::Heap;

mod failure;
mod misuse;
mod props;
mod sizes;
mod threads;

/// Address space of the tests' heaps: under Miri every byte of it is a
/// real (zeroed) allocation, so it is small there.
const ARENA: usize = if cfg!(miri) { 64 << 20 } else { 4 << 30 };

fn small_heap<I: FreeIndex>() -> Heap<I> {
    Heap::with_config(HeapConfig {
        arena_bytes: ARENA,
        checked: false,
    })
}

fn fill(p: *mut u8, len: usize, seed: u8) {
    for i in 0..len {
        // SAFETY: the callers pass live blocks of at least `len` bytes.
        unsafe { p.add(i).write(seed.wrapping_add(i as u8)) };
    }
}

fn check(p: *const u8, len: usize, seed: u8) -> bool {
    // SAFETY: as for `fill`.
    (0..len).all(|i| unsafe { p.add(i).read() } == seed.wrapping_add(i as u8))
}
