//! Hazard-pointer reclamation through haphazard, with caches of its
//! hazard records (`record_cache`).

use crate::raw::Retirable;
use crate::stat::SignedStat;
use crate::sync::{AtomicPtr, Ordering};

#[cfg(not(loom))]
use super::record_cache::{self, OwnCache, Record};
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

/// A hazard-pointer domain: haphazard's, and (outside loom) the cache of
/// its records that an own domain keeps (`record_cache`). The process-wide
/// one is a static; an own one is on the heap ([`OwnHazardDomain`]), so
/// that the cached records, which point at it, stay valid while the
/// `Domain` that owns it moves.
#[doc(hidden)]
pub struct HazardDomain {
    #[cfg(not(loom))]
    cache: OwnCache,
    domain: haphazard::Domain<Family>,
}

impl HazardDomain {
    #[cfg(not(loom))]
    const fn new() -> Self {
        Self {
            cache: OwnCache::new(),
            domain: haphazard::Domain::new(&Family),
        }
    }

    /// Under loom haphazard's domain is made of loom's atomics: not `const`.
    #[cfg(loom)]
    fn new() -> Self {
        Self {
            domain: haphazard::Domain::new(&Family),
        }
    }
}

/// An own [`HazardDomain`], on the heap: its address is stable while the
/// `Domain` that owns it moves, which the cached records, holding
/// references to it, need. A raw pointer rather than a `Box`, whose moves
/// would assert uniqueness over memory those references still read.
#[doc(hidden)]
pub struct OwnHazardDomain(core::ptr::NonNull<HazardDomain>);

// SAFETY: it owns a `HazardDomain`, which is `Send` and `Sync` (haphazard's
// domain is; the cache's records are reached only under its slots' locks).
unsafe impl Send for OwnHazardDomain {}
// SAFETY: as above; `&OwnHazardDomain` gives only `&HazardDomain`.
unsafe impl Sync for OwnHazardDomain {}

impl core::ops::Deref for OwnHazardDomain {
    type Target = HazardDomain;
    fn deref(&self) -> &HazardDomain {
        // SAFETY: the allocation lives until `drop`, and is only shared.
        unsafe { self.0.as_ref() }
    }
}

impl Drop for OwnHazardDomain {
    fn drop(&mut self) {
        // The cached records go back to haphazard's domain while it lives,
        // through shared references (their release writes to the domain).
        #[cfg(not(loom))]
        self.cache.clear();
        // SAFETY: made by `Box::leak` in `raw_new_domain`, freed once,
        // here; `&mut self` means no shield of the domain is alive, and the
        // cache holds no record any more.
        drop(unsafe { Box::from_raw(self.0.as_ptr()) });
    }
}

#[cfg(not(loom))]
static HAZARD_GLOBAL: HazardDomain = HazardDomain::new();

#[cfg(not(loom))]
fn hazard_global() -> &'static HazardDomain {
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
/// Outside loom a dropped shield's record goes to a cache (per thread for
/// the process-wide domain, in the domain for an own one), and the next
/// shield of the thread comes from there, not from haphazard's shared list
/// of free records (`record_cache`).
#[doc(hidden)]
pub struct HazardShield<'d>(
    core::mem::ManuallyDrop<haphazard::HazardPointer<'d, Family>>,
    /// The domain the record is of (the process-wide one, or an own one
    /// with its cache).
    #[cfg_attr(loom, allow(dead_code))]
    &'d HazardDomain,
);

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
            let mut hp = unsafe { core::mem::ManuallyDrop::take(&mut self.0) };
            // A cached record must protect nothing: it would keep its node
            // from being freed for as long as it sits there.
            hp.reset_protection();
            // SAFETY: the record is of `self.1`'s haphazard domain. Either
            // that is `HAZARD_GLOBAL`, a static, whose records (never freed
            // while the domain lives) outlive any lifetime; or it is an own
            // domain, on the heap (it does not move), which drains its cache
            // before it is dropped (`OwnHazardDomain`'s `Drop`), so no cached
            // record outlives it. Either way the record stays valid for as
            // long as it is cached, so it may be typed `'static` there.
            let hp: Record = unsafe { core::mem::transmute(hp) };
            let left = if core::ptr::eq(self.1, hazard_global()) {
                record_cache::give_global(hp)
            } else {
                self.1.cache.give(hp)
            };
            drop(left);
        }
    }
}

fn hazard_domain(domain: &Domain<Hazard>) -> &HazardDomain {
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
    type RawDomain = OwnHazardDomain;
    type RawGuard<'d> = &'d HazardDomain;
    type RawShield<'d> = HazardShield<'d>;

    fn raw_new_domain() -> Self::RawDomain {
        OwnHazardDomain(core::ptr::NonNull::from(Box::leak(Box::new(
            HazardDomain::new(),
        ))))
    }

    fn raw_pin(domain: &Domain<Self>) -> Self::RawGuard<'_> {
        hazard_domain(domain)
    }

    fn raw_shield<'d>(guard: &Self::RawGuard<'d>) -> Self::RawShield<'d> {
        let domain: &'d HazardDomain = guard;
        #[cfg(not(loom))]
        let cached = if core::ptr::eq(domain, hazard_global()) {
            record_cache::take_global()
        } else {
            domain.cache.take()
        };
        // A cached record is of this domain (`HazardShield`'s drop caches
        // it in its own domain's cache), and `'static` there only as a
        // stand-in for the domain's lifetime.
        #[cfg(not(loom))]
        let hp = cached.unwrap_or_else(|| haphazard::HazardPointer::new_in_domain(&domain.domain));
        #[cfg(loom)]
        let hp = haphazard::HazardPointer::new_in_domain(&domain.domain);
        HazardShield(core::mem::ManuallyDrop::new(hp), domain)
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
        unsafe { guard.domain.retire_ptr::<N, Reclaimer<N>>(ptr) };
        // Under loom the retire threshold is never reached in a small model,
        // so a use after retire would go unseen: reclaim at once.
        #[cfg(loom)]
        guard.domain.eager_reclaim();
    }

    fn raw_collect(domain: &Domain<Self>) {
        hazard_domain(domain).domain.eager_reclaim();
    }

    fn raw_held() -> &'static SignedStat {
        static HELD: SignedStat = SignedStat::new(0);
        &HELD
    }
}
