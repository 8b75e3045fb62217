//! The iterators: over the whole map and over a range of keys.

use core::borrow::Borrow;
use core::cmp::Ordering as Ordering_;
use core::fmt;
use core::marker::PhantomData;
use core::ops::{Bound, RangeBounds};

use crate::reclaim::{Epoch, Reclaim};

use super::{Ref, SkipList};

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
/// ```
/// # if vvmalloc::LOOM_BUILD { return; }
/// use vvmalloc::SkipList;
/// let m: SkipList<u8, u8> = [(1, 10), (2, 20)].into_iter().collect();
/// let kept: Vec<_> = m.iter().collect(); // `Ref`s may outlive the iterator
/// m.remove(&1);
/// assert_eq!(*kept[0].value(), 10); // still readable: it is protected
/// ```
pub struct Iter<'a, K, V, R: Reclaim = Epoch> {
    list: &'a SkipList<K, V, R>,
    /// The next entry from the front, fetched ahead: every key yielded from
    /// the front is below it. `Some` while not `done`.
    front: Option<Ref<'a, K, V, R>>,
    /// The next entry from the back, fetched ahead once the back has
    /// started: every key yielded from the back is above it.
    back: Option<Ref<'a, K, V, R>>,
    back_started: bool,
    /// The ends met (or one ran out): nothing more from either.
    done: bool,
}

impl<'a, K, V, R> Iter<'a, K, V, R>
where
    K: Ord + Send,
    V: Send,
    R: Reclaim,
{
    pub(super) fn new(list: &'a SkipList<K, V, R>, front: Option<Ref<'a, K, V, R>>) -> Self {
        Self {
            list,
            done: front.is_none(),
            front,
            back: None,
            back_started: false,
        }
    }

    /// The next entry from the front, if `in_range` accepts its key.
    fn step_front(&mut self, in_range: impl Fn(&K) -> bool) -> Option<Ref<'a, K, V, R>> {
        if self.done {
            return None;
        }
        let f = match self.front.take() {
            Some(f) if in_range(f.key()) => f,
            _ => {
                self.done = true;
                return None;
            }
        };
        if let Some(b) = &self.back {
            match f.key().cmp(b.key()) {
                // The back already yielded it.
                Ordering_::Greater => {
                    self.done = true;
                    return None;
                }
                // The ends meet: the last one.
                Ordering_::Equal => {
                    self.done = true;
                    return Some(f);
                }
                Ordering_::Less => {}
            }
        }
        self.front = self.list.successor(&f);
        // No successor: nothing above `f` was present at that moment, so
        // the back has nothing left that was present throughout either.
        self.done = self.front.is_none();
        Some(f)
    }

    /// The next entry from the back, starting with `first_back`, if
    /// `in_range` accepts its key.
    fn step_back(
        &mut self,
        first_back: impl FnOnce() -> Option<Ref<'a, K, V, R>>,
        in_range: impl Fn(&K) -> bool,
    ) -> Option<Ref<'a, K, V, R>> {
        if self.done {
            return None;
        }
        let b = if self.back_started {
            self.back.take()
        } else {
            self.back_started = true;
            first_back()
        };
        let b = match b {
            Some(b) if in_range(b.key()) => b,
            _ => {
                self.done = true;
                return None;
            }
        };
        let f = self
            .front
            .as_ref()
            .expect("the front is fetched while not done");
        match b.key().cmp(f.key()) {
            Ordering_::Less => {
                self.done = true;
                return None;
            }
            Ordering_::Equal => {
                self.done = true;
                return Some(b);
            }
            Ordering_::Greater => {}
        }
        self.back = self.list.predecessor(&b);
        self.done = self.back.is_none();
        Some(b)
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
        self.step_front(|_| true)
    }
}

/// From the back, each step is a floor search (expected `O(log n)`): the
/// list has no backward links. The two ends never yield the same key.
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
/// range, from [`SkipList::range`].
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
        let range = &self.range;
        self.inner.step_front(|k| match range.end_bound() {
            Bound::Included(end) => k.borrow() <= end,
            Bound::Excluded(end) => k.borrow() < end,
            Bound::Unbounded => true,
        })
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
