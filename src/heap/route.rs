//! Where each request goes: small blocks to the thread heap or the shared
//! pages, large ones to the large heap, huge ones to their own mapping;
//! the paths shared by every front door (`Heap`, `LocalHeap`, `VvMalloc`).

use core::alloc::Layout;
use core::ptr;

use super::class::{self, CLASS_SIZES, HUGE_MIN};
use super::index::FreeIndex;
use super::instance::Heap;
use super::large::growth_reserve;
use super::os::{self, PAGE};
use super::page::{SpanMeta, KIND_LARGE};
use super::state::Core;
use super::thread_heap::ThreadHeap;
use crate::sync::Ordering;

/// A `realloc` that grows a block to at least this many bytes moves it to
/// a large block with a growth reserve, even below the large range: a
/// block that grows keeps growing, and in the small classes every step
/// would copy it.
const GROW_LARGE_MIN: usize = 4096;

impl<I: FreeIndex> Heap<I> {
    #[inline]
    pub(crate) fn alloc_in(&self, bins: Option<&mut ThreadHeap>, layout: Layout) -> *mut u8 {
        if self.core.checks() {
            return self.alloc_checked(bins, layout);
        }
        match class::class_of(layout.size().max(1), layout.align()) {
            Some(c) => self.alloc_small(bins, c, layout.size()),
            None => self.alloc_not_small(layout),
        }
    }

    /// A block of class `c` from the cache or the shared path, with `size`
    /// bytes counted as requested.
    #[inline]
    pub(crate) fn alloc_small(
        &self,
        bins: Option<&mut ThreadHeap>,
        c: usize,
        size: usize,
    ) -> *mut u8 {
        match bins {
            Some(b) => {
                // The cache counts the requested bytes itself (no atomic
                // read-modify-write on the fast path).
                let p = b.alloc(&self.core, c);
                if !p.is_null() {
                    b.requested += size as isize;
                }
                p
            }
            None => {
                let p = self.core.alloc_small_shared(c);
                if !p.is_null() {
                    self.core.requested.fetch_add(size as isize);
                }
                p
            }
        }
    }

    /// Frees the block of class `c` at `p`, whose page is `m`, through the
    /// thread heap or as a remote free, with `size` requested bytes
    /// uncounted.
    ///
    /// # Safety
    ///
    /// `p` is a block of the page `m` of class `c`, handed out and not used
    /// afterwards.
    #[inline]
    pub(crate) unsafe fn free_small(
        &self,
        bins: Option<&mut ThreadHeap>,
        c: usize,
        m: &SpanMeta,
        p: *mut u8,
        size: usize,
    ) {
        match bins {
            Some(b) => {
                b.requested -= size as isize;
                // SAFETY: the caller's contract.
                unsafe { b.free(&self.core, c, m, p) };
            }
            None => {
                self.core.requested.fetch_sub(size as isize);
                // Relaxed: see `SpanMeta::owner` (a heuristic here).
                let orphan = m.owner.load(Ordering::Relaxed) == 0;
                // SAFETY: the caller's contract.
                unsafe { m.free_remote(p) };
                // The page's owner does not count the block when it
                // collects it: we do.
                self.core.add_in_use(c, -1);
                if orphan {
                    self.core.orphan_free(c);
                }
            }
        }
    }

    /// The fast path of a small free through a thread heap: a block of a
    /// page of the arena, unchecked mode. `false` (nothing done) for
    /// anything else, which the caller sends down the general path.
    ///
    /// # Safety
    ///
    /// As for [`Heap::dealloc`], with `size` the block's requested size
    /// (`None`: its usable size, as for [`Heap::free`]).
    #[inline(always)]
    #[cfg_attr(loom, allow(dead_code))] // used by `VvMalloc`, absent under loom
    pub(crate) unsafe fn free_fast(
        &self,
        th: &mut ThreadHeap,
        p: *mut u8,
        size: Option<usize>,
    ) -> bool {
        let core = &self.core;
        let Some(data) = core.arena_of(p) else {
            return false;
        };
        let unit = Core::unit_of(data, p);
        let m = core.meta(data, unit);
        // Relaxed: see `SpanMeta::kind`.
        let kind = m.kind.load(Ordering::Relaxed);
        if core.checks_decided() {
            return false;
        }
        let Ok(c) = Core::small_class_at(data, unit, kind, p) else {
            return false;
        };
        th.requested -= size.unwrap_or(CLASS_SIZES[c] as usize) as isize;
        // SAFETY: `p` starts a block of the page `m` of class `c`; the
        // caller's contract: it is handed out and ours now.
        unsafe { th.free(core, c, m, p) };
        true
    }

    /// A large or huge block for `layout`, counted as requested.
    pub(super) fn alloc_not_small(&self, layout: Layout) -> *mut u8 {
        let (size, align) = (layout.size(), layout.align());
        let p = if size >= HUGE_MIN {
            self.core.alloc_huge(size, align).0
        } else {
            self.alloc_large(size, align).0
        };
        if !p.is_null() {
            self.core.requested.fetch_add(layout.size() as isize);
        }
        p
    }

    pub(crate) fn alloc_zeroed_in(&self, bins: Option<&mut ThreadHeap>, layout: Layout) -> *mut u8 {
        let size = layout.size().max(1);
        if class::class_of(size, layout.align()).is_none() {
            // A large block carved from a fresh region, or a fresh huge
            // mapping, is untouched OS memory, zero already: only reused
            // memory is cleared.
            let (p, fresh) = if size < HUGE_MIN {
                self.alloc_large(size, layout.align())
            } else {
                self.core.alloc_huge(size, layout.align())
            };
            if !p.is_null() {
                self.core.requested.fetch_add(layout.size() as isize);
                if !fresh {
                    // SAFETY: the block has at least `layout.size()` bytes.
                    unsafe { ptr::write_bytes(p, 0, layout.size()) };
                }
            }
            return p;
        }
        let p = self.alloc_in(bins, layout);
        if !p.is_null() {
            // SAFETY: the block has at least `layout.size()` bytes.
            unsafe { ptr::write_bytes(p, 0, layout.size()) };
        }
        p
    }

    /// # Safety
    ///
    /// As for [`Heap::dealloc`].
    #[inline]
    pub(crate) unsafe fn dealloc_in(
        &self,
        bins: Option<&mut ThreadHeap>,
        p: *mut u8,
        layout: Layout,
    ) {
        // SAFETY: the caller's contract.
        unsafe { self.release_in(bins, p, Some(layout.size())) }
    }

    /// Frees `p`, allocated for `size` bytes, or, with `None`, for whatever
    /// size its block records (counted as its usable size).
    ///
    /// # Safety
    ///
    /// `p` is null, or a pointer this heap returned and is not used
    /// afterwards (anything else is detected where the module documentation
    /// says, and otherwise undefined); `size`, if given, is the size it was
    /// allocated or last resized to.
    #[inline]
    pub(crate) unsafe fn release_in(
        &self,
        bins: Option<&mut ThreadHeap>,
        p: *mut u8,
        size: Option<usize>,
    ) {
        let core = &self.core;
        if let Some(data) = core.arena_of(p) {
            let unit = Core::unit_of(data, p);
            let m = core.meta(data, unit);
            // Relaxed: see `SpanMeta::kind`.
            let kind = m.kind.load(Ordering::Relaxed);
            if kind == KIND_LARGE {
                // SAFETY: the caller's contract.
                if let Some(n) = unsafe { self.dealloc_large(p) } {
                    core.requested.fetch_sub(size.unwrap_or(n) as isize);
                }
                return;
            }
            match Core::small_class_at(data, unit, kind, p) {
                Ok(c) if core.checks_decided() => {
                    // SAFETY: `p` starts a block of class `c` in the arena.
                    unsafe { self.release_checked(bins, data, c, p, size) }
                }
                // SAFETY: `p` starts a block of the page `m` of class `c`;
                // the caller's contract: it is handed out and ours now.
                Ok(c) => unsafe {
                    self.free_small(bins, c, m, p, size.unwrap_or(CLASS_SIZES[c] as usize))
                },
                Err(what) => core.misuse(what, p, &[]),
            }
        } else if !p.is_null() {
            if let Some(n) = core.dealloc_huge(p) {
                core.requested.fetch_sub(size.unwrap_or(n) as isize);
            }
        }
    }

    /// # Safety
    ///
    /// As for [`Heap::realloc`].
    pub(crate) unsafe fn realloc_in(
        &self,
        mut bins: Option<&mut ThreadHeap>,
        p: *mut u8,
        layout: Layout,
        new_size: usize,
    ) -> *mut u8 {
        let core = &self.core;
        let Ok(new_layout) = Layout::from_size_align(new_size, layout.align()) else {
            return ptr::null_mut();
        };
        let delta = new_size as isize - layout.size() as isize;
        if let Some(data) = core.arena_of(p) {
            let unit = Core::unit_of(data, p);
            // Relaxed: see `SpanMeta::kind`.
            let kind = core.meta(data, unit).kind.load(Ordering::Relaxed);
            // (The checked mode always moves a small block: the new one gets
            // its own guard, the old one is checked by its free.)
            if matches!(kind, 1..=36) && !core.checks_decided() {
                let cs = CLASS_SIZES[kind as usize - 1] as usize;
                let same = class::class_of(new_size.max(1), layout.align());
                if new_size <= cs && (same == Some(kind as usize - 1) || new_size * 2 > cs) {
                    match bins {
                        Some(b) => b.requested += delta,
                        None => _ = core.requested.fetch_add(delta),
                    }
                    return p;
                }
            } else if kind == KIND_LARGE
                && new_size < HUGE_MIN
                && (new_size > class::SMALL_MAX || new_size >= layout.size())
                && self.resize_large(p, layout.size(), new_size)
            {
                core.requested.fetch_add(delta);
                return p;
            }
        } else if layout.size() >= HUGE_MIN
            && new_size >= HUGE_MIN
            && layout.align() <= os::page_size()
        {
            let ps = os::page_size();
            let Some(new) = new_size.checked_next_multiple_of(ps) else {
                return ptr::null_mut();
            };
            if core.os_fails() {
                return ptr::null_mut();
            }
            // Claimed out of the table for the move (a concurrent free of
            // the same block is the caller's misuse, and finds nothing).
            let Some(old) = core.huge.remove(p as usize) else {
                core.misuse("realloc of a pointer this heap never returned", p, &[]);
                return ptr::null_mut();
            };
            // SAFETY: the table records whole mappings of huge blocks, and
            // the removal made this one ours alone.
            let moved = unsafe { os::remap(p, old, new) };
            // Recorded again where it now is. With 65 536 slots and one just
            // freed, the insert fails only if other threads filled the table
            // meanwhile; the block then stays valid but unrecorded (a later
            // free of it is reported as misuse and leaks).
            let (at, len) = moved.map_or((p, old), |q| (q.as_ptr(), new));
            let _ = core.huge.insert(at as usize, len);
            return match moved {
                Some(q) => {
                    core.huge_bytes.fetch_add(new);
                    core.huge_bytes.fetch_sub(old);
                    core.requested.fetch_add(delta);
                    q.as_ptr()
                }
                None => ptr::null_mut(),
            };
        }
        // A growth that moves to a block of at least `GROW_LARGE_MIN` bytes
        // gets a large block with a growth reserve, so that the next steps
        // stay in place (see `large::Entry`) instead of copying from class
        // to class.
        let q = if new_size > layout.size()
            && (GROW_LARGE_MIN..HUGE_MIN).contains(&new_size)
            && layout.align() <= PAGE
            && !core.checks()
        {
            let pages = new_size.div_ceil(PAGE);
            let q = self
                .alloc_large_reserved(new_size, layout.align(), growth_reserve(pages))
                .0;
            if !q.is_null() {
                core.requested.fetch_add(new_size as isize);
            }
            q
        } else {
            self.alloc_in(bins.as_deref_mut(), new_layout)
        };
        if !q.is_null() {
            // SAFETY: both blocks hold at least the bytes copied and are
            // distinct live blocks.
            unsafe { ptr::copy_nonoverlapping(p, q, layout.size().min(new_size)) };
            // SAFETY: the caller's contract.
            unsafe { self.dealloc_in(bins, p, layout) };
        }
        q
    }
}
