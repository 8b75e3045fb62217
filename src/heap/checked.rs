//! The checked mode's small-block checks: a bit per block that says whether
//! it is handed out (catches a small block freed twice, and a free list
//! corrupted into handing out a block in use), and a guard after the bytes
//! asked for (catches writes past the end).
//!
//! # Layout of a checked small block
//!
//! A request of `n` bytes is served from the class of `n + GUARD_WORD`:
//!
//! ```text
//! | n bytes for the caller | CANARY bytes ... | size record (8 bytes) |
//! ^ p                      ^ p + n            ^ p + class size - 8
//! ```
//!
//! The size record holds `n` and a check word derived from `n` and the
//! block's address, so a write past the end changes either a canary byte
//! or the record, and the free notices. Large and huge blocks have no
//! guard: a write past their end runs into an unmapped or another block's
//! page, which the large path does not check.
//!
//! # The handed-out bits
//!
//! One bit per 16-byte granule of the arena (every small block starts on
//! its own granule), in a mapping after the arena: `arena_bytes / 128`
//! bytes of address space, committed as touched. A block's bit is set when
//! it is handed out and cleared when it is freed, each with one atomic
//! read-modify-write that also reads the old value: a free that finds the
//! bit clear is a double free (or a free of a block never handed out), an
//! allocation that finds it set means the free lists hand out a block in
//! use (a write to a freed block overwrote its link). A span is released
//! only when all its blocks are free, so its bits are clear when it is
//! reused for another class.
//!
//! The mode is decided before the first block exists (at construction, or
//! for the process heap from `VVMALLOC_CHECKED` when the arena is
//! reserved) and never changes: a block's guard and bit are written by the
//! same mode that checks them.

use core::alloc::Layout;
use core::ptr;

use super::class::{self, CLASS_SIZES};
use super::index::FreeIndex;
use super::instance::Heap;
use super::state::{Core, CHECK_OFF, CHECK_ON};
use super::thread_heap::ThreadHeap;
use crate::sync::plain::{AtomicU64, Ordering};

/// Bytes of the size record at the end of a checked small block.
pub(super) const GUARD_WORD: usize = 8;
/// The byte written between the caller's bytes and the size record.
const CANARY: u8 = 0xcb;
/// Mixed into the size record's check word.
const KEY: u32 = 0x5bd1_e995;
/// Arena bytes per handed-out bit.
const GRANULE: usize = 16;

/// The size record of a block of `n` bytes at `p`.
fn record(p: *mut u8, n: usize) -> u64 {
    let check = (n as u32) ^ ((p as usize >> 4) as u32) ^ KEY;
    (n as u64) | (u64::from(check) << 32)
}

impl Core {
    /// Whether the checked mode is on, deciding it first if needed. The
    /// fast paths call this: one relaxed load when the mode is off.
    #[inline]
    pub(crate) fn checks(&self) -> bool {
        // Relaxed: a configuration flag, written once before the arena's
        // publication (the Release CAS in `reserve_arena`) or at
        // construction, and never changed after.
        match self.checked.load(Ordering::Relaxed) {
            CHECK_OFF => false,
            CHECK_ON => true,
            _ => self.decide_checks(),
        }
    }

    /// Whether the checked mode is on, once the arena exists (so decided).
    #[inline]
    pub(super) fn checks_decided(&self) -> bool {
        // Relaxed: as in `checks`.
        self.checked.load(Ordering::Relaxed) == CHECK_ON
    }

    /// Reserves the arena, which decides the mode from the environment.
    #[cold]
    pub(super) fn decide_checks(&self) -> bool {
        let _ = self.arena();
        self.checks_decided()
    }

    /// Bytes of the handed-out bitmap after the arena (0 when unchecked).
    pub(super) fn bits_bytes(&self) -> usize {
        if self.checks_decided() {
            (self.arena_bytes / GRANULE / 8).next_multiple_of(class::SPAN)
        } else {
            0
        }
    }

    /// The bitmap word holding the bit of the block at `p`, and its mask.
    pub(super) fn bit(&self, data: *mut u8, p: *mut u8) -> (&AtomicU64, u64) {
        let g = (p as usize - data as usize) / GRANULE;
        // SAFETY: checked mode: the bitmap, zero-initialised, one bit per
        // granule of the arena, lies right after the arena (see
        // `reserve_arena`) and lives as long as `self`; `p` is in the arena.
        let word = unsafe {
            &*data
                .wrapping_add(self.arena_bytes)
                .cast::<AtomicU64>()
                .add(g / 64)
        };
        (word, 1 << (g % 64))
    }

    /// Marks the small block at `p` handed out; false if it already was.
    pub(super) fn mark_handed_out(&self, data: *mut u8, p: *mut u8) -> bool {
        let (word, mask) = self.bit(data, p);
        // Relaxed: the block reached this thread through the free lists'
        // Release/Acquire hand-off, which orders this after its previous
        // owner's update of the bit; the other bits of the word belong to
        // other blocks and are only updated by read-modify-writes.
        word.fetch_or(mask, Ordering::Relaxed) & mask == 0
    }

    /// Marks the small block at `p` free; false if it already was.
    pub(super) fn mark_freed(&self, data: *mut u8, p: *mut u8) -> bool {
        let (word, mask) = self.bit(data, p);
        // Relaxed: as in `mark_handed_out` (the allocation that set the bit
        // happens before this free by the caller's contract; two racing
        // frees of one block are ordered by the word's modification order,
        // so exactly one finds the bit set).
        word.fetch_and(!mask, Ordering::Relaxed) & mask != 0
    }
}

impl<I: FreeIndex> Heap<I> {
    /// The checked mode's allocation: a small block with its guard and bit,
    /// or a large or huge block as usual.
    #[cold]
    #[inline(never)]
    pub(super) fn alloc_checked(&self, bins: Option<&mut ThreadHeap>, layout: Layout) -> *mut u8 {
        let core = &self.core;
        let n = layout.size();
        let Some(c) = n
            .checked_add(GUARD_WORD)
            .and_then(|t| class::class_of(t, layout.align()))
        else {
            return self.alloc_not_small(layout);
        };
        let p = self.alloc_small(bins, c, n);
        let Some(data) = core.arena_of(p) else {
            return p; // null
        };
        if !core.mark_handed_out(data, p) {
            core.misuse(
                "a small block in use was handed out again: the free lists are corrupt \
                 (a write to a freed block?)",
                p,
                &[],
            );
        }
        let cs = CLASS_SIZES[c] as usize;
        // SAFETY: the block is ours and has `cs >= n + GUARD_WORD` bytes.
        unsafe {
            ptr::write_bytes(p.add(n), CANARY, cs - GUARD_WORD - n);
            p.add(cs - GUARD_WORD)
                .cast::<u64>()
                .write_unaligned(record(p, n));
        }
        p
    }

    /// The checked mode's free of the small block of class `c` at `p`
    /// (`size`: what the caller says it asked for, if it says). Reports a
    /// double free, a damaged guard or a wrong size; else frees the block.
    ///
    /// # Safety
    ///
    /// `p` is the start of a block of class `c` in the arena at `data`.
    #[cold]
    #[inline(never)]
    pub(super) unsafe fn release_checked(
        &self,
        bins: Option<&mut ThreadHeap>,
        data: *mut u8,
        c: usize,
        p: *mut u8,
        size: Option<usize>,
    ) {
        let core = &self.core;
        if !core.mark_freed(data, p) {
            core.misuse(
                "double free of a small block (or a free of one never handed out)",
                p,
                &[],
            );
            return;
        }
        let cs = CLASS_SIZES[c] as usize;
        // SAFETY: the caller's contract: the block has `cs` bytes, and it is
        // handed out (its bit was set), so the caller owns them.
        let Some(n) = (unsafe { guarded_size(p, cs) }) else {
            core.misuse(
                "write past the end of a small block (its size record, the last 8 bytes \
                 of the block, was overwritten)",
                p,
                &[("block bytes", cs)],
            );
            return;
        };
        // SAFETY: as above; `n + GUARD_WORD <= cs` (checked by `guarded_size`).
        let canary = unsafe { core::slice::from_raw_parts(p.add(n), cs - GUARD_WORD - n) };
        if let Some(k) = canary.iter().position(|&b| b != CANARY) {
            core.misuse(
                "write past the end of a small block",
                p,
                &[("bytes requested", n), ("first byte overwritten", n + k)],
            );
            return;
        }
        if let Some(s) = size.filter(|&s| s != n) {
            core.misuse(
                "free with a size other than the block's",
                p,
                &[("size given", s), ("size allocated", n)],
            );
            return;
        }
        let m = core.meta(data, Core::unit_of(data, p));
        // SAFETY: the caller's contract; the block is handed out (its bit
        // was set) and ours now.
        unsafe { self.free_small(bins, c, m, p, n) };
    }
}

/// The size recorded in the guard of the checked block at `p` of `cs`
/// bytes, or `None` if the record is damaged.
///
/// # Safety
///
/// `p` is a small block of `cs` bytes that may be read.
pub(super) unsafe fn guarded_size(p: *mut u8, cs: usize) -> Option<usize> {
    // SAFETY: the caller's contract; `cs >= 16`.
    let r = unsafe { p.add(cs - GUARD_WORD).cast::<u64>().read_unaligned() };
    let n = (r & 0xffff_ffff) as usize;
    (n + GUARD_WORD <= cs && record(p, n) == r).then_some(n)
}
