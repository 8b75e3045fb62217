//! Own epoch domains: each thread registers with a domain's collector once,
//! not once per operation.
//!
//! crossbeam-epoch keeps a thread-local participant (`LocalHandle`) only for
//! its default collector. Until 2026-11-30 an own [`Epoch`](super::Epoch)
//! domain registered a fresh participant for every operation and dropped it
//! at the operation's end. That was slow (a registration, a first-pin
//! collection and an unregistration per operation) and, in the C11 model,
//! unsound:
//!
//! # The race that per-operation registration opened
//!
//! A participant that is dropped marks its list entry deleted (a `Release`
//! RMW) after unpinning. An advancing thread that meets the marked entry
//! unlinks it with a CAS that is `Acquire` only (crossbeam-epoch 0.9.21,
//! `sync/list.rs`, `Iter::next`). A second advancing thread that walks the
//! list after that unlink reads the unlinking CAS's value without
//! synchronizing with the first advancer, never sees the departed
//! participant, and so has no happens-before edge from that participant's
//! last reads to the frees it performs after advancing. Miri reported exactly
//! that: `List::help_pop`'s load of a node's `next` racing with the node's
//! deallocation in a bag dropped by another thread (`tests/list.rs`,
//! `linearizable_epoch_own`). The `SeqCst` fence that an earlier session put
//! between `register` and `pin` ordered the *arrival* of a participant and
//! could not help with its *departure*. With the default collector the same
//! window exists only when a thread exits; per-operation registration opened
//! it on every operation.
//!
//! # The design
//!
//! An own domain ([`OwnEpoch`]) holds its collector and a registry (the
//! claimable records of `claims`): an append-only lock-free list of
//! slots, each owning one registered
//! participant. A thread *claims* a free slot (a CAS of `claimed` from false
//! to true; a new slot and participant when none is free) and keeps it in a
//! small per-thread cache keyed by the registry's address; every later
//! operation of that thread on the domain pins the slot's participant. When
//! the thread exits (or evicts the entry from its full cache) it releases
//! the claim, and the participant stays registered for the next thread that
//! claims the slot. Participants leave the collector's list only when the
//! domain is dropped, when no operation can run, so the departure race above
//! cannot happen while the domain is in use: each participant arrives once
//! and is then used exactly as crossbeam's default collector uses a thread's
//! participant.
//!
//! Invariants:
//!
//! 1. A slot's participant (`handle`) and pin count (`pins`) are used only by
//!    the thread holding the slot's claim, or by the domain's drop. A claim
//!    is taken with an `Acquire` CAS and given back with a `Release` store,
//!    so successive claimants' uses are ordered.
//! 2. A slot is released only when no guard pinned through it is alive
//!    (`pins == 0`).
//! 3. Slots are never removed from the registry before it is freed, and the
//!    registry lives while the domain or any cache entry holds it (`Arc`).
//!    A cache entry's key (the registry's address) therefore names one
//!    registry for as long as the entry exists.
//! 4. The domain's drop takes every slot's participant and drops it (each
//!    pushes its unflushed garbage to the collector and unregisters), then
//!    drops the collector, whose last reference frees every retired node.
//!    So nothing retired into the domain outlives it, whatever threads still
//!    hold (released or stale) cache entries for it.

use core::cell::RefCell;
use core::mem::ManuallyDrop;

use crossbeam_epoch::{Collector, LocalHandle};

use super::claims::{Cache, Claim, Claims, Payload};
use crate::sync::{thread_local, Arc, Ordering, UnsafeCell};

/// An own epoch domain: a collector and the registry of its participants,
/// one per thread that uses it (see the module docs of `reclaim`).
pub struct OwnEpoch {
    registry: Arc<Registry>,
    // Dropped after `Drop::drop` has dropped every participant, so the drop
    // of this last reference frees every bag (invariant 4).
    collector: Collector,
}

/// The participants of one own domain, each in a slot that one thread at a
/// time claims (`claims`).
type Registry = Claims<Participant>;

/// A slot of the registry and its claim.
type Slot = Claim<Participant>;

/// One registered participant.
struct Participant {
    /// Guards of the claimant alive through this slot (invariant 2).
    pins: UnsafeCell<usize>,
    /// The participant; `None` once the domain is dropped.
    handle: UnsafeCell<Option<LocalHandle>>,
}

impl Payload for Participant {
    unsafe fn users(&self) -> usize {
        // SAFETY: (1) only the claimant touches `pins` (invariant 1).
        self.pins.with(|p| unsafe { *p })
    }

    fn release_order() -> Ordering {
        seeded::release_order()
    }

    fn claim_order() -> Ordering {
        seeded::claim_order()
    }
}

impl OwnEpoch {
    /// A new collector with no participant yet.
    pub(crate) fn new() -> Self {
        Self {
            registry: Arc::new(Registry::new()),
            collector: Collector::new(),
        }
    }

    /// Pins the calling thread's participant of this domain, claiming one
    /// (and caching it for the thread) on the thread's first use.
    pub(crate) fn pin(&self) -> EpochGuard<'_> {
        let cached = CACHE
            .try_with(|cache| {
                // Busy only if a pin runs inside another's claim (an
                // allocator hook): that one pin goes uncached.
                let mut cache = cache.try_borrow_mut().ok()?;
                if let Some(slot) = cache.find(&self.registry) {
                    return Some(slot);
                }
                let slot = self.claim();
                if cache.insert(&self.registry, Some(&self.registry), slot) {
                    Some(slot as *const Slot)
                } else {
                    // Every entry is pinned: no room. Give the claim back
                    // (nothing is pinned through it yet).
                    // SAFETY: claimed above, never pinned.
                    unsafe { slot.release() };
                    None
                }
            })
            .ok()
            .flatten();
        match cached {
            // SAFETY: (1) we hold the claim; (2) the slot is in this
            // domain's registry, which lives as long as `self`.
            Some(slot) => unsafe { self.pin_slot(&*slot, false) },
            None => {
                // During thread-local destruction, or with a busy or full
                // cache: a slot for this one guard, released when it drops.
                let slot = self.claim();
                // SAFETY: as above.
                unsafe { self.pin_slot(slot, true) }
            }
        }
    }

    /// Pins `slot`'s participant.
    ///
    /// # Safety
    ///
    /// 1. The calling thread holds `slot`'s claim.
    /// 2. `slot` is in this domain's registry.
    unsafe fn pin_slot<'d>(&'d self, slot: &'d Slot, release_on_drop: bool) -> EpochGuard<'d> {
        // SAFETY: (1, 2) invariant 1: ours alone; the domain is alive (we
        // hold `&self`), so its drop has not taken the participant.
        let guard = slot.payload.handle.with(|h| unsafe {
            (*h).as_ref()
                .expect("an own epoch domain's participant is taken only by its drop")
                .pin()
        });
        // SAFETY: (1) only the claimant touches `pins`.
        slot.payload.pins.with_mut(|p| unsafe { *p += 1 });
        EpochGuard {
            guard: ManuallyDrop::new(guard),
            slot: Some(slot),
            release_on_drop,
        }
    }

    /// Claims a free slot, or pushes a new one with a new participant.
    /// Out of line: a thread's first operation on the domain only, and
    /// crossbeam's registration builds a 2 KiB participant on the stack
    /// (loom's threads have 32 KiB).
    #[cold]
    #[inline(never)]
    fn claim(&self) -> &Slot {
        self.registry.claim(|| Participant {
            pins: UnsafeCell::new(0),
            handle: UnsafeCell::new(Some(self.collector.register())),
        })
    }

    /// Participants registered so far: at most the number of threads that
    /// used the domain at the same time (released ones are reused).
    pub(crate) fn participants(&self) -> usize {
        self.registry.len()
    }

    /// Flushes the calling thread's garbage to the collector and tries to
    /// advance the epoch and free expired garbage, `rounds` times, pinning
    /// anew each round (the advance needs every pinned participant, this one
    /// included, in the current epoch).
    pub(crate) fn collect(&self, rounds: usize) {
        for _ in 0..rounds {
            self.pin().guard.flush();
        }
    }
}

impl Drop for OwnEpoch {
    fn drop(&mut self) {
        // No guard of the domain is alive (a guard borrows it), and every
        // use of a participant by another thread happened before this drop
        // (that thread's borrow of the domain ended before it), so the
        // participants are ours (invariant 4).
        for slot in self.registry.iter() {
            // SAFETY: see above: no other thread uses the participant now
            // or later (the domain is gone for them).
            let handle = slot.payload.handle.with_mut(|h| unsafe { (*h).take() });
            // Unregisters the participant, pushing its unflushed bag to the
            // collector first.
            drop(handle);
        }
        // `self.collector`, dropped next, is now the collector's last
        // reference: its drop runs every deferred reclamation.
    }
}

/// A pinned epoch: crossbeam's guard, and for own domains the slot it was
/// pinned through.
pub struct EpochGuard<'d> {
    pub(super) guard: ManuallyDrop<crossbeam_epoch::Guard>,
    slot: Option<&'d Slot>,
    /// Whether this guard holds the slot's claim for itself alone (the
    /// thread could not cache it), to be released when it drops.
    release_on_drop: bool,
}

impl EpochGuard<'_> {
    /// A guard of crossbeam's default collector.
    pub(super) fn global(guard: crossbeam_epoch::Guard) -> Self {
        Self {
            guard: ManuallyDrop::new(guard),
            slot: None,
            release_on_drop: false,
        }
    }
}

impl Drop for EpochGuard<'_> {
    fn drop(&mut self) {
        // Unpin first: the slot may be claimed by another thread as soon as
        // it is released below.
        // SAFETY: dropped once, here; not used afterwards.
        unsafe { ManuallyDrop::drop(&mut self.guard) };
        if let Some(slot) = self.slot {
            // SAFETY: this thread holds the claim while a guard pinned
            // through the slot lives (invariant 2).
            slot.payload.pins.with_mut(|p| unsafe { *p -= 1 });
            if self.release_on_drop {
                // SAFETY: the claim is this guard's alone, and it was the
                // slot's only guard.
                unsafe { slot.release() };
            }
        }
    }
}

#[cfg(not(loom))]
thread_local! {
    // No allocation on first use (const), as the hazard shield cache.
    static CACHE: RefCell<Cache<Participant>> = const { RefCell::new(Cache::new()) };
}

// Loom's macro takes no `const` block; each model thread gets its own.
#[cfg(loom)]
thread_local! {
    static CACHE: RefCell<Cache<Participant>> = RefCell::new(Cache::new());
}

/// The publishing half of the claim protocol: pairs with `CLAIM`.
const RELEASE: Ordering = Ordering::Release;
/// Pairs with `RELEASE`.
const CLAIM: Ordering = Ordering::Acquire;

/// The orderings of the claim protocol, which the loom models weaken to
/// show that they catch it; one source for both builds.
#[cfg(not(loom))]
mod seeded {
    use crate::sync::Ordering;

    #[inline(always)]
    pub(super) fn release_order() -> Ordering {
        super::RELEASE
    }

    #[inline(always)]
    pub(super) fn claim_order() -> Ordering {
        super::CLAIM
    }
}

/// Under loom a model can weaken the claim protocol's orderings
/// ([`seeded_weaken_claim`]) to check that the models catch it.
#[cfg(loom)]
mod seeded {
    use core::cell::Cell;

    use crate::sync::Ordering;

    // std's thread-local, not loom's: loom runs all the threads of a model
    // on the OS thread of the test that started it, so the switch is the
    // test's alone while other tests run in parallel.
    thread_local! {
        static WEAK: Cell<bool> = const { Cell::new(false) };
    }

    pub(super) fn set(on: bool) {
        WEAK.with(|w| w.set(on));
    }

    pub(super) fn release_order() -> Ordering {
        if WEAK.with(Cell::get) {
            Ordering::Relaxed // the seeded bug: pairs with nothing
        } else {
            super::RELEASE
        }
    }

    pub(super) fn claim_order() -> Ordering {
        if WEAK.with(Cell::get) {
            Ordering::Relaxed // the seeded bug: pairs with nothing
        } else {
            super::CLAIM
        }
    }
}

/// The seeded bug of the own-epoch claim protocol, for the loom models: a
/// slot released with `Relaxed` and claimed with `Relaxed`, so the next
/// claimant's use of the participant is not ordered after the last one's.
/// Affects the calling test thread's models only.
#[cfg(loom)]
#[doc(hidden)]
pub fn seeded_weaken_claim(on: bool) {
    seeded::set(on);
}
