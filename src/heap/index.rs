//! The large heap's free index: the free blocks between the small and the
//! huge sizes, pluggable so that the structures can be compared.
//!
//! | index | structure | policy | `take_fit` | neighbour lookup |
//! |---|---|---|---|---|
//! | [`SkipIndex`] (default) | two lock-free [`SkipSet`]s, by `(size, address)` and by `(address, size)` | best fit (smallest block that fits, lowest address among equals) | `O(log n)` | `O(log n)` |
//! | [`ListIndex`] | one lock-free Harris-Michael [`ListSet`] by `(address, size)` | address-ordered first fit | `O(n)` | `O(n)` |
//! | [`BTreeIndex`] | two `BTreeSet`s behind one `Mutex` | best fit | `O(log n)` | `O(log n)` |
//!
//! An index only records blocks; the heap claims a block by removing its
//! entry, so of two threads that want the same block exactly one wins. The
//! lock-free indexes keep a second entry per block for lookups by address;
//! that entry is a hint, removed after the claim, and every claim goes through
//! the authoritative one ([`FreeIndex::take_exact`]).
//!
//! The indexes' own nodes come from the global allocator. When the global
//! allocator is [`VvMalloc`](crate::VvMalloc) itself, each node is a small
//! block, served by the small heap, which never calls the large heap: the
//! recursion is one level deep.

use core::ops::Bound::{Included, Unbounded};
use std::collections::BTreeSet;
use std::sync::Mutex;

use crate::reclaim::{Epoch, Reclaim};
use crate::{ListSet, SkipSet};

/// A concurrent set of free blocks `[addr, addr + size)` with claim-by-removal.
///
/// The heap guarantees that the blocks it inserts never overlap.
pub trait FreeIndex: Send + Sync + Sized + 'static {
    /// A short name for tables and reports.
    const NAME: &'static str;

    /// The reclamation scheme of the index's nodes ([`Reclaim::NAME`]), or
    /// `"mutex"` for an index without one.
    const SCHEME: &'static str;

    /// An empty index.
    fn new() -> Self;

    /// Records the free block `[addr, addr + size)`.
    fn insert(&self, addr: usize, size: usize);

    /// Claims (removes and returns as `(addr, size)`) a free block of at
    /// least `size` bytes, chosen by the index's policy.
    fn take_fit(&self, size: usize) -> Option<(usize, usize)>;

    /// Claims the free block `[addr, addr + size)` if it is recorded; `false`
    /// if it is not (never was, or another thread claimed it first).
    fn take_exact(&self, addr: usize, size: usize) -> bool;

    /// The size of a free block that starts at `addr`, if one is recorded.
    /// A hint: the block may be claimed at any moment.
    fn find_at(&self, addr: usize) -> Option<usize>;

    /// The recorded free block with the greatest address `<= addr`, as
    /// `(addr, size)`. A hint, as for [`find_at`](Self::find_at).
    fn floor(&self, addr: usize) -> Option<(usize, usize)>;

    /// Whether `[addr, addr + size)` is recorded now (not a hint: the
    /// authoritative entry).
    fn contains(&self, addr: usize, size: usize) -> bool;

    /// The number of recorded free blocks.
    fn len(&self) -> usize;

    /// Whether no free block is recorded.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Nodes the index's reclamation scheme has retired and not yet freed
    /// ([`reclaim::held_back`](crate::reclaim::held_back): process-wide for
    /// the scheme, so other structures of the program that use it count
    /// too). Zero for an index without deferred reclamation.
    fn held_back(&self) -> usize {
        0
    }
}

/// The default index: best fit over lock-free skip lists. See the
/// [module documentation](self).
#[derive(Debug)]
///
/// `R` is the skip lists' reclamation scheme ([`Epoch`] by default, or
/// [`Hazard`](crate::reclaim::Hazard)), in its process-wide domain.
pub struct SkipIndex<R: Reclaim = Epoch> {
    /// Authoritative: `(size, addr)`; a ceiling search is best fit.
    by_size: SkipSet<(usize, usize), R>,
    /// Hints for coalescing: `(addr, size)`.
    by_addr: SkipSet<(usize, usize), R>,
}

impl SkipIndex {
    /// An empty index with the default scheme, [`Epoch`] (a `const fn`
    /// except under `cfg(loom)`).
    #[cfg(not(loom))]
    pub const fn new() -> Self {
        Self::with_scheme()
    }

    /// An empty index with the default scheme, [`Epoch`].
    #[cfg(loom)]
    pub fn new() -> Self {
        Self::with_scheme()
    }
}

impl<R: Reclaim> SkipIndex<R> {
    /// An empty index whose nodes use the scheme `R` (a `const fn` except
    /// under `cfg(loom)`).
    #[cfg(not(loom))]
    pub const fn with_scheme() -> Self {
        Self {
            by_size: SkipSet::new(),
            by_addr: SkipSet::new(),
        }
    }

    /// An empty index whose nodes use the scheme `R`.
    #[cfg(loom)]
    pub fn with_scheme() -> Self {
        Self {
            by_size: SkipSet::new(),
            by_addr: SkipSet::new(),
        }
    }
}

impl<R: Reclaim> Default for SkipIndex<R> {
    fn default() -> Self {
        Self::with_scheme()
    }
}

impl<R: Reclaim> FreeIndex for SkipIndex<R> {
    const NAME: &'static str = "skiplist";
    const SCHEME: &'static str = R::NAME;

    fn held_back(&self) -> usize {
        crate::reclaim::held_back::<R>()
    }

    fn new() -> Self {
        Self::with_scheme()
    }

    fn insert(&self, addr: usize, size: usize) {
        // The hint first, so that the block can be found by address as soon
        // as it can be claimed.
        self.by_addr.insert((addr, size));
        self.by_size.insert((size, addr));
    }

    fn take_fit(&self, size: usize) -> Option<(usize, usize)> {
        loop {
            let e = self.by_size.lower_bound(Included(&(size, 0)))?;
            let (s, a) = *e.key();
            if e.remove() {
                self.by_addr.remove(&(a, s));
                return Some((a, s));
            }
        }
    }

    fn take_exact(&self, addr: usize, size: usize) -> bool {
        let won = self.by_size.remove(&(size, addr));
        if won {
            self.by_addr.remove(&(addr, size));
        }
        won
    }

    fn find_at(&self, addr: usize) -> Option<usize> {
        let e = self.by_addr.lower_bound(Included(&(addr, 0)))?;
        (e.key().0 == addr).then_some(e.key().1)
    }

    fn floor(&self, addr: usize) -> Option<(usize, usize)> {
        self.by_addr
            .upper_bound(Included(&(addr, usize::MAX)))
            .map(|e| *e.key())
    }

    fn contains(&self, addr: usize, size: usize) -> bool {
        self.by_size.contains(&(size, addr))
    }

    fn len(&self) -> usize {
        self.by_size.len()
    }
}

/// Address-ordered first fit over one lock-free Harris-Michael list: the
/// classic free list, made lock-free. See the [module documentation](self).
#[derive(Debug)]
///
/// `R` is the list's reclamation scheme ([`Epoch`] by default, or
/// [`Hazard`](crate::reclaim::Hazard)), in its process-wide domain.
pub struct ListIndex<R: Reclaim = Epoch> {
    by_addr: ListSet<(usize, usize), R>,
}

impl ListIndex {
    /// An empty index with the default scheme, [`Epoch`] (a `const fn`
    /// except under `cfg(loom)`).
    #[cfg(not(loom))]
    pub const fn new() -> Self {
        Self::with_scheme()
    }

    /// An empty index with the default scheme, [`Epoch`].
    #[cfg(loom)]
    pub fn new() -> Self {
        Self::with_scheme()
    }
}

impl<R: Reclaim> ListIndex<R> {
    /// An empty index whose nodes use the scheme `R` (a `const fn` except
    /// under `cfg(loom)`).
    #[cfg(not(loom))]
    pub const fn with_scheme() -> Self {
        Self {
            by_addr: ListSet::new(),
        }
    }

    /// An empty index whose nodes use the scheme `R`.
    #[cfg(loom)]
    pub fn with_scheme() -> Self {
        Self {
            by_addr: ListSet::new(),
        }
    }
}

impl<R: Reclaim> Default for ListIndex<R> {
    fn default() -> Self {
        Self::with_scheme()
    }
}

impl<R: Reclaim> FreeIndex for ListIndex<R> {
    const NAME: &'static str = "list";
    const SCHEME: &'static str = R::NAME;

    fn held_back(&self) -> usize {
        crate::reclaim::held_back::<R>()
    }

    fn new() -> Self {
        Self::with_scheme()
    }

    fn insert(&self, addr: usize, size: usize) {
        self.by_addr.insert((addr, size));
    }

    fn take_fit(&self, size: usize) -> Option<(usize, usize)> {
        'retry: loop {
            for e in self.by_addr.iter() {
                let (a, s) = *e.key();
                if s >= size {
                    if self.by_addr.remove(&(a, s)) {
                        return Some((a, s));
                    }
                    continue 'retry;
                }
            }
            return None;
        }
    }

    fn take_exact(&self, addr: usize, size: usize) -> bool {
        self.by_addr.remove(&(addr, size))
    }

    fn find_at(&self, addr: usize) -> Option<usize> {
        let e = self.by_addr.lower_bound(Included(&(addr, 0)))?;
        (e.key().0 == addr).then_some(e.key().1)
    }

    fn floor(&self, addr: usize) -> Option<(usize, usize)> {
        let mut last = None;
        for e in self.by_addr.iter() {
            if e.key().0 > addr {
                break;
            }
            last = Some(*e.key());
        }
        last
    }

    fn contains(&self, addr: usize, size: usize) -> bool {
        self.by_addr.contains(&(addr, size))
    }

    fn len(&self) -> usize {
        self.by_addr.len()
    }
}

/// The baseline: best fit over two `BTreeSet`s behind one `Mutex`.
///
/// Not fork-safe by itself: a `fork()` while another thread holds the mutex
/// leaves it locked in the child. See the [module documentation](self).
#[derive(Debug, Default)]
pub struct BTreeIndex {
    sets: Mutex<BTreeSets>,
}

#[derive(Debug, Default)]
struct BTreeSets {
    by_size: BTreeSet<(usize, usize)>,
    by_addr: BTreeSet<(usize, usize)>,
}

impl BTreeIndex {
    /// An empty index.
    pub const fn new() -> Self {
        Self {
            sets: Mutex::new(BTreeSets {
                by_size: BTreeSet::new(),
                by_addr: BTreeSet::new(),
            }),
        }
    }

    fn sets(&self) -> std::sync::MutexGuard<'_, BTreeSets> {
        // A panic while holding the lock cannot leave the sets half-updated
        // (each operation's two updates cannot panic between them except on
        // allocation failure, which aborts), so poisoning is ignored.
        self.sets.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl FreeIndex for BTreeIndex {
    const NAME: &'static str = "btree-mutex";
    const SCHEME: &'static str = "mutex";

    fn new() -> Self {
        BTreeIndex::new()
    }

    fn insert(&self, addr: usize, size: usize) {
        let mut s = self.sets();
        s.by_addr.insert((addr, size));
        s.by_size.insert((size, addr));
    }

    fn take_fit(&self, size: usize) -> Option<(usize, usize)> {
        let mut s = self.sets();
        let (sz, a) = *s.by_size.range((size, 0)..).next()?;
        s.by_size.remove(&(sz, a));
        s.by_addr.remove(&(a, sz));
        Some((a, sz))
    }

    fn take_exact(&self, addr: usize, size: usize) -> bool {
        let mut s = self.sets();
        let won = s.by_size.remove(&(size, addr));
        if won {
            s.by_addr.remove(&(addr, size));
        }
        won
    }

    fn find_at(&self, addr: usize) -> Option<usize> {
        let s = self.sets();
        let &(a, sz) = s.by_addr.range((addr, 0)..).next()?;
        (a == addr).then_some(sz)
    }

    fn floor(&self, addr: usize) -> Option<(usize, usize)> {
        self.sets()
            .by_addr
            .range((Unbounded, Included((addr, usize::MAX))))
            .next_back()
            .copied()
    }

    fn contains(&self, addr: usize, size: usize) -> bool {
        self.sets().by_size.contains(&(size, addr))
    }

    fn len(&self) -> usize {
        self.sets().by_size.len()
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    fn exercise<I: FreeIndex>() {
        let ix = I::new();
        assert!(ix.is_empty() && ix.take_fit(1).is_none());
        ix.insert(0x10000, 0x3000);
        ix.insert(0x20000, 0x1000);
        ix.insert(0x30000, 0x8000);
        assert_eq!(ix.len(), 3);
        assert_eq!(ix.find_at(0x20000), Some(0x1000));
        assert_eq!(ix.find_at(0x20001), None);
        assert_eq!(ix.floor(0x2ffff), Some((0x20000, 0x1000)));
        assert_eq!(ix.floor(0xffff), None);
        assert!(ix.contains(0x30000, 0x8000) && !ix.contains(0x30000, 0x1000));
        let got = ix.take_fit(0x2000).unwrap();
        match I::NAME {
            "list" => assert_eq!(got, (0x10000, 0x3000)), // first fit
            _ => assert_eq!(got, (0x10000, 0x3000)),      // best fit: 0x3000 < 0x8000
        }
        assert_eq!(ix.take_fit(0x4000), Some((0x30000, 0x8000)));
        assert!(ix.take_fit(0x2000).is_none());
        assert!(!ix.take_exact(0x20000, 0x2000));
        assert!(ix.take_exact(0x20000, 0x1000));
        assert!(ix.is_empty() && ix.floor(usize::MAX).is_none());
    }

    #[test]
    fn skip_index() {
        exercise::<SkipIndex>();
        // Best fit proper: the smaller of two fitting blocks even at a higher
        // address.
        let ix = SkipIndex::new();
        ix.insert(0x1000, 0x9000);
        ix.insert(0x20000, 0x2000);
        assert_eq!(ix.take_fit(0x2000), Some((0x20000, 0x2000)));
    }

    #[test]
    fn list_index() {
        exercise::<ListIndex>();
        // First fit proper: the lowest fitting address even if larger.
        let ix = ListIndex::new();
        ix.insert(0x1000, 0x9000);
        ix.insert(0x20000, 0x2000);
        assert_eq!(ix.take_fit(0x2000), Some((0x1000, 0x9000)));
    }

    #[test]
    fn btree_index() {
        exercise::<BTreeIndex>();
    }
}
