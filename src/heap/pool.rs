//! Pages no thread heap owns: the shared stacks of abandoned and full pages
//! of each class, the pool of empty pages, and the cache-less small path
//! that works on them.
//!
//! - A thread heap that goes away (its thread exits, its [`LocalHeap`] is
//!   dropped) *abandons* its pages that still hold blocks in use: they go
//!   on their class's `abandoned` stack, and other thread heaps *adopt*
//!   them when they need a page of that class (before they take an empty
//!   one). The blocks of an abandoned page are freed as any remote free:
//!   onto its `thread_free` list, which the adopter takes over.
//! - A cache-less operation ([`Heap::alloc`] without a thread heap) pops a
//!   page from `abandoned`, takes one block and pushes the page back; a page
//!   it finds full goes to the class's `full` stack. A free into a page no
//!   thread heap owns counts an *orphan free*; when `abandoned` runs dry
//!   and orphan frees were counted, the `full` stack is searched for pages
//!   that got blocks back.
//! - A page whose blocks are all free goes to the heap's pool of empty
//!   pages (`dirty`: still resident, reused first by any class). When the
//!   pool holds more than [`PURGE_MIN`] bytes, at most once a second, or on
//!   [`Heap::trim`], its pages are given back to the OS
//!   (`madvise(MADV_DONTNEED)`) and move to the pool of clean spans.
//!
//! The stacks are [`IntrusiveStack`]s of the pages' records (type-stable
//! side-table memory), and a page is in at most one of them, or owned.
//!
//! [`LocalHeap`]: super::LocalHeap
//! [`Heap::alloc`]: super::Heap::alloc
//! [`Heap::trim`]: super::Heap::trim
//! [`IntrusiveStack`]: crate::intrusive::IntrusiveStack

use core::ptr::{self, NonNull};

use super::class::{blocks_per_span, CLASSES, SPAN};
use super::os;
use super::page::{SpanMeta, KIND_FREE};
use super::state::Core;
use crate::intrusive::Link;
use crate::sync::Ordering;

/// The pool of empty pages is given back to the OS when it holds more than
/// this many bytes (at most once a second; always on `trim`).
pub(crate) const PURGE_MIN: usize = 32 << 20;

/// The record behind a link popped from one of the stacks of pages.
fn meta_of<'a>(l: NonNull<Link>) -> &'a SpanMeta {
    // SAFETY: the stacks of pages hold only links of side-table records
    // (`link` is `SpanMeta`'s first field, `repr(C)`), which live as long
    // as the heap.
    unsafe { l.cast::<SpanMeta>().as_ref() }
}

fn link_of(m: &SpanMeta) -> NonNull<Link> {
    NonNull::from(&m.link)
}

impl Core {
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

    /// The first byte of the page of record `m`.
    #[inline]
    pub(crate) fn span_of(&self, data: *mut u8, m: &SpanMeta) -> *mut u8 {
        SpanMeta::span(data, self.unit_of_meta(data, m))
    }

    /// A fresh page of class `c` for `owner` (0: none), from the pools of
    /// empty pages or the arena.
    pub(crate) fn new_page(&self, c: usize, owner: usize) -> Option<&SpanMeta> {
        let data = self.arena()?;
        let span = self.new_span(data, 1 + c as u32)?;
        let m = self.meta(data, Core::unit_of(data, span));
        // SAFETY: the span was just taken from a pool or the bump: ours.
        unsafe { m.format(c, owner) };
        self.pages[c].spans.fetch_add(1);
        Some(m)
    }

    /// Adds the page's allocations and frees since its last report to the
    /// class's statistics.
    ///
    /// # Safety
    ///
    /// The caller owns the page.
    #[inline]
    pub(crate) unsafe fn report(&self, c: usize, m: &SpanMeta) {
        // SAFETY: the caller's contract.
        let delta = unsafe { self.take_page_counts(m) };
        self.add_in_use(c, delta as isize);
    }

    /// The page's allocations minus frees since they were last taken.
    ///
    /// # Safety
    ///
    /// The caller owns the page.
    #[inline]
    pub(crate) unsafe fn take_page_counts(&self, m: &SpanMeta) -> i32 {
        // SAFETY: the caller's contract.
        unsafe {
            m.own(|o| {
                let d = o.used.wrapping_sub(o.reported) as i32;
                o.reported = o.used;
                d
            })
        }
    }

    /// Adds `delta` blocks to class `c`'s count of blocks in use.
    #[inline]
    pub(crate) fn add_in_use(&self, c: usize, delta: isize) {
        if delta != 0 {
            self.pages[c].in_use.fetch_add(delta);
        }
    }

    /// Puts the empty page `m` of class `c` in the pool of empty pages.
    ///
    /// # Safety
    ///
    /// The caller owns the page, every block of which is free (none in
    /// `thread_free`), and has reported its counts.
    pub(crate) unsafe fn retire_page(&self, c: usize, m: &SpanMeta) {
        // Relaxed: see `SpanMeta::owner` (the pool's push publishes the
        // page to its next taker).
        m.owner.store(0, Ordering::Relaxed);
        // Relaxed: see `SpanMeta::kind`: a later free of one of its blocks
        // is a double free, which reads `KIND_FREE` as misuse.
        m.kind.store(KIND_FREE, Ordering::Relaxed);
        self.pages[c].spans.fetch_sub(1);
        self.dirty_bytes.fetch_add(SPAN);
        // SAFETY: the record is ours (contract); records are type-stable.
        unsafe { self.dirty.push(link_of(m)) };
        self.maybe_purge();
    }

    /// A span from the pool of empty pages (resident), if any.
    pub(crate) fn take_dirty(&self) -> Option<NonNull<Link>> {
        let l = self.dirty.pop()?;
        self.dirty_bytes.fetch_sub(SPAN);
        Some(l)
    }

    /// Leaves the page `m` of class `c` to whoever needs it next.
    ///
    /// # Safety
    ///
    /// The caller owns the page and will not touch it again.
    pub(crate) unsafe fn abandon(&self, c: usize, m: &SpanMeta) {
        // Relaxed: see `SpanMeta::owner`; the Release of the stack's push
        // publishes the owner's part to the adopter.
        m.owner.store(0, Ordering::Relaxed);
        // SAFETY: the record is ours (contract); records are type-stable.
        unsafe { self.pages[c].abandoned.push(link_of(m)) };
    }

    /// Counts a free into a page that no thread heap owned when looked at.
    #[inline]
    pub(crate) fn orphan_free(&self, c: usize) {
        self.pages[c].orphan_frees.fetch_add(1);
    }

    /// A page of class `c` no thread heap owns, now the caller's: an
    /// abandoned one, or a full one that got blocks back.
    pub(crate) fn pop_shared_page(&self, c: usize) -> Option<&SpanMeta> {
        let cp = &self.pages[c];
        if let Some(l) = cp.abandoned.pop() {
            return Some(meta_of(l));
        }
        if cp.orphan_frees.load() == 0 || cp.orphan_frees.swap(0) == 0 {
            return None;
        }
        let mut l = cp.full.take_all().map_or(ptr::null_mut(), NonNull::as_ptr);
        let mut found = None;
        while let Some(ll) = NonNull::new(l) {
            // SAFETY: `take_all` made the chain ours.
            l = unsafe { ll.as_ref() }.next();
            let m = meta_of(ll);
            if found.is_none() && !m.thread_free.is_empty() {
                found = Some(m);
            } else {
                // SAFETY: ours, as above; back where it was.
                unsafe { cp.full.push(ll) };
            }
        }
        found
    }

    /// The cache-less small allocation: a block from a page no thread heap
    /// owns, else from a new page.
    pub(crate) fn alloc_small_shared(&self, c: usize) -> *mut u8 {
        let Some(data) = self.arena() else {
            return ptr::null_mut();
        };
        loop {
            let m = match self.pop_shared_page(c) {
                Some(m) => m,
                None => match self.new_page(c, 0) {
                    Some(m) => m,
                    None => return ptr::null_mut(),
                },
            };
            let span = self.span_of(data, m);
            // SAFETY: the page is ours until we push it back.
            unsafe {
                if m.refill(c, span) {
                    let p = m.pop();
                    self.report(c, m);
                    self.pages[c].abandoned.push(link_of(m));
                    return p;
                }
                // Full: reported, then out of the way of the next ones.
                self.report(c, m);
                self.pages[c].full.push(link_of(m));
            }
        }
    }

    /// Gives back to the OS what the pool of empty pages holds, and takes
    /// back the empty pages no thread heap owns. Returns the bytes released.
    pub(crate) fn trim_pages(&self) -> usize {
        for c in 0..CLASSES {
            let cp = &self.pages[c];
            for stack in [&cp.abandoned, &cp.full] {
                let mut l = stack.take_all().map_or(ptr::null_mut(), NonNull::as_ptr);
                while let Some(ll) = NonNull::new(l) {
                    // SAFETY: `take_all` made the chain ours.
                    l = unsafe { ll.as_ref() }.next();
                    let m = meta_of(ll);
                    // SAFETY: the page is ours until pushed back or retired.
                    unsafe {
                        m.collect();
                        self.report(c, m);
                        let (used, has_free, carved) =
                            m.own(|o| (o.used, !o.free.is_null(), o.carved));
                        if used == 0 {
                            self.retire_page(c, m);
                        } else if has_free || (carved as usize) < blocks_per_span(c) {
                            cp.abandoned.push(ll);
                        } else {
                            cp.full.push(ll);
                        }
                    }
                }
            }
        }
        self.purge_pages()
    }

    /// Purges the pool of empty pages when it holds more than `PURGE_MIN`
    /// bytes, at most once per `DECAY_MS`.
    fn maybe_purge(&self) {
        if self.dirty_bytes.load() > PURGE_MIN && self.rate_limit(&self.last_scavenge_ms) {
            self.purge_pages();
        }
    }

    /// Gives every page of the pool of empty pages back to the OS and moves
    /// them to the pool of clean spans. Returns the bytes released (0 when
    /// another purge is running).
    pub(crate) fn purge_pages(&self) -> usize {
        let Some(data) = self.reserved() else {
            return 0;
        };
        // Acquire: pairs with the Release store that ended the previous
        // purge (the flag also keeps purges out of a fork).
        if self
            .scavenging
            .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            return 0;
        }
        let mut released = 0;
        let mut next = self
            .dirty
            .take_all()
            .map_or(ptr::null_mut(), NonNull::as_ptr);
        while let Some(l) = NonNull::new(next) {
            // SAFETY: `take_all` made the chain ours.
            next = unsafe { l.as_ref() }.next();
            self.dirty_bytes.fetch_sub(SPAN);
            let m = meta_of(l);
            let span = self.span_of(data, m);
            // SAFETY: the span is empty and ours (popped from the pool).
            unsafe { os::release(span, SPAN) };
            // SAFETY: ours; records are type-stable.
            unsafe { self.free_spans.push(l) };
            released += SPAN;
            self.spans_released.fetch_add(1);
        }
        // Release: pairs with the Acquire CAS above.
        self.scavenging.store(false, Ordering::Release);
        released
    }
}
