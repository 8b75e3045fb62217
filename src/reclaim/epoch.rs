//! Epoch-based reclamation through crossbeam-epoch.

use crate::raw::Retirable;
use crate::stat::SignedStat;
use crate::sync::AtomicPtr;

use super::{sealed, Domain, EpochGuard, OwnEpoch, Reclaim};

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
        assert!(domain.raw().is_some(), "{}", super::NO_GLOBAL_UNDER_LOOM);
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

    #[inline(always)]
    fn raw_try_protect_pair<T>(
        _: &mut (),
        _: &mut (),
        _: *mut T,
        _: &AtomicPtr<T>,
    ) -> Result<(), *mut T> {
        // As `raw_try_protect`: both guards were pinned before the load.
        Ok(())
    }

    fn raw_protect_live<T>(_: &mut (), _: *mut T, live: impl FnOnce() -> bool) -> bool {
        // The guard was pinned before this call: either the thread was
        // already pinned (the node is covered by that older pin, through the
        // same participant), or the pin stored its epoch and issued a
        // SeqCst fence. A retire after the write that ends `live` seals its
        // garbage with an epoch read after crossbeam's own SeqCst fence, so
        // no earlier than this pin's: it waits for this guard.
        live()
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
                    super::count_reclaimed::<Epoch>();
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
