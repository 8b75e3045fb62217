//! The iterator over the whole list.

use core::fmt;

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
        let mut cand = match &self.last {
            Some(last) => list.successor(last),
            None => list.first(),
        }?;
        loop {
            if let Some(kept) = list.again(&cand) {
                self.last = Some(kept);
                return Some(cand);
            }
            // Removed since it was found: not present throughout, so it may
            // be skipped. Its successor has a greater key, so this ends.
            cand = list.successor(&cand)?;
        }
    }
}

impl<K, V, R: Reclaim> fmt::Debug for Iter<'_, K, V, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Iter").finish_non_exhaustive()
    }
}
