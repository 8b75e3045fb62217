//! Caches of hazard records, so that a shield does not take its record from
//! haphazard's shared list of free records and give it back on every
//! operation.
//!
//! haphazard 0.1.8 takes each record with a CAS on the domain's list head
//! and gives it back with another: one word that every thread of the domain
//! writes, twice per shield, so reads of two threads fight over it (the
//! list's read-only lookups at two threads did 0.3x the work of `Leak`, and
//! own domains collapsed with threads: `docs/reclamation.md`). Two caches
//! keep records out of that list between operations:
//!
//! - the process-wide domain's: a per-thread cache ([`take_global`],
//!   [`give_global`]), as folly's hazard pointers keep one;
//! - an own domain's: a small array of slots in the domain, a thread using
//!   the slot of its index modulo the array's length ([`OwnCache`]). A
//!   thread-local cache cannot hold them: an own domain's records die with
//!   the domain, which a thread-local cache would outlive. A slot is taken
//!   with a try-lock: a thread that finds it busy (another thread of the
//!   same slot is in it) does not wait, it uses haphazard's list as before,
//!   so the cache adds no blocking.
//!
//! A cached record protects nothing (its shield resets it first): it would
//! keep its node from being freed for as long as it sat there. Neither
//! cache exists under loom (see `HazardShield`).

use core::cell::{Cell, RefCell};

use super::hazard::Family;
use crate::stat::Stat;
use crate::sync::{AtomicBool, Ordering, UnsafeCell};

/// A record, typed `'static` while it sits in a cache: the process-wide
/// domain is a static, and an own domain drains its cache before it is
/// dropped (`OwnHazardDomain`'s `Drop`).
pub(super) type Record = haphazard::HazardPointer<'static, Family>;

/// Records a thread keeps of the process-wide domain, and a slot of an own
/// domain holds: more than any operation of the structures holds at once.
const KEEP: usize = 8;

/// Slots of an own domain's cache: its memory is `SLOTS` times three cache
/// lines (3 KiB), and up to `SLOTS` threads use a slot of their own.
const SLOTS: usize = 16;

/// The next thread's slot index (modulo `SLOTS`).
static NEXT_SLOT: Stat = Stat::new(0);

thread_local! {
    // No allocation: the cache may be used inside the allocator's own
    // paths (a `Heap` with a hazard-pointer free index).
    static CACHE: RefCell<[Option<Record>; KEEP]> =
        const { RefCell::new([const { None }; KEEP]) };
    /// This thread's slot in every own domain's cache (`usize::MAX`: not
    /// yet chosen).
    static SLOT: Cell<usize> = const { Cell::new(usize::MAX) };
}

/// A cached record of the process-wide domain, if the thread has one.
pub(super) fn take_global() -> Option<Record> {
    CACHE
        .try_with(|c| {
            let mut c = c.try_borrow_mut().ok()?;
            c.iter_mut().rev().find_map(Option::take)
        })
        .ok()
        .flatten()
}

/// Keeps `r` (a record of the process-wide domain that protects nothing)
/// for the thread's next shield; gives it back when the cache is full or
/// gone (thread exit).
pub(super) fn give_global(r: Record) -> Option<Record> {
    let mut r = Some(r);
    let _ = CACHE.try_with(|c| {
        if let Ok(mut c) = c.try_borrow_mut() {
            if let Some(slot) = c.iter_mut().find(|s| s.is_none()) {
                *slot = r.take();
            }
        }
    });
    r
}

/// This thread's slot index in an own domain's cache.
fn slot_index() -> usize {
    SLOT.try_with(|s| {
        if s.get() == usize::MAX {
            s.set(NEXT_SLOT.fetch_add(1) % SLOTS);
        }
        s.get()
    })
    .unwrap_or(0)
}

/// One slot: a try-lock and the records it holds.
#[repr(align(64))]
struct Slot {
    busy: AtomicBool,
    records: UnsafeCell<[Option<Record>; KEEP]>,
}

/// The records of an own hazard domain, kept between operations.
pub(super) struct OwnCache {
    slots: [Slot; SLOTS],
}

// SAFETY: a slot's records are touched only by the thread that holds its
// `busy` flag (`with_slot`), and a `Record` may move between threads (it is
// `Send`, checked below).
unsafe impl Sync for OwnCache {}

const _: () = {
    fn send<T: Send>() {}
    #[allow(dead_code)]
    fn records_are_send() {
        send::<Record>();
    }
};

impl OwnCache {
    pub(super) const fn new() -> Self {
        Self {
            slots: [const {
                Slot {
                    busy: AtomicBool::new(false),
                    records: UnsafeCell::new([const { None }; KEEP]),
                }
            }; SLOTS],
        }
    }

    /// Runs `f` on this thread's slot's records if the slot is free; `None`
    /// if another thread holds it (the caller falls back to haphazard).
    fn with_slot<T>(&self, f: impl FnOnce(&mut [Option<Record>; KEEP]) -> T) -> Option<T> {
        let slot = &self.slots[slot_index()];
        // Acquire: pairs with the Release below of the slot's previous
        // holder, so its writes to `records` happen before ours.
        if slot.busy.swap(true, Ordering::Acquire) {
            return None;
        }
        // SAFETY: the `busy` flag, taken above, makes this thread the only
        // one in the slot until the store below.
        let t = slot.records.with_mut(|r| f(unsafe { &mut *r }));
        // Release: pairs with the next holder's Acquire swap above.
        slot.busy.store(false, Ordering::Release);
        Some(t)
    }

    /// A cached record, if this thread's slot has one and is free.
    pub(super) fn take(&self) -> Option<Record> {
        self.with_slot(|rs| rs.iter_mut().rev().find_map(Option::take))
            .flatten()
    }

    /// Keeps `r` (a record of this cache's domain that protects nothing)
    /// for a later shield; gives it back when the slot is full or busy.
    pub(super) fn give(&self, r: Record) -> Option<Record> {
        let mut r = Some(r);
        self.with_slot(|rs| {
            if let Some(s) = rs.iter_mut().find(|s| s.is_none()) {
                *s = r.take();
            }
        });
        r
    }

    /// Drops every cached record (back to the domain's list), with the
    /// domain still alive: an own domain's `Drop` calls this first. Through
    /// `&self`, taking each slot's lock, because dropping a record writes to
    /// the domain that holds this cache.
    pub(super) fn clear(&self) {
        for slot in &self.slots {
            // Acquire: as in `with_slot`; the domain is being dropped, so
            // no other thread holds the lock.
            let busy = slot.busy.swap(true, Ordering::Acquire);
            debug_assert!(!busy, "a slot is held while its domain is dropped");
            slot.records.with_mut(|r| {
                // SAFETY: the slot's lock, taken above.
                for rec in unsafe { &mut *r } {
                    drop(rec.take());
                }
            });
            // Release: pairs with the Acquire above (of a later holder).
            slot.busy.store(false, Ordering::Release);
        }
    }
}
