//! The huge blocks' table and cache slots (lock-free, no heap state): the
//! operations that map and unmap huge blocks are in `huge`.

#[cfg(not(loom))]
use core::ptr;

#[cfg(not(loom))]
use super::os;
#[cfg(not(loom))]
use crate::sync::AtomicPtr;
use crate::sync::{AtomicUsize, Ordering};

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
///
/// Under loom the slots are a few loom atomics made by the constructor
/// (loom's atomics are neither `const` nor valid when zero-filled), so the
/// models in `loom_tests/heap/` check the slot protocol itself.
pub(super) struct HugeTable {
    #[cfg(not(loom))]
    slots: AtomicPtr<HugeSlot>,
    #[cfg(loom)]
    slots: Box<[HugeSlot]>,
}

#[repr(C)]
pub(super) struct HugeSlot {
    pub(super) key: AtomicUsize,
    pub(super) len: AtomicUsize,
}

impl HugeSlot {
    #[cfg(not(loom))]
    pub(super) const fn new() -> Self {
        Self {
            key: AtomicUsize::new(SLOT_EMPTY),
            len: AtomicUsize::new(0),
        }
    }

    #[cfg(loom)]
    pub(super) fn new() -> Self {
        Self {
            key: AtomicUsize::new(SLOT_EMPTY),
            len: AtomicUsize::new(0),
        }
    }

    /// Publishes `addr` with its length in a slot this thread reserved.
    fn publish(&self, addr: usize, len: usize) {
        if seeded::key_first() {
            // The seeded bug (loom only): the key is published before the
            // length it guards.
            self.key.store(addr, Ordering::Release);
            self.len.store(len, Ordering::Relaxed);
            return;
        }
        // Relaxed: published by the Release store of the key.
        self.len.store(len, Ordering::Relaxed);
        // Release: pairs with the Acquire loads of the key in `claim` and
        // `HugeTable::find`.
        self.key.store(addr, Ordering::Release);
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
        self.publish(addr, len);
        true
    }
}

/// Slots of the table (a mapping of 1 MiB, touched as used).
#[cfg(not(loom))]
const HUGE_SLOTS: usize = 1 << 16;
/// Slots of the table in the loom build.
#[cfg(loom)]
const HUGE_SLOTS: usize = 4;
pub(super) const SLOT_EMPTY: usize = 0;
pub(super) const SLOT_TOMB: usize = 1;
pub(super) const SLOT_RESERVED: usize = 2;

impl HugeTable {
    #[cfg(not(loom))]
    pub(super) const fn new() -> Self {
        Self {
            slots: AtomicPtr::new(ptr::null_mut()),
        }
    }

    #[cfg(loom)]
    pub(super) fn new() -> Self {
        Self::with_slots(HUGE_SLOTS)
    }

    /// A table of `n` slots (the loom models use one or two, so that
    /// inserts reuse each other's slots).
    #[cfg(loom)]
    pub(super) fn with_slots(n: usize) -> Self {
        Self {
            slots: (0..n).map(|_| HugeSlot::new()).collect(),
        }
    }

    #[cfg(loom)]
    fn slots(&self, _create: bool) -> Option<&[HugeSlot]> {
        Some(&self.slots)
    }

    /// The slots, mapped on first use when `create`.
    #[cfg(not(loom))]
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

    /// The probe sequence of `addr` in `n` slots: every slot, starting at
    /// its hash.
    fn probe(addr: usize, n: usize) -> impl Iterator<Item = usize> {
        let h = ((addr >> 12) as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 48;
        (0..n).map(move |i| (h as usize + i) % n)
    }

    /// Records a huge block; `false` when the table cannot (no memory for
    /// it, or 65 536 huge blocks live).
    pub(super) fn insert(&self, addr: usize, len: usize) -> bool {
        let Some(slots) = self.slots(true) else {
            return false;
        };
        for i in Self::probe(addr, slots.len()) {
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
                s.publish(addr, len);
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
        for i in Self::probe(addr, slots.len()) {
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
        let won = s
            .key
            .compare_exchange(addr, SLOT_TOMB, Ordering::Release, Ordering::Relaxed)
            .is_ok();
        // The seeded bug (loom only): the CAS's result ignored, so two
        // frees of one block both "win".
        (won || seeded::ignore_remove_cas()).then_some(len)
    }
}

#[cfg(not(loom))]
impl Drop for HugeTable {
    fn drop(&mut self) {
        let slots = *self.slots.get_mut();
        if !slots.is_null() {
            // SAFETY: the table's own mapping (made in `slots`), and
            // `&mut self`: nobody uses it any more.
            unsafe { os::unmap(slots.cast(), HUGE_SLOTS * size_of::<HugeSlot>()) };
        }
    }
}

/// The huge table and a cache slot on their own, for the loom models
/// (`loom_tests/heap/`).
#[cfg(loom)]
#[doc(hidden)]
pub struct ModelHugeTable {
    table: HugeTable,
    cache: HugeSlot,
}

#[cfg(loom)]
impl ModelHugeTable {
    /// A table of `slots` slots and one cache slot.
    pub fn new(slots: usize) -> Self {
        Self {
            table: HugeTable::with_slots(slots),
            cache: HugeSlot::new(),
        }
    }

    /// Records a huge block (`free` and `realloc` find it by address).
    pub fn insert(&self, addr: usize, len: usize) -> bool {
        self.table.insert(addr, len)
    }

    /// The length recorded for `addr`.
    pub fn len_of(&self, addr: usize) -> Option<usize> {
        self.table.len_of(addr)
    }

    /// Removes `addr` (a free), returning its length to the one winner.
    pub fn remove(&self, addr: usize) -> Option<usize> {
        self.table.remove(addr)
    }

    /// Offers a freed mapping to the cache slot.
    pub fn offer(&self, addr: usize, len: usize) -> bool {
        self.cache.offer(addr, len)
    }

    /// Takes the cached mapping if there is one.
    pub fn claim(&self) -> Option<(usize, usize)> {
        self.cache.claim(|_, _| true)
    }

    /// Looks at the cached mapping, finds it does not fit and puts it back
    /// (a huge request of another size); whether there was one.
    pub fn claim_misfit(&self) -> bool {
        let seen = core::cell::Cell::new(false);
        self.cache.claim(|_, _| {
            seen.set(true);
            false
        });
        seen.get()
    }
}

/// Which seeded bug of the huge table the calling test's loom models run
/// with, if any.
#[cfg(loom)]
#[doc(hidden)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HugeTableBug {
    /// None: the table as built.
    None,
    /// A slot's key published before its length (in `insert` and `offer`).
    KeyBeforeLength,
    /// `remove` ignores its CAS's result (a double free wins twice).
    RemoveIgnoresCas,
}

/// Sets the seeded bug of the huge table for the calling test's models.
#[cfg(loom)]
#[doc(hidden)]
pub fn seeded_huge_table_bug(bug: HugeTableBug) {
    seeded::BUG.with(|b| b.set(bug));
}

#[cfg(loom)]
mod seeded {
    use core::cell::Cell;

    use super::HugeTableBug;

    // std's thread-local: loom runs a model's threads on the OS thread of
    // the test that started it, so the switch is that test's alone.
    thread_local! {
        pub(super) static BUG: Cell<HugeTableBug> = const { Cell::new(HugeTableBug::None) };
    }

    pub(super) fn key_first() -> bool {
        BUG.with(Cell::get) == HugeTableBug::KeyBeforeLength
    }

    pub(super) fn ignore_remove_cas() -> bool {
        BUG.with(Cell::get) == HugeTableBug::RemoveIgnoresCas
    }
}

/// Outside loom no bug is seeded.
#[cfg(not(loom))]
mod seeded {
    #[inline(always)]
    pub(super) fn key_first() -> bool {
        false
    }

    #[inline(always)]
    pub(super) fn ignore_remove_cas() -> bool {
        false
    }
}
