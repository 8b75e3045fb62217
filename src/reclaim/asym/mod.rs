//! Hazard pointers with an asymmetric fence: the library's own hazard-pointer
//! domain, written from Michael's description (2004) with the fence split
//! between readers and reclaimers as in Dice, Huang and Yang's asymmetric
//! Dekker synchronization (`crate::sync::asymmetric`).
//!
//! A reader announces the node it is about to read in one of its thread's
//! hazard pointers, runs the *light* fence (a compiler fence where the
//! process is registered for `membarrier(2)`, else a `SeqCst` fence), and
//! re-reads the link it came through. A thread that retires a node keeps it
//! in its own retired list; once the list is long enough it runs the
//! *heavy* fence (`membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED)`), reads
//! every hazard pointer of the domain and frees the nodes none names.
//!
//! Where [`Hazard`](super::Hazard) (haphazard 0.1.8) pays a full fence per
//! protected node because its light barrier is a full fence, this scheme's
//! readers pay a compiler fence and a store; the reclaimer pays one
//! `membarrier` per scan (about 0.2 us here, amortized over at least 64
//! retired nodes). Each thread claims a slot of hazard pointers in a domain
//! once and caches it (`cache`), so a read touches no shared memory but its
//! own slot (`slots`).

mod cache;
mod seeded;
mod slots;

#[cfg(loom)]
#[doc(hidden)]
pub use seeded::seed as seed_asym_hazard;
#[doc(hidden)]
pub use seeded::AsymSeed;

use core::marker::PhantomData;

use crate::raw::Retirable;
use crate::stat::SignedStat;
use crate::sync::{asymmetric, Arc, AtomicPtr, Ordering};

use super::{count_reclaimed, sealed, untagged, Domain, Reclaim};
use slots::{Registry, SlotClaim};

/// Hazard pointers with an asymmetric fence (the library's own): bounded
/// garbage like [`Hazard`](super::Hazard), and reads without a hardware
/// fence where the kernel offers `membarrier(2)` (Linux 4.14 and later).
///
/// Readers announce each node in a hazard pointer and keep the compiler
/// from reordering; a thread that has retired enough nodes issues one
/// `membarrier`, which runs a full barrier on every CPU running a thread of
/// the process, then frees what no hazard names. Where `membarrier` is not
/// available (another OS, a seccomp filter, Miri) both sides use `SeqCst`
/// fences, and the scheme behaves like [`Hazard`](super::Hazard) with its
/// own record management.
///
/// Garbage stays bounded: each thread's retired list is scanned once it
/// holds max(64, 2 × hazards of the domain) nodes, and a scan frees every
/// node no hazard names, so a stalled thread holds back only the nodes its
/// hazards name, plus its own unscanned list. A thread that exits leaves
/// its list to the next thread that claims its slot (or to the domain's
/// drop).
///
/// ```
/// # if vvmalloc::LOOM_BUILD { return; }
/// use vvmalloc::reclaim::{AsymHazard, Domain};
/// use vvmalloc::SkipList;
///
/// let m: SkipList<u32, String, AsymHazard> = SkipList::with_domain(Domain::new());
/// m.insert(1, "one".into());
/// assert_eq!(m.get(&1).unwrap().value(), "one");
/// assert_eq!(m.remove(&1).unwrap().value(), "one");
/// assert!(m.is_empty());
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct AsymHazard;

impl sealed::Sealed for AsymHazard {}

impl AsymHazard {
    /// Whether readers skip the hardware fence: the process is registered
    /// for `membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED)` (registering on
    /// the first call). `false` where both sides use `SeqCst` fences
    /// instead (not Linux, a kernel without the command, a seccomp filter
    /// that forbids it, Miri, loom). Correct either way; this is for
    /// benchmark labels and diagnostics.
    ///
    /// ```
    /// # if vvmalloc::LOOM_BUILD { return; }
    /// use vvmalloc::reclaim::AsymHazard;
    /// println!("membarrier: {}", AsymHazard::uses_membarrier());
    /// ```
    pub fn uses_membarrier() -> bool {
        asymmetric::uses_membarrier()
    }
}

/// An own domain of [`AsymHazard`]: its registry of slots, shared with the
/// caches of the threads that used it. Dropping it frees every node retired
/// into it; the registry's memory goes when the last cache lets it go.
#[doc(hidden)]
pub struct OwnAsym {
    registry: Arc<Registry>,
}

impl Drop for OwnAsym {
    fn drop(&mut self) {
        // SAFETY: no guard or shield of the domain is alive (they borrow
        // it), and other threads' uses of it ended before this drop.
        unsafe { self.registry.drain() };
    }
}

impl OwnAsym {
    /// Slots claimed so far: at most the number of threads that used the
    /// domain at once, plus shields beyond a slot's hazard pointers.
    pub(crate) fn slots(&self) -> usize {
        self.registry.len()
    }
}

#[cfg(not(loom))]
static GLOBAL: Registry = Registry::new();

fn registry(domain: &Domain<AsymHazard>) -> (&Registry, Option<&Arc<Registry>>) {
    match domain.raw() {
        Some(own) => (&own.registry, Some(&own.registry)),
        #[cfg(not(loom))]
        None => (&GLOBAL, None),
        #[cfg(loom)]
        None => panic!("{}", super::NO_GLOBAL_UNDER_LOOM),
    }
}

/// An operation of [`AsymHazard`]: the thread's slot in the domain.
#[doc(hidden)]
pub struct AsymGuard<'d> {
    registry: &'d Registry,
    slot: &'d SlotClaim,
    /// The slot's claimant-only cells belong to this thread.
    _not_send: PhantomData<*mut ()>,
}

impl Drop for AsymGuard<'_> {
    fn drop(&mut self) {
        // SAFETY: this thread holds the claim while a user of the slot
        // lives (the guard counted itself in `raw_pin`).
        unsafe { self.slot.leave() };
    }
}

/// A hazard pointer of [`AsymHazard`]: one of its slot's.
///
/// One word: the slot's address with the hazard's index in the low bits
/// (a slot is aligned to a cache line, and there are at most 8 hazards). With
/// two words, the swaps of shields that a hand-over-hand traversal makes
/// every step went through the stack as two 8-byte stores and one 16-byte
/// load, which store forwarding cannot serve: half of a list lookup's time.
#[doc(hidden)]
pub struct AsymShield<'d> {
    tagged: *const SlotClaim,
    /// The slot lives as long as the domain. (The raw pointer keeps the
    /// shield from being `Send`: the slot's claimant-only cells belong to
    /// this thread.)
    _slot: PhantomData<&'d SlotClaim>,
}

const _: () = assert!(core::mem::align_of::<SlotClaim>() > slots::HAZARDS);

impl<'d> AsymShield<'d> {
    fn new(slot: &'d SlotClaim, index: usize) -> Self {
        let tagged = (slot as *const SlotClaim).map_addr(|a| a | index);
        Self {
            tagged,
            _slot: PhantomData,
        }
    }

    #[inline(always)]
    fn slot(&self) -> &'d SlotClaim {
        let mask = core::mem::align_of::<SlotClaim>() - 1;
        // SAFETY: the address of a slot of the domain, which lives for 'd
        // (invariant 3 of `slots`), with the index cleared.
        unsafe { &*self.tagged.map_addr(|a| a & !mask) }
    }

    #[inline(always)]
    fn index(&self) -> usize {
        self.tagged.addr() & (core::mem::align_of::<SlotClaim>() - 1)
    }

    #[inline(always)]
    fn announce(&self, p: *mut u8) {
        self.slot().payload.announce(self.index(), p);
    }
}

impl Drop for AsymShield<'_> {
    fn drop(&mut self) {
        // SAFETY: this thread holds the claim while the shield lives (it
        // counted itself in `raw_shield`), and took this hazard.
        unsafe { self.slot().give_hazard(self.index()) };
    }
}

/// The readers' side of the asymmetric fence (skipped by a seeded bug
/// under loom).
#[inline(always)]
fn light() {
    if seeded::light_fence() {
        asymmetric::light();
    }
}

/// Frees a retired node of type `N`.
///
/// # Safety
///
/// As [`Retirable::reclaim`], for `p` cast back to `N`.
unsafe fn reclaim_as<N: Retirable>(p: *mut u8) {
    count_reclaimed::<AsymHazard>();
    // SAFETY: the caller's.
    unsafe { N::reclaim(p.cast()) }
}

impl Reclaim for AsymHazard {
    const NAME: &'static str = "asym-hazard";
    const GUARD_PROTECTS_ALL: bool = false;
    type RawDomain = OwnAsym;
    type RawGuard<'d> = AsymGuard<'d>;
    type RawShield<'d> = AsymShield<'d>;

    fn raw_new_domain() -> OwnAsym {
        OwnAsym {
            registry: Arc::new(Registry::new()),
        }
    }

    #[inline]
    fn raw_pin(domain: &Domain<Self>) -> AsymGuard<'_> {
        let (registry, arc) = registry(domain);
        let slot = cache::slot_of(registry, arc);
        // SAFETY: `slot_of` returns a slot this thread holds the claim of.
        unsafe { slot.payload.enter() };
        AsymGuard {
            registry,
            slot,
            _not_send: PhantomData,
        }
    }

    #[inline]
    fn raw_shield<'d>(guard: &Self::RawGuard<'d>) -> Self::RawShield<'d> {
        // SAFETY: the guard's slot is this thread's (the guard is not Send).
        let (slot, index) = match unsafe { guard.slot.payload.take_hazard() } {
            Some(i) => (guard.slot, i),
            None => {
                // Every hazard of the slot is in use: a slot for this shield.
                let slot = guard.registry.claim_slot(true);
                // SAFETY: claimed just now; a claimable slot has every
                // hazard free (invariant 2 of `slots`).
                let i =
                    unsafe { slot.payload.take_hazard() }.expect("a fresh claim has free hazards");
                (slot, i)
            }
        };
        AsymShield::new(slot, index)
    }

    #[inline]
    fn raw_try_protect<T>(
        shield: &mut AsymShield<'_>,
        ptr: *mut T,
        src: &AtomicPtr<T>,
    ) -> Result<(), *mut T> {
        let target = untagged(ptr);
        shield.announce(target.cast());
        if target.is_null() {
            return Ok(());
        }
        // The light side of invariant 5 of `slots`: pairs with the heavy
        // fence of a scan.
        light();
        // Acquire: pairs with the Release that published the pointer.
        let now = src.load(Ordering::Acquire);
        if now == ptr {
            Ok(())
        } else {
            shield.announce(core::ptr::null_mut());
            Err(now)
        }
    }

    fn raw_protect_unpublished<T>(shield: &mut AsymShield<'_>, ptr: *mut T) {
        // No fence: nobody can retire `ptr` before it is published, and the
        // publishing Release orders this announcement before any thread
        // that reaches the node, its retire, and the scan after it.
        shield.announce(untagged(ptr).cast());
    }

    #[inline]
    fn raw_try_protect_pair<T>(
        first: &mut AsymShield<'_>,
        second: &mut AsymShield<'_>,
        ptr: *mut T,
        src: &AtomicPtr<T>,
    ) -> Result<(), *mut T> {
        let target = untagged(ptr);
        first.announce(target.cast());
        second.announce(target.cast());
        if target.is_null() {
            return Ok(());
        }
        // As in `raw_try_protect`, once for both announcements.
        light();
        // Acquire: pairs with the Release that published the pointer.
        let now = src.load(Ordering::Acquire);
        if now == ptr {
            Ok(())
        } else {
            first.announce(core::ptr::null_mut());
            second.announce(core::ptr::null_mut());
            Err(now)
        }
    }

    fn raw_protect_live<T>(
        shield: &mut AsymShield<'_>,
        ptr: *mut T,
        live: impl FnOnce() -> bool,
    ) -> bool {
        shield.announce(untagged(ptr).cast());
        // As in `raw_try_protect`: a scan after the removal that `live`
        // would see runs its heavy fence after it, so it sees the
        // announcement, or `live` sees the removal.
        light();
        if live() {
            true
        } else {
            shield.announce(core::ptr::null_mut());
            false
        }
    }

    fn raw_reset(shield: &mut AsymShield<'_>) {
        shield.announce(core::ptr::null_mut());
    }

    unsafe fn raw_retire<N: Retirable + Send>(guard: &AsymGuard<'_>, ptr: *mut N) {
        // SAFETY: the guard's slot is this thread's claim in the guard's
        // registry; the retire conditions are the caller's (`reclaim_as`
        // frees `ptr` as an `N` once no hazard names it).
        unsafe {
            guard
                .registry
                .retire(&guard.slot.payload, ptr.cast(), reclaim_as::<N>)
        }
    }

    fn raw_collect(domain: &Domain<Self>) {
        let guard = Self::raw_pin(domain);
        // SAFETY: the guard's slot is this thread's claim in its registry.
        unsafe { guard.registry.scan(&guard.slot.payload) };
    }

    fn raw_held() -> &'static SignedStat {
        static HELD: SignedStat = SignedStat::new(0);
        &HELD
    }
}
