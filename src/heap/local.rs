//! Thread caches: the small path's fast path.

use core::alloc::Layout;
use core::fmt;
use core::marker::PhantomData;
use core::ptr::{self, NonNull};

use super::class::{self, CLASSES};
use super::core_heap::{Core, Heap, Spares};
use super::index::{FreeIndex, SkipIndex};
use crate::sync::plain::PlainUnsafeCell;

/// One class's cache: a chain of free blocks through their first words.
#[derive(Clone, Copy)]
struct Bin {
    head: *mut u8,
    len: u32,
    /// Blocks handed out minus blocks taken back since the last flush to the
    /// heap's statistics.
    net: i32,
}

/// The per-class caches of one thread. Every operation is plain loads and
/// stores; only a refill from or a spill to the central heap touches shared
/// state (one CAS per batch).
pub(crate) struct Bins {
    bins: [Bin; CLASSES],
    /// Bytes requested minus bytes freed through this cache since the last
    /// flush to the heap's statistics.
    pub(crate) requested: isize,
    spares: Spares,
}

impl Bins {
    pub(crate) const fn new() -> Self {
        Self {
            bins: [Bin {
                head: ptr::null_mut(),
                len: 0,
                net: 0,
            }; CLASSES],
            requested: 0,
            spares: Spares::new(),
        }
    }

    /// [`alloc`](Self::alloc), counting `size` requested bytes.
    #[cfg_attr(loom, allow(dead_code))] // used by `VvMalloc`, absent under loom
    #[inline(always)]
    pub(crate) fn alloc_counted(&mut self, core: &Core, c: usize, size: usize) -> *mut u8 {
        let p = self.alloc(core, c);
        if !p.is_null() {
            self.requested += size as isize;
        }
        p
    }

    #[inline(always)]
    pub(crate) fn alloc(&mut self, core: &Core, c: usize) -> *mut u8 {
        let bin = &mut self.bins[c];
        if bin.head.is_null() {
            return self.alloc_refill(core, c);
        }
        let p = bin.head;
        // SAFETY: blocks in a bin are free and owned by this cache; the
        // first word of each holds the next one.
        bin.head = unsafe { p.cast::<*mut u8>().read() };
        bin.len -= 1;
        bin.net += 1;
        p
    }

    #[cold]
    #[inline(never)]
    fn alloc_refill(&mut self, core: &Core, c: usize) -> *mut u8 {
        let bin = &mut self.bins[c];
        let Some((head, n)) = core.refill(c, Some(&mut self.spares)) else {
            return ptr::null_mut();
        };
        bin.head = head;
        bin.len = n as u32;
        core.flush_counts(c, bin.net as isize, self.requested);
        bin.net = 0;
        self.requested = 0;
        let p = bin.head;
        // SAFETY: blocks in a bin are free and owned by this cache; the
        // first word of each holds the next one.
        bin.head = unsafe { p.cast::<*mut u8>().read() };
        bin.len -= 1;
        bin.net += 1;
        p
    }

    #[inline]
    pub(crate) fn dealloc(&mut self, core: &Core, c: usize, p: *mut u8) {
        let bin = &mut self.bins[c];
        // SAFETY: the block is being freed: it is ours now.
        unsafe { p.cast::<*mut u8>().write(bin.head) };
        bin.head = p;
        bin.len += 1;
        bin.net -= 1;
        if bin.len as usize > 2 * class::batch(c) {
            self.spill(core, c, class::batch(c));
        }
    }

    /// Hands `n` blocks of class `c` (from the top of the bin) to the central
    /// heap, and flushes the class's counts.
    #[cold]
    fn spill(&mut self, core: &Core, c: usize, n: usize) {
        let bin = &mut self.bins[c];
        let n = n.min(bin.len as usize);
        if n == 0 {
            return;
        }
        let head = bin.head;
        let mut last = head;
        for _ in 1..n {
            // SAFETY: the bin's chain is ours.
            last = unsafe { last.cast::<*mut u8>().read() };
        }
        // SAFETY: as above.
        let rest = unsafe { last.cast::<*mut u8>().read() };
        // SAFETY: as above.
        unsafe { last.cast::<*mut u8>().write(ptr::null_mut()) };
        if core.central_push_with(c, head, n, Some(&mut self.spares)) {
            bin.head = rest;
            bin.len -= n as u32;
        } else {
            // Out of memory for a descriptor: keep the blocks.
            // SAFETY: re-attach the chain.
            unsafe { last.cast::<*mut u8>().write(rest) };
        }
        core.flush_counts(c, bin.net as isize, self.requested);
        bin.net = 0;
        self.requested = 0;
    }

    /// Hands every cached block back to the central heaps.
    pub(crate) fn flush(&mut self, core: &Core) {
        for c in 0..CLASSES {
            let len = self.bins[c].len as usize;
            self.spill(core, c, len);
            core.flush_counts(c, self.bins[c].net as isize, self.requested);
            self.bins[c].net = 0;
            self.requested = 0;
        }
        core.return_spares(&mut self.spares);
    }
}

/// A thread cache on a [`Heap`]: the allocator's fast path for one thread.
///
/// Small allocations and frees through it are a handful of plain loads and
/// stores; it exchanges batches with the heap's central stacks when a class
/// runs empty or holds more than two batches. Blocks may be freed through any
/// `LocalHeap` of the same heap (or the heap's cache-less methods), whichever
/// thread allocated them. Dropping it hands its blocks back to the heap.
///
/// Not `Sync` (one per thread), but `Send`.
///
/// ```
/// # if vvmalloc::LOOM_BUILD || cfg!(miri) { return; } // Miri has no mmap(PROT_NONE)
/// use std::alloc::Layout;
/// use vvmalloc::Heap;
///
/// let heap = Heap::new();
/// let layout = Layout::new::<[u64; 4]>();
/// std::thread::scope(|s| {
///     for _ in 0..2 {
///         s.spawn(|| {
///             let local = heap.local();
///             let blocks: Vec<_> = (0..1000).map(|_| local.alloc(layout)).collect();
///             for p in blocks {
///                 // SAFETY: from this heap, with this layout.
///                 unsafe { local.dealloc(p, layout) };
///             }
///         });
///     }
/// });
/// assert_eq!(heap.stats().small[1].in_use_blocks, 0);
/// ```
pub struct LocalHeap<'h, I: FreeIndex = SkipIndex> {
    heap: &'h Heap<I>,
    bins: PlainUnsafeCell<Bins>,
    _not_sync: PhantomData<*mut ()>,
}

// SAFETY: a `LocalHeap` owns its cached blocks, which are plain memory of the
// heap; moving it to another thread moves that ownership with it.
unsafe impl<I: FreeIndex> Send for LocalHeap<'_, I> {}

impl<'h, I: FreeIndex> LocalHeap<'h, I> {
    pub(crate) fn new(heap: &'h Heap<I>) -> Self {
        Self {
            heap,
            bins: PlainUnsafeCell::new(Bins::new()),
            _not_sync: PhantomData,
        }
    }

    /// The heap this cache belongs to.
    pub fn heap(&self) -> &'h Heap<I> {
        self.heap
    }

    #[inline]
    fn with_bins<R>(&self, f: impl FnOnce(&mut Bins) -> R) -> R {
        // SAFETY: `LocalHeap` is not `Sync`, and `f` (the heap's paths) never
        // calls back into this cache, so this is the only reference while it
        // lives.
        f(unsafe { &mut *self.bins.get() })
    }

    /// Allocates a block for `layout`; null when the request cannot be
    /// served.
    #[inline]
    pub fn alloc(&self, layout: Layout) -> *mut u8 {
        self.with_bins(|b| self.heap.alloc_in(Some(b), layout))
    }

    /// As [`alloc`](Self::alloc), with the block zeroed.
    pub fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        self.with_bins(|b| self.heap.alloc_zeroed_in(Some(b), layout))
    }

    /// Frees a block.
    ///
    /// # Safety
    ///
    /// As for [`Heap::dealloc`]: `p` came from this cache's heap with
    /// `layout`.
    #[inline]
    pub unsafe fn dealloc(&self, p: *mut u8, layout: Layout) {
        // SAFETY: the caller's contract.
        self.with_bins(|b| unsafe { self.heap.dealloc_in(Some(b), p, layout) })
    }

    /// Resizes a block, in place where it can.
    ///
    /// # Safety
    ///
    /// As for [`Heap::realloc`].
    pub unsafe fn realloc(&self, p: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: the caller's contract.
        self.with_bins(|b| unsafe { self.heap.realloc_in(Some(b), p, layout, new_size) })
    }

    /// Hands every cached block back to the heap's central stacks (as
    /// dropping the cache does).
    pub fn flush(&self) {
        self.with_bins(|b| b.flush(&self.heap.core));
    }
}

impl<I: FreeIndex> Drop for LocalHeap<'_, I> {
    fn drop(&mut self) {
        self.flush();
    }
}

impl<I: FreeIndex> fmt::Debug for LocalHeap<'_, I> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LocalHeap")
            .field("heap", self.heap)
            .finish_non_exhaustive()
    }
}

// SAFETY: as for `&Heap`: blocks are valid until freed, fit their layout,
// and may be freed through any cache of the same heap.
unsafe impl<I: FreeIndex> allocator_api2::alloc::Allocator for &LocalHeap<'_, I> {
    fn allocate(&self, layout: Layout) -> Result<NonNull<[u8]>, allocator_api2::alloc::AllocError> {
        NonNull::new(LocalHeap::alloc(self, layout))
            .map(|p| NonNull::slice_from_raw_parts(p, layout.size()))
            .ok_or(allocator_api2::alloc::AllocError)
    }

    unsafe fn deallocate(&self, p: NonNull<u8>, layout: Layout) {
        // SAFETY: `Allocator::deallocate`'s contract is ours.
        unsafe { LocalHeap::dealloc(self, p.as_ptr(), layout) }
    }
}
