//! No reclamation: the baseline.

use crate::raw::Retirable;
use crate::stat::SignedStat;
use crate::sync::AtomicPtr;

use super::{sealed, Domain, Reclaim};

/// No reclamation at all: retired nodes are never freed. The baseline that
/// shows what [`Epoch`](super::Epoch) and [`Hazard`](super::Hazard) cost.
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

    fn raw_try_protect_pair<T>(
        _: &mut (),
        _: &mut (),
        _: *mut T,
        _: &AtomicPtr<T>,
    ) -> Result<(), *mut T> {
        Ok(())
    }

    fn raw_protect_live<T>(_: &mut (), _: *mut T, _: impl FnOnce() -> bool) -> bool {
        // Nothing is ever freed.
        true
    }

    fn raw_reset(_: &mut ()) {}

    unsafe fn raw_retire<N: Retirable + Send>(_: &(), _: *mut N) {}

    fn raw_collect(_: &Domain<Self>) {}

    fn raw_held() -> &'static SignedStat {
        static HELD: SignedStat = SignedStat::new(0);
        &HELD
    }
}
