//! The large-block cache's state: freed large blocks kept by page count,
//! each held by a batch descriptor from type-stable metadata spans. Its
//! operations, which need the arena, are in `large`.

use crate::intrusive::{IntrusiveStack, Link};
use crate::stat::Stat;
use crate::sync::UnsafeCell;

/// Freed large blocks of up to this many pages are kept for reuse at their
/// size (`Core::large_cache`), skipping the free index. Under loom each
/// size is a stack of loom objects built with every heap: 5 sizes reach the
/// smallest large blocks (16 KiB and a byte: 5 pages), which the models use.
pub(super) const LARGE_CACHE_PAGES: usize = if cfg!(loom) { 5 } else { 64 };
/// At most this many blocks of one size are kept...
pub(super) const LARGE_CACHE_MAX: usize = 16;
/// ... and this many bytes in all.
pub(super) const LARGE_CACHE_BYTES: usize = 32 << 20;

/// A batch of free blocks of one class, linked through their first words.
/// Batches live in metadata spans that are never freed: type-stable memory
/// for the central stacks.
#[repr(C)]
pub(super) struct Batch {
    pub(super) link: Link,
    pub(super) head: UnsafeCell<*mut u8>,
    pub(super) count: UnsafeCell<usize>,
}

/// Freed large blocks of one size, kept for reuse: a stack of batch
/// descriptors (type-stable, so the stack's reads of a popped node's link
/// never touch a block a program may be writing), each holding one block.
pub(super) struct LargeCache {
    pub(super) stack: IntrusiveStack,
    pub(super) count: Stat,
}

impl LargeCache {
    #[cfg(not(loom))]
    pub(super) const fn new() -> Self {
        Self {
            stack: IntrusiveStack::new(),
            count: Stat::new(0),
        }
    }

    #[cfg(loom)]
    pub(super) fn new() -> Self {
        Self {
            stack: IntrusiveStack::new(),
            count: Stat::new(0),
        }
    }
}
