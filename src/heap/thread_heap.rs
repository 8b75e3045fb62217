//! A thread heap: the pages one thread (or one [`LocalHeap`]) owns, and the
//! small path's fast path.
//!
//! Each size class has a list of the heap's pages with free blocks; its head
//! is the page allocations come from. An allocation pops the head page's
//! free list (plain loads and stores, no atomic read-modify-write, no
//! statistics); a free of a block of one of the heap's own pages pushes it
//! on that page's free list, likewise. A free of any other page's block is
//! one CAS on that page's `thread_free` list, and goes back to its owner.
//!
//! When the head page runs dry, the slow path, in order: takes the remote
//! frees of the head page, carves more of its untouched memory, moves on to
//! the next page of the list (moving full pages to the class's list of full
//! pages), looks at the [`SCAN`] oldest full pages for blocks other threads
//! gave back (those it looks at in vain go to the back of the line, so the
//! search goes round the list and costs a few loads per page), adopts a
//! page some heap abandoned, and only then takes an empty page. A page whose
//! blocks all come back to its owner goes to the heap's pool of empty pages
//! (unless it is the page allocations come from).
//!
//! [`LocalHeap`]: super::LocalHeap

use core::ptr;

use super::class::CLASSES;
use super::page::{set_next, SpanMeta, FULL, LISTED};
use super::state::Core;
use crate::stat::Stat;
use crate::sync::Ordering;
#[cfg(not(loom))]
use seeded::PageBug;

/// Thread heap ids; 0 is "no thread heap".
static NEXT_ID: Stat = Stat::new(1);

/// Full pages a slow path looks at for blocks given back, oldest first.
const SCAN: usize = 4;

/// A heap's changes to a class's count of blocks in use (its pages'
/// allocations and frees, its remote frees) reach the heap's statistics
/// once they add up to this many blocks either way (and at every flush):
/// the counts are shared by every thread, and updating them on each slow
/// path made the threads of a small-object churn fight over their cache
/// lines.
const IN_USE_REPORT: i32 = 256;

/// Likewise for the bytes requested, in bytes.
const REQUESTED_REPORT: isize = 1 << 20;

/// A list of pages, linked through their owner's parts.
#[derive(Clone, Copy)]
struct PageList {
    head: *mut SpanMeta,
    tail: *mut SpanMeta,
}

impl PageList {
    const EMPTY: PageList = PageList {
        head: ptr::null_mut(),
        tail: ptr::null_mut(),
    };

    /// Puts `m` first.
    ///
    /// # Safety
    ///
    /// The caller owns `m` and every page of the list; `m` is on no list.
    unsafe fn push_front(&mut self, m: *mut SpanMeta) {
        let old = self.head;
        // SAFETY: the caller's contract.
        unsafe {
            (*m).own(|o| {
                o.next = old;
                o.prev = ptr::null_mut();
            });
            match old.as_ref() {
                Some(h) => h.own(|o| o.prev = m),
                None => self.tail = m,
            }
        }
        self.head = m;
    }

    /// Puts `m` second (first if the list is empty).
    ///
    /// # Safety
    ///
    /// As for [`push_front`](Self::push_front).
    unsafe fn insert_second(&mut self, m: *mut SpanMeta) {
        // SAFETY: the caller's contract.
        unsafe {
            let Some(h) = self.head.as_ref() else {
                return self.push_front(m);
            };
            let after = h.own(|o| o.next);
            let head = self.head;
            (*m).own(|o| {
                o.next = after;
                o.prev = head;
            });
            match after.as_ref() {
                Some(a) => a.own(|o| o.prev = m),
                None => self.tail = m,
            }
            h.own(|o| o.next = m);
        }
    }

    /// Takes `m` off the list.
    ///
    /// # Safety
    ///
    /// The caller owns `m` and every page of the list, and `m` is on it.
    unsafe fn unlink(&mut self, m: *mut SpanMeta) {
        // SAFETY: the caller's contract.
        unsafe {
            let (prev, next) = (*m).own(|o| (o.prev, o.next));
            match prev.as_ref() {
                Some(p) => p.own(|o| o.next = next),
                None => self.head = next,
            }
            match next.as_ref() {
                Some(n) => n.own(|o| o.prev = prev),
                None => self.tail = prev,
            }
            (*m).own(|o| {
                o.next = ptr::null_mut();
                o.prev = ptr::null_mut();
            });
        }
    }
}

/// The pages one thread heap owns. Not `Sync`: one thread at a time.
pub(crate) struct ThreadHeap {
    /// This heap's id in its pages' `owner` word; 0 until `init`.
    id: usize,
    /// Per class: the pages with free blocks (or untouched memory); the
    /// head is the page allocations come from.
    pages: [PageList; CLASSES],
    /// Per class: the full pages, newest first.
    full: [PageList; CLASSES],
    /// Per class: the change to the count of blocks in use not yet added
    /// to the heap's statistics (see [`IN_USE_REPORT`]).
    in_use: [i32; CLASSES],
    /// Bytes requested minus bytes freed through this heap since the last
    /// report to the heap's statistics.
    pub(crate) requested: isize,
}

impl ThreadHeap {
    /// A heap without an id: [`init`](Self::init) it before use.
    pub(crate) const fn new() -> Self {
        Self {
            id: 0,
            pages: [PageList::EMPTY; CLASSES],
            full: [PageList::EMPTY; CLASSES],
            in_use: [0; CLASSES],
            requested: 0,
        }
    }

    /// Gives the heap its id (once).
    pub(crate) fn init(&mut self) {
        if self.id == 0 {
            // Only uniqueness matters, which the add's atomicity gives.
            self.id = NEXT_ID.fetch_add(1);
        }
    }

    /// A block of class `c`; null when no memory can be had.
    #[inline(always)]
    pub(crate) fn alloc(&mut self, core: &Core, c: usize) -> *mut u8 {
        let p = self.alloc_fast(c);
        if !p.is_null() {
            return p;
        }
        self.alloc_slow(core, c)
    }

    /// A block of class `c` from the page allocations come from; null when
    /// that page's free list is empty (nothing else is tried).
    #[inline(always)]
    pub(crate) fn alloc_fast(&mut self, c: usize) -> *mut u8 {
        let m = self.pages[c].head;
        if m.is_null() {
            return ptr::null_mut();
        }
        // SAFETY: the pages of our lists are ours.
        unsafe { (*m).pop() }
    }

    /// Frees the block `p` of class `c`, whose page is `m`.
    ///
    /// # Safety
    ///
    /// `p` is a block of the page `m` of class `c`, handed out and not used
    /// afterwards.
    #[inline(always)]
    pub(crate) unsafe fn free(&mut self, core: &Core, c: usize, m: &SpanMeta, p: *mut u8) {
        debug_assert!(self.id != 0);
        // Relaxed: see `SpanMeta::owner`: only we write our id there.
        let owner = m.owner.load(Ordering::Relaxed);
        if owner == self.id || seeded::is(PageBug::OwnerCheckSkipped) {
            // SAFETY: the page is ours; the block is free now (contract).
            let (used, state) = unsafe {
                m.own(|o| {
                    set_next(p, o.free);
                    o.free = p;
                    o.used -= 1;
                    (o.used, o.state)
                })
            };
            if state == FULL || (used == 0 && self.pages[c].head != ptr::from_ref(m).cast_mut()) {
                self.free_slow(core, c, m);
            }
        } else {
            // SAFETY: the caller's contract.
            unsafe { self.free_remote(core, c, m, p, owner) };
        }
    }

    /// A free into a page another heap owns (or none does). Out of line, so
    /// that the owner's path saves few registers.
    ///
    /// # Safety
    ///
    /// As for [`free`](Self::free).
    #[inline(never)]
    unsafe fn free_remote(
        &mut self,
        core: &Core,
        c: usize,
        m: &SpanMeta,
        p: *mut u8,
        owner: usize,
    ) {
        // SAFETY: the caller's contract.
        unsafe { m.free_remote(p) };
        // The owner does not count the block when it collects it: we do.
        self.add_in_use(core, c, -1);
        if owner == 0 {
            core.orphan_free(c);
        }
    }

    #[cold]
    #[inline(never)]
    fn free_slow(&mut self, core: &Core, c: usize, m: &SpanMeta) {
        let mp = ptr::from_ref(m).cast_mut();
        // SAFETY: for the whole block: the page is ours, and on the list its
        // state names.
        unsafe {
            let (used, state) = m.own(|o| (o.used, o.state));
            if state == FULL {
                self.full[c].unlink(mp);
                m.own(|o| o.state = LISTED);
                self.pages[c].insert_second(mp);
            }
            if used == 0 && self.pages[c].head != mp {
                self.pages[c].unlink(mp);
                self.take_counts(core, c, m);
                core.retire_page(c, m);
            }
        }
    }

    #[cold]
    #[inline(never)]
    fn alloc_slow(&mut self, core: &Core, c: usize) -> *mut u8 {
        debug_assert!(self.id != 0);
        if self.requested.abs() >= REQUESTED_REPORT {
            self.report_requested(core);
        }
        let Some(data) = core.arena() else {
            return ptr::null_mut();
        };
        // SAFETY: for the whole block: every page on our lists is ours, and a
        // page popped from a shared stack or freshly made is ours too.
        unsafe {
            // 1. The class's list, from the head.
            let mut m = self.pages[c].head;
            while let Some(page) = m.as_ref() {
                let next = page.own(|o| o.next);
                self.take_counts(core, c, page);
                if page.refill(c, core.span_of(data, page)) {
                    if self.pages[c].head != m {
                        self.pages[c].unlink(m);
                        self.pages[c].push_front(m);
                    }
                    return page.pop();
                }
                self.pages[c].unlink(m);
                page.own(|o| o.state = FULL);
                self.full[c].push_front(m);
                m = next;
            }
            // 2. The oldest full pages, for blocks other threads gave back.
            for _ in 0..SCAN {
                let m = self.full[c].tail;
                let Some(page) = m.as_ref() else { break };
                self.full[c].unlink(m);
                if page.collect() > 0 {
                    self.take_counts(core, c, page);
                    page.own(|o| o.state = LISTED);
                    self.pages[c].push_front(m);
                    return page.pop();
                }
                self.full[c].push_front(m);
            }
            // 3. A page another heap abandoned.
            while let Some(page) = core.pop_shared_page(c) {
                let mp = ptr::from_ref(page).cast_mut();
                // Relaxed: see `SpanMeta::owner`.
                page.owner.store(self.id, Ordering::Relaxed);
                page.own(|o| {
                    o.next = ptr::null_mut();
                    o.prev = ptr::null_mut();
                });
                let ok = page.refill(c, core.span_of(data, page));
                self.take_counts(core, c, page);
                if ok {
                    page.own(|o| o.state = LISTED);
                    self.pages[c].push_front(mp);
                    return page.pop();
                }
                page.own(|o| o.state = FULL);
                self.full[c].push_front(mp);
            }
            // 4. An empty page.
            let Some(page) = core.new_page(c, self.id) else {
                return ptr::null_mut();
            };
            let mp = ptr::from_ref(page).cast_mut();
            self.pages[c].push_front(mp);
            page.refill(c, core.span_of(data, page));
            page.pop()
        }
    }

    /// Moves the page's allocations and frees since it was last looked at
    /// into this heap's pending count for class `c`.
    ///
    /// # Safety
    ///
    /// The page is ours.
    unsafe fn take_counts(&mut self, core: &Core, c: usize, m: &SpanMeta) {
        // SAFETY: the caller's contract.
        let delta = unsafe { core.take_page_counts(m) };
        self.add_in_use(core, c, delta);
    }

    /// Adds `delta` to class `c`'s pending count, reporting it when it is
    /// large enough.
    #[inline]
    fn add_in_use(&mut self, core: &Core, c: usize, delta: i32) {
        self.in_use[c] += delta;
        if self.in_use[c].abs() >= IN_USE_REPORT {
            self.report_in_use(core, c);
        }
    }

    /// Adds class `c`'s pending count to the heap's statistics.
    fn report_in_use(&mut self, core: &Core, c: usize) {
        if self.in_use[c] != 0 {
            core.add_in_use(c, self.in_use[c] as isize);
            self.in_use[c] = 0;
        }
    }

    fn report_requested(&mut self, core: &Core) {
        if self.requested != 0 {
            core.requested.fetch_add(self.requested);
            self.requested = 0;
        }
    }

    /// Takes every page's remote frees, gives the empty pages to the heap's
    /// pool, and reports every count to the heap's statistics.
    pub(crate) fn flush(&mut self, core: &Core) {
        self.report_requested(core);
        // SAFETY: for the whole block: every page on our lists is ours.
        unsafe {
            for c in 0..CLASSES {
                let mut m = self.full[c].head;
                while let Some(page) = m.as_ref() {
                    let next = page.own(|o| o.next);
                    if page.collect() > 0 {
                        self.full[c].unlink(m);
                        page.own(|o| o.state = LISTED);
                        self.pages[c].push_front(m);
                    }
                    self.take_counts(core, c, page);
                    m = next;
                }
                let mut m = self.pages[c].head;
                while let Some(page) = m.as_ref() {
                    let next = page.own(|o| o.next);
                    page.collect();
                    self.take_counts(core, c, page);
                    if page.own(|o| o.used) == 0 {
                        if seeded::is(PageBug::RetirePublishesFirst) {
                            core.retire_page(c, page);
                            self.pages[c].unlink(m);
                        } else {
                            self.pages[c].unlink(m);
                            core.retire_page(c, page);
                        }
                    }
                    m = next;
                }
                self.report_in_use(core, c);
            }
        }
    }

    /// Flushes, then leaves every page still in use to other heaps (see
    /// the `pool` module). The heap holds no page afterwards.
    pub(crate) fn abandon(&mut self, core: &Core) {
        self.flush(core);
        for c in 0..CLASSES {
            for list in [&mut self.pages[c], &mut self.full[c]] {
                while !list.head.is_null() {
                    let mp = list.head;
                    // SAFETY: our page; after `abandon` we never touch it.
                    unsafe {
                        if seeded::is(PageBug::AbandonPublishesFirst) {
                            core.abandon(c, &*mp);
                            list.unlink(mp);
                        } else {
                            list.unlink(mp);
                            core.abandon(c, &*mp);
                        }
                    }
                }
            }
        }
    }
}

/// The seeded bugs of the page protocol, one at a time, for the loom models
/// (`loom_tests/heap/`) to catch. Each moves or drops one step of the
/// protocol.
#[cfg(loom)]
#[doc(hidden)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PageBug {
    /// A free takes the owner's path whatever the page's `owner` says: a
    /// remote free writes the owner's part under the owner's feet.
    OwnerCheckSkipped,
    /// `abandon` pushes a page on the shared stack before unlinking it
    /// from the heap's list (which writes the page's owner's part): the
    /// adopter's writes race the unlink.
    AbandonPublishesFirst,
    /// `flush` puts an emptied page in the pool before unlinking it: the
    /// page's next taker formats it while the unlink writes it.
    RetirePublishesFirst,
    /// The arena's bump carves a span with a load and a store instead of a
    /// CAS: two threads carving at once get the same span.
    BumpWithoutCas,
    /// A free of a large block clears its page record with a load and a
    /// store instead of a swap: two frees of one block both win.
    RecordClearedWithoutSwap,
    /// `cache_put` pushes a large block's descriptor on the cache before
    /// writing the block into it: a taker reads the descriptor while the
    /// write is under way.
    CachePublishesFirst,
}

/// Switches the seeded bug `bug` on (`None`: off) for the calling test's
/// loom models.
#[cfg(loom)]
#[doc(hidden)]
pub fn seeded_page_bug(bug: Option<PageBug>) {
    seeded::BUG.with(|b| b.set(bug));
}

#[cfg(loom)]
pub(super) mod seeded {
    use core::cell::Cell;

    pub(in crate::heap) use super::PageBug;

    // std's thread-local: loom runs a model's threads on the OS thread of
    // the test that started it, so the switch is that test's alone.
    thread_local! {
        pub(super) static BUG: Cell<Option<PageBug>> = const { Cell::new(None) };
    }

    pub(in crate::heap) fn is(bug: PageBug) -> bool {
        BUG.with(Cell::get) == Some(bug)
    }
}

/// Outside loom no bug is seeded, and the tests fold away.
#[cfg(not(loom))]
pub(super) mod seeded {
    #[derive(Clone, Copy)]
    pub(in crate::heap) enum PageBug {
        OwnerCheckSkipped,
        AbandonPublishesFirst,
        RetirePublishesFirst,
        BumpWithoutCas,
        RecordClearedWithoutSwap,
        CachePublishesFirst,
    }

    #[inline(always)]
    pub(in crate::heap) fn is(_: PageBug) -> bool {
        false
    }
}
