//! The iterators: over the whole list and over a range of keys.

use core::borrow::Borrow;
use core::fmt;
use core::marker::PhantomData;
use core::ops::{Bound, RangeBounds};

use crate::reclaim::{Epoch, Reclaim};

use super::{List, Ref};

/// A weakly consistent iterator over a [`List`], from [`List::iter`]. Each
/// item is a [`Ref`] with its own protection.
///
/// It is lazy and resumable: each `next` looks for the entry after the
/// last one it yielded at the moment it is called, and after `None` a
/// later call yields what has been inserted beyond that key since (so it is
/// not [`FusedIterator`](core::iter::FusedIterator)). The iterator keeps
/// its own protection of the last entry it yielded.
///
/// ```
/// # if vvmalloc::LOOM_BUILD { return; }
/// use vvmalloc::List;
/// let m: List<u8, u8> = [(1, 10), (2, 20)].into_iter().collect();
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
    pub(super) list: &'a List<K, V, R>,
    /// The last entry yielded, under the iterator's own protection: the
    /// next step starts from it.
    pub(super) last: Option<Ref<'a, K, V, R>>,
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
        self.step(|| list.first(), |_| true)
    }
}

impl<'a, K, V, R> Iter<'a, K, V, R>
where
    K: Ord + Send,
    V: Send,
    R: Reclaim,
{
    /// The next entry: after the last one yielded, or `start()` for the
    /// first step; `None` (leaving the iterator where it is) at the end or
    /// outside `in_range`.
    fn step(
        &mut self,
        start: impl FnOnce() -> Option<Ref<'a, K, V, R>>,
        in_range: impl Fn(&K) -> bool,
    ) -> Option<Ref<'a, K, V, R>> {
        let list = self.list;
        let (mut cand, mut kept) = match &self.last {
            Some(last) => list.successor_kept(last)?,
            None => (start()?, None),
        };
        loop {
            if !in_range(cand.key()) {
                return None;
            }
            if let Some(kept) = kept.or_else(|| list.again(&cand)) {
                self.last = Some(kept);
                return Some(cand);
            }
            // Removed since it was found: not present throughout, so it may
            // be skipped. Its successor has a greater key, so this ends.
            (cand, kept) = list.successor_kept(&cand)?;
        }
    }
}

impl<K, V, R: Reclaim> fmt::Debug for Iter<'_, K, V, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Iter").finish_non_exhaustive()
    }
}

/// A weakly consistent iterator over the entries of a [`List`] within a
/// range, from [`List::range`]; lazy and resumable as [`Iter`].
///
/// ```
/// # if vvmalloc::LOOM_BUILD { return; }
/// use vvmalloc::List;
/// let m: List<u32, ()> = (0..10).map(|k| (k, ())).collect();
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
        self.inner.step(
            || list.lower_bound(range.start_bound()),
            |k| match range.end_bound() {
                Bound::Included(end) => k.borrow() <= end,
                Bound::Excluded(end) => k.borrow() < end,
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
