//! A span's record, and what a *page* (a span of one size class) does with
//! it: hand out blocks from its free list, take the blocks other threads
//! freed into it, and carve more blocks as it needs them.
//!
//! A page belongs to at most one *owner* at a time: a thread heap
//! ([`ThreadHeap`](super::thread_heap::ThreadHeap)), or whoever popped it
//! from one of the shared page stacks (see [`pool`](super::pool)). Only the
//! owner touches the page's [`Owned`] part. Any thread may free a block of a
//! page it does not own: one CAS pushes the block on the page's
//! `thread_free` list (the structure of [`IntrusiveTakeAll`]); the owner
//! takes the whole list with one swap when its own free list runs dry.
//!
//! [`IntrusiveTakeAll`]: crate::take_all::IntrusiveTakeAll

use core::ptr;

use super::class::{self, blocks_per_span, CLASS_SIZES, SPAN};
use crate::intrusive::Link;
use crate::sync::{AtomicU32, AtomicUsize, Ordering, UnsafeCell};
use crate::take_all::IntrusiveTakeAll;

/// `SpanMeta::kind` of a span in no use (in a pool of free spans).
pub(crate) const KIND_FREE: u32 = 0;
/// `SpanMeta::kind` of a span of large blocks.
pub(crate) const KIND_LARGE: u32 = 0x100;
/// `SpanMeta::kind` of a span of batch descriptors.
pub(crate) const KIND_META: u32 = 0x200;

/// The page is in its owner's list of pages with free blocks (or is
/// being handled by a cache-less operation or a trim).
pub(crate) const LISTED: u8 = 0;
/// The page is in its owner's list of full pages.
pub(crate) const FULL: u8 = 1;

/// A span's record in the side table in front of the arena. Never freed
/// while the heap lives: type-stable memory for the stacks of spans.
///
/// A cache line of its own: the records of neighbouring spans are written
/// on the fast paths of different threads (each its own page's `own`), and
/// sharing a line between them made two threads on two cores run at half
/// the speed of one (the line moving between the cores on every call).
#[repr(C, align(64))]
pub(crate) struct SpanMeta {
    /// The link of whichever stack of spans holds this one (the pools of
    /// free spans, the stacks of abandoned and full pages). First field:
    /// the stacks hand out `*mut Link`s that are `*mut SpanMeta`s.
    pub(crate) link: Link,
    /// `KIND_FREE`, `1 + class` for a page, `KIND_LARGE`, `KIND_META`.
    /// Written by the thread that takes the span, before any block of it is
    /// handed out; read by a free of such a block, which the block's
    /// hand-off orders after the write (so `Relaxed` both sides).
    pub(crate) kind: AtomicU32,
    /// Blocks freed by threads that do not own the page.
    pub(crate) thread_free: IntrusiveTakeAll,
    /// The id of the thread heap that owns the page; 0 when no thread heap
    /// does (abandoned, full in a shared stack, or held for a moment by a
    /// cache-less operation or a trim). Written only by the owner (to its
    /// id when it adopts the page, to 0 when it lets it go), so a thread
    /// that reads its own id here is the owner: `Relaxed` is enough for
    /// that test. Whoever takes a page over acquires it through a stack of
    /// pages (or the fresh-span path), never through this word.
    pub(crate) owner: AtomicUsize,
    /// The owner's part (see [`Owned`]).
    pub(crate) own: UnsafeCell<Owned>,
}

/// The part of a page only its owner touches: plain memory, no atomics.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Owned {
    /// Free blocks, linked through their first words.
    pub(crate) free: *mut u8,
    /// Blocks handed out and not yet back on `free` (a block in
    /// `thread_free` still counts).
    pub(crate) used: u32,
    /// The value of `used` last added to the class's statistics, less the
    /// remote frees collected since (their freers count them).
    pub(crate) reported: u32,
    /// Blocks carved from the span so far (the rest is untouched memory).
    pub(crate) carved: u32,
    /// `LISTED` or `FULL`.
    pub(crate) state: u8,
    /// The owner's list of pages of this class (`LISTED` or `FULL`).
    pub(crate) next: *mut SpanMeta,
    pub(crate) prev: *mut SpanMeta,
}

impl Owned {
    /// A page with nothing carved.
    pub(crate) const EMPTY: Owned = Owned {
        free: ptr::null_mut(),
        used: 0,
        reported: 0,
        carved: 0,
        state: LISTED,
        next: ptr::null_mut(),
        prev: ptr::null_mut(),
    };
}

impl SpanMeta {
    /// A record of a free span (under loom the side table is built of
    /// these; elsewhere zeroed memory is the same thing).
    #[cfg(loom)]
    pub(crate) fn new() -> Self {
        Self {
            link: Link::new(),
            kind: AtomicU32::new(KIND_FREE),
            thread_free: IntrusiveTakeAll::new(),
            owner: AtomicUsize::new(0),
            own: UnsafeCell::new(Owned::EMPTY),
        }
    }

    /// The span's first byte, for a record at `unit` of the arena at `data`.
    #[inline]
    pub(crate) fn span(data: *mut u8, unit: usize) -> *mut u8 {
        data.wrapping_add(unit * SPAN)
    }

    /// Runs `f` on the owner's part.
    ///
    /// # Safety
    ///
    /// The caller owns the page (see the module documentation), and `f`
    /// does not reach this page's `own` again.
    #[inline(always)]
    pub(crate) unsafe fn own<R>(&self, f: impl FnOnce(&mut Owned) -> R) -> R {
        // SAFETY: the caller's contract: the owner alone touches `own`.
        self.own.with_mut(|o| f(unsafe { &mut *o }))
    }

    /// Makes the span at `span` a page of class `c`, owned by `owner`
    /// (0: by the caller without a thread heap). Nothing is carved yet.
    ///
    /// # Safety
    ///
    /// The span is the caller's alone (just taken from a pool of free
    /// spans or the arena's bump), and is `span`'s record's.
    pub(crate) unsafe fn format(&self, c: usize, owner: usize) {
        // SAFETY: the caller's contract: nobody else knows the span.
        unsafe { self.own(|o| *o = Owned::EMPTY) };
        // Relaxed: see `kind`.
        self.kind.store(1 + c as u32, Ordering::Relaxed);
        // Relaxed: see `owner`.
        self.owner.store(owner, Ordering::Relaxed);
    }

    /// Takes the blocks other threads freed into the page; returns how
    /// many. Cheap when there are none (one load).
    ///
    /// # Safety
    ///
    /// The caller owns the page.
    #[inline]
    pub(crate) unsafe fn collect(&self) -> u32 {
        let chain = self.thread_free.take_all();
        if chain.is_null() {
            return 0;
        }
        let mut n = 1;
        let mut last = chain;
        // SAFETY: the chain is ours now (`take_all`'s Acquire pairs with
        // each push's Release, so every link written before a push is
        // visible), and its blocks are free blocks of this page.
        unsafe {
            loop {
                let next = next_of(last);
                if next.is_null() {
                    break;
                }
                last = next;
                n += 1;
            }
            self.own(|o| {
                set_next(last, o.free);
                o.free = chain;
                o.used -= n;
                // Whoever freed them counted them in the statistics.
                o.reported = o.reported.wrapping_sub(n);
            });
        }
        n
    }

    /// Puts more blocks on the free list: the remote frees, else a batch
    /// carved from the untouched rest of the span. `false` when the page
    /// is full (every block handed out and none freed).
    ///
    /// # Safety
    ///
    /// The caller owns the page, a page of class `c` at `span`.
    pub(crate) unsafe fn refill(&self, c: usize, span: *mut u8) -> bool {
        // SAFETY: the caller's contract.
        if unsafe { self.own(|o| !o.free.is_null()) || self.collect() > 0 } {
            return true;
        }
        let size = CLASS_SIZES[c] as usize;
        let bps = blocks_per_span(c) as u32;
        // SAFETY: the caller's contract; the blocks carved are untouched
        // memory of the span, the owner's alone.
        unsafe {
            self.own(|o| {
                if o.carved == bps {
                    return false;
                }
                let take = (class::batch(c) as u32).min(bps - o.carved);
                let start = span.wrapping_add(o.carved as usize * size);
                for i in 0..take as usize {
                    let p = start.wrapping_add(i * size);
                    let next = if i + 1 < take as usize {
                        p.wrapping_add(size)
                    } else {
                        o.free
                    };
                    set_next(p, next);
                }
                o.free = start;
                o.carved += take;
                true
            })
        }
    }

    /// Takes a block off the free list (null when it is empty).
    ///
    /// # Safety
    ///
    /// The caller owns the page.
    #[inline(always)]
    pub(crate) unsafe fn pop(&self) -> *mut u8 {
        // SAFETY: the caller's contract; blocks on the free list are free
        // and hold the next one in their first word.
        unsafe {
            self.own(|o| {
                let p = o.free;
                if !p.is_null() {
                    o.free = next_of(p);
                    o.used += 1;
                }
                p
            })
        }
    }

    /// Frees a block of a page the caller does not own (or may not own):
    /// one CAS on the page's `thread_free` list.
    ///
    /// # Safety
    ///
    /// `p` is a block of this page, handed out and not used afterwards.
    #[inline]
    pub(crate) unsafe fn free_remote(&self, p: *mut u8) {
        // SAFETY: the caller's contract: the block is ours to link.
        unsafe { self.thread_free.push(p) };
    }
}

/// The next block of a free chain, stored in the block's first word.
///
/// # Safety
///
/// `p` is a free block owned by the caller.
#[inline(always)]
pub(crate) unsafe fn next_of(p: *mut u8) -> *mut u8 {
    // SAFETY: free blocks are at least 16 bytes and 16-aligned, owned by the
    // caller (contract).
    unsafe { p.cast::<*mut u8>().read() }
}

/// # Safety
///
/// As for [`next_of`].
#[inline(always)]
pub(crate) unsafe fn set_next(p: *mut u8, next: *mut u8) {
    // SAFETY: as in `next_of`.
    unsafe { p.cast::<*mut u8>().write(next) }
}
