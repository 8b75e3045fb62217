//! Deliberately broken operations for the loom models' seeded bugs
//! (compiled only under `cfg(loom)`).

use core::borrow::Borrow;

use crate::reclaim::Reclaim;
use crate::sync::Ordering;

use super::{List, Ref};

impl<K: Ord + Send, V: Send, R: Reclaim> List<K, V, R> {
    /// **A deliberately broken remove**, for the seeded-bug model of
    /// `loom_tests/list.rs`: it unlinks the node without marking it first,
    /// so an insert that has already chosen the node as its predecessor
    /// still links after it and is lost (the race Harris's mark prevents).
    /// Compiled only under `cfg(loom)`; never call it.
    #[doc(hidden)]
    pub fn seeded_bug_remove_without_marking<Q>(&self, key: &Q) -> bool
    where
        K: Borrow<Q>,
        Q: Ord + ?Sized,
    {
        let mut guard = self.domain.pin();
        loop {
            let pos = self.find(guard, key);
            if !Self::holds(&pos, key) {
                return false;
            }
            // SAFETY: `prev` is `head` or the `next` of a protected node.
            let prev = unsafe { &*pos.prev };
            // Release: as the unlinking CAS in `search`. Relaxed on failure.
            if prev
                .compare_exchange(pos.cur, pos.next, Ordering::Release, Ordering::Relaxed) // Release pairs with the Acquire loads of links; Relaxed on failure: retried
                .is_ok()
            {
                // Relaxed: a statistic.
                self.len.fetch_sub(1, Ordering::Relaxed);
                // SAFETY: unlinked by our CAS, retired once, from `Box`, one
                // domain. (Not marked: that is the seeded bug.)
                unsafe { pos.guard.retire(pos.cur) };
                return true;
            }
            guard = pos.guard;
        }
    }

    /// **A deliberately broken `pop_last`**, for the seeded-bug model of
    /// `loom_tests/list.rs`: its marking CAS expects the `next` the node
    /// has instead of null, so it removes a node after a larger key was
    /// linked behind it (and seen). Compiled only under `cfg(loom)`; never
    /// call it.
    #[doc(hidden)]
    pub fn seeded_bug_pop_last_not_at_end(&self) -> Option<Ref<'_, K, V, R>> {
        self.pop_last_internal(false)
    }
}
