//! The set: a `SkipList` with `()` values.

use core::borrow::Borrow;
use core::fmt;
use core::ops::{Bound, RangeBounds};

use crate::reclaim::{Domain, Epoch, Reclaim};

use super::{IntoIter, Iter, Range, Ref, SkipList};

/// A lock-free ordered set: a [`SkipList`] with `()` values.
///
/// Entries are reached through [`Ref`]s with a `()` value; see [`SkipList`]
/// for the algorithm, the guarantees, the costs and the choice of domain.
///
/// ```
/// # if vvmalloc::LOOM_BUILD { return; }
/// use std::ops::Bound::Included;
/// use vvmalloc::SkipSet;
///
/// let set: SkipSet<u32> = [30, 10, 20].into_iter().collect();
/// assert!(!set.insert(10));
/// assert_eq!(set.lower_bound(Included(&15)).map(|e| *e.key()), Some(20));
/// assert_eq!(set.pop_last().map(|e| *e.key()), Some(30));
/// assert_eq!(set.iter().map(|e| *e.key()).collect::<Vec<_>>(), [10, 20]);
/// ```
pub struct SkipSet<K, R: Reclaim = Epoch> {
    map: SkipList<K, (), R>,
}

impl<K: 'static, R: Reclaim> SkipSet<K, R> {
    /// An empty set in the scheme's process-wide domain. A `const fn`
    /// (except under `cfg(loom)`).
    ///
    /// ```
    /// # if vvmalloc::LOOM_BUILD { return; }
    /// use vvmalloc::SkipSet;
    /// let set: SkipSet<u64> = SkipSet::new();
    /// assert!(set.insert(1));
    /// ```
    #[cfg(not(loom))]
    pub const fn new() -> Self {
        Self {
            map: SkipList::new(),
        }
    }

    /// An empty set in a domain of its own (`cfg(loom)` has no process-wide
    /// domain).
    #[cfg(loom)]
    pub fn new() -> Self {
        Self {
            map: SkipList::new(),
        }
    }

    /// An empty set that retires its nodes into `domain`.
    ///
    /// ```
    /// # if vvmalloc::LOOM_BUILD { return; }
    /// use vvmalloc::reclaim::{Domain, Hazard};
    /// use vvmalloc::SkipSet;
    /// let s: SkipSet<u64, Hazard> = SkipSet::with_domain(Domain::new());
    /// assert!(!s.domain().is_global());
    /// ```
    pub fn with_domain(domain: Domain<R>) -> Self {
        Self {
            map: SkipList::with_domain(domain),
        }
    }
}

impl<K, R: Reclaim> SkipSet<K, R> {
    /// An empty set with a domain of its own, so keys need not be
    /// `'static` (see [`SkipList::with_own_domain`]).
    ///
    /// ```
    /// # if vvmalloc::LOOM_BUILD { return; }
    /// use vvmalloc::SkipSet;
    /// let word = String::from("w");
    /// let s: SkipSet<&str> = SkipSet::with_own_domain();
    /// assert!(s.insert(word.as_str()));
    /// ```
    pub fn with_own_domain() -> Self {
        Self {
            map: SkipList::with_own_domain(),
        }
    }

    /// The domain the set retires its nodes into.
    ///
    /// ```
    /// # if vvmalloc::LOOM_BUILD { return; }
    /// use vvmalloc::SkipSet;
    /// let s: SkipSet<u8> = SkipSet::new();
    /// assert!(s.domain().is_global());
    /// ```
    pub fn domain(&self) -> &Domain<R> {
        self.map.domain()
    }

    /// The number of keys; exact when no update is in flight (see
    /// [`SkipList::len`]).
    ///
    /// ```
    /// # if vvmalloc::LOOM_BUILD { return; }
    /// use vvmalloc::SkipSet;
    /// let s: SkipSet<u8> = (0..3).collect();
    /// assert_eq!(s.len(), 3);
    /// ```
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether the set is empty; exact when no update is in flight.
    ///
    /// ```
    /// # if vvmalloc::LOOM_BUILD { return; }
    /// use vvmalloc::SkipSet;
    /// assert!(SkipSet::<u8>::new().is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Checks the structure's invariants (see
    /// [`SkipList::check_invariants`]).
    ///
    /// ```
    /// # if vvmalloc::LOOM_BUILD { return; }
    /// use vvmalloc::SkipSet;
    /// let mut s: SkipSet<u8> = (0..3).collect();
    /// s.check_invariants();
    /// ```
    pub fn check_invariants(&mut self)
    where
        K: Ord + fmt::Debug,
    {
        self.map.check_invariants()
    }
}

impl<K: Ord + Send, R: Reclaim> SkipSet<K, R> {
    /// Inserts `key` unless present; returns whether it inserted.
    ///
    /// This is `BTreeSet::insert`, not `crossbeam_skiplist`'s
    /// `SkipSet::insert` (which replaces an equal key and returns the
    /// entry): a present key is kept, and the given one dropped. Keeping it
    /// costs nothing (no new node, nothing to reclaim), and equal keys are
    /// interchangeable for most uses. For the entry use
    /// [`get_or_insert`](Self::get_or_insert); to put the given key in
    /// place of an equal one, [`replace`](Self::replace).
    ///
    /// ```
    /// # if vvmalloc::LOOM_BUILD { return; }
    /// use vvmalloc::SkipSet;
    /// let s: SkipSet<u8> = SkipSet::new();
    /// assert!(s.insert(1) && !s.insert(1));
    /// ```
    pub fn insert(&self, key: K) -> bool {
        self.map.try_insert(key, ()).is_ok()
    }

    /// Inserts `key`, in place of an equal key if one is present (atomically,
    /// as [`SkipList::insert`]), and returns the new entry: what
    /// `crossbeam_skiplist`'s `SkipSet::insert` does.
    ///
    /// ```
    /// # if vvmalloc::LOOM_BUILD { return; }
    /// use std::cmp::Ordering;
    /// use vvmalloc::SkipSet;
    /// // Keys equal by `id` alone, so which one is stored shows.
    /// #[derive(Debug)]
    /// struct Job { id: u32, tag: &'static str }
    /// impl PartialEq for Job { fn eq(&self, o: &Self) -> bool { self.id == o.id } }
    /// impl Eq for Job {}
    /// impl PartialOrd for Job { fn partial_cmp(&self, o: &Self) -> Option<Ordering> { Some(self.cmp(o)) } }
    /// impl Ord for Job { fn cmp(&self, o: &Self) -> Ordering { self.id.cmp(&o.id) } }
    ///
    /// let s: SkipSet<Job> = SkipSet::new();
    /// s.insert(Job { id: 1, tag: "old" });
    /// assert_eq!(s.replace(Job { id: 1, tag: "new" }).tag, "new");
    /// assert_eq!(s.first().unwrap().tag, "new");
    /// assert_eq!(s.len(), 1);
    /// ```
    pub fn replace(&self, key: K) -> Ref<'_, K, (), R> {
        self.map.insert(key, ())
    }

    /// The entry for `key`, inserting it if absent.
    ///
    /// ```
    /// # if vvmalloc::LOOM_BUILD { return; }
    /// use vvmalloc::SkipSet;
    /// let s: SkipSet<u8> = SkipSet::new();
    /// assert_eq!(*s.get_or_insert(4).key(), 4);
    /// ```
    pub fn get_or_insert(&self, key: K) -> Ref<'_, K, (), R> {
        self.map.get_or_insert(key, ())
    }

    /// The entry for `key`, if present.
    ///
    /// ```
    /// # if vvmalloc::LOOM_BUILD { return; }
    /// use vvmalloc::SkipSet;
    /// let s: SkipSet<String> = ["a".to_string()].into_iter().collect();
    /// assert_eq!(s.get("a").unwrap().key(), "a");
    /// ```
    pub fn get<Q>(&self, key: &Q) -> Option<Ref<'_, K, (), R>>
    where
        K: Borrow<Q>,
        Q: Ord + ?Sized,
    {
        self.map.get(key)
    }

    /// Whether `key` is present.
    ///
    /// ```
    /// # if vvmalloc::LOOM_BUILD { return; }
    /// use vvmalloc::SkipSet;
    /// let s: SkipSet<u8> = [1].into_iter().collect();
    /// assert!(s.contains(&1) && !s.contains(&2));
    /// ```
    pub fn contains<Q>(&self, key: &Q) -> bool
    where
        K: Borrow<Q>,
        Q: Ord + ?Sized,
    {
        self.map.contains(key)
    }

    /// Removes `key`; returns whether it was present.
    ///
    /// ```
    /// # if vvmalloc::LOOM_BUILD { return; }
    /// use vvmalloc::SkipSet;
    /// let s: SkipSet<u8> = [1].into_iter().collect();
    /// assert!(s.remove(&1) && !s.remove(&1));
    /// ```
    pub fn remove<Q>(&self, key: &Q) -> bool
    where
        K: Borrow<Q>,
        Q: Ord + ?Sized,
    {
        self.map.remove(key).is_some()
    }

    /// Removes `key` and returns its entry (protected), if it was present.
    ///
    /// ```
    /// # if vvmalloc::LOOM_BUILD { return; }
    /// use vvmalloc::SkipSet;
    /// let s: SkipSet<String> = ["a".to_string()].into_iter().collect();
    /// assert_eq!(s.take("a").unwrap().key(), "a");
    /// ```
    pub fn take<Q>(&self, key: &Q) -> Option<Ref<'_, K, (), R>>
    where
        K: Borrow<Q>,
        Q: Ord + ?Sized,
    {
        self.map.remove(key)
    }

    /// The smallest key.
    ///
    /// ```
    /// # if vvmalloc::LOOM_BUILD { return; }
    /// use vvmalloc::SkipSet;
    /// let s: SkipSet<u8> = [5, 2].into_iter().collect();
    /// assert_eq!(s.first().map(|e| *e.key()), Some(2));
    /// ```
    pub fn first(&self) -> Option<Ref<'_, K, (), R>> {
        self.map.first()
    }

    /// The largest key.
    ///
    /// ```
    /// # if vvmalloc::LOOM_BUILD { return; }
    /// use vvmalloc::SkipSet;
    /// let s: SkipSet<u8> = [5, 2].into_iter().collect();
    /// assert_eq!(s.last().map(|e| *e.key()), Some(5));
    /// ```
    pub fn last(&self) -> Option<Ref<'_, K, (), R>> {
        self.map.last()
    }

    /// Removes and returns the smallest key (see [`SkipList::pop_first`]).
    ///
    /// ```
    /// # if vvmalloc::LOOM_BUILD { return; }
    /// use vvmalloc::SkipSet;
    /// let s: SkipSet<u8> = [5, 2].into_iter().collect();
    /// assert_eq!(s.pop_first().map(|e| *e.key()), Some(2));
    /// ```
    pub fn pop_first(&self) -> Option<Ref<'_, K, (), R>> {
        self.map.pop_first()
    }

    /// Removes and returns the largest key (see [`SkipList::pop_last`]).
    ///
    /// ```
    /// # if vvmalloc::LOOM_BUILD { return; }
    /// use vvmalloc::SkipSet;
    /// let s: SkipSet<u8> = [5, 2].into_iter().collect();
    /// assert_eq!(s.pop_last().map(|e| *e.key()), Some(5));
    /// ```
    pub fn pop_last(&self) -> Option<Ref<'_, K, (), R>> {
        self.map.pop_last()
    }

    /// The smallest key at or above `bound` (see [`SkipList::lower_bound`]).
    ///
    /// ```
    /// # if vvmalloc::LOOM_BUILD { return; }
    /// use std::ops::Bound::Included;
    /// use vvmalloc::SkipSet;
    /// let s: SkipSet<u8> = [5, 2].into_iter().collect();
    /// assert_eq!(s.lower_bound(Included(&3)).map(|e| *e.key()), Some(5));
    /// ```
    pub fn lower_bound<Q>(&self, bound: Bound<&Q>) -> Option<Ref<'_, K, (), R>>
    where
        K: Borrow<Q>,
        Q: Ord + ?Sized,
    {
        self.map.lower_bound(bound)
    }

    /// The largest key at or below `bound` (see [`SkipList::upper_bound`]).
    ///
    /// ```
    /// # if vvmalloc::LOOM_BUILD { return; }
    /// use std::ops::Bound::Included;
    /// use vvmalloc::SkipSet;
    /// let s: SkipSet<u8> = [5, 2].into_iter().collect();
    /// assert_eq!(s.upper_bound(Included(&3)).map(|e| *e.key()), Some(2));
    /// ```
    pub fn upper_bound<Q>(&self, bound: Bound<&Q>) -> Option<Ref<'_, K, (), R>>
    where
        K: Borrow<Q>,
        Q: Ord + ?Sized,
    {
        self.map.upper_bound(bound)
    }

    /// The keys in `range`, in increasing order (see [`SkipList::range`]).
    ///
    /// ```
    /// # if vvmalloc::LOOM_BUILD { return; }
    /// use vvmalloc::SkipSet;
    /// let s: SkipSet<u8> = (0..10).collect();
    /// assert_eq!(s.range(2..4).map(|e| *e.key()).collect::<Vec<_>>(), [2, 3]);
    /// ```
    pub fn range<Q, B>(&self, range: B) -> Range<'_, Q, B, K, (), R>
    where
        K: Borrow<Q>,
        Q: Ord + ?Sized,
        B: RangeBounds<Q>,
    {
        self.map.range(range)
    }

    /// The keys in increasing order (see [`SkipList::iter`]).
    ///
    /// ```
    /// # if vvmalloc::LOOM_BUILD { return; }
    /// use vvmalloc::SkipSet;
    /// let s: SkipSet<u8> = [3, 1, 2].into_iter().collect();
    /// assert_eq!(s.iter().map(|e| *e.key()).collect::<Vec<_>>(), [1, 2, 3]);
    /// ```
    pub fn iter(&self) -> Iter<'_, K, (), R> {
        self.map.iter()
    }

    /// Removes every key (see [`SkipList::clear`]).
    ///
    /// ```
    /// # if vvmalloc::LOOM_BUILD { return; }
    /// use vvmalloc::SkipSet;
    /// let s: SkipSet<u8> = (0..3).collect();
    /// s.clear();
    /// assert!(s.is_empty());
    /// ```
    pub fn clear(&self) {
        self.map.clear()
    }
}

impl<K: Ord + Send + fmt::Debug, R: Reclaim> fmt::Debug for SkipSet<K, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut set = f.debug_set();
        for e in self.iter() {
            set.entry(e.key());
        }
        set.finish()
    }
}

impl<K: Ord + Send + 'static, R: Reclaim> FromIterator<K> for SkipSet<K, R> {
    fn from_iter<I: IntoIterator<Item = K>>(iter: I) -> Self {
        let set = Self::new();
        set.extend_from(iter);
        set
    }
}

impl<K: Ord + Send, R: Reclaim> Extend<K> for SkipSet<K, R> {
    fn extend<I: IntoIterator<Item = K>>(&mut self, iter: I) {
        self.extend_from(iter);
    }
}

impl<K: Ord + Send, R: Reclaim> SkipSet<K, R> {
    fn extend_from<I: IntoIterator<Item = K>>(&self, iter: I) {
        for k in iter {
            self.insert(k);
        }
    }
}

impl<K: 'static, R: Reclaim> Default for SkipSet<K, R> {
    /// An empty set, as [`SkipSet::new`].
    fn default() -> Self {
        Self::new()
    }
}

impl<K, R: Reclaim> IntoIterator for SkipSet<K, R> {
    type Item = K;
    type IntoIter = SetIntoIter<K, R>;

    /// The keys by value, in increasing order, consuming the set.
    ///
    /// ```
    /// # if vvmalloc::LOOM_BUILD { return; }
    /// use vvmalloc::SkipSet;
    /// let set: SkipSet<String> = ["b".to_string(), "a".into()].into_iter().collect();
    /// assert_eq!(set.into_iter().collect::<Vec<_>>(), ["a", "b"]);
    /// ```
    fn into_iter(self) -> SetIntoIter<K, R> {
        SetIntoIter(self.map.into_iter())
    }
}

/// An owning iterator over a [`SkipSet`]'s keys, in increasing order, from
/// its by-value [`IntoIterator`].
///
/// ```
/// # if vvmalloc::LOOM_BUILD { return; }
/// use vvmalloc::SkipSet;
/// let set: SkipSet<u8> = (0..3).collect();
/// let mut keys = set.into_iter();
/// assert_eq!(keys.next(), Some(0));
/// assert_eq!(keys.len(), 2);
/// ```
pub struct SetIntoIter<K, R: Reclaim = Epoch>(IntoIter<K, (), R>);

impl<K, R: Reclaim> Iterator for SetIntoIter<K, R> {
    type Item = K;

    fn next(&mut self) -> Option<K> {
        self.0.next().map(|(k, ())| k)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.0.size_hint()
    }
}

impl<K, R: Reclaim> ExactSizeIterator for SetIntoIter<K, R> {}

impl<K, R: Reclaim> core::iter::FusedIterator for SetIntoIter<K, R> {}

impl<K, R: Reclaim> fmt::Debug for SetIntoIter<K, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("SetIntoIter").field(&self.0).finish()
    }
}

impl<'a, K: Ord + Send, R: Reclaim> IntoIterator for &'a SkipSet<K, R> {
    type Item = Ref<'a, K, (), R>;
    type IntoIter = Iter<'a, K, (), R>;

    fn into_iter(self) -> Iter<'a, K, (), R> {
        self.iter()
    }
}
