//! A `Heap` driven by arbitrary allocation, free and realloc sequences with
//! every alignment, through the cache-less path and a thread cache, sized
//! and unsized frees. Checked on every step, as the trace driver checks:
//! every block is aligned, overlaps no live block, is at least as usable
//! as asked, and keeps its bytes until freed (`realloc` keeps the common
//! prefix); the heap reports no misuse and, once all is freed, nothing in
//! use. Each input runs twice: on an unchecked heap and on a checked one
//! (guards and double-free bits on small blocks; a report aborts, which
//! libFuzzer takes for a crash).
#![no_main]

use std::alloc::Layout;
use std::collections::BTreeMap;
use std::sync::LazyLock;

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use vvmalloc::heap::HeapConfig;
use vvmalloc::Heap;

/// One heap for the whole run (an arena per input would be slow); each
/// input frees everything it allocated.
static HEAP: LazyLock<Heap> = LazyLock::new(|| heap(false));
static CHECKED: LazyLock<Heap> = LazyLock::new(|| heap(true));

fn heap(checked: bool) -> Heap {
    Heap::with_config(HeapConfig {
        // Reserved, not committed: room for 256 blocks of 4 MiB.
        arena_bytes: 16 << 30,
        checked,
        ..HeapConfig::new()
    })
}

#[derive(Arbitrary, Debug)]
enum Size {
    Small(u16),
    Large(u16),
    Huge(u8),
}

impl Size {
    fn bytes(&self) -> usize {
        match *self {
            Size::Small(n) => 1 + (n as usize % 16384),
            Size::Large(n) => 16385 + (n as usize) * 64,
            Size::Huge(n) => (16 << 20) + (n as usize % 4) * (1 << 20),
        }
    }
}

#[derive(Arbitrary, Debug)]
enum Op {
    Alloc {
        size: Size,
        align_log: u8,
        zeroed: bool,
        cached: bool,
    },
    Free {
        slot: u8,
        unsized_free: bool,
        cached: bool,
    },
    Realloc {
        slot: u8,
        size: Size,
        cached: bool,
    },
}

struct Block {
    p: usize,
    layout: Layout,
    seed: u8,
}

fn fill(b: &Block) {
    let p = b.p as *mut u8;
    // First and last 64 bytes, and one byte per 4 KiB: enough to see a
    // block handed out twice or moved without its contents.
    for i in probes(b.layout.size()) {
        // SAFETY: `i < size` of a live block of ours.
        unsafe { p.add(i).write(b.seed.wrapping_add(i as u8)) };
    }
}

fn check(b: &Block, len: usize) {
    let p = b.p as *const u8;
    for i in probes(len) {
        // SAFETY: as in `fill`.
        let got = unsafe { p.add(i).read() };
        assert_eq!(
            got,
            b.seed.wrapping_add(i as u8),
            "byte {i} of a block changed"
        );
    }
}

/// The probes of the first `len` bytes that every block longer than `len`
/// also wrote: the first 64 bytes and one per 4 KiB.
fn check_prefix(b: &Block, len: usize) {
    let p = b.p as *const u8;
    for i in (0..len.min(64)).chain((4096..len).step_by(4096)) {
        // SAFETY: as in `fill`.
        let got = unsafe { p.add(i).read() };
        assert_eq!(
            got,
            b.seed.wrapping_add(i as u8),
            "byte {i} not kept by realloc"
        );
    }
}

fn probes(size: usize) -> impl Iterator<Item = usize> {
    let head = 0..size.min(64);
    let tail = size.saturating_sub(64).max(64)..size;
    head.chain(tail).chain((4096..size).step_by(4096))
}

fuzz_target!(|ops: Vec<Op>| {
    run(&HEAP, &ops);
    run(&CHECKED, &ops);
});

fn run(heap: &Heap, ops: &[Op]) {
    let local = heap.local();
    let mut live: Vec<Block> = Vec::new();
    // Live blocks by address: start -> end.
    let mut spans: BTreeMap<usize, usize> = BTreeMap::new();
    let mut seed = 0u8;
    let insert = |spans: &mut BTreeMap<usize, usize>, p: usize, len: usize| {
        if let Some((&s, &e)) = spans.range(..p + len).next_back() {
            assert!(
                e <= p || s >= p + len,
                "block {p:#x}+{len} overlaps {s:#x}..{e:#x}"
            );
        }
        spans.insert(p, p + len);
    };
    for op in ops.iter().take(256) {
        match op {
            Op::Alloc {
                size,
                align_log,
                zeroed,
                cached,
            } => {
                let size = size.bytes();
                let align = 1usize << (align_log % 13);
                let layout = Layout::from_size_align(size, align).unwrap();
                let p = match (zeroed, cached) {
                    (true, _) => heap.alloc_zeroed(layout),
                    (false, true) => local.alloc(layout),
                    (false, false) => heap.alloc(layout),
                };
                assert!(!p.is_null(), "{layout:?} failed");
                assert_eq!(p as usize % align, 0, "misaligned {layout:?}");
                let usable = heap.usable_size(p);
                assert!(usable.is_some_and(|u| u >= size));
                if heap.config().checked && size + 8 <= vvmalloc::heap::SMALL_MAX {
                    assert_eq!(usable, Some(size), "a checked small block's usable size");
                }
                if *zeroed {
                    for i in probes(size) {
                        // SAFETY: a live block of `size` bytes.
                        assert_eq!(unsafe { p.add(i).read() }, 0, "alloc_zeroed byte {i}");
                    }
                }
                insert(&mut spans, p as usize, size);
                seed = seed.wrapping_add(1);
                let b = Block {
                    p: p as usize,
                    layout,
                    seed,
                };
                fill(&b);
                live.push(b);
            }
            Op::Free {
                slot,
                unsized_free,
                cached,
            } => {
                if live.is_empty() {
                    continue;
                }
                let b = live.swap_remove(*slot as usize % live.len());
                check(&b, b.layout.size());
                spans.remove(&b.p);
                // SAFETY: a live block of this heap with this layout.
                unsafe {
                    match (unsized_free, cached) {
                        (true, _) => heap.free(b.p as *mut u8),
                        (false, true) => local.dealloc(b.p as *mut u8, b.layout),
                        (false, false) => heap.dealloc(b.p as *mut u8, b.layout),
                    }
                }
            }
            Op::Realloc { slot, size, cached } => {
                if live.is_empty() {
                    continue;
                }
                let i = *slot as usize % live.len();
                let new = size.bytes();
                let old = &live[i];
                check(old, old.layout.size());
                spans.remove(&old.p);
                // SAFETY: as above; `new` is non-zero.
                let q = unsafe {
                    if *cached {
                        local.realloc(old.p as *mut u8, old.layout, new)
                    } else {
                        heap.realloc(old.p as *mut u8, old.layout, new)
                    }
                };
                assert!(!q.is_null(), "realloc to {new} failed");
                let align = old.layout.align();
                assert_eq!(q as usize % align, 0);
                let moved = Block {
                    p: q as usize,
                    layout: Layout::from_size_align(new, align).unwrap(),
                    seed: old.seed,
                };
                check_prefix(&moved, old.layout.size().min(new));
                insert(&mut spans, q as usize, new);
                fill(&moved);
                live[i] = moved;
            }
        }
    }
    for b in live.drain(..) {
        check(&b, b.layout.size());
        // SAFETY: as above.
        unsafe { heap.dealloc(b.p as *mut u8, b.layout) };
    }
    drop(local);
    let st = heap.stats();
    assert_eq!(st.misuse, 0);
    assert_eq!(st.in_use_bytes, 0, "{st:?}");
}
