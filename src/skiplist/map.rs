//! The map's public operations, on top of the algorithm (`raw`), and the
//! invariant check.

use core::borrow::Borrow;
use core::fmt;
use core::marker::PhantomData;
use core::mem;
use core::ops::{Bound, RangeBounds};
use core::ptr::{self, NonNull};

use crate::reclaim::Reclaim;
use crate::sync::Ordering;

use super::node::{
    is_marked, random_height, tag, untagged, with_tag, Node, MARK, POPPED, RESERVED,
};
use super::raw::{mark_level, mark_tower, Cursor, Inserted};
use super::{Iter, Range, Ref, SkipList, MAX_HEIGHT};

/// An entry, and (when the step could take one with the same validation)
/// a second protection of it for an iterator to keep.
pub(super) type Kept<'a, K, V, R> = (Ref<'a, K, V, R>, Option<Ref<'a, K, V, R>>);

impl<K, V, R> SkipList<K, V, R>
where
    K: Ord + Send,
    V: Send,
    R: Reclaim,
{
    /// Inserts `key` with `value`, replacing the entry with the same key if
    /// there is one, and returns the new entry. The replacement is atomic: no
    /// lookup sees the key missing in between. Expected `O(log n)`.
    ///
    /// ```
    /// # if vvmalloc::LOOM_BUILD { return; }
    /// use vvmalloc::SkipList;
    /// let m: SkipList<u8, &str> = SkipList::new();
    /// assert_eq!(*m.insert(1, "one").value(), "one");
    /// m.insert(1, "uno");
    /// assert_eq!(*m.get(&1).unwrap().value(), "uno");
    /// assert_eq!(m.len(), 1);
    /// ```
    pub fn insert(&self, key: K, value: V) -> Ref<'_, K, V, R> {
        match self.insert_internal(key, value, random_height(), |_| true, true) {
            Inserted::New(entry) => entry,
            Inserted::Present(..) => unreachable!("insert replaces"),
        }
    }

    /// Inserts `key` with `value` if the key is absent, or in place of the
    /// present entry if `replace` returns `true` for its value; returns the
    /// new entry, or the present one (and drops `key` and `value`) if
    /// `replace` said no. The check and the replacement are atomic: the
    /// entry replaced is the one whose value `replace` saw. As
    /// `crossbeam_skiplist`'s `compare_insert`. Expected `O(log n)`.
    ///
    /// ```
    /// # if vvmalloc::LOOM_BUILD { return; }
    /// use vvmalloc::SkipList;
    /// let m: SkipList<&str, u32> = SkipList::new();
    /// // Keep the maximum per key.
    /// m.compare_insert("a", 3, |old| *old < 3);
    /// m.compare_insert("a", 1, |old| *old < 1);
    /// assert_eq!(*m.compare_insert("a", 5, |old| *old < 5).value(), 5);
    /// assert_eq!(*m.get("a").unwrap().value(), 5);
    /// ```
    pub fn compare_insert(
        &self,
        key: K,
        value: V,
        replace: impl Fn(&V) -> bool,
    ) -> Ref<'_, K, V, R> {
        match self.insert_internal(key, value, random_height(), replace, true) {
            Inserted::New(entry) | Inserted::Present(entry, ..) => entry,
        }
    }

    /// Inserts `key` with `value` unless the key is present (insert-if-
    /// absent). Returns the new entry, or the given key and value back.
    /// Expected `O(log n)`.
    ///
    /// ```
    /// # if vvmalloc::LOOM_BUILD { return; }
    /// use vvmalloc::SkipList;
    /// let m: SkipList<u8, String> = SkipList::new();
    /// assert_eq!(m.try_insert(1, "a".into()).unwrap().value(), "a");
    /// let (k, v) = m.try_insert(1, "b".into()).unwrap_err();
    /// assert_eq!((k, v.as_str()), (1, "b"));
    /// ```
    pub fn try_insert(&self, key: K, value: V) -> Result<Ref<'_, K, V, R>, (K, V)> {
        self.try_insert_with_height(key, value, random_height())
    }

    /// [`try_insert`](Self::try_insert) with a chosen tower height (clamped
    /// to `1..=MAX_HEIGHT`), for tests and models that need a given shape.
    #[doc(hidden)]
    pub fn try_insert_with_height(
        &self,
        key: K,
        value: V,
        height: usize,
    ) -> Result<Ref<'_, K, V, R>, (K, V)> {
        match self.insert_internal(key, value, height, |_| false, true) {
            Inserted::New(entry) => Ok(entry),
            Inserted::Present(_, key, value) => Err((key, value)),
        }
    }

    /// [`insert`](Self::insert) with a chosen tower height (clamped to
    /// `1..=MAX_HEIGHT`), for tests and models that need a given shape.
    #[doc(hidden)]
    pub fn insert_with_height(&self, key: K, value: V, height: usize) -> Ref<'_, K, V, R> {
        match self.insert_internal(key, value, height, |_| true, true) {
            Inserted::New(entry) => entry,
            Inserted::Present(..) => unreachable!("insert replaces"),
        }
    }

    /// The entry for `key`, inserting `value` if the key is absent. The
    /// given value is dropped if the key was present. Expected `O(log n)`.
    ///
    /// ```
    /// # if vvmalloc::LOOM_BUILD { return; }
    /// use vvmalloc::SkipList;
    /// let m: SkipList<u8, &str> = SkipList::new();
    /// assert_eq!(*m.get_or_insert(1, "a").value(), "a");
    /// assert_eq!(*m.get_or_insert(1, "b").value(), "a");
    /// ```
    pub fn get_or_insert(&self, key: K, value: V) -> Ref<'_, K, V, R> {
        match self.insert_internal(key, value, random_height(), |_| false, true) {
            Inserted::New(entry) | Inserted::Present(entry, ..) => entry,
        }
    }

    /// The entry for `key`, inserting the value `make` returns if the key is
    /// absent. `make` is not called when the key is found at first; it may
    /// be called and its value dropped if another thread inserts the key at
    /// the same time. Expected `O(log n)`.
    ///
    /// ```
    /// # if vvmalloc::LOOM_BUILD { return; }
    /// use vvmalloc::SkipList;
    /// let m: SkipList<u8, String> = SkipList::new();
    /// assert_eq!(m.get_or_insert_with(1, || "a".into()).value(), "a");
    /// assert_eq!(m.get_or_insert_with(1, || unreachable!()).value(), "a");
    /// ```
    pub fn get_or_insert_with(&self, key: K, make: impl FnOnce() -> V) -> Ref<'_, K, V, R> {
        if let Some(entry) = self.get(&key) {
            return entry;
        }
        self.get_or_insert(key, make())
    }

    /// The entry with key `key`, if present. Expected `O(log n)`.
    ///
    /// ```
    /// # if vvmalloc::LOOM_BUILD { return; }
    /// use vvmalloc::SkipList;
    /// let m: SkipList<String, u32> = SkipList::new();
    /// m.insert("a".to_string(), 1);
    /// assert_eq!(m.get("a").map(|e| *e.value()), Some(1)); // `&str` lookups
    /// assert!(m.get("b").is_none());
    /// ```
    pub fn get<Q>(&self, key: &Q) -> Option<Ref<'_, K, V, R>>
    where
        K: Borrow<Q>,
        Q: Ord + ?Sized,
    {
        let mut c = Cursor::new(&self.domain);
        self.search(&mut c, |k| k.borrow() >= key, 0);
        // SAFETY: a non-null `curr` is protected.
        if !c.curr.is_null() && unsafe { (*c.curr).key.borrow() == key } {
            c.into_curr(self)
        } else {
            None
        }
    }

    /// Whether `key` is present. Expected `O(log n)`.
    ///
    /// ```
    /// # if vvmalloc::LOOM_BUILD { return; }
    /// use vvmalloc::SkipList;
    /// let m: SkipList<u8, ()> = [(1, ())].into_iter().collect();
    /// assert!(m.contains(&1) && !m.contains(&2));
    /// ```
    pub fn contains<Q>(&self, key: &Q) -> bool
    where
        K: Borrow<Q>,
        Q: Ord + ?Sized,
    {
        self.get(key).is_some()
    }

    /// Removes the entry with key `key` and returns it, still protected: its
    /// key and value are dropped once the returned `Ref` and every other
    /// protection of it are gone. Expected `O(log n)`.
    ///
    /// ```
    /// # if vvmalloc::LOOM_BUILD { return; }
    /// use vvmalloc::SkipList;
    /// let m: SkipList<u8, String> = SkipList::new();
    /// m.insert(1, "one".into());
    /// let e = m.remove(&1).unwrap();
    /// assert_eq!(e.value(), "one");
    /// assert!(m.remove(&1).is_none());
    /// ```
    pub fn remove<Q>(&self, key: &Q) -> Option<Ref<'_, K, V, R>>
    where
        K: Borrow<Q>,
        Q: Ord + ?Sized,
    {
        let mut c = Cursor::new(&self.domain);
        let mut own = c.guard.shield();
        loop {
            self.search(&mut c, |k| k.borrow() >= key, 0);
            let node = c.curr;
            // SAFETY: a non-null `curr` is protected.
            if node.is_null() || unsafe { (*node).key.borrow() != key } {
                return None;
            }
            // SAFETY: protected.
            if unsafe { mark_tower(node, 0) } {
                mem::swap(&mut own, &mut c.curr_shield);
                // SAFETY: our mark removed it (1); `own` protects it (2); non-null.
                return Some(unsafe { self.removed_entry(c, own, node) });
            }
            // Removed by someone else: the key may be back; search again.
        }
    }

    /// The entry with the smallest key. Expected `O(1)`.
    ///
    /// ```
    /// # if vvmalloc::LOOM_BUILD { return; }
    /// use vvmalloc::SkipList;
    /// let m: SkipList<u8, ()> = [(5, ()), (2, ())].into_iter().collect();
    /// assert_eq!(m.first().map(|e| *e.key()), Some(2));
    /// ```
    pub fn first(&self) -> Option<Ref<'_, K, V, R>> {
        let mut c = Cursor::new(&self.domain);
        self.search(&mut c, |_| true, 0);
        c.into_curr(self)
    }

    /// The entry with the largest key. Expected `O(log n)`.
    ///
    /// ```
    /// # if vvmalloc::LOOM_BUILD { return; }
    /// use vvmalloc::SkipList;
    /// let m: SkipList<u8, ()> = [(5, ()), (2, ())].into_iter().collect();
    /// assert_eq!(m.last().map(|e| *e.key()), Some(5));
    /// ```
    pub fn last(&self) -> Option<Ref<'_, K, V, R>> {
        let mut c = Cursor::new(&self.domain);
        self.search(&mut c, |_| false, 0);
        c.into_pred(self)
    }

    /// Removes the entry with the smallest key and returns it (protected, as
    /// [`remove`](Self::remove) does). Linearizable: the entry is the
    /// smallest at the moment it is removed, even with concurrent inserts of
    /// smaller keys; concurrent `pop_first`s take each entry once. Expected
    /// `O(log n)` (the clean-up after the removal).
    ///
    /// ```
    /// # if vvmalloc::LOOM_BUILD { return; }
    /// use vvmalloc::SkipList;
    /// let m: SkipList<u8, ()> = [(5, ()), (2, ())].into_iter().collect();
    /// assert_eq!(m.pop_first().map(|e| *e.key()), Some(2));
    /// assert_eq!(m.len(), 1);
    /// ```
    pub fn pop_first(&self) -> Option<Ref<'_, K, V, R>> {
        let mut c = Cursor::new(&self.domain);
        let mut own = c.guard.shield();
        loop {
            self.search(&mut c, |_| true, 0);
            let node = c.curr;
            if node.is_null() {
                return None;
            }
            // Nothing passes the first unmarked node, so `pred` is `head`.
            debug_assert!(c.pred.is_null());
            // AcqRel: Acquire as any `next` load; Release keeps the
            // reservation ordered for the helpers that read it. Relaxed on
            // failure: we search again.
            if self.head[0]
                .compare_exchange(
                    node,
                    with_tag(node, RESERVED),
                    Ordering::AcqRel, // RMW: continues the release sequence; Acquire half as above
                    Ordering::Relaxed,
                )
                .is_err()
            {
                continue;
            }
            // SAFETY: protected, and reserved by us just now.
            unsafe { self.help_pop(node) };
            // SAFETY: protected; level 0 exists.
            let next = unsafe { Node::next(node, 0) };
            // Relaxed: the node is marked by now (by us or a helper) and its
            // level 0 is frozen; we read the tag our `help_pop` already saw.
            if tag(next.load(Ordering::Relaxed)) == MARK | POPPED {
                mem::swap(&mut own, &mut c.curr_shield);
                // SAFETY: our mark removed it (1); `own` protects it (2); non-null.
                return Some(unsafe { self.removed_entry(c, own, node) });
            }
            // A `remove` marked it first: try the next one.
        }
    }

    /// Removes the entry with the largest key and returns it (protected).
    /// Linearizable: the entry is the largest at the moment it is removed.
    /// Expected `O(log n)`.
    ///
    /// If an insert after the last entry races with it, `pop_last` tries
    /// again; the entry it had chosen stays, but may lose its upper levels
    /// (it becomes a one-level node, found more slowly, never lost).
    ///
    /// ```
    /// # if vvmalloc::LOOM_BUILD { return; }
    /// use vvmalloc::SkipList;
    /// let m: SkipList<u8, ()> = [(5, ()), (2, ())].into_iter().collect();
    /// assert_eq!(m.pop_last().map(|e| *e.key()), Some(5));
    /// assert_eq!(m.len(), 1);
    /// ```
    pub fn pop_last(&self) -> Option<Ref<'_, K, V, R>> {
        let mut c = Cursor::new(&self.domain);
        let mut own = c.guard.shield();
        loop {
            self.search(&mut c, |_| false, 0);
            let node = c.pred;
            if node.is_null() {
                return None;
            }
            // SAFETY: protected by `pred_shield`; level 0 exists.
            let next = unsafe { Node::next(node, 0) };
            // Relaxed: a cheap early check; the CAS below decides.
            if !next.load(Ordering::Relaxed).is_null() {
                continue;
            }
            mem::swap(&mut own, &mut c.pred_shield);
            // SAFETY: protected by `own`.
            let height = unsafe { (*node).height as usize };
            for level in (1..height).rev() {
                // SAFETY: protected; `level < height`.
                unsafe { mark_level(node, level) };
            }
            // AcqRel: as the level-0 mark in `mark_tower`. Expecting null is
            // what makes the node the last one at the moment of the mark.
            // Relaxed on failure: we search again.
            if next
                .compare_exchange(
                    ptr::null_mut(),
                    with_tag(ptr::null_mut(), MARK),
                    Ordering::AcqRel, // RMW: continues the release sequence; Acquire half as above
                    Ordering::Relaxed,
                )
                .is_ok()
            {
                // SAFETY: our mark removed it (1); `own` protects it (2); non-null.
                return Some(unsafe { self.removed_entry(c, own, node) });
            }
            // Not last any more (or removed): unlink the levels we marked
            // and try again.
            // SAFETY: protected by `own`; keys are immutable.
            let key = unsafe { &(*node).key };
            self.search(&mut c, |k| k >= key, 0);
        }
    }

    /// The first entry whose key lies at or above `bound`: `Included(k)`
    /// gives the smallest key `>= k` (a ceiling search: best fit on a
    /// `(size, address)` key), `Excluded(k)` the smallest key `> k`,
    /// `Unbounded` the first entry. Expected `O(log n)`.
    ///
    /// ```
    /// # if vvmalloc::LOOM_BUILD { return; }
    /// use std::ops::Bound::{Excluded, Included, Unbounded};
    /// use vvmalloc::SkipList;
    /// let m: SkipList<u32, ()> = [(10, ()), (20, ())].into_iter().collect();
    /// assert_eq!(m.lower_bound(Included(&10)).map(|e| *e.key()), Some(10));
    /// assert_eq!(m.lower_bound(Excluded(&10)).map(|e| *e.key()), Some(20));
    /// assert_eq!(m.lower_bound(Unbounded).map(|e| *e.key()), Some(10));
    /// assert!(m.lower_bound(Excluded(&20)).is_none());
    /// ```
    pub fn lower_bound<Q>(&self, bound: Bound<&Q>) -> Option<Ref<'_, K, V, R>>
    where
        K: Borrow<Q>,
        Q: Ord + ?Sized,
    {
        let mut c = Cursor::new(&self.domain);
        match bound {
            Bound::Included(b) => self.search(&mut c, |k| k.borrow() >= b, 0),
            Bound::Excluded(b) => self.search(&mut c, |k| k.borrow() > b, 0),
            Bound::Unbounded => self.search(&mut c, |_| true, 0),
        }
        c.into_curr(self)
    }

    /// The last entry whose key lies at or below `bound`: `Included(k)`
    /// gives the largest key `<= k` (a floor search), `Excluded(k)` the
    /// largest key `< k`, `Unbounded` the last entry. Expected `O(log n)`.
    ///
    /// ```
    /// # if vvmalloc::LOOM_BUILD { return; }
    /// use std::ops::Bound::{Excluded, Included, Unbounded};
    /// use vvmalloc::SkipList;
    /// let m: SkipList<u32, ()> = [(10, ()), (20, ())].into_iter().collect();
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
        let mut c = Cursor::new(&self.domain);
        match bound {
            Bound::Included(b) => self.search(&mut c, |k| k.borrow() > b, 0),
            Bound::Excluded(b) => self.search(&mut c, |k| k.borrow() >= b, 0),
            Bound::Unbounded => self.search(&mut c, |_| false, 0),
        }
        c.into_pred(self)
    }

    /// An iterator over the entries in increasing key order.
    ///
    /// Iteration is lazy and *weakly consistent*. Each step finds, when it
    /// is taken, the first entry after the last key yielded; so with
    /// concurrent (or interleaved) updates:
    ///
    /// - it never yields a key twice, and keys come in strictly increasing
    ///   order (from the back, strictly decreasing);
    /// - every entry it yields was in the map at some moment during the
    ///   step that yielded it;
    /// - every entry present for the whole iteration is yielded;
    /// - entries inserted or removed meanwhile may or may not be seen: an
    ///   entry removed before the step that would reach it is not yielded,
    ///   an entry inserted after the last key yielded is.
    ///
    /// After `None`, a later call resumes after the last key yielded. Each
    /// step is expected `O(1)` (`O(log n)` when the last entry yielded was
    /// removed meanwhile). Each [`Ref`] holds its own protection, so it may
    /// be kept after the iterator moves on.
    ///
    /// It is double-ended: `next_back` (and `.rev()`) walks from the
    /// largest key down, one floor search per step (`O(log n)`); the two
    /// ends never yield the same key, each stopping short of the last key
    /// the other yielded.
    ///
    /// ```
    /// # if vvmalloc::LOOM_BUILD { return; }
    /// use vvmalloc::SkipList;
    /// let m: SkipList<u8, char> = [(2, 'b'), (1, 'a')].into_iter().collect();
    /// let pairs: Vec<(u8, char)> = m.iter().map(|e| (*e.key(), *e.value())).collect();
    /// assert_eq!(pairs, [(1, 'a'), (2, 'b')]);
    /// assert_eq!(m.iter().rev().map(|e| *e.key()).collect::<Vec<_>>(), [2, 1]);
    /// ```
    pub fn iter(&self) -> Iter<'_, K, V, R> {
        Iter::new(self)
    }

    /// An iterator over the entries whose keys lie in `range`, in increasing
    /// order, with the guarantees of [`iter`](Self::iter). Finding the start
    /// (at the first step from each end) is expected `O(log n)`.
    ///
    /// ```
    /// # if vvmalloc::LOOM_BUILD { return; }
    /// use vvmalloc::SkipList;
    /// let m: SkipList<u32, ()> = (0..10).map(|k| (k, ())).collect();
    /// let keys: Vec<u32> = m.range(3..6).map(|e| *e.key()).collect();
    /// assert_eq!(keys, [3, 4, 5]);
    /// assert_eq!(m.range(8..).count(), 2);
    /// assert_eq!(m.range(..=2).rev().map(|e| *e.key()).collect::<Vec<_>>(), [2, 1, 0]);
    /// ```
    pub fn range<Q, B>(&self, range: B) -> Range<'_, Q, B, K, V, R>
    where
        K: Borrow<Q>,
        Q: Ord + ?Sized,
        B: RangeBounds<Q>,
    {
        Range {
            inner: Iter::new(self),
            range,
            _key: PhantomData,
        }
    }

    /// Removes every entry, one at a time (`O(n log n)` in all). Not atomic:
    /// entries inserted meanwhile may stay.
    ///
    /// ```
    /// # if vvmalloc::LOOM_BUILD { return; }
    /// use vvmalloc::SkipList;
    /// let m: SkipList<u32, ()> = (0..10).map(|k| (k, ())).collect();
    /// m.clear();
    /// assert!(m.is_empty() && m.first().is_none());
    /// ```
    pub fn clear(&self) {
        while self.pop_first().is_some() {}
    }

    /// The entry after `entry`: its successor at level 0, or, when `entry`
    /// has been removed meanwhile, the first entry with a greater key.
    pub(super) fn successor<'a>(&'a self, entry: &Ref<'a, K, V, R>) -> Option<Ref<'a, K, V, R>> {
        let guard = self.domain.pin();
        let mut shield = guard.shield();
        // SAFETY: `entry` keeps its node protected (under loom this checks
        // that it was not reclaimed: an iterator steps from the entry it
        // keeps).
        unsafe { (*entry.node.as_ptr()).liveness.check() };
        // SAFETY: as above; level 0 exists.
        let next = unsafe { Node::next(entry.node.as_ptr(), 0) };
        // Validated against the node's `next[0]`: while it holds the same
        // unmarked pointer the node is linked, so the successor is reachable
        // and not retired.
        let succ = shield.protect(next);
        if is_marked(succ) {
            drop(shield);
            drop(guard);
            let key = entry.key();
            return self.lower_bound_by(|k| k > key);
        }
        Some(Ref {
            list: self,
            node: NonNull::new(succ)?,
            _shield: shield,
            _guard: guard,
        })
    }

    /// As [`successor`](Self::successor), with a second protection of the
    /// successor for the iterator to keep, taken with the same validation
    /// (one fence with hazard pointers) on the fast path; `None` in its
    /// place when the successor came from a search (the caller takes it
    /// with `Ref::again`).
    pub(super) fn successor_kept<'a>(
        &'a self,
        entry: &Ref<'a, K, V, R>,
    ) -> Option<Kept<'a, K, V, R>> {
        let (guard, kept_guard) = (self.domain.pin(), self.domain.pin());
        let (mut shield, mut kept_shield) = (guard.shield(), kept_guard.shield());
        // SAFETY: `entry` keeps its node protected (under loom this checks
        // that it was not reclaimed).
        unsafe { (*entry.node.as_ptr()).liveness.check() };
        // SAFETY: as above; level 0 exists.
        let next = unsafe { Node::next(entry.node.as_ptr(), 0) };
        // Acquire: pairs with the Release CAS that linked the successor.
        let mut succ = next.load(Ordering::Acquire); // pairs with the linking Release CAS
                                                     // Validated against the node's `next[0]`, as in `successor`.
        while let Err(now) = shield.try_protect_pair(&mut kept_shield, succ, next) {
            succ = now;
        }
        if is_marked(succ) {
            drop((shield, kept_shield, guard, kept_guard));
            let key = entry.key();
            return self.lower_bound_by(|k| k > key).map(|r| (r, None));
        }
        let node = NonNull::new(succ)?;
        Some((
            Ref {
                list: self,
                node,
                _shield: shield,
                _guard: guard,
            },
            Some(Ref {
                list: self,
                node,
                _shield: kept_shield,
                _guard: kept_guard,
            }),
        ))
    }

    /// The last entry with a key below `entry`'s.
    pub(super) fn predecessor<'a>(&'a self, entry: &Ref<'a, K, V, R>) -> Option<Ref<'a, K, V, R>> {
        let key = entry.key();
        let mut c = Cursor::new(&self.domain);
        self.search(&mut c, |k| k >= key, 0);
        c.into_pred(self)
    }

    pub(super) fn lower_bound_by(&self, stop: impl Fn(&K) -> bool) -> Option<Ref<'_, K, V, R>> {
        let mut c = Cursor::new(&self.domain);
        self.search(&mut c, stop, 0);
        c.into_curr(self)
    }
}

impl<K, V, R: Reclaim> SkipList<K, V, R> {
    /// Checks the structure's invariants: at every level keys strictly
    /// increase, each level is a sublist of the one below, towers are no
    /// taller than [`MAX_HEIGHT`], no removed entry is still linked, every
    /// inserter and remover has finished, and [`len`](Self::len) counts the
    /// entries. Needs `&mut self` (no concurrent updates); tests call it
    /// after their threads are joined.
    ///
    /// # Panics
    ///
    /// With a message naming the broken invariant.
    ///
    /// ```
    /// # if vvmalloc::LOOM_BUILD { return; }
    /// use vvmalloc::SkipList;
    /// let mut m: SkipList<u32, ()> = (0..100).map(|k| (k, ())).collect();
    /// m.remove(&3);
    /// m.check_invariants();
    /// ```
    pub fn check_invariants(&mut self)
    where
        K: Ord + fmt::Debug,
    {
        // Relaxed loads throughout: `&mut self` excludes concurrent updates.
        let head0 = self.head[0].load(Ordering::Relaxed);
        assert_eq!(tag(head0), 0, "head[0] is still tagged");
        let mut count = 0;
        let mut cur = head0;
        let mut last: Option<&K> = None;
        while !cur.is_null() {
            // SAFETY: reachable nodes are live; `&mut self` keeps them so.
            let node = unsafe { &*cur };
            assert!(
                (1..=MAX_HEIGHT).contains(&(node.height as usize)),
                "height {} out of range",
                node.height
            );
            assert_eq!(
                node.refs.load(Ordering::Relaxed), // exclusive access (`&mut self`)
                1,
                "an inserter of {:?} has not finished",
                node.key
            );
            // SAFETY: live; level 0 exists.
            let next = unsafe { Node::next(cur, 0) }.load(Ordering::Relaxed);
            assert!(
                !is_marked(next),
                "removed entry {:?} still linked",
                node.key
            );
            if let Some(prev) = last {
                assert!(
                    prev < &node.key,
                    "keys out of order: {prev:?} before {:?}",
                    node.key
                );
            }
            last = Some(&node.key);
            count += 1;
            cur = next;
        }
        assert_eq!(count, self.len(), "len() disagrees with the entries");
        for level in 1..MAX_HEIGHT {
            // Walk `level` and `level - 1` together: every node of the upper
            // one must come up in the lower one, in the same order. A marked
            // pointer at an upper level can remain when a racing `pop_last`
            // shortened an entry (its level 0 stays unmarked, checked
            // above); a search unlinks it later.
            let mut upper = untagged(self.head[level].load(Ordering::Relaxed));
            let mut lower = untagged(self.head[level - 1].load(Ordering::Relaxed)); // exclusive access (`&mut self`)
            while !upper.is_null() {
                // SAFETY: reachable, so live.
                let height = unsafe { (*upper).height as usize };
                assert!(height > level, "a node of height {height} at level {level}");
                while lower != upper {
                    assert!(
                        !lower.is_null(),
                        "a node at level {level} is missing from level {}",
                        level - 1
                    );
                    // SAFETY: reachable, so live; its height exceeds
                    // `level - 1`.
                    // Relaxed: exclusive access (`&mut self`).
                    let next = unsafe { Node::next(lower, level - 1) }.load(Ordering::Relaxed);
                    lower = untagged(next);
                }
                // SAFETY: as above.
                upper = untagged(unsafe { Node::next(upper, level) }.load(Ordering::Relaxed));
            }
        }
    }
}
