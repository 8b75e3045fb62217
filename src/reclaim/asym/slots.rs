//! The asymmetric hazard scheme's registry: the claimable records of
//! `claims` ([`Registry`]), each a slot held by one thread at a time with
//! that thread's hazard pointers and the nodes it retired (Michael, "Hazard
//! Pointers: Safe Memory Reclamation for Lock-Free Objects", 2004:
//! per-thread hazard records, per-thread retired lists, a scan once a list
//! reaches a threshold proportional to the number of hazards).
//!
//! Invariants (1-3 are those of `claims`, for slots):
//!
//! 1. A slot's claimant-only cells (`free`, `users`, `one_off`) are used
//!    only by the thread holding its claim. A claim is taken with an
//!    `Acquire` CAS and given back with a `Release` store, so successive
//!    claimants' uses are ordered. `retired` is the claimant's too, and the
//!    domain's drop's, when no claimant can use it (see `drain`).
//! 2. A slot is released only when no guard or shield uses it
//!    (`users == 0`).
//! 3. Slots are never removed before the registry is dropped, and the
//!    registry lives while its domain or any thread's cache holds it.
//! 4. A hazard is written by its slot's claimant only (announcements with
//!    `Release`, so that ending a protection, by a reset or by moving on to
//!    another node, orders the reads of the old node before it), and read
//!    by every scan (`Acquire`, pairing with those stores). A released
//!    slot's hazards are all null.
//! 5. A scan runs the heavy side of the asymmetric fence after the nodes it
//!    frees were unlinked (they were retired after that) and before it
//!    reads the hazards; a reader announces, runs the light side, then
//!    re-reads the link it came through. One of the two sees the other:
//!    the scan sees the announcement, or the reader sees the node gone and
//!    drops it.

use core::ptr;

use super::seeded;
use crate::reclaim::claims::{Claim, Claims, Payload};
use crate::sync::{asymmetric, AtomicPtr, Ordering, UnsafeCell};

/// Hazard pointers per slot: more than any one operation of the
/// structures holds; a shield beyond them claims a slot of its own. Fewer
/// under loom, where each is a location the scans read.
pub(super) const HAZARDS: usize = if cfg!(loom) { 4 } else { 8 };

/// The fewest retired nodes that make a scan worth its heavy fence.
#[cfg(not(loom))]
const SCAN_MIN: usize = 64;

/// Non-null hazards a scan sorts on its stack; beyond that it compares each
/// retired node with every hazard.
const GATHER: usize = 64;

/// A retired node waiting for a scan that finds no hazard naming it.
struct Retired {
    ptr: *mut u8,
    /// Frees `ptr` (the node's [`Retirable::reclaim`](crate::raw::Retirable)
    /// and the scheme's count).
    reclaim: unsafe fn(*mut u8),
    next: *mut Retired,
}

/// A claimant's list of retired nodes.
struct RetiredList {
    head: *mut Retired,
    len: usize,
}

/// One thread's hazard pointers and retired nodes: the payload of a
/// claimable record. Aligned to a cache line, so that no other thread's
/// hazards share it.
#[repr(align(64))]
pub(super) struct Slot {
    /// The announcements (invariant 4).
    hazards: [AtomicPtr<u8>; HAZARDS],
    /// Bit `i` set: `hazards[i]` is not in use by a shield.
    free: UnsafeCell<u32>,
    /// Guards and shields alive through the slot (invariant 2).
    users: UnsafeCell<usize>,
    /// Whether the claim is for one guard or shield (released when its
    /// users are gone), not a thread's cached one.
    one_off: UnsafeCell<bool>,
    retired: UnsafeCell<RetiredList>,
}

/// All the slots of one domain.
pub(super) type Registry = Claims<Slot>;

/// A slot and its claim.
pub(super) type SlotClaim = Claim<Slot>;

impl Payload for Slot {
    unsafe fn users(&self) -> usize {
        // SAFETY: (1) claimant-only (invariant 1).
        self.users.with(|u| unsafe { *u })
    }

    fn release_order() -> Ordering {
        seeded::release_order()
    }

    fn claim_order() -> Ordering {
        seeded::claim_order()
    }
}

impl Slot {
    fn new() -> Self {
        Self {
            hazards: core::array::from_fn(|_| AtomicPtr::new(ptr::null_mut())),
            free: UnsafeCell::new((1 << HAZARDS) - 1),
            users: UnsafeCell::new(0),
            one_off: UnsafeCell::new(false),
            retired: UnsafeCell::new(RetiredList {
                head: ptr::null_mut(),
                len: 0,
            }),
        }
    }

    /// Counts one more user (a guard or a shield).
    ///
    /// # Safety
    ///
    /// 1. The calling thread holds the claim.
    pub(super) unsafe fn enter(&self) {
        // SAFETY: (1) claimant-only (invariant 1).
        self.users.with_mut(|u| unsafe { *u += 1 });
    }

    /// Takes a free hazard of the slot, as a new user.
    ///
    /// # Safety
    ///
    /// 1. The calling thread holds the claim.
    pub(super) unsafe fn take_hazard(&self) -> Option<usize> {
        // SAFETY: (1) claimant-only (invariant 1).
        let i = self.free.with_mut(|f| unsafe {
            if *f == 0 {
                return None;
            }
            let i = (*f).trailing_zeros() as usize;
            *f &= !(1 << i);
            Some(i)
        })?;
        // SAFETY: (1).
        unsafe { self.enter() };
        Some(i)
    }

    /// Announces `p` in hazard `i` (null: protects nothing). Only its
    /// claimant calls it, on a hazard it took.
    #[inline(always)]
    pub(super) fn announce(&self, i: usize, p: *mut u8) {
        // Release: pairs with the Acquire load of a scan (invariant 4): the
        // reads of the node this hazard protected until now happen before
        // a scan that sees the new value frees it.
        self.hazards[i].store(p, Ordering::Release);
    }

    /// Adds `r` to the claimant's retired list; returns its length.
    ///
    /// # Safety
    ///
    /// 1. The calling thread holds the claim.
    unsafe fn push_retired(&self, r: *mut Retired) -> usize {
        // SAFETY: (1) claimant-only (invariant 1); `r` is ours, unlinked.
        self.retired.with_mut(|l| unsafe {
            (*r).next = (*l).head;
            (*l).head = r;
            (*l).len += 1;
            (*l).len
        })
    }

    /// Takes the whole retired list.
    ///
    /// # Safety
    ///
    /// 1. The calling thread holds the claim, or no thread can use the slot
    ///    any more (the domain's drop).
    unsafe fn take_retired(&self) -> *mut Retired {
        // SAFETY: (1).
        self.retired.with_mut(|l| unsafe {
            (*l).len = 0;
            core::mem::replace(&mut (*l).head, ptr::null_mut())
        })
    }
}

impl SlotClaim {
    /// Counts a user gone; releases a one-off claim with its last user.
    ///
    /// # Safety
    ///
    /// 1. The calling thread holds the claim, and one user it counted is
    ///    gone (its hazard, if it had one, reset).
    pub(super) unsafe fn leave(&self) {
        // SAFETY: (1) claimant-only (invariant 1).
        let left = self.payload.users.with_mut(|u| unsafe {
            *u -= 1;
            *u
        });
        // SAFETY: as above.
        if left == 0 && self.payload.one_off.with(|o| unsafe { *o }) {
            // SAFETY: ours, with no user left.
            unsafe { self.release() };
        }
    }

    /// Resets hazard `i` and gives it back, as a user gone.
    ///
    /// # Safety
    ///
    /// 1. The calling thread holds the claim, and took hazard `i` with
    ///    `take_hazard`.
    pub(super) unsafe fn give_hazard(&self, i: usize) {
        self.payload.announce(i, ptr::null_mut());
        // SAFETY: (1) claimant-only (invariant 1).
        self.payload.free.with_mut(|f| unsafe { *f |= 1 << i });
        // SAFETY: (1), and this user's hazard is reset.
        unsafe { self.leave() };
    }
}

impl Registry {
    /// Claims a free slot, or pushes a new one, for a thread's cache
    /// (`one_off` false) or for one guard or shield.
    #[cold]
    pub(super) fn claim_slot(&self, one_off: bool) -> &SlotClaim {
        // Registers for `membarrier` before the thread's first announcement,
        // so that its readers skip the hardware fence from the start.
        let _ = asymmetric::uses_membarrier();
        let c = self.claim(Slot::new);
        // SAFETY: claimed just now (invariant 1).
        c.payload.one_off.with_mut(|o| unsafe { *o = one_off });
        c
    }

    /// Every slot, newest first.
    fn slots(&self) -> impl Iterator<Item = &Slot> {
        self.iter().map(|c| &c.payload)
    }

    /// Retires `ptr` into `slot`'s list, and scans once the list is long
    /// enough.
    ///
    /// # Safety
    ///
    /// 1. The calling thread holds `slot`'s claim, and `slot` is in this
    ///    registry.
    /// 2. As `Guard::retire` for `ptr`, whose `reclaim` frees it.
    pub(super) unsafe fn retire(&self, slot: &Slot, ptr: *mut u8, reclaim: unsafe fn(*mut u8)) {
        let r = Box::into_raw(Box::new(Retired {
            ptr,
            reclaim,
            next: ptr::null_mut(),
        }));
        // SAFETY: (1).
        let len = unsafe { slot.push_retired(r) };
        #[cfg(not(loom))]
        let due = len >= SCAN_MIN.max(2 * HAZARDS * self.len());
        // Under loom every retire scans, so that a model frees inside its
        // concurrent window (as the `Hazard` scheme reclaims eagerly there).
        #[cfg(loom)]
        let due = len >= 1;
        if due {
            // SAFETY: (1).
            unsafe { self.scan(slot) };
        }
    }

    /// Frees every node of `slot`'s retired list that no hazard names.
    ///
    /// # Safety
    ///
    /// 1. The calling thread holds `slot`'s claim, and `slot` is in this
    ///    registry.
    pub(super) unsafe fn scan(&self, slot: &Slot) {
        // Taken first: a node's `reclaim` may run code that retires into
        // this slot again (a value's drop), which then finds the list empty.
        // SAFETY: (1).
        let mut list = unsafe { slot.take_retired() };
        if list.is_null() {
            return;
        }
        // Invariant 5: every node of `list` was unlinked before this.
        asymmetric::heavy();
        let mut seen = [ptr::null_mut::<u8>(); GATHER];
        let mut n = 0;
        let mut overflow = false;
        for s in self.slots() {
            for h in &s.hazards {
                // Acquire: pairs with the Release of `Slot::announce`
                // (invariant 4).
                let p = h.load(Ordering::Acquire);
                if p.is_null() {
                    continue;
                }
                if n < GATHER {
                    seen[n] = p;
                    n += 1;
                } else {
                    overflow = true;
                }
            }
        }
        let seen = &mut seen[..n];
        seen.sort_unstable();
        let protected = |p: *mut u8| {
            if overflow {
                // Every hazard again: a read after the heavy fence is as
                // good as the first.
                self.slots()
                    // Acquire: as above.
                    .any(|s| s.hazards.iter().any(|h| h.load(Ordering::Acquire) == p))
            } else {
                seen.binary_search(&p).is_ok()
            }
        };
        while !list.is_null() {
            // SAFETY: each `Retired` comes from `Box::into_raw` in `retire`
            // and is in one list at a time; this one is ours (taken above).
            let r = unsafe { Box::from_raw(list) };
            list = r.next;
            if protected(r.ptr) {
                let kept = Box::into_raw(r);
                // SAFETY: (1).
                unsafe { slot.push_retired(kept) };
            } else {
                // SAFETY: retired (condition 2 of `retire`) and named by no
                // hazard read after the heavy fence (invariant 5): no reader
                // holds it or can newly protect it; freed once, here.
                unsafe { (r.reclaim)(r.ptr) };
            }
        }
    }

    /// Frees every retired node of every slot: the domain's drop.
    ///
    /// # Safety
    ///
    /// 1. No guard or shield of the domain is alive, and every use of a
    ///    slot by another thread happened before this call (their borrows
    ///    of the domain ended before its drop), so the retired lists are
    ///    ours (invariant 1), and nothing is protected.
    pub(super) unsafe fn drain(&self) {
        for slot in self.slots() {
            // SAFETY: (1).
            let mut list = unsafe { slot.take_retired() };
            while !list.is_null() {
                // SAFETY: as in `scan`.
                let r = unsafe { Box::from_raw(list) };
                list = r.next;
                // SAFETY: (1) no reader can reach it; freed once, here.
                unsafe { (r.reclaim)(r.ptr) };
            }
        }
    }
}
