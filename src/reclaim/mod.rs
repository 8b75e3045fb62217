//! Memory reclamation behind one interface.
//!
//! A lock-free structure unlinks a node with one atomic operation, but other
//! threads may still be reading it: the node can be freed only once no thread
//! can reach it. Every structure of this crate is generic over a [`Reclaim`]
//! scheme that decides when that is:
//!
//! | scheme | crate | a read costs | garbage if a thread stalls |
//! |---|---|---|---|
//! | [`Epoch`] | `crossbeam-epoch` | nothing (the guard's pin is paid once per operation) | unbounded: nothing retired after the stalled thread pinned is freed |
//! | [`Hazard`] | `haphazard` | a store and a `SeqCst` fence per protected pointer | bounded: only the nodes the stalled thread's hazard pointers name |
//! | [`AsymHazard`] | this crate (`membarrier(2)`) | a store and a compiler fence per protected pointer (Linux; a `SeqCst` fence elsewhere) | bounded: the nodes its hazard pointers name, and its own unscanned retired list |
//! | [`Leak`] | none | nothing | everything: nodes are never freed |
//!
//! # Which scheme to pick
//!
//! Pick **[`Epoch`]** (the default) for throughput: an operation pins its
//! thread once, and every pointer it reads afterwards is safe without further
//! work. The price is that one thread stalled while pinned (descheduled, or
//! holding a guard across a long computation) stops reclamation for everyone,
//! so garbage can grow without bound.
//!
//! Pick **[`Hazard`]** where memory must stay bounded whatever other threads do,
//! for example in an allocator or a long-running server with untrusted
//! latency: each protected pointer is announced in a hazard slot, so a stalled
//! thread holds back at most the few nodes it names. The price is a
//! sequentially consistent fence on every protected read, which makes
//! traversals of long structures (lists, skip lists) noticeably slower.
//!
//! Pick **[`AsymHazard`]** for [`Hazard`]'s bound on garbage at nearly
//! [`Epoch`]'s read cost: the library's own hazard pointers, whose readers
//! skip the hardware fence because the reclaiming thread runs one
//! `membarrier(2)` per scan instead (Linux 4.14 and later; elsewhere both
//! sides use `SeqCst` fences). Retiring costs an allocation per node and a
//! scan of every hazard pointer per 64 or more retired nodes.
//!
//! **[`Leak`]** never frees a retired node. It is a baseline for measuring
//! what reclamation costs, and it suits short-lived programs that do not care.
//!
//! # Shared or own domain
//!
//! Retired nodes wait in a [`Domain`]: crossbeam-epoch's `Collector`, a
//! haphazard `Domain`, or [`AsymHazard`]'s registry of hazard slots. A structure uses the process-wide domain by default
//! ([`Domain::global`]), or one of its own ([`Domain::new`]):
//!
//! - The **global** domain amortizes reclamation across every structure of the
//!   program and makes `new` a `const fn`. Garbage retired into it may outlive
//!   the structure that retired it: it is freed when the global domain gets
//!   round to it.
//! - An **own** domain is dropped with the structure, and dropping it frees
//!   every node retired into it, at once. Nothing the structure retired
//!   survives it. With [`Epoch`], a thread registers with an own
//!   collector on its first operation and keeps that participant in a
//!   per-thread cache (of 8 domains) for the next ones; a thread that exits
//!   leaves it to the next thread, and the domain's drop unregisters them
//!   all and frees every retired node, so the cache never keeps garbage
//!   past the domain ([`Domain::participants`] counts them). With
//!   [`Hazard`] a shield's record comes from a cache (per thread for the
//!   global domain; for an own one, 16 slots in the domain, about 3 KiB,
//!   a thread using the slot of its index modulo 16 and haphazard's shared
//!   list when that slot is busy), so reads do not contend on the domain's
//!   list of free records; the domain's drop takes the cached records
//!   back. With [`AsymHazard`], a thread claims a slot of eight hazard
//!   pointers in a domain on its first operation and keeps it in a
//!   per-thread cache (as with [`Epoch`]); its retired nodes wait in that
//!   slot, and the domain's drop frees every slot's, so here too nothing
//!   retired survives the domain ([`Domain::slots`] counts the slots).
//!
//! crossbeam-skiplist sends its garbage to the global collector, so it must
//! require `K: 'static, V: 'static`, and a removed entry is dropped only when the
//! global epoch advances (users call `flush()` twice to see the drop). This
//! crate does better in two ways. First, its structures move values *out* of
//! a node before retiring it wherever the operation allows (the stack's `pop`
//! returns the value by value), so a retired node holds no `T` and the value is
//! dropped by its new owner at once, whatever the scheme. Second, where a value
//! must stay in the node until no reader can see it, a structure with an own
//! domain frees all of its garbage when it is dropped, so its values need not
//! be `'static`.
//!
//! # Under loom
//!
//! Process-wide domains cannot be reset between loom executions, so under
//! `cfg(loom)` there is no global domain: `Domain::default()` is a fresh own
//! domain. What loom checks of each scheme is written in `loom_tests/`.
//!
//! # Writing a structure on this interface
//!
//! ```
//! # if vvmalloc::LOOM_BUILD { return; }
//! use vvmalloc::raw::{AtomicPtr, Boxed};
//! use vvmalloc::reclaim::{Domain, Hazard};
//! use std::sync::atomic::Ordering;
//!
//! let domain: Domain<Hazard> = Domain::new();
//! let slot = AtomicPtr::new(Box::into_raw(Box::new(Boxed(7u64))));
//!
//! let guard = domain.pin();
//! let mut shield = guard.shield();
//! let p = shield.protect(&slot);
//! // SAFETY: `p` is protected by `shield`, so it is not freed while we read.
//! assert_eq!(unsafe { (*p).0 }, 7);
//!
//! // Unlink the value and hand it to the domain; it is freed once no shield
//! // protects it (here: when `shield` is dropped and the domain scans).
//! let old = slot.swap(std::ptr::null_mut(), Ordering::AcqRel);
//! // SAFETY: `old` is unreachable now, retired once, and came from `Box`.
//! unsafe { guard.retire(old) };
//! drop(shield);
//! domain.collect();
//! ```

use core::fmt;
use core::marker::PhantomData;

use crate::raw::Retirable;
use crate::stat::SignedStat;
use crate::sync::{AtomicPtr, Ordering};

mod asym;
mod claims;
mod epoch;
mod hazard;
mod leak;
mod own_epoch;
#[cfg(not(loom))]
mod record_cache;
#[cfg(loom)]
#[doc(hidden)]
pub use own_epoch::seeded_weaken_claim;
#[doc(hidden)]
pub use own_epoch::{EpochGuard, OwnEpoch};

#[cfg(loom)]
#[doc(hidden)]
pub use asym::seed_asym_hazard;
pub use asym::AsymHazard;
#[doc(hidden)]
pub use asym::{AsymGuard, AsymSeed, AsymShield, OwnAsym};
pub use epoch::Epoch;
pub use hazard::{Family, Hazard};
#[doc(hidden)]
pub use hazard::{HazardDomain, HazardShield, OwnHazardDomain};
pub use leak::Leak;

mod sealed {
    pub trait Sealed {}
}

/// A memory-reclamation scheme: [`Epoch`], [`Hazard`], [`AsymHazard`] or
/// [`Leak`].
///
/// Structures are generic over it (`TreiberStack<T, R = Epoch>`) and reach it
/// through [`Domain`], [`Guard`] and [`Shield`]; the `raw_*` items are the
/// hooks those types call. The trait is sealed: the four schemes are the
/// ones the crate's structures are checked with.
///
/// Code generic over the scheme names it by the trait:
///
/// ```
/// # if vvmalloc::LOOM_BUILD { return; }
/// use vvmalloc::reclaim::{Epoch, Hazard, Reclaim};
/// use vvmalloc::TreiberStack;
///
/// fn drain<R: Reclaim>(s: &TreiberStack<u8, R>) -> usize {
///     std::iter::from_fn(|| s.pop()).count()
/// }
/// let a: TreiberStack<u8, Epoch> = [1, 2].into_iter().collect();
/// let b: TreiberStack<u8, Hazard> = [3].into_iter().collect();
/// assert_eq!(drain(&a) + drain(&b), 3);
/// assert_eq!(Hazard::NAME, "hazard");
/// ```
pub trait Reclaim: sealed::Sealed + Sized + Send + Sync + 'static {
    /// A short name for tables and benchmark labels.
    const NAME: &'static str;

    /// Whether a [`Guard`] alone keeps every node that was reachable while
    /// it lived from being freed (true for [`Epoch`] and [`Leak`], false
    /// for [`Hazard`] and [`AsymHazard`], where only shields protect). Structures use it to
    /// keep unprotected pointers from a search for later, where it is safe.
    #[doc(hidden)]
    const GUARD_PROTECTS_ALL: bool;

    /// The scheme's own domain type.
    #[doc(hidden)]
    type RawDomain: Send + Sync;
    /// The per-operation guard.
    #[doc(hidden)]
    type RawGuard<'d>;
    /// One protection slot.
    #[doc(hidden)]
    type RawShield<'d>;

    #[doc(hidden)]
    fn raw_new_domain() -> Self::RawDomain;
    #[doc(hidden)]
    fn raw_pin(domain: &Domain<Self>) -> Self::RawGuard<'_>;
    #[doc(hidden)]
    fn raw_shield<'d>(guard: &Self::RawGuard<'d>) -> Self::RawShield<'d>;
    #[doc(hidden)]
    fn raw_try_protect<T>(
        shield: &mut Self::RawShield<'_>,
        ptr: *mut T,
        src: &AtomicPtr<T>,
    ) -> Result<(), *mut T>;
    #[doc(hidden)]
    fn raw_protect_unpublished<T>(shield: &mut Self::RawShield<'_>, ptr: *mut T);
    #[doc(hidden)]
    fn raw_try_protect_pair<T>(
        first: &mut Self::RawShield<'_>,
        second: &mut Self::RawShield<'_>,
        ptr: *mut T,
        src: &AtomicPtr<T>,
    ) -> Result<(), *mut T>;
    #[doc(hidden)]
    fn raw_protect_live<T>(
        shield: &mut Self::RawShield<'_>,
        ptr: *mut T,
        live: impl FnOnce() -> bool,
    ) -> bool;
    #[doc(hidden)]
    fn raw_reset(shield: &mut Self::RawShield<'_>);
    /// # Safety
    /// As [`Guard::retire`].
    #[doc(hidden)]
    unsafe fn raw_retire<N: Retirable + Send>(guard: &Self::RawGuard<'_>, ptr: *mut N);
    #[doc(hidden)]
    fn raw_collect(domain: &Domain<Self>);
    /// The scheme's count of retired, not yet freed nodes.
    #[doc(hidden)]
    fn raw_held() -> &'static SignedStat;
}

/// Nodes retired into any domain of the scheme `R` (by any structure of the
/// process) and not yet freed: the garbage that reclamation holds back.
///
/// Counted at [`Guard::retire`] and when the scheme frees the node, with one
/// relaxed atomic add each, so it is cheap enough to leave on; it is a
/// snapshot of a counter updated concurrently. With [`Leak`] it only grows.
///
/// ```
/// # if vvmalloc::LOOM_BUILD { return; }
/// use vvmalloc::reclaim::{held_back, Domain, Hazard};
/// use vvmalloc::TreiberStack;
///
/// let s: TreiberStack<u32, Hazard> = TreiberStack::with_domain(Domain::new());
/// s.push(1);
/// s.pop(); // retires the node into the stack's own domain
/// drop(s); // dropping the domain frees it
/// let _ = held_back::<Hazard>(); // other tests' nodes may be pending too
/// ```
pub fn held_back<R: Reclaim>() -> usize {
    // The retire and reclaim counts can be seen out of order: a transient
    // negative sum reads as zero.
    R::raw_held().load().max(0) as usize
}

/// Counts one node freed by the scheme `R`.
#[inline]
fn count_reclaimed<R: Reclaim>() {
    R::raw_held().fetch_sub(1);
}

/// Where retired nodes wait until no thread can reach them.
///
/// Either the process-wide domain of the scheme ([`Domain::global`]) or one of
/// the structure's own ([`Domain::new`]); see the [module docs](self) for what
/// each means. Dropping an own domain frees everything retired into it.
///
/// ```
/// # if vvmalloc::LOOM_BUILD { return; }
/// use vvmalloc::reclaim::{Domain, Epoch, Hazard};
/// use vvmalloc::TreiberStack;
///
/// // The default: the process-wide collector.
/// let shared: TreiberStack<u32> = TreiberStack::new();
/// assert!(shared.domain().is_global());
/// // A hazard-pointer domain of the stack's own.
/// let own: TreiberStack<u32, Hazard> = TreiberStack::with_domain(Domain::new());
/// assert!(!own.domain().is_global());
/// ```
pub struct Domain<R: Reclaim> {
    /// `None`: the scheme's process-wide domain.
    own: Option<R::RawDomain>,
}

impl<R: Reclaim> Domain<R> {
    /// The scheme's process-wide domain, shared by every structure that uses
    /// it.
    ///
    /// Under `cfg(loom)` process-wide state cannot be reset between loom's
    /// executions, so there the global domain cannot be used: pinning it
    /// panics. Structures built with `new()` use an own domain under loom.
    ///
    /// ```
    /// # if vvmalloc::LOOM_BUILD { return; }
    /// use vvmalloc::reclaim::{Domain, Epoch};
    /// static D: Domain<Epoch> = Domain::global();
    /// assert!(D.is_global());
    /// ```
    pub const fn global() -> Self {
        Self { own: None }
    }

    /// A domain of its own: everything retired into it is freed when it is
    /// dropped, at the latest.
    ///
    /// ```
    /// # if vvmalloc::LOOM_BUILD { return; }
    /// use vvmalloc::reclaim::{Domain, Hazard};
    /// let d: Domain<Hazard> = Domain::new();
    /// assert!(!d.is_global());
    /// ```
    pub fn new() -> Self {
        Self {
            own: Some(R::raw_new_domain()),
        }
    }

    /// Whether this is the process-wide domain.
    ///
    /// ```
    /// # if vvmalloc::LOOM_BUILD { return; }
    /// use vvmalloc::reclaim::{Domain, Leak};
    /// assert!(Domain::<Leak>::global().is_global());
    /// ```
    pub fn is_global(&self) -> bool {
        self.own.is_none()
    }

    /// Starts an operation: pins the thread ([`Epoch`]), takes the domain to
    /// draw hazard slots from ([`Hazard`]), or the thread's slot of hazard
    /// pointers in the domain ([`AsymHazard`]). Pointers read through the guard's
    /// [`Shield`]s stay valid until the shield is reset or the guard dropped.
    ///
    /// ```
    /// # if vvmalloc::LOOM_BUILD { return; }
    /// use vvmalloc::reclaim::{Domain, Epoch};
    /// let d: Domain<Epoch> = Domain::global();
    /// let guard = d.pin();
    /// drop(guard);
    /// ```
    pub fn pin(&self) -> Guard<'_, R> {
        Guard {
            raw: R::raw_pin(self),
            _not_send: PhantomData,
        }
    }

    /// Frees some of what can be freed now: flushes this thread's epoch
    /// garbage and tries to advance the epoch a few times, or scans the
    /// hazard slots. Not a guarantee that everything retired is freed (other
    /// threads may be pinned, or hold unflushed garbage). Structures never
    /// need it for correctness; tests and benchmarks use it to see drops
    /// sooner.
    ///
    /// ```
    /// # if vvmalloc::LOOM_BUILD { return; }
    /// use vvmalloc::reclaim::{Domain, Hazard};
    /// Domain::<Hazard>::new().collect();
    /// ```
    pub fn collect(&self) {
        R::raw_collect(self)
    }

    /// The scheme's own domain, `None` for the global one.
    #[allow(dead_code)]
    pub(crate) fn raw(&self) -> Option<&R::RawDomain> {
        self.own.as_ref()
    }
}

impl Domain<Epoch> {
    /// How many crossbeam participants this own domain has registered: a
    /// thread registers once, on its first operation, and a thread that
    /// exits leaves its participant to the next thread that comes, so this
    /// is at most the number of threads that used the domain at the same
    /// time. `None` for the global domain (crossbeam's default collector,
    /// one participant per thread).
    ///
    /// ```
    /// # if vvmalloc::LOOM_BUILD { return; }
    /// use vvmalloc::reclaim::{Domain, Epoch};
    /// use vvmalloc::List;
    ///
    /// let m: List<u32, u32, Epoch> = List::with_own_domain();
    /// for i in 0..100 {
    ///     m.insert(i, i); // the same participant every time
    /// }
    /// std::thread::scope(|s| {
    ///     s.spawn(|| m.remove(&1).is_some()).join().unwrap(); // one more
    ///     s.spawn(|| m.remove(&2).is_some()).join().unwrap(); // reuses it
    /// });
    /// assert_eq!(m.domain().participants(), Some(2));
    /// assert_eq!(Domain::<Epoch>::global().participants(), None);
    /// ```
    pub fn participants(&self) -> Option<usize> {
        self.raw().map(OwnEpoch::participants)
    }
}

impl Domain<AsymHazard> {
    /// How many slots of hazard pointers this own domain has made: a
    /// thread claims one on its first operation and keeps it, a thread that
    /// exits leaves it to the next, and a shield beyond a slot's eight
    /// hazard pointers claims one for itself. So this is about the number
    /// of threads that used the domain at the same time. `None` for the
    /// global domain.
    ///
    /// ```
    /// # if vvmalloc::LOOM_BUILD { return; }
    /// use vvmalloc::reclaim::{AsymHazard, Domain};
    /// use vvmalloc::SkipList;
    ///
    /// let m: SkipList<u32, u32, AsymHazard> = SkipList::with_domain(Domain::new());
    /// for i in 0..100 {
    ///     m.insert(i, i); // the same slot every time
    /// }
    /// assert_eq!(m.domain().slots(), Some(1));
    /// assert_eq!(Domain::<AsymHazard>::global().slots(), None);
    /// ```
    pub fn slots(&self) -> Option<usize> {
        self.raw().map(OwnAsym::slots)
    }
}

impl<R: Reclaim> Default for Domain<R> {
    /// The global domain, or under `cfg(loom)` a new own domain.
    fn default() -> Self {
        #[cfg(not(loom))]
        return Self::global();
        #[cfg(loom)]
        return Self::new();
    }
}

impl<R: Reclaim> fmt::Debug for Domain<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Domain")
            .field("scheme", &R::NAME)
            .field("global", &self.is_global())
            .finish()
    }
}

/// One operation's protection: a pinned epoch, or the domain to draw hazard
/// slots from. Obtained from [`Domain::pin`]; not `Send`.
///
/// ```
/// # if vvmalloc::LOOM_BUILD { return; }
/// use vvmalloc::reclaim::{Domain, Hazard};
/// let d: Domain<Hazard> = Domain::new();
/// let guard = d.pin();
/// let _shield = guard.shield();
/// ```
pub struct Guard<'d, R: Reclaim> {
    raw: R::RawGuard<'d>,
    _not_send: PhantomData<*mut ()>,
}

impl<'d, R: Reclaim> Guard<'d, R> {
    /// A new protection slot. With [`Hazard`] this acquires a hazard pointer
    /// from the domain (reused from a cache or a free list when one is
    /// available); with [`AsymHazard`], a free one of the thread's slot (a
    /// slot of its own beyond eight at once); with [`Epoch`] and [`Leak`] it
    /// is free.
    ///
    /// ```
    /// # if vvmalloc::LOOM_BUILD { return; }
    /// use vvmalloc::reclaim::{Domain, Epoch};
    /// let d: Domain<Epoch> = Domain::new();
    /// let g = d.pin();
    /// let mut a = g.shield();
    /// let mut b = g.shield();
    /// std::mem::swap(&mut a, &mut b); // hand-over-hand traversals swap roles
    /// ```
    pub fn shield(&self) -> Shield<'d, R> {
        Shield {
            raw: R::raw_shield(&self.raw),
        }
    }

    /// Hands an unlinked node to the scheme, which calls
    /// [`Retirable::reclaim`] on it once no thread can reach it ([`Leak`]:
    /// never).
    ///
    /// # Safety
    ///
    /// 1. `ptr` is unreachable from shared memory: no thread can newly load it
    ///    from the structure after this call.
    /// 2. `ptr` is retired at most once.
    /// 3. `ptr` is valid for [`Retirable::reclaim`], and valid for reads until
    ///    then.
    /// 4. Every thread that may still read `ptr` protects it through a guard
    ///    or shield of the same [`Domain`] as this guard.
    /// 5. Everything [`Retirable::reclaim`] touches stays valid until the
    ///    domain is dropped (forever, for the global domain): `reclaim` may
    ///    run that late.
    pub unsafe fn retire<N: Retirable + Send>(&self, ptr: *mut N) {
        R::raw_held().fetch_add(1);
        // SAFETY: conditions 1-5 are this function's own.
        unsafe { R::raw_retire(&self.raw, ptr) }
    }
}

impl<R: Reclaim> fmt::Debug for Guard<'_, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Guard").field("scheme", &R::NAME).finish()
    }
}

/// A protection slot for one pointer at a time, from [`Guard::shield`].
///
/// A pointer returned by [`protect`](Self::protect) or accepted by
/// [`try_protect`](Self::try_protect) is protected while both this shield
/// and the guard it came from are alive, and until the shield protects
/// another pointer or is [`reset`](Self::reset): whichever ends first ends the
/// protection. (The shield's lifetime is the domain's, so the compiler does
/// not stop a shield from outliving its guard; the pointers are raw, and
/// dereferencing them is `unsafe` with exactly that precondition.) Protection follows the untagged address: the low bits
/// below `T`'s alignment may carry marks (as in Harris's list).
pub struct Shield<'d, R: Reclaim> {
    raw: R::RawShield<'d>,
}

impl<R: Reclaim> Shield<'_, R> {
    /// Loads `src` and protects what it holds, returning the pointer (with
    /// any tag bits it carried). Null is returned as is.
    ///
    /// ```
    /// # if vvmalloc::LOOM_BUILD { return; }
    /// use vvmalloc::reclaim::{Domain, Hazard};
    /// use vvmalloc::raw::AtomicPtr;
    /// let d: Domain<Hazard> = Domain::new();
    /// let g = d.pin();
    /// let mut s = g.shield();
    /// let slot: AtomicPtr<u64> = AtomicPtr::new(std::ptr::null_mut());
    /// assert!(s.protect(&slot).is_null());
    /// ```
    pub fn protect<T>(&mut self, src: &AtomicPtr<T>) -> *mut T {
        // Acquire: pairs with the Release store or CAS that published the
        // pointer, so the pointee's fields are visible to the caller.
        let mut ptr = src.load(Ordering::Acquire);
        loop {
            match R::raw_try_protect(&mut self.raw, ptr, src) {
                Ok(()) => return ptr,
                Err(now) => ptr = now,
            }
        }
    }

    /// Protects `ptr`, which the caller loaded from `src` under this shield's
    /// guard, if `src` still holds it; otherwise returns what `src` holds now.
    ///
    /// Schemes that need no validation ([`Epoch`], [`Leak`]) always succeed,
    /// so `Err` means only "retry", never "the structure changed".
    ///
    /// ```
    /// # if vvmalloc::LOOM_BUILD { return; }
    /// use vvmalloc::reclaim::{Domain, Hazard};
    /// use vvmalloc::raw::AtomicPtr;
    /// use std::sync::atomic::Ordering;
    /// let d: Domain<Hazard> = Domain::new();
    /// let g = d.pin();
    /// let mut s = g.shield();
    /// let slot: AtomicPtr<u64> = AtomicPtr::new(std::ptr::null_mut());
    /// let p = slot.load(Ordering::Acquire);
    /// assert!(s.try_protect(p, &slot).is_ok());
    /// ```
    pub fn try_protect<T>(&mut self, ptr: *mut T, src: &AtomicPtr<T>) -> Result<(), *mut T> {
        R::raw_try_protect(&mut self.raw, ptr, src)
    }

    /// Protects `ptr`, a node this thread has allocated and not yet
    /// published, so that it stays protected once it is published. This is
    /// how an insert can hand out a protected reference to the node it
    /// linked: protecting it only after the publishing CAS would race with a
    /// concurrent remove that retires and frees it.
    ///
    /// # Safety
    ///
    /// 1. No other thread can reach `ptr` yet: it is published (by a
    ///    `Release` store or CAS) only after this call.
    ///
    /// ```
    /// # if vvmalloc::LOOM_BUILD { return; }
    /// use vvmalloc::reclaim::{Domain, Hazard};
    /// let d: Domain<Hazard> = Domain::new();
    /// let g = d.pin();
    /// let mut s = g.shield();
    /// let node = Box::into_raw(Box::new(5u64));
    /// // SAFETY: `node` is not published anywhere.
    /// unsafe { s.protect_unpublished(node) };
    /// # drop(s);
    /// # drop(unsafe { Box::from_raw(node) });
    /// ```
    pub unsafe fn protect_unpublished<T>(&mut self, ptr: *mut T) {
        R::raw_protect_unpublished(&mut self.raw, ptr)
    }

    /// [`try_protect`](Self::try_protect) into this shield and `second` at
    /// once, with one validation (one fence with [`Hazard`], not two): on
    /// `Ok` both protect `ptr`, independently (either may be dropped
    /// first); on `Err` neither does. An iterator uses it to hand one
    /// protection of an entry to its caller and keep the other.
    ///
    /// ```
    /// # if vvmalloc::LOOM_BUILD { return; }
    /// use vvmalloc::reclaim::{Domain, Hazard};
    /// use vvmalloc::raw::AtomicPtr;
    /// use std::sync::atomic::Ordering;
    /// let d: Domain<Hazard> = Domain::new();
    /// let (g1, g2) = (d.pin(), d.pin());
    /// let (mut a, mut b) = (g1.shield(), g2.shield());
    /// let node = Box::into_raw(Box::new(7u64));
    /// let slot = AtomicPtr::new(node);
    /// let p = slot.load(Ordering::Acquire);
    /// assert!(a.try_protect_pair(&mut b, p, &slot).is_ok());
    /// # drop((a, b));
    /// # drop(unsafe { Box::from_raw(node) });
    /// ```
    pub fn try_protect_pair<T>(
        &mut self,
        second: &mut Self,
        ptr: *mut T,
        src: &AtomicPtr<T>,
    ) -> Result<(), *mut T> {
        R::raw_try_protect_pair(&mut self.raw, &mut second.raw, ptr, src)
    }

    /// Protects `ptr`, a node the caller already protects through another
    /// shield or guard, if `live` (called once, after this shield's
    /// protection is announced) says the node has not been removed yet;
    /// returns whether it protected. This gives a second, independent
    /// protection of a node whose link may be gone (an iterator keeping its
    /// place while handing the entry to its caller; a cloned reference).
    ///
    /// With [`Hazard`] the hazard is announced and fenced before `live`
    /// runs, so a reclamation scan that follows the removal sees it. With
    /// [`Epoch`] the guard was pinned (a `SeqCst` fence) before `live`
    /// runs, so a node retired after `live` saw it unremoved is retired in
    /// this guard's epoch or later. [`Leak`] never frees: always `true`.
    ///
    /// # Safety
    ///
    /// 1. `ptr` is protected by the caller (another shield or guard of the
    ///    same domain) for the whole call, so `live` may read it.
    /// 2. The structure makes `live` return `false` (by a write `live`
    ///    reads) before it retires `ptr`, in the retiring thread's order.
    ///
    /// ```
    /// # if vvmalloc::LOOM_BUILD { return; }
    /// use vvmalloc::reclaim::{Domain, Hazard};
    /// use vvmalloc::raw::AtomicPtr;
    /// use std::sync::atomic::{AtomicBool, Ordering};
    /// struct Node { removed: AtomicBool }
    /// let d: Domain<Hazard> = Domain::new();
    /// let node = Box::into_raw(Box::new(Node { removed: AtomicBool::new(false) }));
    /// let slot = AtomicPtr::new(node);
    /// let g = d.pin();
    /// let mut first = g.shield();
    /// let p = first.protect(&slot);
    /// let mut second = g.shield();
    /// // SAFETY: `first` protects `p`; nothing retires it without setting
    /// // `removed` first.
    /// let ok = unsafe {
    ///     second.protect_live(p, || !(*p).removed.load(Ordering::Relaxed))
    /// };
    /// assert!(ok);
    /// # drop((first, second));
    /// # drop(unsafe { Box::from_raw(node) });
    /// ```
    pub unsafe fn protect_live<T>(&mut self, ptr: *mut T, live: impl FnOnce() -> bool) -> bool {
        R::raw_protect_live(&mut self.raw, ptr, live)
    }

    /// Drops the protection this shield holds, if any.
    ///
    /// ```
    /// # if vvmalloc::LOOM_BUILD { return; }
    /// use vvmalloc::reclaim::{Domain, Hazard};
    /// let d: Domain<Hazard> = Domain::new();
    /// let g = d.pin();
    /// g.shield().reset();
    /// ```
    pub fn reset(&mut self) {
        R::raw_reset(&mut self.raw)
    }
}

impl<R: Reclaim> fmt::Debug for Shield<'_, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Shield").field("scheme", &R::NAME).finish()
    }
}

#[cfg(loom)]
const NO_GLOBAL_UNDER_LOOM: &str = "vvmalloc: the global reclamation domain cannot be used under \
     cfg(loom); build the structure with `new()` or `Domain::new()` inside the model";

/// The address `ptr` protects: `ptr` without the tag bits below `T`'s
/// alignment.
#[inline(always)]
fn untagged<T>(ptr: *mut T) -> *mut T {
    let mask = core::mem::align_of::<T>() - 1;
    ptr.map_addr(|a| a & !mask)
}
