//! The heap instance, [`Heap`]: construction, configuration, teardown.

use core::fmt;

use super::config::HeapConfig;
use super::index::{FreeIndex, SkipIndex};
use super::os;
use super::state::Core;
use crate::sync::Ordering;

/// A heap instance: its own arena, central heaps and free index, independent
/// of every other heap. See the [module documentation](super).
///
/// The heap's own methods (and its [`GlobalAlloc`](core::alloc::GlobalAlloc) and
/// [`allocator_api2::alloc::Allocator`] implementations) take the
/// *cache-less* path: lock-free, one CAS per small operation. For the fast
/// path, each thread takes a [`LocalHeap`](super::LocalHeap) with [`local`](Self::local).
///
/// ```
/// # if vvmalloc::LOOM_BUILD || cfg!(miri) { return; } // Miri has no mmap(PROT_NONE)
/// use std::alloc::Layout;
/// use vvmalloc::Heap;
///
/// let heap = Heap::new();
/// let layout = Layout::from_size_align(100, 8).unwrap();
/// let p = heap.alloc(layout);
/// assert!(!p.is_null());
/// // SAFETY: `p` came from `heap` with `layout`.
/// unsafe { heap.dealloc(p, layout) };
///
/// // A collection with a heap of its own, on stable Rust:
/// let mut v = allocator_api2::vec::Vec::new_in(&heap);
/// v.extend([1, 2, 3]);
/// assert_eq!(v.iter().sum::<i32>(), 6);
/// ```
pub struct Heap<I: FreeIndex = SkipIndex> {
    pub(crate) core: Core,
    pub(super) index: I,
}

impl Heap<SkipIndex> {
    /// A heap with the default configuration and the skip-list free index.
    /// Reserves nothing until the first allocation.
    pub fn new() -> Self {
        Self::with_config(HeapConfig::new())
    }
}

impl Default for Heap<SkipIndex> {
    fn default() -> Self {
        Self::new()
    }
}

impl<I: FreeIndex> Heap<I> {
    /// A heap with the given configuration and a fresh index of type `I`.
    ///
    /// ```
    /// # if vvmalloc::LOOM_BUILD || cfg!(miri) { return; } // Miri has no mmap(PROT_NONE)
    /// use vvmalloc::heap::{BTreeIndex, Heap, HeapConfig};
    /// let heap: Heap<BTreeIndex> = Heap::with_config(HeapConfig {
    ///     arena_bytes: 1 << 30,
    ///     checked: true,
    ///     ..HeapConfig::new()
    /// });
    /// assert_eq!(heap.config().arena_bytes, 1 << 30);
    /// ```
    pub fn with_config(config: HeapConfig) -> Self {
        Self {
            core: Core::new(config),
            index: I::new(),
        }
    }

    /// The heap's configuration.
    pub fn config(&self) -> HeapConfig {
        HeapConfig {
            arena_bytes: self.core.arena_bytes,
            checked: self.core.checks_decided(),
        }
    }

    /// The free index.
    pub fn index(&self) -> &I {
        &self.index
    }

    /// Whether `p` lies in this heap's arena (small and large blocks; huge
    /// blocks are mapped outside it).
    pub fn owns(&self, p: *const u8) -> bool {
        self.core.arena_of(p.cast_mut()).is_some()
    }

    /// Makes the next `n` requests to the OS fail, as if it were out of
    /// memory (fault injection for tests).
    #[doc(hidden)]
    pub fn inject_os_failures(&self, n: usize) {
        self.core.inject_failures.store(n);
    }
}

impl<I: FreeIndex> Drop for Heap<I> {
    fn drop(&mut self) {
        // Acquire: as in `Core::arena`.
        let data = self.core.data.load(Ordering::Acquire);
        if !data.is_null() {
            let table = self.core.table_bytes();
            // SAFETY: `&mut self`: no block of the arena can be in use (every
            // `LocalHeap` borrowed the heap and is gone; blocks the user did
            // not free are theirs to lose). The reservation is ours.
            unsafe {
                os::unmap(
                    data.wrapping_sub(table),
                    table + self.core.arena_bytes + self.core.bits_bytes(),
                )
            };
        }
        // Huge blocks the user did not free are theirs to lose; the kept
        // ones are ours (and the huge table, unmapped by its own `Drop`).
        self.core.huge_cache_drain();
    }
}

impl<I: FreeIndex> fmt::Debug for Heap<I> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Heap")
            .field("index", &I::NAME)
            .field("config", &self.config())
            .finish_non_exhaustive()
    }
}
