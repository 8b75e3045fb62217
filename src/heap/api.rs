//! The heap's public allocation interface: [`Heap`]'s cache-less
//! `alloc`, `dealloc`, `free`, `realloc`, `usable_size`, `trim` and
//! `stats`, and its [`GlobalAlloc`] and `Allocator` implementations.

use core::alloc::{GlobalAlloc, Layout};
use core::ptr::NonNull;

use super::checked;
use super::class::{CLASSES, CLASS_SIZES};
use super::index::FreeIndex;
use super::instance::Heap;
use super::large::Entry;
use super::large_cache::LARGE_CACHE_PAGES;
use super::os::{self, PAGE};
use super::page::KIND_LARGE;
use super::state::Core;
use super::stats::{ClassStats, Stats};
use crate::sync::Ordering;

impl<I: FreeIndex> Heap<I> {
    /// Allocates a block for `layout` (cache-less path). Null when the
    /// request cannot be served.
    #[inline]
    pub fn alloc(&self, layout: Layout) -> *mut u8 {
        self.alloc_in(None, layout)
    }

    /// As [`alloc`](Self::alloc), with the block zeroed.
    pub fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        self.alloc_zeroed_in(None, layout)
    }

    /// Frees a block (cache-less path).
    ///
    /// # Safety
    ///
    /// `p` was returned by this heap (through any of its paths) for
    /// `layout`, or by a [`realloc`](Self::realloc) to `layout.size()`, and
    /// is not used afterwards.
    #[inline]
    pub unsafe fn dealloc(&self, p: *mut u8, layout: Layout) {
        // SAFETY: the caller's contract.
        unsafe { self.dealloc_in(None, p, layout) }
    }

    /// Frees a block without being told its size, as C's `free` does
    /// (cache-less path). Null is ignored.
    ///
    /// The size comes from the block itself: its span's class for a small
    /// block, a per-page record for a large one, the table of huge blocks for
    /// a huge one. [`Stats::requested_bytes`] then drops by the block's
    /// usable size, so allocate such blocks at their
    /// [`good_size`](super::good_size) to keep that counter exact.
    ///
    /// ```
    /// # if vvmalloc::LOOM_BUILD || cfg!(miri) { return; } // Miri has no mmap(PROT_NONE)
    /// use std::alloc::Layout;
    /// use vvmalloc::Heap;
    ///
    /// let heap = Heap::new();
    /// for size in [24, 100_000, 20 << 20] {
    ///     let p = heap.alloc(Layout::from_size_align(size, 16).unwrap());
    ///     assert!(heap.usable_size(p).unwrap() >= size);
    ///     // SAFETY: `p` came from `heap` and is not used again.
    ///     unsafe { heap.free(p) };
    /// }
    /// assert_eq!(heap.stats().in_use_bytes, 0);
    /// ```
    ///
    /// # Safety
    ///
    /// `p` is null or was returned by this heap and is not used afterwards.
    /// A pointer the heap can tell it never returned (or a large or huge
    /// block freed twice) is counted as misuse, not freed.
    pub unsafe fn free(&self, p: *mut u8) {
        // SAFETY: the caller's contract.
        unsafe { self.release_in(None, p, None) }
    }

    /// The usable size of the block at `p`: at least what was asked for,
    /// and all of it may be used (exactly what was asked for, for a small
    /// block of a [checked](super::HeapConfig::checked) heap). `None` for null and
    /// for a pointer that is not the start of a block of this heap (as far
    /// as the heap can tell: a free small block still reports its class
    /// size).
    pub fn usable_size(&self, p: *const u8) -> Option<usize> {
        let core = &self.core;
        let p = p.cast_mut();
        if let Some(data) = core.arena_of(p) {
            let unit = Core::unit_of(data, p);
            // Relaxed: see `SpanMeta::kind`.
            let kind = core.meta(data, unit).kind.load(Ordering::Relaxed);
            if kind == KIND_LARGE {
                if p as usize % PAGE != 0 {
                    return None;
                }
                // Relaxed: see `alloc_large`.
                let pages = Entry::decode(core.page_entry(data, p).load(Ordering::Relaxed)).pages;
                return (pages > 0).then_some(pages * PAGE);
            }
            let cs = CLASS_SIZES[Core::small_class_at(data, unit, kind, p).ok()?] as usize;
            if core.checks_decided() {
                // SAFETY: `p` starts a small block of `cs` bytes; its guard
                // may be read (a live block's, by the caller's use of it).
                return unsafe { checked::guarded_size(p, cs) };
            }
            Some(cs)
        } else {
            core.huge.len_of(p as usize)
        }
    }

    /// Resizes a block, in place where it can (cache-less path).
    ///
    /// # Safety
    ///
    /// As for [`dealloc`](Self::dealloc); `new_size`, rounded up to
    /// `layout.align()`, does not overflow `isize`. On success `p` must not
    /// be used any more; on failure (null) it stays valid.
    pub unsafe fn realloc(&self, p: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: the caller's contract.
        unsafe { self.realloc_in(None, p, layout, new_size) }
    }

    /// Gives back to the OS all the memory it can now: takes back the
    /// empty pages no thread heap owns, gives the pool of empty pages back,
    /// and releases the pages of every free large run. Returns the bytes it
    /// released. (Pages a live thread heap owns are that heap's:
    /// [`LocalHeap::flush`](super::LocalHeap::flush) hands its empty ones over.)
    pub fn trim(&self) -> usize {
        let released = self.core.trim_pages();
        // Acquire: as in `Core::arena`.
        let data = self.core.data.load(Ordering::Acquire);
        for pages in 1..=LARGE_CACHE_PAGES {
            while let Some(p) = self.core.cache_take(pages) {
                self.free_run(data, p as usize, pages * PAGE);
            }
        }
        released + self.trim_large(PAGE) + self.core.huge_cache_drain()
    }

    /// The heap's statistics: cheap counters, plus one `mincore` walk of the
    /// used part of the arena for the resident bytes.
    pub fn stats(&self) -> Stats {
        let core = &self.core;
        let classes: [ClassStats; CLASSES] = core::array::from_fn(|c| ClassStats {
            size: CLASS_SIZES[c] as usize,
            in_use_blocks: core.pages[c].in_use.load().max(0) as usize,
            spans: core.pages[c].spans.load(),
        });
        // Relaxed: read for the statistics only (what it bounds, the used
        // part of the arena, stays mapped).
        let bump = core.bump.load(Ordering::Relaxed);
        let huge = core.huge_bytes.load();
        // Acquire: as in `Core::arena`.
        let data = core.data.load(Ordering::Acquire);
        let resident = if data.is_null() {
            0
        } else {
            // SAFETY: the used part of the arena is mapped.
            unsafe { os::resident(data, bump) }.unwrap_or(bump)
        };
        let small_in_use: usize = classes.iter().map(|c| c.in_use_blocks * c.size).sum();
        let large = core.large_in_use.load();
        Stats {
            requested_bytes: (core.requested.load()
                + core.pages.iter().map(|k| k.requested.load()).sum::<isize>())
            .max(0) as usize,
            in_use_bytes: small_in_use + large + huge,
            mapped_bytes: bump + huge + core.huge_cached.load(),
            resident_bytes: resident + huge,
            small: classes,
            large_in_use_bytes: large,
            free_index_blocks: self.index.len(),
            free_index_bytes: core.large_free.load(),
            large_cache_bytes: core.large_cached.load(),
            reclaim_held_nodes: self.index.held_back(),
            huge_blocks: core.huge_blocks.load(),
            huge_bytes: huge,
            spans_released: core.spans_released.load(),
            empty_page_bytes: core.dirty_bytes.load(),
            misuse: core.misuse.load(),
            arena_bytes: core.arena_bytes,
        }
    }

    // ----- the paths shared by the cache-less API and `LocalHeap` -----
}

// SAFETY: `alloc` returns null or a block of at least `layout.size()` bytes
// aligned to `layout.align()` that no other live allocation overlaps;
// `dealloc` and `realloc` follow `GlobalAlloc`'s contracts (see the methods).
unsafe impl<I: FreeIndex> GlobalAlloc for Heap<I> {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        Heap::alloc(self, layout)
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        Heap::alloc_zeroed(self, layout)
    }

    #[inline]
    unsafe fn dealloc(&self, p: *mut u8, layout: Layout) {
        // SAFETY: `GlobalAlloc::dealloc`'s contract is ours.
        unsafe { Heap::dealloc(self, p, layout) }
    }

    unsafe fn realloc(&self, p: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: `GlobalAlloc::realloc`'s contract is ours.
        unsafe { Heap::realloc(self, p, layout, new_size) }
    }
}

// SAFETY: blocks stay valid until deallocated or the heap is dropped (which
// the borrow `&Heap` prevents while the allocator is in use); a block of
// `allocate` fits its layout; `grow`/`shrink` use `realloc`, which keeps the
// contents.
unsafe impl<I: FreeIndex> allocator_api2::alloc::Allocator for &Heap<I> {
    fn allocate(&self, layout: Layout) -> Result<NonNull<[u8]>, allocator_api2::alloc::AllocError> {
        let p = Heap::alloc(self, layout);
        NonNull::new(p)
            .map(|p| NonNull::slice_from_raw_parts(p, layout.size()))
            .ok_or(allocator_api2::alloc::AllocError)
    }

    unsafe fn deallocate(&self, p: NonNull<u8>, layout: Layout) {
        // SAFETY: `Allocator::deallocate`'s contract is ours.
        unsafe { Heap::dealloc(self, p.as_ptr(), layout) }
    }
}
