//! The huge blocks' table and cache slots (lock-free, no heap state): the
//! operations that map and unmap huge blocks are in `huge`.

use core::ptr;

use super::os;
use crate::sync::plain::{AtomicPtr, AtomicUsize};
use crate::sync::Ordering;

/// Freed huge blocks kept mapped for reuse (as glibc's dynamic `mmap`
/// threshold does): at most this many...
pub(super) const HUGE_CACHE_SLOTS: usize = 4;
/// ... and this many bytes in all.
pub(super) const HUGE_CACHE_BYTES: usize = 128 << 20;

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
pub(super) struct HugeTable {
    pub(super) slots: AtomicPtr<HugeSlot>,
}

#[repr(C)]
pub(super) struct HugeSlot {
    pub(super) key: AtomicUsize,
    pub(super) len: AtomicUsize,
}

impl HugeSlot {
    pub(super) const fn new() -> Self {
        Self {
            key: AtomicUsize::new(SLOT_EMPTY),
            len: AtomicUsize::new(0),
        }
    }

    /// Claims the slot if it holds a mapping `fits` accepts: `(addr, len)`.
    pub(super) fn claim(&self, fits: impl Fn(usize, usize) -> bool) -> Option<(usize, usize)> {
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
    pub(super) fn offer(&self, addr: usize, len: usize) -> bool {
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

pub(super) const HUGE_SLOTS: usize = 1 << 16;
pub(super) const SLOT_EMPTY: usize = 0;
pub(super) const SLOT_TOMB: usize = 1;
pub(super) const SLOT_RESERVED: usize = 2;

impl HugeTable {
    pub(super) const fn new() -> Self {
        Self {
            slots: AtomicPtr::new(ptr::null_mut()),
        }
    }

    /// The slots, mapped on first use when `create`.
    pub(super) fn slots(&self, create: bool) -> Option<&[HugeSlot]> {
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
    pub(super) fn probe(addr: usize) -> impl Iterator<Item = usize> {
        let h = ((addr >> 12) as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 48;
        (0..HUGE_SLOTS).map(move |i| (h as usize + i) % HUGE_SLOTS)
    }

    /// Records a huge block; `false` when the table cannot (no memory for
    /// it, or 65 536 huge blocks live).
    pub(super) fn insert(&self, addr: usize, len: usize) -> bool {
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
    pub(super) fn find(&self, addr: usize) -> Option<&HugeSlot> {
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
    pub(super) fn len_of(&self, addr: usize) -> Option<usize> {
        // Relaxed: ordered by the Acquire load of the key in `find`.
        self.find(addr).map(|s| s.len.load(Ordering::Relaxed))
    }

    /// Removes the huge block at `addr`, returning its mapping length; `None`
    /// if it is not recorded (never ours, or freed already: of two threads
    /// freeing it, one wins).
    pub(super) fn remove(&self, addr: usize) -> Option<usize> {
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
