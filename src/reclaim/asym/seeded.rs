//! The asymmetric hazard scheme's seeded bugs, for the loom models that must
//! catch them (`loom_tests/reclaim.rs`): one source for both builds, the
//! bugs compiled in under `cfg(loom)` only.

use crate::sync::Ordering;

/// A bug to seed into the scheme ([`seed`]).
#[doc(hidden)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AsymSeed {
    /// No bug.
    None,
    /// Readers skip the light fence between announcing and re-validating:
    /// a scan may then miss an announcement whose reader also missed the
    /// unlink (store buffering), and free a node in use.
    SkipLightFence,
    /// A slot is given back and claimed with `Relaxed`: the next claimant's
    /// use of its hazards and retired list is not ordered after the last
    /// one's (hazard record reuse without synchronization).
    RelaxedClaim,
}

/// The `Release` of a slot's release; pairs with [`claim_order`].
#[inline(always)]
pub(super) fn release_order() -> Ordering {
    #[cfg(loom)]
    if current() == AsymSeed::RelaxedClaim {
        return Ordering::Relaxed; // the seeded bug: pairs with nothing
    }
    Ordering::Release
}

/// The `Acquire` of a slot's claiming CAS; pairs with [`release_order`].
#[inline(always)]
pub(super) fn claim_order() -> Ordering {
    #[cfg(loom)]
    if current() == AsymSeed::RelaxedClaim {
        return Ordering::Relaxed; // the seeded bug: pairs with nothing
    }
    Ordering::Acquire
}

/// Whether readers run the light fence.
#[inline(always)]
pub(super) fn light_fence() -> bool {
    #[cfg(loom)]
    if current() == AsymSeed::SkipLightFence {
        return false;
    }
    true
}

#[cfg(loom)]
thread_local! {
    // std's thread-local, not loom's: loom runs all the threads of a model
    // on the OS thread of the test that started it, so the seed is the
    // test's alone while other tests run in parallel.
    static SEED: core::cell::Cell<AsymSeed> = const { core::cell::Cell::new(AsymSeed::None) };
}

#[cfg(loom)]
fn current() -> AsymSeed {
    SEED.with(core::cell::Cell::get)
}

/// Seeds `bug` into the scheme for the calling test thread's models.
#[cfg(loom)]
#[doc(hidden)]
pub fn seed(bug: AsymSeed) {
    SEED.with(|s| s.set(bug));
}
