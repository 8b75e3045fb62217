//! The heap instance: arena, spans, central heaps, large and huge paths.

use core::alloc::{GlobalAlloc, Layout};
use core::fmt;
use core::mem::size_of;
use core::ptr::{self, NonNull};

use super::class::{self, CLASSES, CLASS_SIZES, SPAN};
use super::index::{FreeIndex, SkipIndex};
use super::local::LocalHeap;
use super::os::{self, PAGE};
use super::page::{SpanMeta, KIND_LARGE, KIND_META};
use super::pool::ClassPages;
use super::stats::{ClassStats, Stats};
use super::thread_heap::ThreadHeap;
use crate::intrusive::{IntrusiveStack, Link};
use crate::sync::plain::{AtomicBool, AtomicIsize, AtomicPtr, AtomicU32, AtomicU8, AtomicUsize};
use crate::sync::{Ordering, UnsafeCell};

mod checked;
use checked::{CHECK_OFF, CHECK_ON, CHECK_UNKNOWN};

/// Requests of this many bytes or more get a mapping of their own.
pub const HUGE_MIN: usize = 16 << 20;
/// The large heap takes address space from the arena in regions this large.
const LARGE_REGION: usize = 64 << 20;
/// The large heap's free runs are purged (their pages given back) when at
/// least this many bytes were freed since the last purge and the free runs
/// add up to more than this plus four times the large bytes in use.
const LARGE_PURGE_MIN: usize = 64 << 20;
/// A purge gives back only runs at least this long: long free runs are the
/// cold ones (a region's untouched tail, or what many frees coalesced into),
/// while the short ones are the holes that best fit keeps reusing.
const PURGE_RUN_MIN: usize = 8 << 20;
/// Freed large blocks of up to this many pages are kept for reuse at their
/// size (`Core::large_cache`), skipping the free index.
const LARGE_CACHE_PAGES: usize = if cfg!(loom) { 2 } else { 64 };
/// At most this many blocks of one size are kept...
const LARGE_CACHE_MAX: usize = 16;
/// ... and this many bytes in all.
const LARGE_CACHE_BYTES: usize = 32 << 20;
/// Freed huge blocks kept mapped for reuse (as glibc's dynamic `mmap`
/// threshold does): at most this many...
const HUGE_CACHE_SLOTS: usize = 4;
/// ... and this many bytes in all.
const HUGE_CACHE_BYTES: usize = 128 << 20;

/// How a [`Heap`] is set up.
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
    /// [`Heap::usable_size`] then reports the size asked for, and a small
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

/// A batch of free blocks of one class, linked through their first words.
/// Batches live in metadata spans that are never freed: type-stable memory
/// for the central stacks.
#[repr(C)]
struct Batch {
    link: Link,
    head: UnsafeCell<*mut u8>,
    count: UnsafeCell<usize>,
}

/// Counts a large operation in flight for as long as it lives (see
/// `Core::large_in_flight`), and keeps it out of a `fork` in progress.
struct InFlight<'a>(&'a AtomicUsize);

impl<'a> InFlight<'a> {
    fn new(core: &'a Core) -> Self {
        loop {
            // SeqCst (here and on `forking`): a Dekker handshake with
            // `Heap::prepare_fork`, which sets `forking` and then waits for
            // this counter to reach zero: either it sees our increment, or
            // we see its flag. Also a heuristic counter read by
            // `alloc_large` after a failed search.
            core.large_in_flight.fetch_add(1, Ordering::SeqCst);
            if !core.forking.load(Ordering::SeqCst) || core.is_fork_owner() {
                return InFlight(&core.large_in_flight);
            }
            // SeqCst: as above.
            core.large_in_flight.fetch_sub(1, Ordering::SeqCst);
            // The wait is bounded: the forking thread may be blocked, past
            // its prepare handlers, on a lock this thread holds (one of the
            // C library's, say). After `FORK_WAIT_MS` we go on: a child
            // forked meanwhile may then leak the runs we hold (and, with
            // epoch reclamation, the nodes retired after), which is better
            // than a deadlock.
            let start = now_ms();
            // Relaxed: a wait; the SeqCst load above decides.
            while core.forking.load(Ordering::Relaxed) {
                if now_ms().wrapping_sub(start) > FORK_WAIT_MS {
                    // SeqCst: as above.
                    core.large_in_flight.fetch_add(1, Ordering::SeqCst);
                    return InFlight(&core.large_in_flight);
                }
                crate::sync::thread::yield_now();
            }
        }
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        // SeqCst: as in `new`.
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The huge blocks' addresses and mapping lengths: an open-addressing hash
/// table of `HUGE_SLOTS` slots in a mapping of its own (made on the first
/// huge block; untouched pages cost nothing), lock-free.
///
/// It lets a free without a size (C's `free`) find a huge block's length,
/// and lets every free tell a huge block of ours from a foreign pointer
/// without reading memory in front of it. A slot's key goes `EMPTY` ->
/// `RESERVED` (an inserter owns it) -> the address (published) -> `TOMB`
/// (removed; reusable by a later insert, never `EMPTY` again, so a lookup
/// may stop at the first `EMPTY` slot of its probe sequence).
struct HugeTable {
    slots: AtomicPtr<HugeSlot>,
}

#[repr(C)]
struct HugeSlot {
    key: AtomicUsize,
    len: AtomicUsize,
}

impl HugeSlot {
    const fn new() -> Self {
        Self {
            key: AtomicUsize::new(SLOT_EMPTY),
            len: AtomicUsize::new(0),
        }
    }

    /// Claims the slot if it holds a mapping `fits` accepts: `(addr, len)`.
    fn claim(&self, fits: impl Fn(usize, usize) -> bool) -> Option<(usize, usize)> {
        // Acquire: pairs with the Release store of the key in `offer`.
        let k = self.key.load(Ordering::Acquire);
        if k <= SLOT_RESERVED {
            return None;
        }
        // Acquire: as above (on success the slot is ours; on failure we
        // move on).
        self.key
            .compare_exchange(k, SLOT_RESERVED, Ordering::Acquire, Ordering::Relaxed)
            .ok()?;
        // Relaxed: ordered by the Acquire CAS (the occupant's length).
        let len = self.len.load(Ordering::Relaxed);
        if fits(k, len) {
            // Release: pairs with the loads in `claim` and `offer`.
            self.key.store(SLOT_EMPTY, Ordering::Release);
            Some((k, len))
        } else {
            // Release: puts it back, as in `offer`.
            self.key.store(k, Ordering::Release);
            None
        }
    }

    /// Stores a mapping in the slot if it is empty.
    fn offer(&self, addr: usize, len: usize) -> bool {
        // Acquire: pairs with the Release store of `SLOT_EMPTY` in `claim`,
        // so the claimer's read of the old length happens before our write.
        // The Release store below publishes our content.
        if self
            .key
            .compare_exchange(
                SLOT_EMPTY,
                SLOT_RESERVED,
                Ordering::Acquire,
                Ordering::Relaxed,
            )
            .is_err()
        {
            return false;
        }
        // Relaxed: published by the Release store of the key.
        self.len.store(len, Ordering::Relaxed);
        // Release: pairs with the Acquire load in `claim`.
        self.key.store(addr, Ordering::Release);
        true
    }
}

const HUGE_SLOTS: usize = 1 << 16;
const SLOT_EMPTY: usize = 0;
const SLOT_TOMB: usize = 1;
const SLOT_RESERVED: usize = 2;

impl HugeTable {
    const fn new() -> Self {
        Self {
            slots: AtomicPtr::new(ptr::null_mut()),
        }
    }

    /// The slots, mapped on first use when `create`.
    fn slots(&self, create: bool) -> Option<&[HugeSlot]> {
        // Acquire: pairs with the AcqRel CAS below that published the
        // (zeroed) mapping.
        let mut p = self.slots.load(Ordering::Acquire);
        if p.is_null() {
            if !create {
                return None;
            }
            let m = os::map_rw(HUGE_SLOTS * size_of::<HugeSlot>())?
                .as_ptr()
                .cast();
            // AcqRel: Release publishes the mapping; Acquire on failure
            // reads the winner's.
            p = match self.slots.compare_exchange(
                ptr::null_mut(),
                m,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => m,
                Err(winner) => {
                    // SAFETY: our fresh mapping lost the race, never shared.
                    unsafe { os::unmap(m.cast(), HUGE_SLOTS * size_of::<HugeSlot>()) };
                    winner
                }
            };
        }
        // SAFETY: a zeroed mapping of `HUGE_SLOTS` slots (all-zero is a
        // valid atomic), never unmapped while the heap lives.
        Some(unsafe { core::slice::from_raw_parts(p, HUGE_SLOTS) })
    }

    /// The probe sequence of `addr`: every slot, starting at its hash.
    fn probe(addr: usize) -> impl Iterator<Item = usize> {
        let h = ((addr >> 12) as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 48;
        (0..HUGE_SLOTS).map(move |i| (h as usize + i) % HUGE_SLOTS)
    }

    /// Records a huge block; `false` when the table cannot (no memory for
    /// it, or 65 536 huge blocks live).
    fn insert(&self, addr: usize, len: usize) -> bool {
        let Some(slots) = self.slots(true) else {
            return false;
        };
        for i in Self::probe(addr) {
            let s = &slots[i];
            // Relaxed: only a hint; the CAS below decides.
            let k = s.key.load(Ordering::Relaxed);
            if (k == SLOT_EMPTY || k == SLOT_TOMB)
                // Acquire: pairs with the Release CAS in `remove` that
                // tombstoned the slot, so the remover's read of the old
                // length happens before our write of the new one. The
                // Release store of the key below publishes our content.
                && s.key.compare_exchange(k, SLOT_RESERVED, Ordering::Acquire, Ordering::Relaxed).is_ok()
            {
                // Relaxed: published by the Release store of the key.
                s.len.store(len, Ordering::Relaxed);
                // Release: pairs with the Acquire loads in `find`.
                s.key.store(addr, Ordering::Release);
                return true;
            }
        }
        false
    }

    /// The slot holding `addr`.
    fn find(&self, addr: usize) -> Option<&HugeSlot> {
        let slots = self.slots(false)?;
        if addr <= SLOT_RESERVED {
            return None;
        }
        for i in Self::probe(addr) {
            // Acquire: pairs with the Release store in `insert` (the
            // length is then visible).
            match slots[i].key.load(Ordering::Acquire) {
                k if k == addr => return Some(&slots[i]),
                SLOT_EMPTY => return None,
                _ => {}
            }
        }
        None
    }

    /// The mapping length of the huge block at `addr`.
    fn len_of(&self, addr: usize) -> Option<usize> {
        // Relaxed: ordered by the Acquire load of the key in `find`.
        self.find(addr).map(|s| s.len.load(Ordering::Relaxed))
    }

    /// Removes the huge block at `addr`, returning its mapping length; `None`
    /// if it is not recorded (never ours, or freed already: of two threads
    /// freeing it, one wins).
    fn remove(&self, addr: usize) -> Option<usize> {
        let s = self.find(addr)?;
        // Relaxed: ordered by the Acquire load of the key in `find`.
        let len = s.len.load(Ordering::Relaxed);
        // Release: pairs with the Acquire CAS of a later `insert` reusing
        // the slot (our read of the length above comes first).
        s.key
            .compare_exchange(addr, SLOT_TOMB, Ordering::Release, Ordering::Relaxed)
            .is_ok()
            .then_some(len)
    }
}

/// How long (ms) a large operation waits for a `fork` in progress.
const FORK_WAIT_MS: usize = 100;

/// How many times `alloc_large` searches the index again, while other large
/// operations hold runs, before it maps a new region.
const LARGE_RETRIES: usize = 64;

/// Freed large blocks of one size, kept for reuse: a stack of batch
/// descriptors (type-stable, so the stack's reads of a popped node's link
/// never touch a block a program may be writing), each holding one block.
struct LargeCache {
    stack: IntrusiveStack,
    count: AtomicUsize,
}

impl LargeCache {
    #[cfg(not(loom))]
    const fn new() -> Self {
        Self {
            stack: IntrusiveStack::new(),
            count: AtomicUsize::new(0),
        }
    }

    #[cfg(loom)]
    fn new() -> Self {
        Self {
            stack: IntrusiveStack::new(),
            count: AtomicUsize::new(0),
        }
    }
}

/// The state of a heap that does not depend on its free index.
pub(crate) struct Core {
    /// Start of the arena's data (after the side table); null until the
    /// arena is reserved. A shim atomic: it publishes the side table (under
    /// loom, records built of loom cells and atomics).
    data: crate::sync::AtomicPtr<u8>,
    arena_bytes: usize,
    /// Bytes of the side table in front of the arena's data: a `SpanMeta`
    /// per span, then a `u32` per page holding the page count of the large
    /// block starting there (0 where none starts).
    table_bytes: usize,
    /// Bytes of the arena handed out to spans and large regions so far.
    bump: AtomicUsize,
    /// `CHECK_ON`, `CHECK_OFF`, or `CHECK_UNKNOWN` for the process heap
    /// until it reserves its arena and reads `VVMALLOC_CHECKED` (see the
    /// `checked` module).
    checked: AtomicU8,
    /// Each class's shared pages and counters.
    pub(crate) pages: [ClassPages; CLASSES],
    /// Empty pages, still resident: reused first, by any class, and given
    /// back to the OS by `purge_pages`.
    pub(crate) dirty: IntrusiveStack,
    /// Bytes in `dirty`.
    pub(crate) dirty_bytes: AtomicUsize,
    /// Free batch descriptors.
    batches: IntrusiveStack,
    /// Spans given back to the OS, ready for any use.
    pub(crate) free_spans: IntrusiveStack,
    /// Freed large blocks by page count (index `pages - 1`): a program that
    /// frees and allocates blocks of one size over and over (zlib's 32 and
    /// 64 KiB windows, say) reuses them with two stack operations instead
    /// of a search, split and coalesce in the free index.
    large_cache: [LargeCache; LARGE_CACHE_PAGES],
    /// Bytes in `large_cache`.
    large_cached: AtomicUsize,
    /// Held by a purge of the pool of empty pages or of the large heap's
    /// free runs (and by a fork in progress): one at a time.
    pub(crate) scavenging: AtomicBool,
    pub(crate) requested: AtomicIsize,
    large_in_use: AtomicUsize,
    large_free: AtomicUsize,
    large_freed_since_purge: AtomicUsize,
    /// Large operations that may hold free runs out of the index for a
    /// moment (claimed to split, coalesce or purge, not yet returned).
    large_in_flight: AtomicUsize,
    last_purge_ms: AtomicUsize,
    pub(crate) last_scavenge_ms: AtomicUsize,
    /// Set by `Heap::prepare_fork` while a `fork` is under way: new large
    /// operations wait (see `InFlight`).
    forking: AtomicBool,
    /// The `pthread_self` of the thread forking (it may still allocate).
    fork_owner: AtomicUsize,
    /// Called once the arena is reserved (the process heap registers its
    /// `pthread_atfork` handlers there: it may allocate).
    on_reserve: Option<fn()>,
    /// The huge blocks: address and mapping length (see `HugeTable`).
    huge: HugeTable,
    /// Freed huge mappings kept for reuse.
    huge_cache: [HugeSlot; HUGE_CACHE_SLOTS],
    /// Bytes in `huge_cache`.
    huge_cached: AtomicUsize,
    huge_blocks: AtomicUsize,
    huge_bytes: AtomicUsize,
    pub(crate) spans_released: AtomicUsize,
    misuse: AtomicUsize,
    inject_failures: AtomicUsize,
}

/// A heap instance: its own arena, central heaps and free index, independent
/// of every other heap. See the [module documentation](super).
///
/// The heap's own methods (and its [`GlobalAlloc`] and
/// [`allocator_api2::alloc::Allocator`] implementations) take the
/// *cache-less* path: lock-free, one CAS per small operation. For the fast
/// path, each thread takes a [`LocalHeap`] with [`local`](Self::local).
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
    index: I,
}

// SAFETY: the raw pointers inside (arena, free chains) are owned by the heap,
// and every shared access goes through atomics or is owned exclusively by
// the protocols described in the module documentation.
unsafe impl Send for Core {}
// SAFETY: as above.
unsafe impl Sync for Core {}

/// The initialiser of `Core`, shared by the `const` constructor and loom's
/// (whose atomics are not `const`).
macro_rules! core_new {
    ($config:expr, $central:expr, $stack:expr, $cache:expr) => {{
        let config: HeapConfig = $config;
        let arena_bytes = config.arena_bytes.next_multiple_of(SPAN);
        Self {
            data: crate::sync::AtomicPtr::new(ptr::null_mut()),
            arena_bytes,
            table_bytes: (arena_bytes / SPAN * size_of::<SpanMeta>()
                + arena_bytes / PAGE * size_of::<AtomicU32>())
            .next_multiple_of(SPAN),
            bump: AtomicUsize::new(0),
            checked: AtomicU8::new(if config.checked { CHECK_ON } else { CHECK_OFF }),
            pages: $central,
            dirty: $stack,
            dirty_bytes: AtomicUsize::new(0),
            batches: $stack,
            free_spans: $stack,
            large_cache: $cache,
            large_cached: AtomicUsize::new(0),
            scavenging: AtomicBool::new(false),
            requested: AtomicIsize::new(0),
            large_in_use: AtomicUsize::new(0),
            large_free: AtomicUsize::new(0),
            large_freed_since_purge: AtomicUsize::new(0),
            large_in_flight: AtomicUsize::new(0),
            last_purge_ms: AtomicUsize::new(0),
            last_scavenge_ms: AtomicUsize::new(0),
            forking: AtomicBool::new(false),
            fork_owner: AtomicUsize::new(0),
            on_reserve: None,
            huge: HugeTable::new(),
            huge_cache: [const { HugeSlot::new() }; HUGE_CACHE_SLOTS],
            huge_cached: AtomicUsize::new(0),
            huge_blocks: AtomicUsize::new(0),
            huge_bytes: AtomicUsize::new(0),
            spans_released: AtomicUsize::new(0),
            misuse: AtomicUsize::new(0),
            inject_failures: AtomicUsize::new(0),
        }
    }};
}

impl Core {
    #[cfg(not(loom))]
    const fn new(config: HeapConfig) -> Self {
        core_new!(
            config,
            [const { ClassPages::new() }; CLASSES],
            IntrusiveStack::new(),
            [const { LargeCache::new() }; LARGE_CACHE_PAGES]
        )
    }

    #[cfg(loom)]
    fn new(config: HeapConfig) -> Self {
        core_new!(
            config,
            core::array::from_fn(|_| ClassPages::new()),
            IntrusiveStack::new(),
            core::array::from_fn(|_| LargeCache::new())
        )
    }

    #[inline]
    fn table_bytes(&self) -> usize {
        self.table_bytes
    }

    /// Consumes one injected OS failure, if any is pending.
    fn os_fails(&self) -> bool {
        // Relaxed: a test hook; only its count matters.
        self.inject_failures.load(Ordering::Relaxed) > 0
            && self
                .inject_failures
                // Relaxed: as above.
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
                .is_ok()
    }

    /// The arena's data start, reserving the arena on first use.
    #[inline]
    pub(crate) fn arena(&self) -> Option<*mut u8> {
        // Acquire: pairs with the AcqRel CAS in `reserve_arena` that
        // published the arena (and its initialised side table).
        let d = self.data.load(Ordering::Acquire);
        if !d.is_null() {
            return Some(d);
        }
        self.reserve_arena()
    }

    #[cold]
    fn reserve_arena(&self) -> Option<*mut u8> {
        if self.os_fails() {
            return None;
        }
        // Relaxed: a configuration flag; see `Core::checks`.
        if self.checked.load(Ordering::Relaxed) == CHECK_UNKNOWN {
            // SAFETY: a NUL-terminated name; `getenv` does not allocate, and
            // the value is only read here, before any thread of ours could
            // call `setenv` through this heap.
            let v = unsafe { libc::getenv(c"VVMALLOC_CHECKED".as_ptr()) };
            // SAFETY: `getenv` returns null or a NUL-terminated string.
            let on = !v.is_null() && unsafe { core::ffi::CStr::from_ptr(v) }.to_bytes() == b"1";
            // Relaxed: published with the arena by the Release CAS below
            // (racing reservers read the same environment and agree).
            self.checked
                .store(if on { CHECK_ON } else { CHECK_OFF }, Ordering::Relaxed);
        }
        let table = self.table_bytes();
        let bits = self.bits_bytes();
        let total = table.checked_add(self.arena_bytes)?.checked_add(bits)?;
        let r = os::reserve(total.checked_add(SPAN)?)?.as_ptr();
        let start = r.wrapping_add(r.align_offset(SPAN));
        let head = start as usize - r as usize;
        // SAFETY: the slack before `start` and after `start + total` is part
        // of the reservation just made, which nobody else knows.
        unsafe {
            if head > 0 {
                os::unmap(r, head);
            }
            if SPAN - head > 0 {
                os::unmap(start.wrapping_add(total), SPAN - head);
            }
        }
        let bitmap = start.wrapping_add(table + self.arena_bytes);
        // SAFETY: `[start, start + table)` is inside our reservation.
        let table_ok = unsafe { os::commit(NonNull::new_unchecked(start), table) };
        // SAFETY: the checked mode's bitmap, `bits` bytes right after the
        // arena, is inside our reservation too.
        let bits_ok = bits == 0 || unsafe { os::commit(NonNull::new_unchecked(bitmap), bits) };
        if !table_ok || !bits_ok {
            // SAFETY: our reservation, never published.
            unsafe { os::unmap(start, total) };
            return None;
        }
        #[cfg(loom)]
        for i in 0..self.arena_bytes / SPAN {
            // SAFETY: the table is committed and ours; loom's atomics must be
            // constructed (zeroed memory is not a valid loom atomic).
            unsafe { start.cast::<SpanMeta>().add(i).write(SpanMeta::new()) };
        }
        let data = start.wrapping_add(table);
        // AcqRel: Release publishes the zeroed (or constructed) side table
        // to the Acquire load in `arena`; Acquire on failure reads the
        // winner's table.
        match self
            .data
            .compare_exchange(ptr::null_mut(), data, Ordering::AcqRel, Ordering::Acquire)
        {
            Ok(_) => {
                // Published first: the hook may allocate from this heap.
                if let Some(hook) = self.on_reserve {
                    hook();
                }
                Some(data)
            }
            Err(winner) => {
                // SAFETY: our reservation lost the race and was never
                // published.
                unsafe { os::unmap(start, total) };
                Some(winner)
            }
        }
    }

    /// The arena's data start, if it is reserved.
    pub(crate) fn reserved(&self) -> Option<*mut u8> {
        // Acquire: as in `arena`.
        let d = self.data.load(Ordering::Acquire);
        (!d.is_null()).then_some(d)
    }

    /// The arena data start if `p` lies in the arena.
    #[inline]
    fn arena_of(&self, p: *mut u8) -> Option<*mut u8> {
        // Acquire: as in `arena`.
        let d = self.data.load(Ordering::Acquire);
        let off = (p as usize).wrapping_sub(d as usize);
        (!d.is_null() && off < self.arena_bytes).then_some(d)
    }

    #[inline]
    pub(crate) fn meta(&self, data: *mut u8, unit: usize) -> &SpanMeta {
        debug_assert!(unit < self.arena_bytes / SPAN);
        // SAFETY: the side table has one initialised record per unit, in
        // front of `data`, and lives as long as `self`.
        unsafe {
            &*data
                .wrapping_sub(self.table_bytes())
                .cast::<SpanMeta>()
                .add(unit)
        }
    }

    #[inline]
    pub(crate) fn unit_of(data: *mut u8, p: *mut u8) -> usize {
        (p as usize - data as usize) / SPAN
    }

    pub(crate) fn unit_of_meta(&self, data: *mut u8, m: *const SpanMeta) -> usize {
        let table = data.wrapping_sub(self.table_bytes()) as usize;
        (m as usize - table) / size_of::<SpanMeta>()
    }

    /// The page record of the large block starting at `p` (see
    /// `table_bytes`): its length in pages, or 0.
    #[inline]
    fn page_entry(&self, data: *mut u8, p: *mut u8) -> &AtomicU32 {
        let page = (p as usize - data as usize) / PAGE;
        debug_assert!(page < self.arena_bytes / PAGE);
        // SAFETY: the side table has one zero-initialised `u32` per page of
        // the arena after its span records, and lives as long as `self`.
        unsafe {
            &*data
                .wrapping_sub(self.table_bytes())
                .wrapping_add(self.arena_bytes / SPAN * size_of::<SpanMeta>())
                .cast::<AtomicU32>()
                .add(page)
        }
    }

    /// Whether the calling thread is the one forking (see `InFlight`).
    #[cold]
    fn is_fork_owner(&self) -> bool {
        // SAFETY: no preconditions.
        let me = unsafe { libc::pthread_self() } as usize;
        // Relaxed: written by this very thread when it is the owner.
        self.fork_owner.load(Ordering::Relaxed) == me
    }

    /// Takes `len` bytes of fresh arena, committed. Lock-free.
    fn bump(&self, data: *mut u8, len: usize) -> Option<*mut u8> {
        // Relaxed: the CAS below is the only synchronisation needed (each
        // thread commits and uses only the range it won).
        let mut cur = self.bump.load(Ordering::Relaxed);
        loop {
            let end = cur.checked_add(len).filter(|&e| e <= self.arena_bytes)?;
            // Relaxed: as above.
            match self
                .bump
                .compare_exchange_weak(cur, end, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => break,
                Err(now) => cur = now,
            }
        }
        let p = data.wrapping_add(cur);
        // SAFETY: `[p, p + len)` is inside the reservation and was won by
        // this thread alone.
        if self.os_fails() || !unsafe { os::commit(NonNull::new_unchecked(p), len) } {
            // The range stays reserved and unused (it cannot be handed back
            // to the bump without a lock); this is an out-of-memory path.
            return None;
        }
        Some(p)
    }

    /// A span for `kind`: an empty page still resident if any, else one
    /// given back to the OS, else fresh arena.
    pub(crate) fn new_span(&self, data: *mut u8, kind: u32) -> Option<*mut u8> {
        let m = match self.take_dirty().or_else(|| self.free_spans.pop()) {
            Some(l) => l.cast::<SpanMeta>().as_ptr().cast_const(),
            None => {
                let p = self.bump(data, SPAN)?;
                self.meta(data, Self::unit_of(data, p))
            }
        };
        // SAFETY: `m` is a record of our side table (the free-span stack
        // holds only those).
        let m = unsafe { &*m };
        // Relaxed: published with the span's blocks (see `SpanMeta::kind`).
        m.kind.store(kind, Ordering::Relaxed);
        Some(data.wrapping_add(self.unit_of_meta(data, m) * SPAN))
    }

    /// A cached large block of `pages` pages, if any.
    fn cache_take(&self, pages: usize) -> Option<*mut u8> {
        let lc = self.large_cache.get(pages.checked_sub(1)?)?;
        let b = lc.stack.pop()?.cast::<Batch>();
        // SAFETY: popping made the descriptor ours; its block was written
        // before the Release CAS of its push, which our pop acquired.
        let p = unsafe { b.as_ref().head.with(|p| *p) };
        self.batch_put(b);
        // Relaxed: bounds and statistics, no ordering.
        lc.count.fetch_sub(1, Ordering::Relaxed);
        // Relaxed: as above.
        self.large_cached.fetch_sub(pages * PAGE, Ordering::Relaxed);
        Some(p)
    }

    /// Keeps the freed large block `p` of `pages` pages for reuse; `false`
    /// when the cache of its size or the whole cache is full (or no
    /// descriptor can be had).
    fn cache_put(&self, p: *mut u8, pages: usize) -> bool {
        let Some(lc) = pages.checked_sub(1).and_then(|i| self.large_cache.get(i)) else {
            return false;
        };
        let bytes = pages * PAGE;
        // Relaxed (all the counts here): bounds and statistics, no ordering.
        let undo = |with_bytes: bool| {
            lc.count.fetch_sub(1, Ordering::Relaxed);
            if with_bytes {
                self.large_cached.fetch_sub(bytes, Ordering::Relaxed);
            }
        };
        if lc.count.fetch_add(1, Ordering::Relaxed) >= LARGE_CACHE_MAX {
            undo(false);
            return false;
        }
        if self.large_cached.fetch_add(bytes, Ordering::Relaxed) + bytes > LARGE_CACHE_BYTES {
            undo(true);
            return false;
        }
        let Some(b) = self.arena().and_then(|data| self.batch_get(data)) else {
            undo(true);
            return false;
        };
        // SAFETY: we own the descriptor until the push below publishes it.
        unsafe { b.as_ref().head.with_mut(|h| *h = p) };
        // SAFETY: as above; batch records are type-stable.
        unsafe { lc.stack.push(b.cast()) };
        true
    }

    fn batch_get(&self, data: *mut u8) -> Option<NonNull<Batch>> {
        if let Some(l) = self.batches.pop() {
            return Some(l.cast());
        }
        let span = self.new_span(data, KIND_META)?;
        // Under loom every batch's link is a modelled atomic: a handful per
        // metadata span keeps the models small.
        let n = if cfg!(loom) {
            4
        } else {
            SPAN / size_of::<Batch>()
        };
        let at = |i: usize| span.wrapping_add(i * size_of::<Batch>()).cast::<Batch>();
        for i in 0..n {
            // SAFETY: the span is ours and large enough for `n` batches;
            // `Batch` needs 8-byte alignment and spans are 64 KiB aligned.
            unsafe {
                at(i).write(Batch {
                    link: Link::new(),
                    head: UnsafeCell::new(ptr::null_mut()),
                    count: UnsafeCell::new(0),
                })
            };
        }
        for i in 1..n - 1 {
            // SAFETY: just written above, still ours.
            unsafe { (*at(i)).link.set_next(ptr::addr_of_mut!((*at(i + 1)).link)) };
        }
        // SAFETY: batches 1..n are linked in order and ours; batch records
        // are never freed while the heap lives (type-stable memory).
        unsafe {
            self.batches.push_chain(
                NonNull::new_unchecked(ptr::addr_of_mut!((*at(1)).link)),
                NonNull::new_unchecked(ptr::addr_of_mut!((*at(n - 1)).link)),
            )
        };
        NonNull::new(at(0))
    }

    fn batch_put(&self, b: NonNull<Batch>) {
        // SAFETY: the caller owns `b`; batch records are type-stable.
        unsafe { self.batches.push(b.cast()) };
    }

    /// `true` at most once per `DECAY_MS` for the clock `last` (a
    /// millisecond timestamp): the purges that give memory back run only
    /// when their trigger has held for a while, not every time it holds.
    pub(crate) fn rate_limit(&self, last: &AtomicUsize) -> bool {
        let now = now_ms();
        // Relaxed: a heuristic; two threads passing at once is harmless
        // (the scavenger flag serialises the work).
        let prev = last.load(Ordering::Relaxed);
        now.wrapping_sub(prev) >= DECAY_MS
            // Relaxed: as above.
            && last.compare_exchange(prev, now, Ordering::Relaxed, Ordering::Relaxed).is_ok()
    }

    /// The class of the small block at `p` in the span `unit` of kind
    /// `kind`, or what is wrong with `p`.
    #[inline]
    fn small_class_at(
        data: *mut u8,
        unit: usize,
        kind: u32,
        p: *mut u8,
    ) -> Result<usize, &'static str> {
        match kind {
            1..=36 => {
                let c = kind as usize - 1;
                let off = p as usize - (data as usize + unit * SPAN);
                if !class::BLOCK_STARTS[c].is_start(off) {
                    Err("free of a pointer inside a small block (not its start)")
                } else {
                    Ok(c)
                }
            }
            _ => Err("free of a pointer in a span that is not in use"),
        }
    }

    /// Counts (or, in checked mode, reports and aborts on) a misuse: `what`
    /// happened at `p`, with numbers that tell more.
    #[cold]
    pub(crate) fn misuse(&self, what: &str, p: *mut u8, details: &[(&str, usize)]) {
        // Relaxed: a statistic.
        self.misuse.fetch_add(1, Ordering::Relaxed);
        if self.checks() {
            report_and_abort(what, p as usize, details);
        }
    }

    /// A huge block, and whether it is a fresh mapping (so zero).
    fn alloc_huge(&self, size: usize, align: usize) -> (*mut u8, bool) {
        let ps = os::page_size();
        let Some(n) = size.checked_next_multiple_of(ps) else {
            return (ptr::null_mut(), false);
        };
        if self.os_fails() {
            return (ptr::null_mut(), false);
        }
        // A cached mapping of the same size (up to an eighth more).
        let fits = |a: usize, len: usize| a % align == 0 && len >= n && len - n <= n / 8;
        if let Some((a, mut len)) = self.huge_cache.iter().find_map(|s| s.claim(fits)) {
            // Relaxed: a bound.
            self.huge_cached.fetch_sub(len, Ordering::Relaxed);
            let p = ptr::with_exposed_provenance_mut::<u8>(a);
            if len > n {
                // The tail goes back, so the block's length is what was
                // asked for (and a free without a size frees just that).
                // SAFETY: the claimed mapping is ours alone; `n` is a
                // multiple of the page size.
                unsafe { os::unmap(p.wrapping_add(n), len - n) };
                len = n;
            }
            if !self.huge.insert(a, len) {
                // SAFETY: the cached mapping is ours alone now.
                unsafe { os::unmap(p, len) };
                return (ptr::null_mut(), false);
            }
            // Relaxed: statistics.
            self.huge_blocks.fetch_add(1, Ordering::Relaxed);
            // Relaxed: as above.
            self.huge_bytes.fetch_add(len, Ordering::Relaxed);
            return (p, false);
        }
        (self.map_huge(n, align), true)
    }

    /// A fresh mapping of `n` bytes aligned to `align`, recorded as a huge
    /// block.
    fn map_huge(&self, n: usize, align: usize) -> *mut u8 {
        let ps = os::page_size();
        let p = if align <= ps {
            match os::map_rw(n) {
                Some(p) => p.as_ptr(),
                None => return ptr::null_mut(),
            }
        } else {
            let Some(len) = n.checked_add(align) else {
                return ptr::null_mut();
            };
            let Some(r) = os::map_rw(len) else {
                return ptr::null_mut();
            };
            let r = r.as_ptr();
            let p = r.wrapping_add(r.align_offset(align));
            let head = p as usize - r as usize;
            // SAFETY: the slack around `[p, p + n)` is part of our fresh
            // mapping.
            unsafe {
                if head > 0 {
                    os::unmap(r, head);
                }
                if len - head - n > 0 {
                    os::unmap(p.wrapping_add(n), len - head - n);
                }
            }
            p
        };
        if !self.huge.insert(p as usize, n) {
            // SAFETY: our fresh mapping of `n` bytes, never handed out.
            unsafe { os::unmap(p, n) };
            return ptr::null_mut();
        }
        // Relaxed: statistics.
        self.huge_blocks.fetch_add(1, Ordering::Relaxed);
        // Relaxed: as above.
        self.huge_bytes.fetch_add(n, Ordering::Relaxed);
        p
    }

    /// Frees a huge block, returning its mapping length; the length comes
    /// from the huge table, so a pointer that is not a live huge block of
    /// ours is reported, not unmapped.
    fn dealloc_huge(&self, p: *mut u8) -> Option<usize> {
        let Some(n) = self.huge.remove(p as usize) else {
            self.misuse("free of a pointer this heap never returned", p, &[]);
            return None;
        };
        if !self.huge_cache_put(p, n) {
            // SAFETY: the table records whole mappings of huge blocks, and
            // the removal made the block ours alone.
            unsafe { os::unmap(p, n) };
        }
        // Relaxed: statistics.
        self.huge_blocks.fetch_sub(1, Ordering::Relaxed);
        // Relaxed: as above.
        self.huge_bytes.fetch_sub(n, Ordering::Relaxed);
        Some(n)
    }

    /// Keeps a freed huge mapping for reuse; `false` if the cache is full.
    fn huge_cache_put(&self, p: *mut u8, len: usize) -> bool {
        // Relaxed: a bound (a race may overshoot by a mapping per thread).
        if self.huge_cached.fetch_add(len, Ordering::Relaxed) + len <= HUGE_CACHE_BYTES
            && self
                .huge_cache
                .iter()
                .any(|s| s.offer(p.expose_provenance(), len))
        {
            return true;
        }
        // Relaxed: as above.
        self.huge_cached.fetch_sub(len, Ordering::Relaxed);
        false
    }

    /// Unmaps every cached huge mapping; returns the bytes.
    fn huge_cache_drain(&self) -> usize {
        let mut released = 0;
        for s in &self.huge_cache {
            if let Some((a, len)) = s.claim(|_, _| true) {
                // Relaxed: a bound.
                self.huge_cached.fetch_sub(len, Ordering::Relaxed);
                // SAFETY: the claimed mapping is ours alone.
                unsafe { os::unmap(ptr::with_exposed_provenance_mut::<u8>(a), len) };
                released += len;
            }
        }
        released
    }
}

/// The usable size of the block an allocation of `size` bytes aligned to
/// `align` gets (its class size, or whole pages): allocating that much
/// costs the same and wastes nothing. `None` when no block could serve
/// the request.
///
/// ```
/// use vvmalloc::heap::good_size;
/// assert_eq!(good_size(20, 8), Some(32));
/// assert_eq!(good_size(20_000, 8), Some(20_480));
/// ```
pub fn good_size(size: usize, align: usize) -> Option<usize> {
    let size = size.max(1);
    if let Some(c) = class::class_of(size, align) {
        Some(CLASS_SIZES[c] as usize)
    } else if size < HUGE_MIN {
        Some(size.next_multiple_of(PAGE))
    } else {
        size.checked_next_multiple_of(os::page_size())
            .filter(|&n| n <= isize::MAX as usize)
    }
}

/// Memory is given back at most once per this many milliseconds by each of
/// the automatic triggers (small scavenging, large purging).
const DECAY_MS: usize = 1000;

/// A coarse monotonic clock in milliseconds (no allocation, a vDSO call).
fn now_ms() -> usize {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // (Miri knows only the precise clock.)
    let clock = if cfg!(miri) {
        libc::CLOCK_MONOTONIC
    } else {
        libc::CLOCK_MONOTONIC_COARSE
    };
    // SAFETY: `ts` is a valid out-pointer.
    unsafe { libc::clock_gettime(clock, &mut ts) };
    ts.tv_sec as usize * 1000 + ts.tv_nsec as usize / 1_000_000
}

/// Writes `vvmalloc: <what> (address 0x..., <name> <value>, ...)` to stderr
/// without allocating, then aborts.
#[cold]
fn report_and_abort(what: &str, addr: usize, details: &[(&str, usize)]) -> ! {
    let mut buf = [0u8; 512];
    let mut len = 0;
    let mut put = |bytes: &[u8]| {
        let n = bytes.len().min(buf.len() - len);
        buf[len..len + n].copy_from_slice(&bytes[..n]);
        len += n;
    };
    put(b"vvmalloc: ");
    put(what.as_bytes());
    put(b" (address 0x");
    let mut hex = [0u8; 16];
    for (i, h) in hex.iter_mut().enumerate() {
        *h = b"0123456789abcdef"[(addr >> (60 - 4 * i)) & 0xf];
    }
    put(&hex);
    for (name, value) in details {
        put(b", ");
        put(name.as_bytes());
        put(b" ");
        let mut digits = [0u8; 20];
        let mut at = digits.len();
        let mut v = *value;
        loop {
            at -= 1;
            digits[at] = b'0' + (v % 10) as u8;
            v /= 10;
            if v == 0 {
                break;
            }
        }
        put(&digits[at..]);
    }
    put(b")\n");
    // SAFETY: writing our own buffer to fd 2; abort has no preconditions.
    unsafe {
        libc::write(2, buf.as_ptr().cast(), len);
        libc::abort()
    }
}

impl Heap<SkipIndex> {
    /// A heap with the default configuration and the skip-list free index.
    /// Reserves nothing until the first allocation.
    pub fn new() -> Self {
        Self::with_config(HeapConfig::new())
    }

    /// The process heap of [`VvMalloc`](crate::VvMalloc).
    #[cfg(not(loom))]
    pub(crate) const fn global() -> Self {
        let mut core = Core::new(HeapConfig::new());
        core.checked = AtomicU8::new(CHECK_UNKNOWN);
        core.on_reserve = Some(super::global::register_fork_handlers);
        Self {
            core,
            index: SkipIndex::new(),
        }
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

    /// A thread cache on this heap: the fast path. See [`LocalHeap`].
    pub fn local(&self) -> LocalHeap<'_, I> {
        LocalHeap::new(self)
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
        // Relaxed: a test hook.
        self.core.inject_failures.store(n, Ordering::Relaxed);
    }

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
    /// [`good_size`] to keep that counter exact.
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
    /// block of a [checked](HeapConfig::checked) heap). `None` for null and
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
                let pages = core.page_entry(data, p).load(Ordering::Relaxed) as usize;
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

    /// Readies the heap for a `fork()`: call it on the forking thread right
    /// before, and [`after_fork_parent`](Self::after_fork_parent) or
    /// [`after_fork_child`](Self::after_fork_child) right after (as
    /// `pthread_atfork` handlers do; the process heap of
    /// [`VvMalloc`](crate::VvMalloc) registers them itself).
    ///
    /// The heap's small paths hold no lock and leave every shared structure
    /// consistent between any two atomic steps, so a child can use them
    /// whatever the other threads were doing. The large path's operations
    /// may hold free runs out of the index for a moment, and pin an epoch
    /// of the free index's reclamation scheme: a child forked then would
    /// lose those runs and, with epoch reclamation, never free a retired
    /// node again (the pinned thread does not exist in it). So this waits
    /// until no large operation is in flight and makes new ones (on other
    /// threads) wait until the fork is over; it also waits out a running
    /// scavenger.
    pub fn prepare_fork(&self) {
        let core = &self.core;
        // Acquire: as in `Core::scavenge` (we hold the scavenger's flag
        // until the fork is over).
        while core
            .scavenging
            .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            crate::sync::thread::yield_now();
        }
        // SAFETY: no preconditions.
        let me = unsafe { libc::pthread_self() } as usize;
        // Relaxed: read by this thread only (`Core::is_fork_owner`); other
        // threads compare it with their own id, which never matches.
        core.fork_owner.store(me, Ordering::Relaxed);
        // SeqCst: the handshake with `InFlight::new`.
        core.forking.store(true, Ordering::SeqCst);
        // SeqCst: as above.
        while core.large_in_flight.load(Ordering::SeqCst) > 0 {
            crate::sync::thread::yield_now();
        }
    }

    /// Ends what [`prepare_fork`](Self::prepare_fork) began, in the parent.
    pub fn after_fork_parent(&self) {
        let core = &self.core;
        // Relaxed: see `prepare_fork`.
        core.fork_owner.store(0, Ordering::Relaxed);
        // SeqCst: the handshake with `InFlight::new`.
        core.forking.store(false, Ordering::SeqCst);
        // Release: as in `Core::scavenge`.
        core.scavenging.store(false, Ordering::Release);
    }

    /// Ends what [`prepare_fork`](Self::prepare_fork) began, in the child.
    /// The other threads' caches are lost to the child (their blocks stay
    /// allocated there: a bounded leak, as in every allocator with thread
    /// caches).
    pub fn after_fork_child(&self) {
        self.after_fork_parent();
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
    /// [`LocalHeap::flush`] hands its empty ones over.)
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
            // Relaxed: statistics.
            in_use_blocks: core.pages[c].in_use.load(Ordering::Relaxed).max(0) as usize,
            // Relaxed: as above.
            spans: core.pages[c].spans.load(Ordering::Relaxed),
        });
        // Relaxed: as above.
        let bump = core.bump.load(Ordering::Relaxed);
        // Relaxed: as above.
        let huge = core.huge_bytes.load(Ordering::Relaxed);
        // Acquire: as in `Core::arena`.
        let data = core.data.load(Ordering::Acquire);
        let resident = if data.is_null() {
            0
        } else {
            // SAFETY: the used part of the arena is mapped.
            unsafe { os::resident(data, bump) }.unwrap_or(bump)
        };
        let small_in_use: usize = classes.iter().map(|c| c.in_use_blocks * c.size).sum();
        // Relaxed: as above.
        let large = core.large_in_use.load(Ordering::Relaxed);
        Stats {
            // Relaxed: as above.
            requested_bytes: (core.requested.load(Ordering::Relaxed)
                + core
                    .pages
                    .iter()
                    // Relaxed: as above.
                    .map(|k| k.requested.load(Ordering::Relaxed))
                    .sum::<isize>())
            .max(0) as usize,
            in_use_bytes: small_in_use + large + huge,
            // Relaxed: as above.
            mapped_bytes: bump + huge + core.huge_cached.load(Ordering::Relaxed),
            resident_bytes: resident + huge,
            small: classes,
            large_in_use_bytes: large,
            free_index_blocks: self.index.len(),
            // Relaxed: as above.
            free_index_bytes: core.large_free.load(Ordering::Relaxed),
            // Relaxed: as above.
            large_cache_bytes: core.large_cached.load(Ordering::Relaxed),
            reclaim_held_nodes: self.index.held_back(),
            // Relaxed: as above.
            huge_blocks: core.huge_blocks.load(Ordering::Relaxed),
            huge_bytes: huge,
            // Relaxed: as above.
            spans_released: core.spans_released.load(Ordering::Relaxed),
            // Relaxed: as above.
            empty_page_bytes: core.dirty_bytes.load(Ordering::Relaxed),
            // Relaxed: as above.
            misuse: core.misuse.load(Ordering::Relaxed),
            arena_bytes: core.arena_bytes,
        }
    }

    // ----- the paths shared by the cache-less API and `LocalHeap` -----

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
                    // Relaxed: a statistic.
                    self.core
                        .requested
                        .fetch_add(size as isize, Ordering::Relaxed);
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
                // Relaxed: a statistic.
                self.core
                    .requested
                    .fetch_sub(size as isize, Ordering::Relaxed);
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
    fn alloc_not_small(&self, layout: Layout) -> *mut u8 {
        let (size, align) = (layout.size(), layout.align());
        let p = if size >= HUGE_MIN {
            self.core.alloc_huge(size, align).0
        } else {
            self.alloc_large(size, align).0
        };
        if !p.is_null() {
            // Relaxed: a statistic.
            self.core
                .requested
                .fetch_add(layout.size() as isize, Ordering::Relaxed);
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
                // Relaxed: a statistic.
                self.core
                    .requested
                    .fetch_add(layout.size() as isize, Ordering::Relaxed);
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
                    // Relaxed: a statistic.
                    core.requested
                        .fetch_sub(size.unwrap_or(n) as isize, Ordering::Relaxed);
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
                // Relaxed: a statistic.
                core.requested
                    .fetch_sub(size.unwrap_or(n) as isize, Ordering::Relaxed);
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
                        // Relaxed: a statistic.
                        None => _ = core.requested.fetch_add(delta, Ordering::Relaxed),
                    }
                    return p;
                }
            } else if kind == KIND_LARGE
                && new_size > class::SMALL_MAX
                && new_size < HUGE_MIN
                && self.resize_large(p, layout.size(), new_size)
            {
                // Relaxed: a statistic.
                core.requested.fetch_add(delta, Ordering::Relaxed);
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
                    // Relaxed: statistics.
                    core.huge_bytes.fetch_add(new, Ordering::Relaxed);
                    // Relaxed: as above.
                    core.huge_bytes.fetch_sub(old, Ordering::Relaxed);
                    // Relaxed: as above.
                    core.requested.fetch_add(delta, Ordering::Relaxed);
                    q.as_ptr()
                }
                None => ptr::null_mut(),
            };
        }
        let q = self.alloc_in(bins.as_deref_mut(), new_layout);
        if !q.is_null() {
            // SAFETY: both blocks hold at least the bytes copied and are
            // distinct live blocks.
            unsafe { ptr::copy_nonoverlapping(p, q, layout.size().min(new_size)) };
            // SAFETY: the caller's contract.
            unsafe { self.dealloc_in(bins, p, layout) };
        }
        q
    }

    // ----- the large path -----

    fn region_bytes(&self) -> usize {
        LARGE_REGION.min(self.core.arena_bytes / 4).max(SPAN)
    }

    /// A large block, and whether it lies in fresh (never used, so zero)
    /// memory.
    fn alloc_large(&self, size: usize, align: usize) -> (*mut u8, bool) {
        let core = &self.core;
        let Some(data) = core.arena() else {
            return (ptr::null_mut(), false);
        };
        let n = size.next_multiple_of(PAGE);
        if align <= PAGE {
            if let Some(p) = core.cache_take(n / PAGE) {
                // Relaxed: a statistic.
                core.large_in_use.fetch_add(n, Ordering::Relaxed);
                // Relaxed: as below.
                core.page_entry(data, p)
                    .store((n / PAGE) as u32, Ordering::Relaxed);
                return (p, false);
            }
        }
        let need = if align > PAGE { n + align - PAGE } else { n };
        // While another thread splits or coalesces, the runs it claimed are
        // out of the index: a failed search then is not a full heap. Without
        // the retries, two threads sharing a few big runs would map a new
        // region at almost every collision (measured: +400 MiB of address
        // space per pass of a 2-thread large-block trace, for nothing).
        let _busy = InFlight::new(core);
        let mut retries = 0;
        let found = loop {
            match self.index.take_fit(need) {
                Some(b) => break Some(b),
                // SeqCst: see `InFlight`. More than us: someone holds runs.
                None if retries < LARGE_RETRIES
                    && core.large_in_flight.load(Ordering::SeqCst) > 1 =>
                {
                    retries += 1;
                    crate::sync::thread::yield_now();
                }
                None => break None,
            }
        };
        let (addr, got, fresh) = match found {
            Some((a, s)) => {
                // Relaxed: a statistic.
                core.large_free.fetch_sub(s, Ordering::Relaxed);
                (a, s, false)
            }
            None => {
                let len = need.max(self.region_bytes()).next_multiple_of(SPAN);
                let Some(r) = core.bump(data, len) else {
                    return (ptr::null_mut(), false);
                };
                let first = Core::unit_of(data, r);
                for u in first..first + len / SPAN {
                    // Relaxed: published with the blocks (see `SpanMeta`).
                    core.meta(data, u).kind.store(KIND_LARGE, Ordering::Relaxed);
                }
                (r as usize, len, true)
            }
        };
        let start = addr.next_multiple_of(align.max(PAGE));
        let front = start - addr;
        let back = got - front - n;
        if front > 0 {
            self.insert_remainder(addr, front);
        }
        if back > 0 {
            self.insert_remainder(start + n, back);
        }
        // Relaxed: a statistic.
        core.large_in_use.fetch_add(n, Ordering::Relaxed);
        let p = data.with_addr(start);
        // Relaxed: read by a free of the block, which the program orders
        // after this allocation (it hands the pointer over).
        core.page_entry(data, p)
            .store((n / PAGE) as u32, Ordering::Relaxed);
        (p, fresh)
    }

    /// Records the free run `[addr, addr + size)`, coalesced with free
    /// neighbours; purges the free runs when there are too many free bytes.
    fn free_run(&self, data: *mut u8, mut addr: usize, mut size: usize) {
        let core = &self.core;
        let busy = InFlight::new(core);
        // Runs grow by coalescing up to a region's size and no further: one
        // giant run would be hidden from every other thread whenever one
        // thread splits it (see `alloc_large`), and a failed search maps a
        // new region.
        let cap = self.region_bytes();
        if let Some(rs) = self
            .index
            .find_at(addr + size)
            .filter(|&rs| size + rs <= cap)
        {
            if self.index.take_exact(addr + size, rs) {
                // Relaxed: a statistic.
                core.large_free.fetch_sub(rs, Ordering::Relaxed);
                size += rs;
            }
        }
        if let Some((la, ls)) = self
            .index
            .floor(addr - 1)
            .filter(|&(_, ls)| size + ls <= cap)
        {
            if la + ls == addr && self.index.take_exact(la, ls) {
                // Relaxed: a statistic.
                core.large_free.fetch_sub(ls, Ordering::Relaxed);
                addr = la;
                size += ls;
            }
        }
        let _ = data;
        // Relaxed: a statistic, and the purge's trigger.
        let free = core.large_free.fetch_add(size, Ordering::Relaxed) + size;
        self.index.insert(addr, size);
        drop(busy);
        // Relaxed: a heuristic trigger.
        let freed = core
            .large_freed_since_purge
            .fetch_add(size, Ordering::Relaxed)
            + size;
        if freed > LARGE_PURGE_MIN
            // Relaxed: as above.
            && free > LARGE_PURGE_MIN + 4 * core.large_in_use.load(Ordering::Relaxed)
            && core.rate_limit(&core.last_purge_ms)
        {
            self.purge_large();
        }
    }

    /// Gives back the pages of every long free large run (`PURGE_RUN_MIN`),
    /// unless another purge or scavenge is running. The trigger
    /// (`LARGE_PURGE_MIN`) purges a heap that is mostly free, and at most
    /// once per 64 MiB freed, so a program that reuses its large blocks does
    /// not fault them in again and again.
    #[cold]
    fn purge_large(&self) {
        let core = &self.core;
        // Acquire/Release: the scavenger's flag, as in `Core::scavenge`.
        if core
            .scavenging
            .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
        {
            // Relaxed: a heuristic trigger.
            core.large_freed_since_purge.store(0, Ordering::Relaxed);
            self.trim_large(PURGE_RUN_MIN);
            // Release: as in `Core::scavenge`.
            core.scavenging.store(false, Ordering::Release);
        }
    }

    /// Frees a large block, returning its length (pages); `None` (and a
    /// misuse) if `p` is not the start of a live large block.
    ///
    /// # Safety
    ///
    /// `p` lies in a large region of this heap, and if it is a live block,
    /// it is not used afterwards.
    unsafe fn dealloc_large(&self, p: *mut u8) -> Option<usize> {
        let core = &self.core;
        let data = core.arena_of(p)?;
        let addr = p as usize;
        if addr % PAGE != 0 {
            core.misuse(
                "free of a pointer inside a large block (not its start)",
                p,
                &[],
            );
            return None;
        }
        // The page record is set while the block is live, at its start only:
        // of two frees of one block (or a free of a page inside a block, or
        // of a free run) only one finds it.
        // Relaxed: see `alloc_large`; the swap itself decides between racing
        // frees.
        let pages = core.page_entry(data, p).swap(0, Ordering::Relaxed) as usize;
        if pages == 0 {
            core.misuse(
                "double free of a large block (or a pointer inside one)",
                p,
                &[],
            );
            return None;
        }
        let n = pages * PAGE;
        // Relaxed: a statistic.
        core.large_in_use.fetch_sub(n, Ordering::Relaxed);
        if !core.cache_put(p, pages) {
            self.free_run(data, addr, n);
        }
        Some(n)
    }

    /// Grows or shrinks a large block in place; `false` if it cannot.
    fn resize_large(&self, p: *mut u8, old_size: usize, new_size: usize) -> bool {
        let core = &self.core;
        let Some(data) = core.arena_of(p) else {
            return false;
        };
        let addr = p as usize;
        let old = old_size.max(1).next_multiple_of(PAGE);
        let new = new_size.next_multiple_of(PAGE);
        if new == old {
            return true;
        }
        if new < old {
            // Relaxed: as in `alloc_large`.
            core.page_entry(data, p)
                .store((new / PAGE) as u32, Ordering::Relaxed);
            // Relaxed: a statistic.
            core.large_in_use.fetch_sub(old - new, Ordering::Relaxed);
            self.free_run(data, addr + new, old - new);
            return true;
        }
        let want = new - old;
        let _busy = InFlight::new(core);
        match self.index.find_at(addr + old) {
            Some(rs) if rs >= want && self.index.take_exact(addr + old, rs) => {
                // Relaxed: statistics.
                core.large_free.fetch_sub(rs, Ordering::Relaxed);
                if rs > want {
                    self.insert_remainder(addr + new, rs - want);
                }
                // Relaxed: as above.
                core.large_in_use.fetch_add(want, Ordering::Relaxed);
                // Relaxed: as in `alloc_large`.
                core.page_entry(data, p)
                    .store((new / PAGE) as u32, Ordering::Relaxed);
                true
            }
            _ => false,
        }
    }

    /// Releases the pages of every free large run of at least `min_run`
    /// bytes. Returns the bytes released.
    fn trim_large(&self, min_run: usize) -> usize {
        let core = &self.core;
        // Acquire: as in `Core::arena`.
        let data = core.data.load(Ordering::Acquire);
        if data.is_null() {
            return 0;
        }
        let _busy = InFlight::new(core);
        // Claim every run, chaining them through their first pages.
        let mut chain: *mut u8 = ptr::null_mut();
        let mut released = 0;
        while let Some((a, s)) = self.index.take_fit(min_run) {
            // Relaxed: a statistic.
            core.large_free.fetch_sub(s, Ordering::Relaxed);
            let p = data.with_addr(a);
            // SAFETY: the run is ours (claimed) and at least a page.
            unsafe {
                p.cast::<(*mut u8, usize)>().write((chain, s));
                os::release(p.wrapping_add(PAGE), s - PAGE);
            }
            released += s;
            chain = p;
        }
        while !chain.is_null() {
            // SAFETY: written above; the run is still ours.
            let (next, s) = unsafe { chain.cast::<(*mut u8, usize)>().read() };
            // SAFETY: as above.
            unsafe { os::release(chain, PAGE) };
            self.free_run_clean(chain as usize, s);
            chain = next;
        }
        released
    }

    /// Records the remainder of a free run that was split: its neighbours
    /// are the block carved from the run and whatever bordered the run,
    /// which was not free when the run was recorded (else they would have
    /// been coalesced), so there is nothing to coalesce with. (A neighbour
    /// freed concurrently since is left uncoalesced: fragmentation, not an
    /// error.)
    fn insert_remainder(&self, addr: usize, size: usize) {
        self.free_run_clean(addr, size);
    }

    /// Records a free run without coalescing or purging.
    fn free_run_clean(&self, addr: usize, size: usize) {
        // Relaxed: a statistic.
        self.core.large_free.fetch_add(size, Ordering::Relaxed);
        self.index.insert(addr, size);
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
        // ones and the huge table are ours.
        self.core.huge_cache_drain();
        // Acquire: as in `HugeTable::slots`.
        let slots = self.core.huge.slots.load(Ordering::Acquire);
        if !slots.is_null() {
            // SAFETY: the table's own mapping; `&mut self`: nobody uses it.
            unsafe { os::unmap(slots.cast(), HUGE_SLOTS * size_of::<HugeSlot>()) };
        }
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
