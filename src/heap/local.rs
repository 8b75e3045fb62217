//! [`LocalHeap`]: a thread heap on a [`Heap`] instance.

use core::alloc::Layout;
use core::fmt;
use core::marker::PhantomData;
use core::ptr::NonNull;

use super::index::{FreeIndex, SkipIndex};
use super::instance::Heap;
use super::thread_heap::ThreadHeap;
use crate::sync::plain::PlainUnsafeCell;

/// A thread heap on a [`Heap`]: the allocator's fast path for one thread.
///
/// It owns pages (64 KiB spans of one size class). Small allocations, and
/// frees of blocks of its own pages, are a handful of plain loads and
/// stores; a free of a block of another heap's page is one CAS that hands
/// the block back to that page's owner. Blocks may be freed through any
/// `LocalHeap` of the same heap (or the heap's cache-less methods),
/// whichever thread allocated them. Dropping it gives its empty pages to
/// the heap and *abandons* the others, which other thread heaps adopt.
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
    bins: PlainUnsafeCell<ThreadHeap>,
    _not_sync: PhantomData<*mut ()>,
}

// SAFETY: a `LocalHeap` owns its cached blocks, which are plain memory of the
// heap; moving it to another thread moves that ownership with it.
unsafe impl<I: FreeIndex> Send for LocalHeap<'_, I> {}

impl<'h, I: FreeIndex> LocalHeap<'h, I> {
    pub(crate) fn new(heap: &'h Heap<I>) -> Self {
        let mut th = ThreadHeap::new();
        th.init();
        Self {
            heap,
            bins: PlainUnsafeCell::new(th),
            _not_sync: PhantomData,
        }
    }

    /// The heap this cache belongs to.
    pub fn heap(&self) -> &'h Heap<I> {
        self.heap
    }

    #[inline]
    fn with_bins<R>(&self, f: impl FnOnce(&mut ThreadHeap) -> R) -> R {
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

    /// Takes back the blocks other threads freed into this heap's pages,
    /// gives its empty pages to the heap (where [`Heap::trim`] can return
    /// them to the OS), and adds its counts to the heap's statistics. It
    /// keeps its other pages (dropping it abandons them).
    pub fn flush(&self) {
        self.with_bins(|b| b.flush(&self.heap.core));
    }
}

impl<I: FreeIndex> Drop for LocalHeap<'_, I> {
    fn drop(&mut self) {
        self.with_bins(|b| b.abandon(&self.heap.core));
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

impl<I: FreeIndex> Heap<I> {
    /// A thread cache on this heap: the fast path. See [`LocalHeap`].
    pub fn local(&self) -> LocalHeap<'_, I> {
        LocalHeap::new(self)
    }
}
