//! The asymmetric hazard scheme's registry: an append-only lock-free list of
//! slots, each claimed by one thread at a time and holding that thread's
//! hazard pointers and the nodes it retired (Michael, "Hazard Pointers:
//! Safe Memory Reclamation for Lock-Free Objects", 2004: per-thread hazard
//! records, per-thread retired lists, a scan once a list reaches a
//! threshold proportional to the number of hazards).
//!
//! Invariants:
//!
//! 1. A slot's claimant-only cells (`free`, `users`, `one_off`) are used
//!    only by the thread holding its claim. A claim is taken with an
//!    `Acquire` CAS and given back with a `Release` store, so successive
//!    claimants' uses are ordered. `retired` is the claimant's too, and the
//!    domain's drop's, when no claimant can use it (see `Registry::drain`).
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
use crate::stat::Stat;
use crate::sync::{asymmetric, AtomicBool, AtomicPtr, Ordering, UnsafeCell};

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

/// One thread's hazard pointers and retired nodes.
#[repr(align(128))]
pub(super) struct Slot {
    /// The slot pushed before this one; written before the slot is
    /// published, never after.
    next: UnsafeCell<*mut Slot>,
    /// Whether a thread holds this slot (invariant 1).
    claimed: AtomicBool,
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
pub(super) struct Registry {
    /// The newest slot; each links to the one pushed before it.
    head: AtomicPtr<Slot>,
    /// Slots pushed: sizes the scan threshold (a heuristic, so a `Stat`).
    slots: Stat,
}

impl Slot {
    fn new() -> Self {
        Self {
            next: UnsafeCell::new(ptr::null_mut()),
            claimed: AtomicBool::new(true),
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

    /// Gives the claim back.
    ///
    /// # Safety
    ///
    /// 1. The calling thread holds the claim, and nothing uses the slot
    ///    (`users == 0`, so every hazard is null).
    pub(super) unsafe fn release(&self) {
        // Release: pairs with the Acquire CAS of the next claimant, so this
        // thread's uses of the claimant-only cells happen before its uses.
        self.claimed.store(false, seeded::release_order());
    }

    /// Guards and shields alive through the slot.
    ///
    /// # Safety
    ///
    /// 1. The calling thread holds the claim.
    pub(super) unsafe fn users(&self) -> usize {
        // SAFETY: (1) claimant-only (invariant 1).
        self.users.with(|u| unsafe { *u })
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

    /// Counts a user gone; releases a one-off claim with its last user.
    ///
    /// # Safety
    ///
    /// 1. The calling thread holds the claim, and one user it counted is
    ///    gone (its hazard, if it had one, reset).
    pub(super) unsafe fn leave(&self) {
        // SAFETY: (1) claimant-only (invariant 1).
        let left = self.users.with_mut(|u| unsafe {
            *u -= 1;
            *u
        });
        // SAFETY: as above.
        if left == 0 && self.one_off.with(|o| unsafe { *o }) {
            // SAFETY: ours, with no user left.
            unsafe { self.release() };
        }
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

    /// Resets hazard `i` and gives it back, as a user gone.
    ///
    /// # Safety
    ///
    /// 1. The calling thread holds the claim, and took hazard `i` with
    ///    `take_hazard`.
    pub(super) unsafe fn give_hazard(&self, i: usize) {
        self.announce(i, ptr::null_mut());
        // SAFETY: (1) claimant-only (invariant 1).
        self.free.with_mut(|f| unsafe { *f |= 1 << i });
        // SAFETY: (1), and this user's hazard is reset.
        unsafe { self.leave() };
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

impl Registry {
    #[cfg(not(loom))]
    pub(super) const fn new() -> Self {
        Self {
            head: AtomicPtr::new(ptr::null_mut()),
            slots: Stat::new(0),
        }
    }

    /// Loom's atomics are not `const`.
    #[cfg(loom)]
    pub(super) fn new() -> Self {
        Self {
            head: AtomicPtr::new(ptr::null_mut()),
            slots: Stat::new(0),
        }
    }

    /// Claims a free slot, or pushes a new one, for a thread's cache
    /// (`one_off` false) or for one guard or shield.
    #[cold]
    pub(super) fn claim(&self, one_off: bool) -> &Slot {
        // Registers for `membarrier` before the thread's first announcement,
        // so that its readers skip the hardware fence from the start.
        let _ = asymmetric::uses_membarrier();
        let slot = self.claim_raw();
        // SAFETY: claimed just now (invariant 1).
        slot.one_off.with_mut(|o| unsafe { *o = one_off });
        slot
    }

    fn claim_raw(&self) -> &Slot {
        // Acquire: pairs with the Release CAS that pushed each slot, so its
        // `next` is visible.
        let mut p = self.head.load(Ordering::Acquire);
        // SAFETY: slots live as long as the registry (invariant 3).
        while let Some(slot) = unsafe { p.as_ref() } {
            // Relaxed: a hint; the CAS decides. Acquire on success: pairs
            // with the previous claimant's Release in `Slot::release`.
            if !slot.claimed.load(Ordering::Relaxed)
                && slot
                    .claimed
                    .compare_exchange(false, true, seeded::claim_order(), Ordering::Relaxed)
                    .is_ok()
            {
                return slot;
            }
            // SAFETY: written before the slot was published.
            p = slot.next.with(|n| unsafe { *n });
        }
        let slot = Box::into_raw(Box::new(Slot::new()));
        self.slots.fetch_add(1);
        // Relaxed: the CAS below validates it.
        let mut head = self.head.load(Ordering::Relaxed);
        loop {
            // SAFETY: not published yet: ours alone.
            unsafe { (*slot).next.with_mut(|n| *n = head) };
            // Release: publishes the slot's fields to the Acquire loads of
            // `claim_raw`, scans and the drop. Relaxed on failure: retried.
            match self
                .head
                .compare_exchange_weak(head, slot, Ordering::Release, Ordering::Relaxed)
            {
                // SAFETY: published, never freed before the registry.
                Ok(_) => return unsafe { &*slot },
                Err(now) => head = now,
            }
        }
    }

    /// Every slot, newest first.
    fn slots(&self) -> impl Iterator<Item = &Slot> {
        // Acquire: pairs with the Release CAS that pushed each slot.
        let mut p = self.head.load(Ordering::Acquire);
        core::iter::from_fn(move || {
            // SAFETY: slots live as long as the registry (invariant 3).
            let slot = unsafe { p.as_ref()? };
            // SAFETY: written before the slot was published.
            p = slot.next.with(|n| unsafe { *n });
            Some(slot)
        })
    }

    /// Slots pushed so far.
    pub(super) fn len(&self) -> usize {
        self.slots.load()
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

impl Drop for Registry {
    fn drop(&mut self) {
        // Relaxed: the last owner's drop already synchronized with every
        // other holder (the `Arc`'s count), or the registry is a static.
        let mut p = self.head.load(Ordering::Relaxed);
        while !p.is_null() {
            // SAFETY: slots come from `Box::into_raw` in `claim_raw` and are
            // freed only here, once: nothing else holds the registry.
            let slot = unsafe { Box::from_raw(p) };
            // SAFETY: written before publication; the slot is ours now.
            p = slot.next.with(|n| unsafe { *n });
            // The domain's drop drained the retired lists first.
            // SAFETY: the slot is ours (above).
            debug_assert!(slot.retired.with(|l| unsafe { (*l).head.is_null() }));
            drop(slot);
        }
    }
}
