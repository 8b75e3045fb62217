//! Large blocks: page runs carved from regions of the arena, kept in the
//! free index (split, coalesced, purged), with a cache of freed blocks by
//! page count.

use core::mem::size_of;
use core::ptr::{self, NonNull};

use super::class::{HUGE_MIN, SPAN};
use super::index::FreeIndex;
use super::instance::Heap;
use super::large_cache::{Batch, LARGE_CACHE_BYTES, LARGE_CACHE_MAX};
use super::os::{self, PAGE};
use super::page::{KIND_LARGE, KIND_META};
use super::state::Core;
use super::thread_heap::seeded::{self, PageBug};
use crate::intrusive::Link;
use crate::sync::{Ordering, UnsafeCell};

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

/// How many times `alloc_large` searches the index again, while other large
/// operations hold runs, before it maps a new region.
const LARGE_RETRIES: usize = 64;

/// A large block's page record (`Core::page_entry` at its first page):
/// its length in pages in the low 16 bits and, above, the pages of its
/// *growth reserve*: pages right after the block that belong to it, out of
/// the free index, so that `realloc` can grow it there with no index
/// operation and no copy. (Large blocks are below `HUGE_MIN`, 4096 pages,
/// so both fit.) Zero where no live block starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Entry {
    pub(super) pages: usize,
    pub(super) reserve: usize,
}

impl Entry {
    pub(super) fn decode(e: u32) -> Self {
        Self {
            pages: (e & 0xffff) as usize,
            reserve: (e >> 16) as usize,
        }
    }

    pub(super) fn encode(self) -> u32 {
        debug_assert!(self.pages < 1 << 16 && self.reserve < 1 << 16);
        (self.pages | self.reserve << 16) as u32
    }

    /// Pages of the block and its reserve.
    fn total(self) -> usize {
        self.pages + self.reserve
    }
}

/// The growth reserve a block of `pages` pages gets when `realloc` moves it
/// (or makes it large): three times its length, so that growth by 1.5x
/// (or doubling, as `Vec` does) stays in place for two or three steps
/// before the next move, and the block with its reserve stays below
/// `HUGE_MIN`. Untouched reserve pages cost address space, not memory.
pub(super) fn growth_reserve(pages: usize) -> usize {
    (3 * pages).min((HUGE_MIN / PAGE).saturating_sub(pages + 1))
}

impl Core {
    /// Marks the span of `p`, the start of a large block being handed out,
    /// as a span of large blocks, so that a free, `realloc` or
    /// `usable_size` of `p` takes the large path. Only first spans are
    /// marked: those calls get a block's start (an interior pointer finds
    /// its span unmarked, and is reported as misuse). Large regions never
    /// become small spans, so a mark is never wrong later.
    #[inline]
    pub(super) fn mark_large(&self, data: *mut u8, p: *mut u8) {
        let m = self.meta(data, Core::unit_of(data, p));
        // Relaxed: read by a free of the block, which the program orders
        // after this allocation (it hands the pointer over); see
        // `SpanMeta::kind`. Skipped when already set: the record's line
        // is then only read.
        if m.kind.load(Ordering::Relaxed) != KIND_LARGE {
            m.kind.store(KIND_LARGE, Ordering::Relaxed); // as the load above
        }
    }

    /// A cached large block of `pages` pages, if any.
    pub(super) fn cache_take(&self, pages: usize) -> Option<*mut u8> {
        let lc = self.large_cache.get(pages.checked_sub(1)?)?;
        let b = lc.stack.pop()?.cast::<Batch>();
        // SAFETY: popping made the descriptor ours; its block was written
        // before the Release CAS of its push, which our pop acquired.
        let p = unsafe { b.as_ref().head.with(|p| *p) };
        self.batch_put(b);
        lc.count.fetch_sub(1);
        self.large_cached.fetch_sub(pages * PAGE);
        Some(p)
    }

    /// Keeps the freed large block `p` of `pages` pages for reuse; `false`
    /// when the cache of its size or the whole cache is full (or no
    /// descriptor can be had).
    pub(super) fn cache_put(&self, p: *mut u8, pages: usize) -> bool {
        let Some(lc) = pages.checked_sub(1).and_then(|i| self.large_cache.get(i)) else {
            return false;
        };
        let bytes = pages * PAGE;
        // Relaxed (all the counts here): bounds and statistics, no ordering.
        let undo = |with_bytes: bool| {
            lc.count.fetch_sub(1);
            if with_bytes {
                self.large_cached.fetch_sub(bytes);
            }
        };
        if lc.count.fetch_add(1) >= LARGE_CACHE_MAX {
            undo(false);
            return false;
        }
        if self.large_cached.fetch_add(bytes) + bytes > LARGE_CACHE_BYTES {
            undo(true);
            return false;
        }
        let Some(b) = self.arena().and_then(|data| self.batch_get(data)) else {
            undo(true);
            return false;
        };
        if seeded::is(PageBug::CachePublishesFirst) {
            // The seeded bug (loom only): published, then written.
            // SAFETY: none (the bug): a taker may own the descriptor now.
            unsafe { lc.stack.push(b.cast()) };
            // SAFETY: none, as above.
            unsafe { b.as_ref().head.with_mut(|h| *h = p) };
            return true;
        }
        // SAFETY: we own the descriptor until the push below publishes it.
        unsafe { b.as_ref().head.with_mut(|h| *h = p) };
        // SAFETY: as above; batch records are type-stable.
        unsafe { lc.stack.push(b.cast()) };
        true
    }

    pub(super) fn batch_get(&self, data: *mut u8) -> Option<NonNull<Batch>> {
        if let Some(l) = self.batches.pop() {
            return Some(l.cast());
        }
        let span = self.new_span(data, KIND_META)?;
        // One page's worth of descriptors per metadata span, not the whole
        // span: writing 64 KiB of them faulted in 16 pages on a program's
        // first cached large block (the most page faults vvmalloc added to
        // `ls`, docs/preload.md); the rest of the span stays untouched
        // address space. Under loom every batch's link is a modelled
        // atomic: a handful keeps the models small.
        let n = if cfg!(loom) {
            4
        } else {
            PAGE / size_of::<Batch>()
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

    pub(super) fn batch_put(&self, b: NonNull<Batch>) {
        // SAFETY: the caller owns `b`; batch records are type-stable.
        unsafe { self.batches.push(b.cast()) };
    }
}

impl<I: FreeIndex> Heap<I> {
    pub(super) fn region_bytes(&self) -> usize {
        LARGE_REGION.min(self.core.arena_bytes / 4).max(SPAN)
    }

    /// A large block, and whether it lies in fresh (never used, so zero)
    /// memory.
    pub(super) fn alloc_large(&self, size: usize, align: usize) -> (*mut u8, bool) {
        self.alloc_large_reserved(size, align, 0)
    }

    /// A large block with a growth reserve of `reserve` pages after it
    /// (see [`Entry`]), and whether it lies in fresh memory.
    pub(super) fn alloc_large_reserved(
        &self,
        size: usize,
        align: usize,
        reserve: usize,
    ) -> (*mut u8, bool) {
        let core = &self.core;
        let Some(data) = core.arena() else {
            return (ptr::null_mut(), false);
        };
        let n = size.next_multiple_of(PAGE);
        let entry = Entry {
            pages: n / PAGE,
            reserve,
        };
        let n = n + reserve * PAGE;
        if align <= PAGE {
            if let Some(p) = core.cache_take(n / PAGE) {
                core.large_in_use.fetch_add(n);
                core.mark_large(data, p);
                // Relaxed: as below.
                core.page_entry(data, p)
                    .store(entry.encode(), Ordering::Relaxed);
                return (p, false);
            }
        }
        let need = if align > PAGE { n + align - PAGE } else { n };
        // While another thread splits or coalesces, the runs it claimed are
        // out of the index: a failed search then is not a full heap. Without
        // the retries, two threads sharing a few big runs would map a new
        // region at almost every collision (measured: +400 MiB of address
        // space per pass of a 2-thread large-block trace, for nothing).
        let _busy = core.fork_gate.enter();
        let mut retries = 0;
        let found = loop {
            match self.index.take_fit(need) {
                Some(b) => break Some(b),
                None if retries < LARGE_RETRIES && core.fork_gate.others_in_flight() => {
                    retries += 1;
                    crate::sync::thread::yield_now();
                }
                None => break None,
            }
        };
        let (addr, got, fresh) = match found {
            Some((a, s)) => {
                core.large_free.fetch_sub(s);
                (a, s, false)
            }
            None => {
                let len = need.max(self.region_bytes()).next_multiple_of(SPAN);
                let Some(r) = core.bump(data, len) else {
                    return (ptr::null_mut(), false);
                };
                // The region's spans are not marked here: only a block's
                // first span is, when the block is handed out (`mark_large`).
                // Marking all of a 64 MiB region wrote 1024 span records,
                // about 33 pages of side table, which a short-lived program
                // faulted in on its first large block (a third of the page
                // faults vvmalloc added to `ls`).
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
        core.large_in_use.fetch_add(n);
        let p = data.with_addr(start);
        core.mark_large(data, p);
        // Relaxed: read by a free of the block, which the program orders
        // after this allocation (it hands the pointer over).
        core.page_entry(data, p)
            .store(entry.encode(), Ordering::Relaxed);
        (p, fresh)
    }

    /// Records the free run `[addr, addr + size)`, coalesced with free
    /// neighbours; purges the free runs when there are too many free bytes.
    pub(super) fn free_run(&self, data: *mut u8, mut addr: usize, mut size: usize) {
        let core = &self.core;
        let busy = core.fork_gate.enter();
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
                core.large_free.fetch_sub(rs);
                size += rs;
            }
        }
        if let Some((la, ls)) = self
            .index
            .floor(addr - 1)
            .filter(|&(_, ls)| size + ls <= cap)
        {
            if la + ls == addr && self.index.take_exact(la, ls) {
                core.large_free.fetch_sub(ls);
                addr = la;
                size += ls;
            }
        }
        let _ = data;
        let free = core.large_free.fetch_add(size) + size;
        self.index.insert(addr, size);
        drop(busy);
        let freed = core.large_freed_since_purge.fetch_add(size) + size;
        if freed > LARGE_PURGE_MIN
            && free > LARGE_PURGE_MIN + 4 * core.large_in_use.load()
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
    pub(super) fn purge_large(&self) {
        let core = &self.core;
        // Acquire/Release: the scavenger's flag, as in `Core::scavenge`.
        if core
            .scavenging
            .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
        {
            core.large_freed_since_purge.store(0);
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
    pub(super) unsafe fn dealloc_large(&self, p: *mut u8) -> Option<usize> {
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
        let slot = core.page_entry(data, p);
        let entry = Entry::decode(if seeded::is(PageBug::RecordClearedWithoutSwap) {
            // The seeded bug (loom only): two racing frees may both read
            // the record before either clears it.
            // Relaxed: as below.
            let e = slot.load(Ordering::Relaxed);
            // Relaxed: as below.
            slot.store(0, Ordering::Relaxed);
            e
        } else {
            // Relaxed: see `alloc_large`; the swap itself decides between
            // racing frees.
            slot.swap(0, Ordering::Relaxed)
        });
        if entry.pages == 0 {
            core.misuse(
                "double free of a large block (or a pointer inside one)",
                p,
                &[],
            );
            return None;
        }
        // The block goes back with its growth reserve, as one run.
        let n = entry.total() * PAGE;
        core.large_in_use.fetch_sub(n);
        if !core.cache_put(p, entry.total()) {
            self.free_run(data, addr, n);
        }
        Some(entry.pages * PAGE)
    }

    /// Grows or shrinks a large block in place; `false` if it cannot. A
    /// growth takes its growth reserve first (no index operation), then the
    /// free run after it, if there is one long enough; a shrink gives the
    /// tail back with the reserve.
    pub(super) fn resize_large(&self, p: *mut u8, old_size: usize, new_size: usize) -> bool {
        let core = &self.core;
        let Some(data) = core.arena_of(p) else {
            return false;
        };
        let addr = p as usize;
        let slot = core.page_entry(data, p);
        // Relaxed: the caller owns the block, and so its record (see
        // `alloc_large`).
        let entry = Entry::decode(slot.load(Ordering::Relaxed));
        debug_assert_eq!(entry.pages, old_size.max(1).div_ceil(PAGE));
        let pages = new_size.max(1).div_ceil(PAGE);
        if pages < entry.pages {
            // A shrink gives the tail back with the reserve (a program that
            // shrinks a block wants the memory back).
            let tail = (entry.total() - pages) * PAGE;
            // Relaxed: as above.
            slot.store(Entry { pages, reserve: 0 }.encode(), Ordering::Relaxed);
            core.large_in_use.fetch_sub(tail);
            self.free_run(data, addr + pages * PAGE, tail);
            return true;
        }
        if pages <= entry.total() {
            // Within the block and its reserve: no other thread can see
            // these pages, so only the record changes.
            let reserve = entry.total() - pages;
            // Relaxed: as above.
            slot.store(Entry { pages, reserve }.encode(), Ordering::Relaxed);
            return true;
        }
        let end = addr + entry.total() * PAGE;
        let want = (pages - entry.total()) * PAGE;
        let _busy = core.fork_gate.enter();
        match self.index.find_at(end) {
            Some(rs) if rs >= want && self.index.take_exact(end, rs) => {
                core.large_free.fetch_sub(rs);
                // A block that grows keeps growing: part of the run becomes
                // its new reserve, so the next steps skip the index.
                let reserve = ((rs - want) / PAGE).min(growth_reserve(pages));
                let taken = want + reserve * PAGE;
                if rs > taken {
                    self.insert_remainder(end + taken, rs - taken);
                }
                core.large_in_use.fetch_add(taken);
                // Relaxed: as above.
                slot.store(Entry { pages, reserve }.encode(), Ordering::Relaxed);
                true
            }
            _ => false,
        }
    }

    /// Releases the pages of every free large run of at least `min_run`
    /// bytes. Returns the bytes released.
    pub(super) fn trim_large(&self, min_run: usize) -> usize {
        let core = &self.core;
        // Acquire: as in `Core::arena`.
        let data = core.data.load(Ordering::Acquire);
        if data.is_null() {
            return 0;
        }
        let _busy = core.fork_gate.enter();
        // Claim every run, chaining them through their first pages.
        let mut chain: *mut u8 = ptr::null_mut();
        let mut released = 0;
        while let Some((a, s)) = self.index.take_fit(min_run) {
            core.large_free.fetch_sub(s);
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
    pub(super) fn insert_remainder(&self, addr: usize, size: usize) {
        self.free_run_clean(addr, size);
    }

    /// Records a free run without coalescing or purging.
    pub(super) fn free_run_clean(&self, addr: usize, size: usize) {
        self.core.large_free.fetch_add(size);
        self.index.insert(addr, size);
    }
}
