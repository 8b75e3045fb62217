//! The operations at the back and from above: the last entry, floor
//! searches and `pop_last`. A singly linked list has no backward links, so
//! each walks from the head: `O(n)`.

use core::borrow::Borrow;
use core::ops::Bound;
use core::ptr::{self, NonNull};

use crate::reclaim::Reclaim;
use crate::sync::Ordering;

use super::node::marked;
use super::{List, Position, Ref};

impl<K, V, R> List<K, V, R>
where
    K: Ord + Send,
    V: Send,
    R: Reclaim,
{
    /// The entry with the largest key: a walk of the whole list, `O(n)`.
    ///
    /// ```
    /// # if vvmalloc::LOOM_BUILD { return; }
    /// use vvmalloc::List;
    /// let m: List<u8, ()> = [(5, ()), (2, ())].into_iter().collect();
    /// assert_eq!(m.last().map(|e| *e.key()), Some(5));
    /// ```
    pub fn last(&self) -> Option<Ref<'_, K, V, R>> {
        self.search(self.domain.pin(), |_| false).into_prev_ref()
    }

    /// The last entry whose key lies at or below `bound`: `Included(k)`
    /// gives the largest key `<= k` (a floor search), `Excluded(k)` the
    /// largest key `< k`, `Unbounded` the last entry. Linearizable: the
    /// entry found was in the list, with nothing between it and the bound,
    /// at one moment of the call. `O(n)`.
    ///
    /// ```
    /// # if vvmalloc::LOOM_BUILD { return; }
    /// use std::ops::Bound::{Excluded, Included, Unbounded};
    /// use vvmalloc::List;
    /// let m: List<u32, ()> = [(10, ()), (20, ())].into_iter().collect();
    /// assert_eq!(m.upper_bound(Included(&20)).map(|e| *e.key()), Some(20));
    /// assert_eq!(m.upper_bound(Excluded(&20)).map(|e| *e.key()), Some(10));
    /// assert_eq!(m.upper_bound(Unbounded).map(|e| *e.key()), Some(20));
    /// assert!(m.upper_bound(Excluded(&10)).is_none());
    /// ```
    pub fn upper_bound<Q>(&self, bound: Bound<&Q>) -> Option<Ref<'_, K, V, R>>
    where
        K: Borrow<Q>,
        Q: Ord + ?Sized,
    {
        let guard = self.domain.pin();
        match bound {
            Bound::Included(b) => self.search(guard, |k| k.borrow() > b),
            Bound::Excluded(b) => self.search(guard, |k| k.borrow() >= b),
            Bound::Unbounded => self.search(guard, |_| false),
        }
        .into_prev_ref()
    }

    /// Removes the entry with the largest key and returns it (protected, as
    /// [`remove`](Self::remove) does). Linearizable: the removing CAS
    /// marks the last node only while its `next` is still null, so the
    /// entry is the largest at the moment it is removed, even with
    /// concurrent inserts of larger keys. `O(n)`.
    ///
    /// ```
    /// # if vvmalloc::LOOM_BUILD { return; }
    /// use vvmalloc::List;
    /// let m: List<u8, ()> = [(5, ()), (2, ())].into_iter().collect();
    /// assert_eq!(m.pop_last().map(|e| *e.key()), Some(5));
    /// assert_eq!(m.pop_last().map(|e| *e.key()), Some(2));
    /// assert!(m.pop_last().is_none());
    /// ```
    pub fn pop_last(&self) -> Option<Ref<'_, K, V, R>> {
        self.pop_last_internal(true)
    }

    /// `pop_last`; with `!at_end` the seeded bug of the loom models (the
    /// marking CAS expects whatever `next` the node has, so it removes a
    /// node that is no longer last).
    pub(super) fn pop_last_internal(&self, at_end: bool) -> Option<Ref<'_, K, V, R>> {
        let mut guard = self.domain.pin();
        loop {
            let Position {
                prev_node,
                guard: g,
                prev_shield,
                ..
            } = self.search(guard, |_| false);
            let node = NonNull::new(prev_node)?;
            // SAFETY: `prev_shield` protects the node that owns `prev`.
            let n = unsafe { node.as_ref() };
            let expect = if at_end {
                ptr::null_mut()
            } else {
                // Relaxed: the seeded bug; the CAS below is what counts.
                n.next.load(Ordering::Relaxed).map_addr(|a| a & !1) // seeded bug only: pairs with nothing
            };
            // Release: as the marking CAS of `remove`. Relaxed on failure:
            // a node was linked after it, or it was removed: walk again.
            if n.next
                .compare_exchange(
                    expect,
                    marked(expect),
                    Ordering::Release, // pairs with the Acquire loads of links
                    Ordering::Relaxed, // failure: we walk again, nothing read
                )
                .is_err()
            {
                guard = g;
                continue;
            }
            // Relaxed: a statistic (see `len`).
            self.len.fetch_sub(1, Ordering::Relaxed); // a statistic: pairs with nothing
                                                      // A search for its key unlinks it (and retires it), as
                                                      // `remove` does when its own unlinking CAS fails.
            let key = &n.key;
            let g = self.search(g, |k| k >= key).guard;
            return Some(Ref {
                node,
                _shield: prev_shield,
                _guard: g,
            });
        }
    }
}
