//! Hazard-pointer reclamation through haphazard, with the per-thread
//! cache of hazard records of the process-wide domain.

use crate::raw::Retirable;
use crate::stat::SignedStat;
use crate::sync::{AtomicPtr, Ordering};

use super::{count_reclaimed, sealed, untagged, Domain, Reclaim};

/// The haphazard domain family of this crate's structures.
///
/// Every domain of [`Hazard`] is a `haphazard::Domain<Family>`: the process-
/// wide one and each structure's own. A structure only ever protects and
/// retires its nodes in its own [`Domain`], which is what haphazard's family
/// types would otherwise check. Users never name it; it appears in
/// [`Hazard`]'s implementation of [`Reclaim`].
///
/// ```
/// # if vvmalloc::LOOM_BUILD { return; }
/// // The raw haphazard domain behind a `Domain<Hazard>` is of this family.
/// let _raw: haphazard::Domain<vvmalloc::reclaim::Family> =
///     haphazard::Domain::new(&vvmalloc::reclaim::Family);
/// ```
#[derive(Debug)]
pub struct Family;

/// Hazard-pointer reclamation (haphazard): bounded garbage, a `SeqCst` fence
/// per protected read.
///
/// ```
/// # if vvmalloc::LOOM_BUILD { return; }
/// use vvmalloc::{reclaim::Hazard, TreiberStack};
/// let s: TreiberStack<i32, Hazard> = TreiberStack::new();
/// s.push(1);
/// assert_eq!(s.pop(), Some(1));
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct Hazard;

impl sealed::Sealed for Hazard {}

#[cfg(not(loom))]
static HAZARD_GLOBAL: haphazard::Domain<Family> = haphazard::Domain::new(&Family);

#[cfg(not(loom))]
fn hazard_global() -> &'static haphazard::Domain<Family> {
    #[cfg(miri)]
    {
        extern "Rust" {
            fn miri_static_root(ptr: *const u8);
        }
        // SAFETY: miri's own hook; it marks memory reachable from the static
        // (through haphazard's tagged list heads, which miri cannot follow)
        // as not leaked. haphazard does the same for its global domain.
        unsafe { miri_static_root(&HAZARD_GLOBAL as *const _ as *const u8) };
    }
    &HAZARD_GLOBAL
}

/// Frees a retired node through [`Retirable::reclaim`] when haphazard drops it.
struct Reclaimer<N: Retirable>(core::ptr::NonNull<N>);

impl<N: Retirable> core::ops::Deref for Reclaimer<N> {
    type Target = N;
    fn deref(&self) -> &N {
        // SAFETY: a `Reclaimer` holds a retired node, valid until `reclaim`
        // (retire condition 3). haphazard never derefs it; `Pointer` merely
        // requires `Deref`.
        unsafe { self.0.as_ref() }
    }
}

impl<N: Retirable> Drop for Reclaimer<N> {
    fn drop(&mut self) {
        count_reclaimed::<Hazard>();
        // SAFETY: haphazard drops the `Reclaimer` once, when no hazard pointer
        // protects the node (retire conditions 2-4).
        unsafe { N::reclaim(self.0.as_ptr()) }
    }
}

// SAFETY: (1) `into_raw` returns the node pointer, valid as `&mut N` since the
// retiring thread owns the unlinked node; (2) it stays valid until `from_raw`
// (retire condition 3); (3) `from_raw` gives back each pointer once, since
// haphazard reclaims each retired pointer once.
unsafe impl<N: Retirable> haphazard::raw::Pointer<N> for Reclaimer<N> {
    fn into_raw(self) -> *mut N {
        let p = self.0.as_ptr();
        core::mem::forget(self);
        p
    }

    unsafe fn from_raw(ptr: *mut N) -> Self {
        // SAFETY: haphazard passes back a pointer that `into_raw` returned
        // (or `retire_ptr` was given), which is non-null.
        Self(unsafe { core::ptr::NonNull::new_unchecked(ptr) })
    }
}

/// A hazard pointer that, under loom, is never handed back to the domain's
/// free list.
///
/// haphazard's `try_acquire_available` spins without yielding while another
/// thread holds the free list's lock bit, which loom cannot bound ("Model
/// exceeded maximum number of branches"). Under loom a dropped shield only
/// resets its hazard and keeps the record out of the free list, so every
/// acquisition takes a fresh record through haphazard's lock-free path; the
/// domain frees all records when it is dropped. Outside loom records are
/// released and reused as usual.
///
/// Outside loom a shield of the process-wide domain goes back to a small
/// per-thread cache when dropped, and the next shield of the thread comes
/// from there: haphazard 0.1.8 takes each record from the domain's shared
/// list of free records (a CAS on one word) and gives it back (another),
/// which made every read of two threads fight over that word (the list's
/// read-only lookups at two threads did 0.3x the work of `Leak`; see
/// `docs/reclamation.md`).
#[doc(hidden)]
pub struct HazardShield<'d>(
    core::mem::ManuallyDrop<haphazard::HazardPointer<'d, Family>>,
    /// Whether the record is of the process-wide domain (so cacheable).
    #[cfg_attr(loom, allow(dead_code))]
    bool,
);

/// The per-thread cache of hazard records of the process-wide domain.
#[cfg(not(loom))]
mod shield_cache {
    use core::cell::RefCell;

    use super::Family;

    type Record = haphazard::HazardPointer<'static, Family>;

    /// Records a thread keeps: more than any operation holds at once.
    const KEEP: usize = 8;

    thread_local! {
        // No allocation: the cache may be used inside the allocator's own
        // paths (a `Heap` with a hazard-pointer free index).
        static CACHE: RefCell<[Option<Record>; KEEP]> =
            const { RefCell::new([const { None }; KEEP]) };
    }

    /// A cached record of the process-wide domain, if the thread has one.
    pub(super) fn take() -> Option<Record> {
        CACHE
            .try_with(|c| {
                let mut c = c.try_borrow_mut().ok()?;
                c.iter_mut().rev().find_map(Option::take)
            })
            .ok()
            .flatten()
    }

    /// Keeps `r` (which protects nothing) for the thread's next shield;
    /// gives it back when the cache is full or gone (thread exit).
    pub(super) fn give(r: Record) -> Option<Record> {
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
}

impl<'d> core::ops::Deref for HazardShield<'d> {
    type Target = haphazard::HazardPointer<'d, Family>;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl core::ops::DerefMut for HazardShield<'_> {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.0
    }
}

impl Drop for HazardShield<'_> {
    fn drop(&mut self) {
        #[cfg(loom)]
        self.0.reset_protection();
        #[cfg(not(loom))]
        {
            // SAFETY: taken once, here; the field is not used afterwards.
            let hp = unsafe { core::mem::ManuallyDrop::take(&mut self.0) };
            if self.1 {
                let mut hp = hp;
                // A cached record must protect nothing: it would keep its
                // node from being freed for as long as it sits there.
                hp.reset_protection();
                // SAFETY: `self.1` says the record is of `HAZARD_GLOBAL`,
                // a static: the domain and its records (never freed while
                // the domain lives) outlive any lifetime, so the record is
                // valid as `'static`.
                let hp: haphazard::HazardPointer<'static, Family> =
                    unsafe { core::mem::transmute(hp) };
                drop(shield_cache::give(hp));
            } else {
                drop(hp);
            }
        }
    }
}

fn hazard_domain(domain: &Domain<Hazard>) -> &haphazard::Domain<Family> {
    match domain.raw() {
        Some(d) => d,
        #[cfg(not(loom))]
        None => hazard_global(),
        #[cfg(loom)]
        None => panic!("{}", super::NO_GLOBAL_UNDER_LOOM),
    }
}

impl Reclaim for Hazard {
    const NAME: &'static str = "hazard";
    const GUARD_PROTECTS_ALL: bool = false;
    type RawDomain = haphazard::Domain<Family>;
    type RawGuard<'d> = &'d haphazard::Domain<Family>;
    type RawShield<'d> = HazardShield<'d>;

    fn raw_new_domain() -> Self::RawDomain {
        haphazard::Domain::new(&Family)
    }

    fn raw_pin(domain: &Domain<Self>) -> Self::RawGuard<'_> {
        hazard_domain(domain)
    }

    fn raw_shield<'d>(guard: &Self::RawGuard<'d>) -> Self::RawShield<'d> {
        #[cfg(not(loom))]
        if core::ptr::eq(*guard, hazard_global()) {
            let hp = shield_cache::take()
                .unwrap_or_else(|| haphazard::HazardPointer::new_in_domain(hazard_global()));
            return HazardShield(core::mem::ManuallyDrop::new(hp), true);
        }
        HazardShield(
            core::mem::ManuallyDrop::new(haphazard::HazardPointer::new_in_domain(guard)),
            false,
        )
    }

    #[inline]
    fn raw_try_protect<T>(
        shield: &mut Self::RawShield<'_>,
        ptr: *mut T,
        src: &AtomicPtr<T>,
    ) -> Result<(), *mut T> {
        let target = untagged(ptr);
        if target.is_null() {
            shield.reset_protection();
            return Ok(());
        }
        shield.protect_raw(target);
        // SeqCst: the announcement above must be visible to any reclaimer
        // before we re-read `src`; pairs with the SeqCst fence haphazard
        // issues in its reclamation scan before it reads the hazard slots.
        crate::sync::fence(Ordering::SeqCst);
        // Acquire: pairs with the Release that published the pointer.
        let now = src.load(Ordering::Acquire);
        if now == ptr {
            Ok(())
        } else {
            shield.reset_protection();
            Err(now)
        }
    }

    fn raw_protect_unpublished<T>(shield: &mut Self::RawShield<'_>, ptr: *mut T) {
        // No validation: nobody can retire `ptr` before it is published,
        // and the publishing Release orders this announcement before any
        // thread that reaches the node, and so before its retire and the
        // reclamation scan that follows it.
        shield.protect_raw(untagged(ptr));
    }

    #[inline]
    fn raw_try_protect_pair<T>(
        first: &mut Self::RawShield<'_>,
        second: &mut Self::RawShield<'_>,
        ptr: *mut T,
        src: &AtomicPtr<T>,
    ) -> Result<(), *mut T> {
        let target = untagged(ptr);
        if target.is_null() {
            first.reset_protection();
            second.reset_protection();
            return Ok(());
        }
        first.protect_raw(target);
        second.protect_raw(target);
        // SeqCst: as in `raw_try_protect`, for both announcements at once:
        // a scan that follows a retire after the load below sees both.
        crate::sync::fence(Ordering::SeqCst);
        // Acquire: pairs with the Release that published the pointer.
        let now = src.load(Ordering::Acquire); // pairs with the publishing Release
        if now == ptr {
            Ok(())
        } else {
            first.reset_protection();
            second.reset_protection();
            Err(now)
        }
    }

    fn raw_protect_live<T>(
        shield: &mut Self::RawShield<'_>,
        ptr: *mut T,
        live: impl FnOnce() -> bool,
    ) -> bool {
        shield.protect_raw(untagged(ptr));
        // SeqCst: as in `raw_try_protect`: the announcement is visible to
        // any scan after the removal that `live` would see; pairs with the
        // SeqCst fence of haphazard's scan.
        crate::sync::fence(Ordering::SeqCst);
        if live() {
            true
        } else {
            shield.reset_protection();
            false
        }
    }

    fn raw_reset(shield: &mut Self::RawShield<'_>) {
        shield.reset_protection();
    }

    unsafe fn raw_retire<N: Retirable + Send>(guard: &Self::RawGuard<'_>, ptr: *mut N) {
        // SAFETY: (haphazard 1, retire 1) no hazard pointer can newly protect
        // `ptr`; (2, retire 2) retired once; (3, retire 3 and 5) valid as
        // `&N` until `Reclaimer` reclaims it, at the latest when the domain
        // is dropped; retire 4 makes the domain the one every reader
        // protects in.
        unsafe { guard.retire_ptr::<N, Reclaimer<N>>(ptr) };
        // Under loom the retire threshold is never reached in a small model,
        // so a use after retire would go unseen: reclaim at once.
        #[cfg(loom)]
        guard.eager_reclaim();
    }

    fn raw_collect(domain: &Domain<Self>) {
        hazard_domain(domain).eager_reclaim();
    }

    fn raw_held() -> &'static SignedStat {
        static HELD: SignedStat = SignedStat::new(0);
        &HELD
    }
}
