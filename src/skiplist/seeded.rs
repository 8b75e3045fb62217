//! Deliberately broken operations for the loom models' seeded bugs
//! (compiled only under `cfg(loom)`).

use core::mem;

use crate::reclaim::Reclaim;

use super::raw::{mark_tower, Cursor, Inserted};
use super::{Ref, SkipList};

impl<K: Ord + Send, V: Send, R: Reclaim> SkipList<K, V, R> {
    /// **A deliberately broken `try_insert`**, for the seeded-bug model of
    /// `loom_tests/skiplist.rs`: after linking its upper levels it does not
    /// check whether the node was removed meanwhile, so a level it linked
    /// after the remover's clean-up search keeps a removed (and, once both
    /// parties release it, retired) node linked. Compiled only under
    /// `cfg(loom)`; never call it.
    #[doc(hidden)]
    pub fn seeded_bug_try_insert_without_clean_up(&self, key: K, value: V, height: usize) -> bool {
        matches!(
            self.insert_internal(key, value, height, |_| false, false),
            Inserted::New(_)
        )
    }

    /// **A deliberately broken `pop_first`**, for the seeded-bug model of
    /// `loom_tests/skiplist.rs`: it marks the first node without reserving
    /// `head[0]`, so an insert of a smaller key can complete, and be seen,
    /// between the search and the mark (the race the reservation closes).
    /// Compiled only under `cfg(loom)`; never call it.
    #[doc(hidden)]
    pub fn seeded_bug_pop_first_without_reservation(&self) -> Option<Ref<'_, K, V, R>> {
        let mut c = Cursor::new(&self.domain);
        let mut own = c.guard.shield();
        loop {
            self.search(&mut c, |_| true, 0);
            let node = c.curr;
            if node.is_null() {
                return None;
            }
            // SAFETY: protected by `curr_shield`.
            if unsafe { mark_tower(node, 0) } {
                mem::swap(&mut own, &mut c.curr_shield);
                // SAFETY: our mark removed it (1); `own` protects it (2); non-null.
                return Some(unsafe { self.removed_entry(c, own, node) });
            }
        }
    }
}
