//! Large blocks: the large-block cache, double frees of one block, the free index.

use super::*;

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
