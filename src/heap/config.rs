//! How a heap is set up: [`HeapConfig`].

/// How a [`Heap`](super::Heap) is set up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HeapConfig {
    /// Address space the heap reserves for its small and large blocks (huge
    /// blocks are mapped outside it). Only what is used is committed; the
    /// side table (16 bytes per 64 KiB span and 4 per 4 KiB page: 80 MiB
    /// for the default 64 GiB) is committed up front, and only its touched
    /// pages become resident. Rounded up to
    /// 64 KiB; at least 64 MiB is sensible.
    pub arena_bytes: usize,
    /// The checked mode, for debugging: report misuse on stderr, naming
    /// its kind and the block's address, and abort, instead of counting
    /// it and leaking the block. On top of what the heap always checks (a
    /// pointer it never returned, a large or huge block freed twice), a
    /// checked heap catches, for small blocks:
    ///
    /// - a **double free** (a bit per block says whether it is handed out);
    /// - a **write past the end** (up to the end of the block: the bytes
    ///   after the size asked for hold a canary and the size, checked at
    ///   the free);
    /// - a **free with the wrong size** (`dealloc` with a layout whose size
    ///   is not the block's);
    /// - a **corrupt free list** handing out a block in use (a write to a
    ///   freed block that overwrote its link).
    ///
    /// [`Heap::usable_size`](super::Heap::usable_size) then reports the size asked for, and a small
    /// `realloc` always moves. The cost: a small block is 8 bytes larger
    /// (so often a class up), each small allocation writes its guard and
    /// each free reads it, both do one atomic read-modify-write on the
    /// bitmap, and the bitmap takes `arena_bytes / 128` bytes of address
    /// space. The process heap of [`VvMalloc`](crate::VvMalloc) takes the
    /// mode from `VVMALLOC_CHECKED=1` in the environment.
    ///
    /// ```no_run
    /// use std::alloc::Layout;
    /// use vvmalloc::heap::{Heap, HeapConfig};
    ///
    /// let heap: Heap = Heap::with_config(HeapConfig { checked: true, ..HeapConfig::new() });
    /// let p = heap.alloc(Layout::new::<[u8; 20]>());
    /// assert_eq!(heap.usable_size(p), Some(20));
    /// // SAFETY: deliberately wrong: one byte past the block. The free
    /// // prints "vvmalloc: write past the end of a small block (address
    /// // 0x..., bytes requested 20, first byte overwritten 20)" and aborts.
    /// unsafe {
    ///     p.add(20).write(0);
    ///     heap.free(p);
    /// }
    /// ```
    pub checked: bool,
}

impl HeapConfig {
    /// 64 GiB of address space, unchecked.
    pub const fn new() -> Self {
        Self {
            arena_bytes: 64 << 30,
            checked: false,
        }
    }
}

impl Default for HeapConfig {
    fn default() -> Self {
        Self::new()
    }
}
