//! Per-thread state that outlives threads: an append-only lock-free list of
//! records, each claimed by one thread at a time ([`Claims`]), and each
//! thread's cache of the records it claimed, keyed by list ([`Cache`]).
//!
//! Both own epoch domains (a record per registered crossbeam participant,
//! `own_epoch`) and the asymmetric hazard scheme (a record per thread's
//! hazard pointers and retired list, `asym`) are built on it: a thread
//! claims a record of a domain on its first operation and finds it in its
//! cache on every later one; a thread that exits gives its claims back, and
//! the next thread to claim reuses the record.
//!
//! Invariants:
//!
//! 1. A record's claimant-only state (in its payload) is used only by the
//!    thread holding the claim, or by the domain's drop once no thread can
//!    use the domain. A claim is taken with an `Acquire` CAS and given back
//!    with a `Release` store (each scheme passes these orderings in, so
//!    that its loom models can weaken them), so successive claimants' uses
//!    are ordered.
//! 2. A record is given back only when nothing of its claimant uses it
//!    ([`Payload::users`] is zero).
//! 3. Records are never removed from a list before it is freed, and a list
//!    lives while its domain or any cache entry holds it (an `Arc`, or a
//!    static for a process-wide domain). A cache entry's key (the list's
//!    address) therefore names one list for as long as the entry exists.

use core::ptr;

use crate::stat::Stat;
use crate::sync::{Arc, AtomicBool, AtomicPtr, Ordering, UnsafeCell};

/// What a cache needs of a record's payload.
pub(super) trait Payload {
    /// Guards (and shields) of the claimant alive through the record.
    ///
    /// # Safety
    ///
    /// 1. The calling thread holds the record's claim.
    unsafe fn users(&self) -> usize;
    /// The ordering of the store that gives a claim back (`Release`).
    fn release_order() -> Ordering;
    /// The ordering of a successful claiming CAS (`Acquire`).
    fn claim_order() -> Ordering;
}

/// One record and its claim.
pub(super) struct Claim<P> {
    /// The record pushed before this one; written before the record is
    /// published, never after.
    next: UnsafeCell<*mut Claim<P>>,
    /// Whether a thread holds this record (invariant 1).
    claimed: AtomicBool,
    pub(super) payload: P,
}

impl<P: Payload> Claim<P> {
    /// Gives the claim back.
    ///
    /// # Safety
    ///
    /// 1. The calling thread holds the claim, and nothing uses the record
    ///    (invariant 2).
    pub(super) unsafe fn release(&self) {
        // Release (`P::release_order`): pairs with the Acquire CAS of the
        // next claimant, so this thread's uses of the claimant-only state
        // happen before its uses.
        self.claimed.store(false, P::release_order());
    }
}

/// The records of one domain.
pub(super) struct Claims<P> {
    /// The newest record; each links to the one pushed before it.
    head: AtomicPtr<Claim<P>>,
    /// Records pushed (a count for tables and thresholds: a `Stat`).
    len: Stat,
}

impl<P: Payload> Claims<P> {
    #[cfg(not(loom))]
    pub(super) const fn new() -> Self {
        Self {
            head: AtomicPtr::new(ptr::null_mut()),
            len: Stat::new(0),
        }
    }

    /// Loom's atomics are not `const`.
    #[cfg(loom)]
    pub(super) fn new() -> Self {
        Self {
            head: AtomicPtr::new(ptr::null_mut()),
            len: Stat::new(0),
        }
    }

    /// Claims a free record, or pushes a new one made by `make`.
    pub(super) fn claim(&self, make: impl FnOnce() -> P) -> &Claim<P> {
        for c in self.iter() {
            // Relaxed: a hint; the CAS decides. Acquire on success
            // (`P::claim_order`): pairs with the previous claimant's Release
            // in `Claim::release`.
            if !c.claimed.load(Ordering::Relaxed)
                && c.claimed
                    .compare_exchange(false, true, P::claim_order(), Ordering::Relaxed)
                    .is_ok()
            {
                return c;
            }
        }
        let c = Box::into_raw(Box::new(Claim {
            next: UnsafeCell::new(ptr::null_mut()),
            claimed: AtomicBool::new(true),
            payload: make(),
        }));
        self.len.fetch_add(1);
        // Relaxed: the CAS below validates it.
        let mut head = self.head.load(Ordering::Relaxed);
        loop {
            // SAFETY: not published yet: ours alone.
            unsafe { (*c).next.with_mut(|n| *n = head) };
            // Release: publishes the record's fields to the Acquire loads
            // of `iter`. Relaxed on failure: retried.
            match self
                .head
                .compare_exchange_weak(head, c, Ordering::Release, Ordering::Relaxed)
            {
                // SAFETY: published, never freed before the list (invariant 3).
                Ok(_) => return unsafe { &*c },
                Err(now) => head = now,
            }
        }
    }

    /// Every record, newest first.
    pub(super) fn iter(&self) -> impl Iterator<Item = &Claim<P>> {
        // Acquire: pairs with the Release CAS that pushed each record, so
        // its fields (and `next`) are visible.
        let mut p = self.head.load(Ordering::Acquire);
        core::iter::from_fn(move || {
            // SAFETY: records live as long as the list (invariant 3).
            let c = unsafe { p.as_ref()? };
            // SAFETY: written before the record was published.
            p = c.next.with(|n| unsafe { *n });
            Some(c)
        })
    }

    /// Records pushed so far.
    pub(super) fn len(&self) -> usize {
        self.len.load()
    }
}

impl<P> Drop for Claims<P> {
    fn drop(&mut self) {
        // Relaxed: the last owner's drop already synchronized with every
        // other holder (the `Arc`'s count).
        let mut p = self.head.load(Ordering::Relaxed);
        while !p.is_null() {
            // SAFETY: records come from `Box::into_raw` in `claim` and are
            // freed only here, once: nothing else holds the list.
            let c = unsafe { Box::from_raw(p) };
            // SAFETY: written before publication; the record is ours now.
            p = c.next.with(|n| unsafe { *n });
            drop(c);
        }
    }
}

/// One cached claim: the list's address, the list itself unless it is a
/// static (kept alive, so the address stays unique: invariant 3), and the
/// claimed record in it.
struct Entry<P> {
    key: *const Claims<P>,
    keep: Option<Arc<Claims<P>>>,
    claim: *const Claim<P>,
}

/// Claims a thread keeps, one per domain it used most recently: more than
/// a thread usually uses at once.
const KEEP: usize = 8;

/// A thread's claimed records, keyed by list.
pub(super) struct Cache<P: Payload> {
    entries: [Option<Entry<P>>; KEEP],
}

impl<P: Payload> Cache<P> {
    pub(super) const fn new() -> Self {
        Self {
            entries: [const { None }; KEEP],
        }
    }

    /// The thread's record of `list`, if it has one cached: a record of
    /// `list`, so valid for as long as `list` is (invariant 3).
    pub(super) fn find(&self, list: &Claims<P>) -> Option<*const Claim<P>> {
        let key: *const Claims<P> = list;
        self.entries
            .iter()
            .flatten()
            .find(|e| ptr::eq(e.key, key))
            .map(|e| e.claim)
    }

    /// Caches `claim`, a record of `list` (held by `keep`, or a static)
    /// that the calling thread has just claimed, evicting (and releasing)
    /// an entry nothing uses if the cache is full. Returns whether it was
    /// cached: not if every entry is in use.
    pub(super) fn insert(
        &mut self,
        list: &Claims<P>,
        keep: Option<&Arc<Claims<P>>>,
        claim: &Claim<P>,
    ) -> bool {
        let free = self.entries.iter().position(Option::is_none).or_else(|| {
            self.entries.iter().position(|e| {
                // SAFETY: every entry's record is claimed by this thread
                // and lives while the entry holds its list (invariant 3).
                e.as_ref()
                    .is_some_and(|e| unsafe { (*e.claim).payload.users() } == 0)
            })
        });
        let Some(i) = free else {
            return false;
        };
        let entry = Entry {
            key: list,
            keep: keep.cloned(),
            claim,
        };
        if let Some(old) = self.entries[i].replace(entry) {
            // SAFETY: ours, and nothing uses it (checked above).
            unsafe { (*old.claim).release() };
        }
        true
    }
}

impl<P: Payload> Drop for Cache<P> {
    fn drop(&mut self) {
        // A loom model that failed unwinds its threads' locals after the
        // execution is gone: the entries' loom objects cannot be touched.
        #[cfg(loom)]
        if crate::sync::plain::panicking() {
            self.entries
                .iter_mut()
                .filter_map(Option::take)
                .for_each(core::mem::forget);
            return;
        }
        // The thread is exiting: give every claim back so that the next
        // thread reuses the record.
        for entry in self.entries.iter_mut().filter_map(Option::take) {
            // SAFETY: claimed by this thread; the entry keeps it alive.
            let claim = unsafe { &*entry.claim };
            // SAFETY: ours.
            if unsafe { claim.payload.users() } == 0 {
                // SAFETY: ours, with no user.
                unsafe { claim.release() };
            } else {
                // A guard of this thread outlives its cache (a guard kept in
                // another thread-local): the claim stays held, so the record
                // is never reused, and its list stays alive.
                core::mem::forget(entry.keep);
            }
        }
    }
}
