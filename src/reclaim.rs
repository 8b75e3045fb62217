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
//! **[`Leak`]** never frees a retired node. It is a baseline for measuring
//! what reclamation costs, and it suits short-lived programs that do not care.
//!
//! # Shared or own domain
//!
//! Retired nodes wait in a [`Domain`]: crossbeam-epoch's `Collector`, or a
//! haphazard `Domain`. A structure uses the process-wide domain by default
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
//!   [`Hazard`] an own domain costs about what the global one does on one
//!   thread, but each shield takes and returns its hazard record through
//!   haphazard's shared list (the per-thread record cache serves the global
//!   domain only), which contends between threads.
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

mod own_epoch;
#[cfg(loom)]
#[doc(hidden)]
pub use own_epoch::seeded_weaken_claim;
#[doc(hidden)]
pub use own_epoch::{EpochGuard, OwnEpoch};

mod sealed {
    pub trait Sealed {}
}

/// A memory-reclamation scheme: [`Epoch`], [`Hazard`] or [`Leak`].
///
/// Structures are generic over it (`TreiberStack<T, R = Epoch>`) and reach it
/// through [`Domain`], [`Guard`] and [`Shield`]; the `raw_*` items are the
/// hooks those types call. The trait is sealed: the three schemes are the
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
    /// for [`Hazard`], where only shields protect). Structures use it to
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

    /// Starts an operation: pins the thread ([`Epoch`]) or takes the domain to
    /// draw hazard slots from ([`Hazard`]). Pointers read through the guard's
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
    /// from the domain (reused from a free list when one is available); with
    /// [`Epoch`] and [`Leak`] it is free.
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

// ---------------------------------------------------------------------------
// Epoch

/// Epoch-based reclamation (crossbeam-epoch): cheap reads, unbounded garbage
/// while any thread stalls pinned. The default scheme.
///
/// ```
/// # if vvmalloc::LOOM_BUILD { return; }
/// use vvmalloc::{reclaim::Epoch, TreiberStack};
/// let s: TreiberStack<i32, Epoch> = TreiberStack::new();
/// s.push(1);
/// assert_eq!(s.pop(), Some(1));
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct Epoch;

impl sealed::Sealed for Epoch {}

impl Reclaim for Epoch {
    const NAME: &'static str = "epoch";
    const GUARD_PROTECTS_ALL: bool = true;
    type RawDomain = OwnEpoch;
    type RawGuard<'d> = EpochGuard<'d>;
    type RawShield<'d> = ();

    fn raw_new_domain() -> Self::RawDomain {
        OwnEpoch::new()
    }

    fn raw_pin(domain: &Domain<Self>) -> Self::RawGuard<'_> {
        #[cfg(loom)]
        assert!(domain.raw().is_some(), "{NO_GLOBAL_UNDER_LOOM}");
        match domain.raw() {
            // The thread's participant of the own collector, registered on
            // its first use and cached (see `own_epoch`: registering one
            // per operation let a collection free what a departed
            // participant had read).
            Some(own) => own.pin(),
            None => EpochGuard::global(crossbeam_epoch::pin()),
        }
    }

    fn raw_shield<'d>(_guard: &Self::RawGuard<'d>) -> Self::RawShield<'d> {}

    #[inline(always)]
    fn raw_try_protect<T>(_: &mut (), _: *mut T, _: &AtomicPtr<T>) -> Result<(), *mut T> {
        // Any pointer loaded while pinned stays valid until the guard unpins.
        Ok(())
    }

    fn raw_protect_unpublished<T>(_: &mut (), _: *mut T) {
        // The guard's pin covers every node retired after it.
    }

    fn raw_reset(_: &mut ()) {}

    unsafe fn raw_retire<N: Retirable + Send>(guard: &Self::RawGuard<'_>, ptr: *mut N) {
        // Under plain `cfg(loom)` crossbeam-epoch's atomics are std's, so it
        // would run this destructor on another loom thread with the ordering
        // hidden from loom: a false report. Such runs leak the node and check
        // the structure's orderings only; the `crossbeam_loom` run frees for
        // real and checks reclamation too.
        #[cfg(all(loom, not(crossbeam_loom)))]
        {
            let _ = (guard, ptr);
        }
        #[cfg(not(all(loom, not(crossbeam_loom))))]
        {
            struct SendPtr<N>(*mut N);
            // SAFETY: `N: Send`, and the pointer is used by one thread at a
            // time: the one that runs the deferred function.
            unsafe impl<N: Send> Send for SendPtr<N> {}
            let p = SendPtr(ptr);
            // SAFETY: (retire 1, 4) no thread can load `ptr` anew, and every
            // reader is pinned in this collector, so the function runs only
            // after all of them unpin; (2) it is deferred once; (3) `ptr` is
            // valid for `reclaim` until then.
            unsafe {
                guard.guard.defer_unchecked(move || {
                    let p = p;
                    count_reclaimed::<Epoch>();
                    N::reclaim(p.0)
                })
            };
        }
    }

    fn raw_collect(domain: &Domain<Self>) {
        // A flush pushes this thread's garbage to the collector and tries to
        // advance the global epoch by one, then frees up to 8 expired bags;
        // a bag expires once the epoch is two past the bag's. The advance
        // needs every pinned participant, this one included, to be in the
        // current epoch, so each round pins anew. Three rounds give the
        // epoch room to move twice past garbage retired before the call,
        // if no other thread stays pinned.
        match domain.raw() {
            Some(own) => own.collect(3),
            None => {
                for _ in 0..3 {
                    crossbeam_epoch::pin().flush();
                }
            }
        }
    }

    fn raw_held() -> &'static SignedStat {
        static HELD: SignedStat = SignedStat::new(0);
        &HELD
    }
}

// ---------------------------------------------------------------------------
// Hazard

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
        None => panic!("{NO_GLOBAL_UNDER_LOOM}"),
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

// ---------------------------------------------------------------------------
// Leak

/// No reclamation at all: retired nodes are never freed. The baseline that
/// shows what [`Epoch`] and [`Hazard`] cost.
///
/// ```
/// # if vvmalloc::LOOM_BUILD { return; }
/// use vvmalloc::{reclaim::Leak, TreiberStack};
/// let s: TreiberStack<i32, Leak> = TreiberStack::new();
/// s.push(1);
/// assert_eq!(s.pop(), Some(1)); // the node is leaked, the value is not
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct Leak;

impl sealed::Sealed for Leak {}

impl Reclaim for Leak {
    const NAME: &'static str = "leak";
    const GUARD_PROTECTS_ALL: bool = true;
    type RawDomain = ();
    type RawGuard<'d> = ();
    type RawShield<'d> = ();

    fn raw_new_domain() {}

    fn raw_pin(_: &Domain<Self>) {}

    fn raw_shield<'d>(_: &Self::RawGuard<'d>) -> Self::RawShield<'d> {}

    #[inline(always)]
    fn raw_try_protect<T>(_: &mut (), _: *mut T, _: &AtomicPtr<T>) -> Result<(), *mut T> {
        // Nothing is ever freed, so every pointer stays valid.
        Ok(())
    }

    fn raw_protect_unpublished<T>(_: &mut (), _: *mut T) {}

    fn raw_reset(_: &mut ()) {}

    unsafe fn raw_retire<N: Retirable + Send>(_: &(), _: *mut N) {}

    fn raw_collect(_: &Domain<Self>) {}

    fn raw_held() -> &'static SignedStat {
        static HELD: SignedStat = SignedStat::new(0);
        &HELD
    }
}
