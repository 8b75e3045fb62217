//! The iterators: over the whole map and over a range of keys.

use core::borrow::Borrow;
use core::fmt;
use core::marker::PhantomData;
use core::ops::{Bound, RangeBounds};

use crate::reclaim::{Epoch, Reclaim};
use crate::sync::Ordering;

use super::node::{is_marked, untagged, Node};
use super::{Ref, SkipList};

impl<K, V, R: Reclaim> IntoIterator for SkipList<K, V, R> {
    type Item = (K, V);
    type IntoIter = IntoIter<K, V, R>;

    /// The entries by value, in increasing key order, consuming the map.
    ///
    /// ```
    /// # if vvmalloc::LOOM_BUILD { return; }
    /// use vvmalloc::SkipList;
    /// let m: SkipList<u8, String> = [(2, "b".to_string()), (1, "a".into())].into_iter().collect();
    /// let v: Vec<(u8, String)> = m.into_iter().collect();
    /// assert_eq!(v, [(1, "a".to_string()), (2, "b".to_string())]);
    /// ```
    fn into_iter(self) -> IntoIter<K, V, R> {
        IntoIter { map: self }
    }
}

/// An owning iterator over a [`SkipList`]'s entries, in increasing key
/// order, from its by-value [`IntoIterator`]. Entries not taken are dropped
/// with the iterator.
///
/// ```
/// # if vvmalloc::LOOM_BUILD { return; }
/// use vvmalloc::SkipList;
/// let m: SkipList<u8, u8> = (0..3).map(|k| (k, k * 10)).collect();
/// let mut it = m.into_iter();
/// assert_eq!(it.next(), Some((0, 0)));
/// assert_eq!(it.len(), 2);
/// ```
pub struct IntoIter<K, V, R: Reclaim = Epoch> {
    /// The map, ours alone: its remaining level-0 chain is what is left.
    map: SkipList<K, V, R>,
}

impl<K, V, R: Reclaim> Iterator for IntoIter<K, V, R> {
    type Item = (K, V);

    fn next(&mut self) -> Option<(K, V)> {
        // Relaxed, here and below: the map is ours alone (moved in), so no
        // other thread can touch it.
        let cur = untagged(self.map.head[0].load(Ordering::Relaxed)); // map owned: pairs with nothing
        if cur.is_null() {
            return None;
        }
        // SAFETY: `cur` is linked at level 0 of a map no one else can
        // reach: live, and level 0 exists.
        let next = unsafe { Node::next(cur, 0) }.load(Ordering::Relaxed); // owned, as above
        debug_assert!(!is_marked(next), "a removed node still linked");
        // Unlinked at level 0, where the map's drop walks; upper levels
        // are never read again.
        self.map.head[0].store(untagged(next), Ordering::Relaxed); // owned, as above
        self.map.len.0.fetch_sub(1, Ordering::Relaxed); // a statistic
                                                        // SAFETY: unlinked from the only chain that is read, and no `Ref`
                                                        // or other thread can reach it: taken once, then freed.
        Some(unsafe { Node::into_entry(cur) })
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = self.map.len();
        (n, Some(n))
    }
}

/// Exact: nothing but the iterator can change the map.
impl<K, V, R: Reclaim> ExactSizeIterator for IntoIter<K, V, R> {}

impl<K, V, R: Reclaim> core::iter::FusedIterator for IntoIter<K, V, R> {}

impl<K, V, R: Reclaim> fmt::Debug for IntoIter<K, V, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IntoIter")
            .field("remaining", &self.map.len())
            .finish()
    }
}

impl<'a, K, V, R> IntoIterator for &'a SkipList<K, V, R>
where
    K: Ord + Send,
    V: Send,
    R: Reclaim,
{
    type Item = Ref<'a, K, V, R>;
    type IntoIter = Iter<'a, K, V, R>;

    fn into_iter(self) -> Iter<'a, K, V, R> {
        self.iter()
    }
}

/// A weakly consistent iterator over a [`SkipList`], from
/// [`SkipList::iter`]. Each item is a [`Ref`] with its own protection.
///
/// It is lazy and resumable, like `crossbeam_skiplist`'s: each `next`
/// looks for the entry after the last one it yielded at the moment it is
/// called (so an entry removed before that is not yielded, and one
/// inserted after the last yielded key is), and after `None` a later call
/// yields what has been inserted beyond that key since. So it is not
/// [`FusedIterator`](core::iter::FusedIterator). The iterator keeps its
/// own protection of the last entry yielded from each end (with
/// [`Epoch`], it keeps the thread pinned while it lives).
///
/// ```
/// # if vvmalloc::LOOM_BUILD { return; }
/// use vvmalloc::SkipList;
/// let m: SkipList<u8, u8> = [(1, 10), (2, 20)].into_iter().collect();
/// let kept: Vec<_> = m.iter().collect(); // `Ref`s may outlive the iterator
/// m.remove(&1);
/// assert_eq!(*kept[0].value(), 10); // still readable: it is protected
///
/// let mut it = m.iter();
/// assert_eq!(it.next().map(|e| *e.key()), Some(2));
/// assert!(it.next().is_none());
/// m.insert(3, 30); // after the last key yielded: the iterator resumes
/// assert_eq!(it.next().map(|e| *e.key()), Some(3));
/// ```
pub struct Iter<'a, K, V, R: Reclaim = Epoch> {
    list: &'a SkipList<K, V, R>,
    /// The last entry yielded from the front, under the iterator's own
    /// protection: the next step starts from it.
    front: Option<Ref<'a, K, V, R>>,
    /// The last entry yielded from the back, likewise.
    back: Option<Ref<'a, K, V, R>>,
}

impl<'a, K, V, R> Iter<'a, K, V, R>
where
    K: Ord + Send,
    V: Send,
    R: Reclaim,
{
    pub(super) fn new(list: &'a SkipList<K, V, R>) -> Self {
        Self {
            list,
            front: None,
            back: None,
        }
    }

    /// The next entry from the front: after the last one yielded, or
    /// `start()` for the first step; `None` (leaving the iterator where it
    /// is) past the end, outside `in_range`, or at a key the back yielded.
    fn step_front(
        &mut self,
        start: impl FnOnce() -> Option<Ref<'a, K, V, R>>,
        in_range: impl Fn(&K) -> bool,
    ) -> Option<Ref<'a, K, V, R>> {
        let list = self.list;
        let (mut cand, mut kept) = match &self.front {
            Some(f) => list.successor_kept(f)?,
            None => (start()?, None),
        };
        loop {
            if !in_range(cand.key()) || self.back.as_ref().is_some_and(|b| cand.key() >= b.key()) {
                return None;
            }
            if let Some(kept) = kept.or_else(|| cand.again()) {
                self.front = Some(kept);
                return Some(cand);
            }
            // Removed since it was found: not present throughout, so it may
            // be skipped. Its successor has a greater key, so this ends.
            (cand, kept) = list.successor_kept(&cand)?;
        }
    }

    /// The next entry from the back, as `step_front` (`start()` for the
    /// first step, `in_range` the range's start).
    fn step_back(
        &mut self,
        start: impl FnOnce() -> Option<Ref<'a, K, V, R>>,
        in_range: impl Fn(&K) -> bool,
    ) -> Option<Ref<'a, K, V, R>> {
        let list = self.list;
        let mut cand = match &self.back {
            Some(b) => list.predecessor(b),
            None => start(),
        }?;
        loop {
            if !in_range(cand.key()) || self.front.as_ref().is_some_and(|f| cand.key() <= f.key()) {
                return None;
            }
            if let Some(kept) = cand.again() {
                self.back = Some(kept);
                return Some(cand);
            }
            cand = list.predecessor(&cand)?;
        }
    }
}

impl<'a, K, V, R> Iterator for Iter<'a, K, V, R>
where
    K: Ord + Send,
    V: Send,
    R: Reclaim,
{
    type Item = Ref<'a, K, V, R>;

    fn next(&mut self) -> Option<Ref<'a, K, V, R>> {
        let list = self.list;
        self.step_front(|| list.first(), |_| true)
    }
}

/// From the back, each step is a floor search (expected `O(log n)`): the
/// list has no backward links. The two ends never yield the same key: each
/// stops below the last key the other yielded.
impl<'a, K, V, R> DoubleEndedIterator for Iter<'a, K, V, R>
where
    K: Ord + Send,
    V: Send,
    R: Reclaim,
{
    fn next_back(&mut self) -> Option<Ref<'a, K, V, R>> {
        let list = self.list;
        self.step_back(|| list.last(), |_| true)
    }
}

impl<K, V, R: Reclaim> fmt::Debug for Iter<'_, K, V, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Iter").finish_non_exhaustive()
    }
}

/// A weakly consistent iterator over the entries of a [`SkipList`] within a
/// range, from [`SkipList::range`]; lazy and resumable as [`Iter`].
///
/// ```
/// # if vvmalloc::LOOM_BUILD { return; }
/// use vvmalloc::SkipList;
/// let m: SkipList<u32, ()> = (0..10).map(|k| (k, ())).collect();
/// assert_eq!(m.range(..=2).map(|e| *e.key()).collect::<Vec<_>>(), [0, 1, 2]);
/// ```
pub struct Range<'a, Q: ?Sized, B, K, V, R: Reclaim = Epoch> {
    pub(super) inner: Iter<'a, K, V, R>,
    pub(super) range: B,
    pub(super) _key: PhantomData<fn() -> Box<Q>>,
}

impl<'a, Q, B, K, V, R> Iterator for Range<'a, Q, B, K, V, R>
where
    K: Ord + Send + Borrow<Q>,
    V: Send,
    R: Reclaim,
    Q: Ord + ?Sized,
    B: RangeBounds<Q>,
{
    type Item = Ref<'a, K, V, R>;

    fn next(&mut self) -> Option<Ref<'a, K, V, R>> {
        let (list, range) = (self.inner.list, &self.range);
        self.inner.step_front(
            || list.lower_bound(range.start_bound()),
            |k| match range.end_bound() {
                Bound::Included(end) => k.borrow() <= end,
                Bound::Excluded(end) => k.borrow() < end,
                Bound::Unbounded => true,
            },
        )
    }
}

/// From the back, each step is a floor search (expected `O(log n)`).
impl<'a, Q, B, K, V, R> DoubleEndedIterator for Range<'a, Q, B, K, V, R>
where
    K: Ord + Send + Borrow<Q>,
    V: Send,
    R: Reclaim,
    Q: Ord + ?Sized,
    B: RangeBounds<Q>,
{
    fn next_back(&mut self) -> Option<Ref<'a, K, V, R>> {
        let (list, range) = (self.inner.list, &self.range);
        self.inner.step_back(
            || list.upper_bound(range.end_bound()),
            |k| match range.start_bound() {
                Bound::Included(start) => k.borrow() >= start,
                Bound::Excluded(start) => k.borrow() > start,
                Bound::Unbounded => true,
            },
        )
    }
}

impl<Q: ?Sized, B, K, V, R: Reclaim> fmt::Debug for Range<'_, Q, B, K, V, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Range").finish_non_exhaustive()
    }
}
