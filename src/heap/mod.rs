//! The allocator: size-class heaps composed from the library's structures.
//!
//! A [`Heap`] owns one reservation of address space (its *arena*) and serves
//! three ranges of sizes:
//!
//! - **Small** (up to [`SMALL_MAX`], 16 KiB): [`CLASSES`] size classes (the
//!   table and its worst-case waste are in [`class`]). Blocks are carved from
//!   64 KiB *pages* (spans), one class per page, and each page is owned by
//!   one *thread heap* (a [`LocalHeap`], or the thread-local heap of
//!   [`VvMalloc`]). An allocation pops the free list of the class's current
//!   page; a free of a block of one of the thread's own pages pushes it back
//!   there: plain loads and stores, no atomic read-modify-write, no
//!   statistics per call. A free of another thread's block is one CAS on
//!   that page's *thread-free list* (an [`IntrusiveTakeAll`]); the owner
//!   takes the whole list with one swap when its free list runs dry.
//! - **Large** (up to [`HUGE_MIN`], 16 MiB): page-granular blocks carved from
//!   64 MiB regions of the arena, found in a pluggable [`FreeIndex`] (best fit
//!   in a skip list by default), split on allocation and coalesced with free
//!   neighbours on free. Freed blocks of up to 256 KiB are first kept for
//!   reuse at their size (at most 16 per size and 32 MiB in all, on
//!   lock-free stacks), so that a program that frees and allocates one size
//!   over and over skips the index: zlib's 32 and 64 KiB windows in git
//!   made a recorded `git gc` trace replay 3x slower than glibc before
//!   (`traces/real-git.rep`), level after.
//!
//!   A block that `realloc` grows past a page (from a small block too) moves
//!   once to a large block with a *growth reserve*: three times its pages
//!   right after it, out of the free index and recorded with the block
//!   (`large::Entry`). The next steps grow into the reserve with no index
//!   operation and no copy; past it, the block takes the free run after it,
//!   if there is one, and keeps part of it as its next reserve. A shrink, and
//!   the free, give the reserve back with the block.
//! - **Huge** (from [`HUGE_MIN`]): a mapping of its own; `realloc` uses
//!   `mremap`.
//!
//! # Where the memory goes back
//!
//! - A page whose blocks all come back to its owner goes to a pool of empty
//!   pages (still resident), reused first by any class. When the pool holds
//!   more than 32 MiB, at most once a second, and on [`Heap::trim`], its
//!   pages are released (`madvise(MADV_DONTNEED)`). No scavenger walks the
//!   classes.
//! - A thread heap that goes away (thread exit, a dropped [`LocalHeap`])
//!   gives its empty pages to the pool and *abandons* the others on a
//!   per-class lock-free stack; other thread heaps adopt them before they
//!   take an empty page, and frees into them are remote frees as any other.
//!   [`Heap::trim`] takes back the abandoned pages that became empty.
//! - The long (8 MiB and more) free large runs are *purged* (their pages
//!   given back) when the free runs add up to more than 64 MiB plus four
//!   times the large bytes in use, at most once per 64 MiB freed and once a
//!   second, so a program that reuses its large blocks does not
//!   fault them in again and again; [`Heap::trim`] purges them all.
//! - A freed huge block is kept mapped for reuse by a huge request of its
//!   size (up to an eighth smaller), as glibc's dynamic `mmap` threshold
//!   does: at most 4 mappings and 128 MiB; beyond that, or on
//!   [`Heap::trim`], it is unmapped. A program that allocates and frees one
//!   big buffer over and over (`sort`) then does not fault its pages in
//!   each time.
//!
//! # Cross-thread frees
//!
//! A block goes back to the page it came from, so its owner reuses it: no
//! passive false sharing (a freed block is never handed to the thread that
//! freed it), and a producer/consumer pair cycles a bounded set of pages
//! (tested in `tests/heap/` and `tests/global.rs`). The owner looks at its
//! full pages for blocks given back a few at a time, oldest first, each time
//! its current page runs dry. (The design before this one moved batches of
//! blocks between thread caches and sharded central Treiber stacks, with an
//! optional tcmalloc-like transfer cache; it was removed with the rebuild,
//! and its measured numbers are in `docs/allocators.md`.)
//!
//! The cache-less paths ([`Heap::alloc`] without a [`LocalHeap`]) take a
//! page from the abandoned stack, take one block and push the page back:
//! lock-free, a few CAS per call.
//!
//! # Statistics
//!
//! [`Heap::stats`] counts are kept off the fast paths: a page counts its own
//! allocations and frees, its owner moves those counts into a per-class
//! pending count when it switches pages, collects or flushes, and adds that
//! to the heap's shared counters only past 256 blocks (requested bytes: 1
//! MiB) or when it is flushed or goes away. (Adding each page's counts to
//! the shared counters on every slow path made two threads churning small
//! objects slower than one: `perf record` found 14.5% of the time in the
//! slow path's contended counters.) So the counts lag by a bounded amount
//! per live thread heap, and are exact once the thread heaps are flushed.
//!
//! # Misuse
//!
//! The heap checks what it can cheaply check on every free: a pointer outside
//! its arena that is not a live huge block (huge blocks are kept in a
//! lock-free table of their own), a pointer inside the arena but not at the
//! start of a block of a live span, and a large block freed twice or a free
//! of a page inside one (each live large block has a page record, cleared
//! by its free). Each is counted in [`Stats::misuse`] and the block is left
//! alone (leaked) rather than corrupting the heap. A small block freed
//! twice is *not* detected by default: it enters the free lists twice and
//! will be handed out twice; a write past the end of a block is not
//! detected either.
//!
//! The checked mode, [`HeapConfig::checked`] (or `VVMALLOC_CHECKED=1` for
//! [`VvMalloc`] and the preloadable library), prints what it found, with
//! the address, and aborts; it also catches small double frees (a bit per
//! block), writes past the end of small blocks (a canary and a size record
//! after the bytes asked for), frees with the wrong size, and free lists
//! corrupted by a write to a freed block. Its costs are listed at
//! [`HeapConfig::checked`]; `docs/reliability.md` has the tests.
//!
//! The same records let [`Heap::free`] free a block without being told its
//! size, and [`Heap::usable_size`] report it, as C's `free` and
//! `malloc_usable_size` need.
//!
//! # Failure
//!
//! An allocation that cannot be served returns null: a size near
//! `isize::MAX`, an exhausted arena, the OS refusing memory. Nothing in the
//! heap panics or aborts except the checked mode's misuse reports.
//!
//! # Reentrancy, threads and `fork`
//!
//! Nothing on the small path allocates, and the large path's index
//! allocates only small blocks, so the recursion is at most one level deep.
//! [`VvMalloc`]'s fast paths find the thread's heap through one word in the
//! static TLS block (initial-exec: two instructions, also in the preloaded
//! library, where a Rust `thread_local!` costs a `__tls_get_addr` call).
//! [`VvMalloc`]'s thread cache is set up on the first allocation of a thread:
//! a flag (a `const` thread-local without destructor) routes any allocation
//! made while the cache is being set up or used to the cache-less path, which
//! is lock-free and needs no thread-local state; so do allocations after the
//! cache is torn down at thread exit, when its pages go to the pool or are
//! abandoned.
//!
//! The heap holds no lock at any time (the [`BTreeIndex`] baseline aside), so
//! a `fork()` cannot leave a lock held in the child, and its small paths
//! leave every shared structure consistent between any two atomic steps.
//! The large path's operations may hold free runs out of the index for a
//! moment and pin an epoch; [`Heap::prepare_fork`] keeps them out of a fork
//! through a gate whose count is striped by thread (no line all threads
//! write)
//! (the process heap registers it, and the matching `after_fork_*`
//! handlers, with `pthread_atfork` on its first allocation). A thread's
//! cached blocks are lost to a child it is not in: a bounded leak.
//!
//! # Layout by layer
//!
//! One file per layer, each importing only the layers below it (as
//! mimalloc's sources are laid out):
//!
//! | layer | files |
//! |---|---|
//! | OS | `os` (reserve, commit, release, map, remap) |
//! | size classes | `class` (the table, `good_size`), `page` (a span's record and free lists) |
//! | heap state | `config` ([`HeapConfig`]), `class_pages`, `large_cache`, `huge_table`, `fork_gate` (plain state, no heap; the fork gate is a striped count and a flag), `state` (`Core`: the state that does not depend on the free index; construction, misuse reports) |
//! | arena | `arena` (the reservation, its side table, the bump) |
//! | pages | `pool` (new, abandoned, full and empty pages; the purge), `thread_heap` (a thread's owned pages, remote frees) |
//! | large, huge | `large` (page runs in the free index, the cache by size), `huge` (a mapping each) |
//! | instance | `instance` ([`Heap`]: construction, teardown), `fork` (the handlers), `route` (small, large or huge: the paths every front door shares), `checked` (the checked mode) |
//! | front doors | `api` (the cache-less methods, `GlobalAlloc`, `Allocator`), `local` ([`LocalHeap`]), `global` ([`VvMalloc`] and the paths the preloaded C library calls), `tls` (the thread-heap word) |
//!
//! [`IntrusiveTakeAll`]: crate::take_all::IntrusiveTakeAll
//! [`VvMalloc`]: crate::VvMalloc

mod api;
mod arena;
mod checked;
pub mod class;
mod class_pages;
mod config;
mod fork;
mod fork_gate;
mod huge;
mod huge_table;
pub mod index;
mod instance;
mod large;
mod large_cache;
mod local;
mod os;
mod page;
mod pool;
mod route;
mod state;
mod stats;
mod thread_heap;
#[cfg(not(loom))]
mod tls;

#[cfg(not(loom))]
mod global;

pub use class::{good_size, CLASSES, CLASS_SIZES, HUGE_MIN, SMALL_MAX, SPAN};
pub use config::HeapConfig;
pub use index::{BTreeIndex, FreeIndex, ListIndex, SkipIndex};
pub use instance::Heap;
pub use local::LocalHeap;
pub use stats::{ClassStats, Stats};

#[cfg(loom)]
#[doc(hidden)]
pub use fork_gate::{seeded_fork_gate_bug, ModelForkGate};
#[cfg(not(loom))]
pub use global::VvMalloc;
#[cfg(loom)]
#[doc(hidden)]
pub use huge_table::{seeded_huge_table_bug, HugeTableBug, ModelHugeTable};
#[cfg(loom)]
pub use loom_build::VvMalloc;
#[cfg(loom)]
#[doc(hidden)]
pub use thread_heap::{seeded_page_bug, PageBug};

/// The loom build has no process heap (loom's atomics need a running model,
/// and a `static` heap would be built outside any). So that code naming
/// `VvMalloc` (the doctests, which rustdoc links against this build) still
/// builds, `VvMalloc` here forwards to the system allocator. The models use
/// `Heap` instances.
#[cfg(loom)]
mod loom_build {
    use core::alloc::{GlobalAlloc, Layout};
    use std::alloc::System;

    /// Under `--cfg loom` only: forwards to [`System`] (see the module).
    #[derive(Clone, Copy, Debug, Default)]
    pub struct VvMalloc;

    impl VvMalloc {
        /// A handle.
        pub const fn new() -> Self {
            VvMalloc
        }

        /// C's `malloc` (forwarded).
        pub fn malloc(size: usize) -> *mut u8 {
            // SAFETY: `malloc` has no preconditions.
            unsafe { libc::malloc(size) }.cast()
        }

        /// C's `free` (forwarded).
        ///
        /// # Safety
        ///
        /// `p` is null or came from [`VvMalloc::malloc`], not used after.
        pub unsafe fn free(p: *mut u8) {
            // SAFETY: the caller's contract.
            unsafe { libc::free(p.cast()) }
        }

        /// C's `malloc_usable_size` (forwarded).
        pub fn usable_size(p: *const u8) -> Option<usize> {
            // SAFETY: the caller passes a block of `malloc` (or null).
            Some(unsafe { libc::malloc_usable_size(p.cast_mut().cast()) })
        }
    }

    // SAFETY: forwards every call to `System` unchanged.
    unsafe impl GlobalAlloc for VvMalloc {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            // SAFETY: the caller's contract, passed on.
            unsafe { System.alloc(layout) }
        }

        unsafe fn dealloc(&self, p: *mut u8, layout: Layout) {
            // SAFETY: the caller's contract, passed on.
            unsafe { System.dealloc(p, layout) }
        }
    }
}
