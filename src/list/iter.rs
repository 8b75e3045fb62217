//! The iterator over the whole list.

use core::fmt;

use crate::reclaim::{Epoch, Reclaim};

use super::{List, Ref};

/// A weakly consistent iterator over a [`List`], from [`List::iter`]. Each
/// item is a [`Ref`] with its own protection.
///
/// ```
/// # if vvmalloc::LOOM_BUILD { return; }
/// use vvmalloc::List;
/// let m: List<u8, u8> = [(1, 10), (2, 20)].into_iter().collect();
/// let kept: Vec<_> = m.iter().collect(); // `Ref`s may outlive the iterator
/// m.remove(&1);
/// assert_eq!(*kept[0].value(), 10); // still readable: it is protected
/// ```
pub struct Iter<'a, K, V, R: Reclaim = Epoch> {
    pub(super) list: &'a List<K, V, R>,
    pub(super) next: Option<Ref<'a, K, V, R>>,
}

impl<'a, K, V, R> Iterator for Iter<'a, K, V, R>
where
    K: Ord + Send,
    V: Send,
    R: Reclaim,
{
    type Item = Ref<'a, K, V, R>;

    fn next(&mut self) -> Option<Ref<'a, K, V, R>> {
        let entry = self.next.take()?;
        self.next = self.list.successor(&entry);
        Some(entry)
    }
}

impl<K, V, R: Reclaim> fmt::Debug for Iter<'_, K, V, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Iter").finish_non_exhaustive()
    }
}
