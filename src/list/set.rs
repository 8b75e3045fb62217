//! The set: a `List` with `()` values.

use core::borrow::Borrow;
use core::fmt;
use core::ops::{Bound, RangeBounds};

use crate::reclaim::{Domain, Epoch, Reclaim};

use super::{Iter, List, Range, Ref};

/// A lock-free ordered set: a [`List`] with `()` values.
///
/// Entries are reached through [`Ref`]s with a `()` value; see [`List`] for
/// the algorithm, the guarantees and the choice of domain.
///
/// ```
/// # if vvmalloc::LOOM_BUILD { return; }
/// use std::ops::Bound::Included;
/// use vvmalloc::ListSet;
///
/// // An address-ordered set of free blocks: first fit is a ceiling search.
/// let free: ListSet<usize> = [0x1000, 0x4000, 0x9000].into_iter().collect();
/// assert_eq!(free.lower_bound(Included(&0x2000)).map(|e| *e.key()), Some(0x4000));
/// assert!(free.remove(&0x4000));
/// assert_eq!(free.len(), 2);
/// ```
pub struct ListSet<K, R: Reclaim = Epoch> {
    map: List<K, (), R>,
}

impl<K: 'static, R: Reclaim> ListSet<K, R> {
    /// An empty set in the scheme's process-wide domain.
    ///
    /// ```
    /// # if vvmalloc::LOOM_BUILD { return; }
    /// use vvmalloc::ListSet;
    /// let s: ListSet<u8> = ListSet::new();
    /// assert!(s.is_empty());
    /// ```
    #[cfg(not(loom))]
    pub const fn new() -> Self {
        Self { map: List::new() }
    }

    /// An empty set in a domain of its own (`cfg(loom)` has no process-wide
    /// domain).
    #[cfg(loom)]
    pub fn new() -> Self {
        Self { map: List::new() }
    }

    /// An empty set that retires its nodes into `domain`.
    ///
    /// ```
    /// # if vvmalloc::LOOM_BUILD { return; }
    /// use vvmalloc::reclaim::{Domain, Hazard};
    /// use vvmalloc::ListSet;
    /// let s: ListSet<u8, Hazard> = ListSet::with_domain(Domain::new());
    /// assert!(!s.domain().is_global());
    /// ```
    pub fn with_domain(domain: Domain<R>) -> Self {
        Self {
            map: List::with_domain(domain),
        }
    }
}

impl<K, R: Reclaim> ListSet<K, R> {
    /// An empty set with a domain of its own, so keys need not be `'static`
    /// (see [`List::with_own_domain`]).
    ///
    /// ```
    /// # if vvmalloc::LOOM_BUILD { return; }
    /// use vvmalloc::ListSet;
    /// let word = String::from("w");
    /// let s: ListSet<&str> = ListSet::with_own_domain();
    /// assert!(s.insert(&word));
    /// ```
    pub fn with_own_domain() -> Self {
        Self {
            map: List::with_own_domain(),
        }
    }

    /// The domain the set retires its nodes into.
    ///
    /// ```
    /// # if vvmalloc::LOOM_BUILD { return; }
    /// use vvmalloc::ListSet;
    /// assert!(ListSet::<u8>::new().domain().is_global());
    /// ```
    pub fn domain(&self) -> &Domain<R> {
        self.map.domain()
    }

    /// The number of keys; exact when no update is in flight (see
    /// [`List::len`]).
    ///
    /// ```
    /// # if vvmalloc::LOOM_BUILD { return; }
    /// use vvmalloc::ListSet;
    /// let s: ListSet<u8> = (0..3).collect();
    /// assert_eq!(s.len(), 3);
    /// ```
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether the set is empty; exact when no update is in flight.
    ///
    /// ```
    /// # if vvmalloc::LOOM_BUILD { return; }
    /// use vvmalloc::ListSet;
    /// assert!(ListSet::<u8>::new().is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Checks the invariants, as [`List::check_invariants`].
    ///
    /// ```
    /// # if vvmalloc::LOOM_BUILD { return; }
    /// use vvmalloc::ListSet;
    /// let mut s: ListSet<u8> = (0..3).collect();
    /// s.check_invariants();
    /// ```
    pub fn check_invariants(&mut self)
    where
        K: Ord + fmt::Debug,
    {
        self.map.check_invariants()
    }
}

impl<K: Ord + Send, R: Reclaim> ListSet<K, R> {
    /// Inserts `key`; returns whether it was absent.
    ///
    /// ```
    /// # if vvmalloc::LOOM_BUILD { return; }
    /// use vvmalloc::ListSet;
    /// let s: ListSet<u8> = ListSet::new();
    /// assert!(s.insert(1));
    /// assert!(!s.insert(1));
    /// ```
    pub fn insert(&self, key: K) -> bool {
        self.map.insert(key, ())
    }

    /// The entry for `key`, if present.
    ///
    /// ```
    /// # if vvmalloc::LOOM_BUILD { return; }
    /// use vvmalloc::ListSet;
    /// let s: ListSet<String> = ListSet::new();
    /// s.insert("a".into());
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
    /// use vvmalloc::ListSet;
    /// let s: ListSet<u8> = [4].into_iter().collect();
    /// assert!(s.contains(&4));
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
    /// use vvmalloc::ListSet;
    /// let s: ListSet<u8> = [4].into_iter().collect();
    /// assert!(s.remove(&4));
    /// assert!(!s.remove(&4));
    /// ```
    pub fn remove<Q>(&self, key: &Q) -> bool
    where
        K: Borrow<Q>,
        Q: Ord + ?Sized,
    {
        self.map.remove(key).is_some()
    }

    /// Removes `key` and returns its entry, protected (for keys that own
    /// data to read before it is dropped).
    ///
    /// ```
    /// # if vvmalloc::LOOM_BUILD { return; }
    /// use vvmalloc::ListSet;
    /// let s: ListSet<String> = ["x".to_string()].into_iter().collect();
    /// assert_eq!(s.take("x").unwrap().key(), "x");
    /// ```
    pub fn take<Q>(&self, key: &Q) -> Option<Ref<'_, K, (), R>>
    where
        K: Borrow<Q>,
        Q: Ord + ?Sized,
    {
        self.map.remove(key)
    }

    /// The smallest key's entry.
    ///
    /// ```
    /// # if vvmalloc::LOOM_BUILD { return; }
    /// use vvmalloc::ListSet;
    /// let s: ListSet<u8> = [3, 1].into_iter().collect();
    /// assert_eq!(s.first().map(|e| *e.key()), Some(1));
    /// ```
    pub fn first(&self) -> Option<Ref<'_, K, (), R>> {
        self.map.first()
    }

    /// Removes and returns the smallest key's entry.
    ///
    /// ```
    /// # if vvmalloc::LOOM_BUILD { return; }
    /// use vvmalloc::ListSet;
    /// let s: ListSet<u8> = [3, 1].into_iter().collect();
    /// assert_eq!(s.pop_first().map(|e| *e.key()), Some(1));
    /// ```
    pub fn pop_first(&self) -> Option<Ref<'_, K, (), R>> {
        self.map.pop_first()
    }

    /// The first key at or above `bound` (see [`List::lower_bound`]).
    ///
    /// ```
    /// # if vvmalloc::LOOM_BUILD { return; }
    /// use std::ops::Bound::Excluded;
    /// use vvmalloc::ListSet;
    /// let s: ListSet<u8> = [1, 5].into_iter().collect();
    /// assert_eq!(s.lower_bound(Excluded(&1)).map(|e| *e.key()), Some(5));
    /// ```
    pub fn lower_bound<Q>(&self, bound: Bound<&Q>) -> Option<Ref<'_, K, (), R>>
    where
        K: Borrow<Q>,
        Q: Ord + ?Sized,
    {
        self.map.lower_bound(bound)
    }

    /// A weakly consistent iterator in increasing order (see
    /// [`List::iter`]).
    ///
    /// ```
    /// # if vvmalloc::LOOM_BUILD { return; }
    /// use vvmalloc::ListSet;
    /// let s: ListSet<u8> = [2, 1].into_iter().collect();
    /// assert_eq!(s.iter().map(|e| *e.key()).collect::<Vec<_>>(), [1, 2]);
    /// ```
    pub fn iter(&self) -> Iter<'_, K, (), R> {
        self.map.iter()
    }

    /// The keys within `range`, in increasing order (see [`List::range`]).
    ///
    /// ```
    /// # if vvmalloc::LOOM_BUILD { return; }
    /// use vvmalloc::ListSet;
    /// let s: ListSet<u8> = (0..10).collect();
    /// assert_eq!(s.range(3..5).map(|e| *e.key()).collect::<Vec<_>>(), [3, 4]);
    /// ```
    pub fn range<Q, B>(&self, range: B) -> Range<'_, Q, B, K, (), R>
    where
        K: Borrow<Q>,
        Q: Ord + ?Sized,
        B: RangeBounds<Q>,
    {
        self.map.range(range)
    }

    /// The largest key's entry: a walk of the whole list, `O(n)`.
    ///
    /// ```
    /// # if vvmalloc::LOOM_BUILD { return; }
    /// use vvmalloc::ListSet;
    /// let s: ListSet<u8> = [3, 1].into_iter().collect();
    /// assert_eq!(s.last().map(|e| *e.key()), Some(3));
    /// ```
    pub fn last(&self) -> Option<Ref<'_, K, (), R>> {
        self.map.last()
    }

    /// Removes and returns the largest key's entry (see
    /// [`List::pop_last`]).
    ///
    /// ```
    /// # if vvmalloc::LOOM_BUILD { return; }
    /// use vvmalloc::ListSet;
    /// let s: ListSet<u8> = [3, 1].into_iter().collect();
    /// assert_eq!(s.pop_last().map(|e| *e.key()), Some(3));
    /// assert_eq!(s.len(), 1);
    /// ```
    pub fn pop_last(&self) -> Option<Ref<'_, K, (), R>> {
        self.map.pop_last()
    }

    /// The last key at or below `bound` (see [`List::upper_bound`]).
    ///
    /// ```
    /// # if vvmalloc::LOOM_BUILD { return; }
    /// use std::ops::Bound::Excluded;
    /// use vvmalloc::ListSet;
    /// let s: ListSet<u8> = [1, 5].into_iter().collect();
    /// assert_eq!(s.upper_bound(Excluded(&5)).map(|e| *e.key()), Some(1));
    /// ```
    pub fn upper_bound<Q>(&self, bound: Bound<&Q>) -> Option<Ref<'_, K, (), R>>
    where
        K: Borrow<Q>,
        Q: Ord + ?Sized,
    {
        self.map.upper_bound(bound)
    }

    /// The entry for `key`, inserting it if absent.
    ///
    /// ```
    /// # if vvmalloc::LOOM_BUILD { return; }
    /// use vvmalloc::ListSet;
    /// let s: ListSet<u8> = ListSet::new();
    /// assert_eq!(*s.get_or_insert(4).key(), 4);
    /// assert_eq!(s.len(), 1);
    /// ```
    pub fn get_or_insert(&self, key: K) -> Ref<'_, K, (), R> {
        self.map.get_or_insert(key, ())
    }

    /// Removes every key, one at a time; not atomic (see [`List::clear`]).
    ///
    /// ```
    /// # if vvmalloc::LOOM_BUILD { return; }
    /// use vvmalloc::ListSet;
    /// let s: ListSet<u8> = (0..5).collect();
    /// s.clear();
    /// assert!(s.is_empty());
    /// ```
    pub fn clear(&self) {
        self.map.clear()
    }
}

impl<K: Ord + Send + fmt::Debug, R: Reclaim> fmt::Debug for ListSet<K, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut s = f.debug_set();
        for e in self.iter() {
            s.entry(e.key());
        }
        s.finish()
    }
}

impl<K: Ord + Send + 'static, R: Reclaim> FromIterator<K> for ListSet<K, R> {
    fn from_iter<I: IntoIterator<Item = K>>(iter: I) -> Self {
        let set = Self::new();
        for k in iter {
            set.insert(k);
        }
        set
    }
}

impl<K: Ord + Send, R: Reclaim> Extend<K> for ListSet<K, R> {
    fn extend<I: IntoIterator<Item = K>>(&mut self, iter: I) {
        for k in iter {
            self.insert(k);
        }
    }
}

impl<K: 'static, R: Reclaim> Default for ListSet<K, R> {
    /// An empty set, as [`ListSet::new`].
    fn default() -> Self {
        Self::new()
    }
}
