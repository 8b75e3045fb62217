//! A lock-free skip list: the lock-free skip list of Herlihy and Shavit (*The
//! Art of Multiprocessor Programming*, ch. 14, after K. Fraser, *Practical
//! Lock-Freedom*, 2004), with Michael's hazard-pointer-safe traversal
//! (*High Performance Dynamic Lock-Free Hash Tables and List-Based Sets*,
//! SPAA 2002), a two-party countdown that retires each node once, and a
//! reserved-head protocol that makes `pop_first` linearizable.
//!
//! # Structure and invariants
//!
//! `head` is a tower of [`MAX_HEIGHT`] pointers. A node has a key, a value, a
//! height `h` and a tower of `h` `next` pointers; the lowest bit of `next[i]`
//! is the node's *mark at level `i`*. Level 0 holds every entry: keys strictly
//! increase along the nodes reachable from `head[0]` whose `next[0]` is
//! unmarked, and these are the contents of the map. Level `i` is a sublist of
//! level `i - 1`, a shortcut.
//!
//! - **Insert** links a node at level 0 by one CAS (the linearization point),
//!   then at levels 1, 2, … in turn; it sets `next[i]` before linking at `i`,
//!   by a CAS that fails once level `i` is marked, so a node being removed is
//!   never linked higher.
//! - **Remove** marks `next[h-1]`, …, `next[1]`, then `next[0]`; the thread
//!   whose CAS marks `next[0]` removed the entry (the linearization point).
//!   Marks are permanent, so a marked node is never linked after (Harris).
//!   Whoever meets a marked node in a traversal unlinks it at that level.
//! - **Retirement**: a node may be retired only when it is unlinked from
//!   every level *and* its inserter will link it nowhere again. `refs`
//!   counts the two parties, starting at 2: the inserter, when it stops
//!   linking (after unlinking the node again if it was removed meanwhile),
//!   and the remover, after a search that unlinks it at every level (or,
//!   with epochs, after unlinking it through the predecessors its first
//!   search recorded, when that search found it linked at every level of
//!   its tower, so its inserter was done). Whoever brings `refs` to 0
//!   retires the node, so it is retired exactly once. A `SeqCst` fence in
//!   each party (after the inserter's last link, after the remover's mark)
//!   guarantees that either the inserter sees the mark and cleans up, or the
//!   remover's search sees the inserter's links.
//! - **Reserved head**: `pop_first` first reserves the first node `n` by
//!   setting a tag on `head[0]` (a CAS from `n` to `n | RESERVED`), then marks
//!   `n` with a `POPPED` tag. While `head[0]` is reserved no insert can link
//!   before `n` (its CAS on `head[0]` expects an untagged pointer), so `n` is
//!   still the smallest key when it is marked; whoever meets a reserved head
//!   helps by marking `n` and unlinking it. Without this, a `pop_first` could
//!   remove a key after a smaller one had been inserted and seen (the race
//!   the loom model `pop_first_racing_smaller_insert` shows).
//!
//! # Traversal and hazards
//!
//! A search keeps three shields, `pred`, `curr` and `succ`, at any height:
//! it protects `curr` by validating that `pred.next[i]` still holds it,
//! unmarked, and `succ` by validating `curr.next[i]`. A node whose `next[i]`
//! is unmarked is still linked at level `i` (it was linked before it was
//! reached, and is unlinked only after being marked), so what it points to is
//! reachable and not retired. A marked `curr` is unlinked before the search
//! steps past it, never walked through. Descending keeps `pred`. An operation
//! thus holds at most four hazard pointers: the three of the search and one
//! on the node it inserts or removes (five for a replacing insert, which
//! also keeps the old node). With epochs the shields cost nothing.
//!
//! The price of that bound is paid by inserts of tall nodes: with hazard
//! pointers an insert searches down to each upper level it links (one extra
//! search per insert on average, with towers that grow with probability
//! 1/2). With epochs the pinned guard keeps every node a search passed from
//! being freed, so an insert links its upper levels through the
//! predecessors its first search recorded, as Herlihy and Shavit do, and
//! searches again only when a CAS fails or a recorded successor has been
//! marked since. (That check matters for a successor with the inserted key:
//! an older entry removed between the search and the level-0 link. Linked
//! in front of it, the new node would stop its remover's clean-up search,
//! which ends at the first live node of the key, short of it; the old node
//! stayed linked after its retire. The loom model
//! `remove_races_reinsert_same_key` shows the race.) A search also skips protecting and
//! comparing a node it already stopped at on the level above, and never
//! protects the successor of the node it stops at.
//!
//! # Linearization points
//!
//! - `insert`, `try_insert` and `get_or_insert` that insert: the CAS that
//!   links the node at level 0; `insert` that replaces: the CAS that marks
//!   the old node and links the new one behind it, in one step.
//! - `remove`, `pop_last` and [`Ref::remove`]: the CAS that marks `next[0]`;
//!   `pop_first`: the marking CAS, done while `head[0]` is reserved.
//! - `compare_insert`: as `insert` when it inserts or replaces; when it
//!   keeps the present entry, as a lookup.
//! - Lookups (`get`, `lower_bound`, `upper_bound`, `first`, `last`) and
//!   operations that find nothing: the load at level 0 that saw the answer's
//!   predecessor point to it (or to the end), unmarked.
//!
//! # Coming from `crossbeam_skiplist`
//!
//! | `crossbeam_skiplist` | here | |
//! |---|---|---|
//! | `SkipMap::insert`, `compare_insert`, `get_or_insert(_with)`, `remove`, `get`, `contains_key` | the same names (`contains`) | `insert` replaces, atomically |
//! | `front`, `back`, `pop_front`, `pop_back` | `first`, `last`, `pop_first`, `pop_last` | `BTreeMap`'s names |
//! | `lower_bound`, `upper_bound`, `range`, `iter` | the same | lazy, resumable iterators, double-ended (see [`SkipList::iter`]) |
//! | `Entry::next`, `prev`, `move_next`, `move_prev`, `remove`, `is_removed` | the same on [`Ref`] | |
//! | `Entry: Clone` | not offered | see below |
//! | `IntoIterator` by value | the same ([`IntoIter`], [`SetIntoIter`]) | |
//! | `SkipSet::insert` (replaces, returns the entry) | [`SkipSet::replace`] | [`SkipSet::insert`] is `BTreeSet::insert`: keeps the present key, returns `bool` |
//! | set `Entry::value` | `Deref` to the key (`*e`), or [`Ref::key`] | `Ref::value` is the map's `()` |
//! | one collector, entries reference-counted | a scheme per map ([`Epoch`], [`Hazard`](crate::reclaim::Hazard), [`Leak`](crate::reclaim::Leak)), own domains | a [`Ref`] holds a pin or a hazard pointer, not a count |
//!
//! A `Ref` is not `Clone`: a second protection of a node can only be taken
//! while the node is still in the map (a removed node may already have
//! been scanned by a hazard-pointer reclaimer, which a protection announced
//! afterwards does not stop), so a clone of a removed entry could not be
//! made soundly with hazard pointers. Take another `Ref` with
//! [`get`](SkipList::get) or [`Ref::next`] instead.

use core::fmt;
use core::marker::PhantomData;
use core::ptr::{self, NonNull};

use crate::reclaim::{Domain, Epoch, Guard, Reclaim, Shield};
use crate::sync::{AtomicIsize, AtomicPtr, AtomicUsize, Ordering};

use node::{is_marked, untagged, Node};
use raw::{mark_tower, Cursor};

mod iter;
mod map;
mod node;
mod raw;
#[cfg(loom)]
mod seeded;
mod set;

pub use iter::{IntoIter, Iter, Range};
pub use set::{SetIntoIter, SkipSet};

/// The largest tower height. With the promotion probability of 1/2 a list
/// of `2^32` (about four billion) entries still has about one full-height
/// node. Under `cfg(loom)` it is 3, so that models stay small.
///
/// ```
/// # if vvmalloc::LOOM_BUILD { return; }
/// use vvmalloc::skiplist::MAX_HEIGHT;
/// assert_eq!(MAX_HEIGHT, 32);
/// ```
#[cfg(not(loom))]
pub const MAX_HEIGHT: usize = 32;
/// The largest tower height. With the promotion probability of 1/2 a list
/// of `2^32` (about four billion) entries still has about one full-height
/// node. Under `cfg(loom)` it is 3, so that models stay small.
#[cfg(loom)]
pub const MAX_HEIGHT: usize = 3;

/// A lock-free ordered map: a skip list generic over the reclamation scheme,
/// in the style of `crossbeam_skiplist::SkipMap`.
///
/// Keys need only [`Ord`]. All operations are lock-free and linearizable
/// (`pop_first` and `pop_last` included); iteration is weakly consistent
/// (see [`iter`](Self::iter)). Lookups, inserts and removals take expected
/// `O(log n)` steps; towers are random, with one more level with probability
/// 1/2, up to [`MAX_HEIGHT`]. Each entry costs its key, its value, 8 bytes
/// and two tower pointers on average, in one allocation.
///
/// Values are reached through a [`Ref`], which keeps its entry protected (a
/// pinned epoch or a hazard pointer) for as long as it lives and cannot
/// outlive the map. A removed entry's key and value are dropped once the
/// last protection is gone, by the reclamation scheme.
///
/// # `'static` and domains
///
/// As for [`List`](crate::List): [`SkipList::new`] uses the scheme's
/// process-wide domain and needs `'static` keys and values (a removed entry
/// may be dropped after the map is gone); [`SkipList::with_own_domain`] gives
/// the map a domain of its own, dropped with it.
///
/// # Hazard pointers
///
/// With [`Hazard`](crate::reclaim::Hazard) an operation holds at most four
/// hazard pointers, whatever the height: a search keeps only the predecessor,
/// the current node and its successor, and the inserted or removed node has
/// one more (an `insert` that replaces holds a fifth, on the old entry, for
/// its clean-up). Each returned [`Ref`] holds one while it lives.
///
/// # Examples
///
/// ```
/// # if vvmalloc::LOOM_BUILD { return; }
/// use std::ops::Bound::Included;
/// use vvmalloc::SkipList;
///
/// let map: SkipList<u32, &str> = SkipList::new();
/// map.insert(3, "c");
/// map.insert(1, "a");
/// map.insert(1, "A"); // `insert` replaces
/// assert_eq!(*map.get(&1).unwrap().value(), "A");
/// assert!(map.try_insert(3, "x").is_err()); // insert-if-absent
///
/// // Ceiling and floor searches.
/// assert_eq!(map.lower_bound(Included(&2)).map(|e| *e.key()), Some(3));
/// assert_eq!(map.upper_bound(Included(&2)).map(|e| *e.key()), Some(1));
///
/// assert_eq!(map.pop_first().map(|e| *e.value()), Some("A"));
/// assert_eq!(map.iter().map(|e| *e.key()).collect::<Vec<_>>(), [3]);
/// ```
///
/// A best-fit free index, keyed by `(size, address)`:
///
/// ```
/// # if vvmalloc::LOOM_BUILD { return; }
/// use std::ops::Bound::Included;
/// use vvmalloc::reclaim::Hazard;
/// use vvmalloc::SkipList;
///
/// let free: SkipList<(usize, usize), (), Hazard> = SkipList::new();
/// for block in [(64, 0x1000), (256, 0x2000), (128, 0x3000)] {
///     free.insert(block, ());
/// }
/// // The smallest block of at least 100 bytes: a ceiling search, then take it.
/// let fit = free.lower_bound(Included(&(100, 0))).unwrap();
/// assert_eq!(*fit.key(), (128, 0x3000));
/// assert!(fit.remove()); // we own it now; nobody else can take it
/// assert_eq!(free.len(), 2);
/// ```
pub struct SkipList<K, V, R: Reclaim = Epoch> {
    head: [AtomicPtr<Node<K, V>>; MAX_HEIGHT],
    /// The height of the tallest tower inserted so far: searches start
    /// there. A hint; starting at any level is correct.
    max_height: AtomicUsize,
    /// Successful inserts minus successful removes. On a cache line of its
    /// own: every update writes it, every search reads `max_height`.
    len: CachePadded<AtomicIsize>,
    domain: Domain<R>,
    /// The map owns its keys and values.
    _entries: PhantomData<(K, V)>,
}

/// A value alone on its cache line (two lines: adjacent-line prefetchers
/// pair them).
#[repr(align(128))]
struct CachePadded<T>(T);

// SAFETY: sending the map sends its entries (`K: Send, V: Send`); entries
// removed through one thread may have been inserted by another, and `Ref`s
// on several threads share `&K` and `&V` (`Sync`).
unsafe impl<K: Send + Sync, V: Send + Sync, R: Reclaim> Send for SkipList<K, V, R> {}
// SAFETY: through `&SkipList` threads share `&K`/`&V` (`Sync`) and drop
// entries other threads inserted (`Send`).
unsafe impl<K: Send + Sync, V: Send + Sync, R: Reclaim> Sync for SkipList<K, V, R> {}

/// A protected entry of a [`SkipList`] (or [`SkipSet`]): its key and value
/// stay valid for as long as the `Ref` lives, even if the entry is removed
/// meanwhile.
///
/// With [`Epoch`] a `Ref` keeps the thread pinned (holding one for long
/// delays reclamation for every thread); with
/// [`Hazard`](crate::reclaim::Hazard) it holds one hazard pointer. It borrows
/// the map, so it cannot outlive it, and it is not `Send`.
///
/// ```compile_fail
/// use vvmalloc::SkipList;
/// let m: SkipList<u8, u8> = SkipList::new();
/// m.insert(1, 1);
/// let e = m.get(&1).unwrap();
/// drop(m); // error: `m` is still borrowed by `e`
/// let _ = e.value();
/// ```
pub struct Ref<'a, K, V, R: Reclaim = Epoch> {
    list: &'a SkipList<K, V, R>,
    node: NonNull<Node<K, V>>,
    // Field order matters: the hazard is released before the guard unpins.
    _shield: Shield<'a, R>,
    _guard: Guard<'a, R>,
}

impl<'a, K, V, R: Reclaim> Ref<'a, K, V, R> {
    /// The entry's key.
    ///
    /// ```
    /// # if vvmalloc::LOOM_BUILD { return; }
    /// use vvmalloc::SkipList;
    /// let m: SkipList<i32, ()> = [(7, ())].into_iter().collect();
    /// assert_eq!(*m.first().unwrap().key(), 7);
    /// ```
    pub fn key(&self) -> &K {
        // SAFETY: the node is protected for the `Ref`'s life, and its key is
        // never written after publication.
        unsafe { &(*self.node.as_ptr()).key }
    }

    /// The entry's value.
    ///
    /// ```
    /// # if vvmalloc::LOOM_BUILD { return; }
    /// use vvmalloc::SkipList;
    /// let m: SkipList<i32, char> = [(7, 'x')].into_iter().collect();
    /// assert_eq!(*m.get(&7).unwrap().value(), 'x');
    /// ```
    pub fn value(&self) -> &V {
        // SAFETY: as in `key`.
        unsafe { &(*self.node.as_ptr()).value }
    }

    /// Whether the entry has been removed (it may have been removed by the
    /// time the answer is used).
    ///
    /// ```
    /// # if vvmalloc::LOOM_BUILD { return; }
    /// use vvmalloc::SkipList;
    /// let m: SkipList<i32, ()> = [(1, ())].into_iter().collect();
    /// let e = m.get(&1).unwrap();
    /// assert!(!e.is_removed());
    /// m.remove(&1);
    /// assert!(e.is_removed());
    /// ```
    pub fn is_removed(&self) -> bool {
        // SAFETY: the node is protected; level 0 exists in every tower.
        let next = unsafe { Node::next(self.node.as_ptr(), 0) };
        // Relaxed: a snapshot of the mark; nothing is read through it.
        is_marked(next.load(Ordering::Relaxed))
    }
}

impl<'a, K, V, R> Ref<'a, K, V, R>
where
    K: Ord + Send,
    V: Send,
    R: Reclaim,
{
    /// The entry after this one: the first with a greater key, at the
    /// moment of the call. Expected `O(1)` while this entry is in the map
    /// (its own link), `O(log n)` once it has been removed (a search from
    /// its key). A cursor, as `crossbeam_skiplist`'s `Entry::next`.
    ///
    /// ```
    /// # if vvmalloc::LOOM_BUILD { return; }
    /// use vvmalloc::SkipList;
    /// let m: SkipList<u8, ()> = [(1, ()), (3, ()), (5, ())].into_iter().collect();
    /// let e = m.get(&3).unwrap();
    /// assert_eq!(e.next().map(|n| *n.key()), Some(5));
    /// assert_eq!(e.prev().map(|p| *p.key()), Some(1));
    /// e.remove(); // still a place to move from
    /// assert_eq!(e.next().map(|n| *n.key()), Some(5));
    /// ```
    pub fn next(&self) -> Option<Ref<'a, K, V, R>> {
        self.list.successor(self)
    }

    /// The entry before this one: the last with a smaller key, at the
    /// moment of the call. Expected `O(log n)` (a floor search: the list
    /// has no backward links). See [`next`](Self::next).
    ///
    /// ```
    /// # if vvmalloc::LOOM_BUILD { return; }
    /// use vvmalloc::SkipList;
    /// let m: SkipList<u8, ()> = [(1, ()), (3, ())].into_iter().collect();
    /// assert_eq!(m.last().unwrap().prev().map(|p| *p.key()), Some(1));
    /// assert!(m.first().unwrap().prev().is_none());
    /// ```
    pub fn prev(&self) -> Option<Ref<'a, K, V, R>> {
        self.list.predecessor(self)
    }

    /// Moves this `Ref` to the [`next`](Self::next) entry; returns whether
    /// there was one (if not, it stays where it is).
    ///
    /// ```
    /// # if vvmalloc::LOOM_BUILD { return; }
    /// use vvmalloc::SkipList;
    /// let m: SkipList<u8, ()> = (0..4).map(|k| (k, ())).collect();
    /// let mut e = m.first().unwrap();
    /// let mut keys = vec![*e.key()];
    /// while e.move_next() {
    ///     keys.push(*e.key());
    /// }
    /// assert_eq!(keys, [0, 1, 2, 3]);
    /// ```
    pub fn move_next(&mut self) -> bool {
        match self.next() {
            Some(n) => {
                *self = n;
                true
            }
            None => false,
        }
    }

    /// Moves this `Ref` to the [`prev`](Self::prev) entry; returns whether
    /// there was one (if not, it stays where it is).
    ///
    /// ```
    /// # if vvmalloc::LOOM_BUILD { return; }
    /// use vvmalloc::SkipList;
    /// let m: SkipList<u8, ()> = (0..3).map(|k| (k, ())).collect();
    /// let mut e = m.last().unwrap();
    /// assert!(e.move_prev() && e.move_prev());
    /// assert_eq!(*e.key(), 0);
    /// assert!(!e.move_prev());
    /// ```
    pub fn move_prev(&mut self) -> bool {
        match self.prev() {
            Some(p) => {
                *self = p;
                true
            }
            None => false,
        }
    }

    /// A second, independent protection of this entry, if it has not been
    /// removed yet: a `Ref` that stays valid when this one is dropped. (A
    /// removed entry's node may already be retired, and a new protection
    /// announced now would not hold it: hazard scans that ran before the
    /// announcement, or epochs sealed before the pin, do not see it.)
    pub(super) fn again(&self) -> Option<Ref<'a, K, V, R>> {
        let guard = self.list.domain.pin();
        let mut shield = guard.shield();
        let node = self.node.as_ptr();
        // SAFETY: (1) `self` protects `node` for the whole call; (2) a node
        // is retired only after its level-0 mark: the remover marks
        // `next[0]` before its `release`, and `refs` reaches zero only after
        // both parties' (module docs).
        let live = unsafe {
            shield.protect_live(node, || {
                // SAFETY: protected by `self`; level 0 exists.
                let next = Node::next(node, 0);
                // Relaxed: `protect_live` orders this load after the
                // protection (its fence, or the pin's); only the mark bit
                // is used.
                !is_marked(next.load(Ordering::Relaxed)) // ordered by protect_live's fence or pin
            })
        };
        live.then(|| Ref {
            list: self.list,
            node: self.node,
            _shield: shield,
            _guard: guard,
        })
    }

    /// Removes this entry, if it is still in the map; returns whether this
    /// call removed it. Of concurrent calls (and `remove`s of its key) at
    /// most one returns `true`: this is how a free index takes a block it
    /// found with a ceiling search.
    ///
    /// ```
    /// # if vvmalloc::LOOM_BUILD { return; }
    /// use vvmalloc::SkipList;
    /// let m: SkipList<u8, &str> = [(1, "a")].into_iter().collect();
    /// let e = m.first().unwrap();
    /// assert!(e.remove());
    /// assert!(!e.remove());
    /// assert!(m.is_empty());
    /// assert_eq!(*e.value(), "a"); // still readable: it is protected
    /// ```
    pub fn remove(&self) -> bool {
        let list = self.list;
        let node = self.node.as_ptr();
        // SAFETY: protected by this `Ref`.
        if !unsafe { mark_tower(node, 0) } {
            return false;
        }
        let mut c = Cursor::new(&list.domain);
        // SAFETY: our mark removed the node; `self` keeps it protected
        // through the clean-up.
        unsafe { list.finish_removal(&mut c, node) };
        true
    }
}

/// A set's entry (a [`SkipSet`]'s, or a map's with `()` values) derefs to
/// its key, as `crossbeam_skiplist`'s set entries' `value()` gives it.
///
/// ```
/// # if vvmalloc::LOOM_BUILD { return; }
/// use vvmalloc::SkipSet;
/// let s: SkipSet<String> = ["a".to_string()].into_iter().collect();
/// let e = s.first().unwrap();
/// assert_eq!(e.len(), 1); // `String::len`, through `Deref`
/// assert_eq!(*e, "a");
/// ```
impl<K, R: Reclaim> core::ops::Deref for Ref<'_, K, (), R> {
    type Target = K;

    fn deref(&self) -> &K {
        self.key()
    }
}

impl<K: fmt::Debug, V: fmt::Debug, R: Reclaim> fmt::Debug for Ref<'_, K, V, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ref")
            .field("key", self.key())
            .field("value", self.value())
            .finish()
    }
}

impl<K, V, R> SkipList<K, V, R>
where
    K: 'static,
    V: 'static,
    R: Reclaim,
{
    /// An empty map in the scheme's process-wide domain. A `const fn`
    /// (except under `cfg(loom)`, where it uses a domain of its own).
    ///
    /// ```
    /// # if vvmalloc::LOOM_BUILD { return; }
    /// use vvmalloc::SkipList;
    /// let map: SkipList<u64, u64> = SkipList::new();
    /// map.insert(1, 2);
    /// assert_eq!(map.len(), 1);
    /// ```
    #[cfg(not(loom))]
    pub const fn new() -> Self {
        Self::with_domain(Domain::global())
    }

    /// An empty map in a domain of its own (`cfg(loom)` has no process-wide
    /// domain).
    #[cfg(loom)]
    pub fn new() -> Self {
        Self::with_domain(Domain::new())
    }

    /// An empty map that retires its nodes into `domain`.
    ///
    /// ```
    /// # if vvmalloc::LOOM_BUILD { return; }
    /// use vvmalloc::reclaim::{Domain, Hazard};
    /// use vvmalloc::SkipList;
    /// let m: SkipList<u64, u64, Hazard> = SkipList::with_domain(Domain::global());
    /// assert!(m.domain().is_global());
    /// ```
    #[cfg(not(loom))]
    pub const fn with_domain(domain: Domain<R>) -> Self {
        Self::from_domain(domain)
    }

    /// An empty map that retires its nodes into `domain`.
    #[cfg(loom)]
    pub fn with_domain(domain: Domain<R>) -> Self {
        Self::from_domain(domain)
    }
}

impl<K, V, R: Reclaim> SkipList<K, V, R> {
    /// An empty map with a reclamation domain of its own: every entry it
    /// removes is freed when the map is dropped, at the latest, so keys and
    /// values need not be `'static`.
    ///
    /// ```
    /// # if vvmalloc::LOOM_BUILD { return; }
    /// use vvmalloc::SkipList;
    /// let local = String::from("borrowed");
    /// let m: SkipList<u8, &String> = SkipList::with_own_domain();
    /// m.insert(1, &local);
    /// assert!(!m.domain().is_global());
    /// ```
    pub fn with_own_domain() -> Self {
        Self::from_domain(Domain::new())
    }

    #[cfg(not(loom))]
    const fn from_domain(domain: Domain<R>) -> Self {
        Self {
            head: [const { AtomicPtr::new(ptr::null_mut()) }; MAX_HEIGHT],
            max_height: AtomicUsize::new(1),
            len: CachePadded(AtomicIsize::new(0)),
            domain,
            _entries: PhantomData,
        }
    }

    #[cfg(loom)]
    fn from_domain(domain: Domain<R>) -> Self {
        Self {
            head: core::array::from_fn(|_| AtomicPtr::new(ptr::null_mut())),
            max_height: AtomicUsize::new(1),
            len: CachePadded(AtomicIsize::new(0)),
            domain,
            _entries: PhantomData,
        }
    }

    /// The domain the map retires its nodes into.
    ///
    /// ```
    /// # if vvmalloc::LOOM_BUILD { return; }
    /// use vvmalloc::SkipList;
    /// let m: SkipList<u8, u8> = SkipList::new();
    /// assert!(m.domain().is_global());
    /// ```
    pub fn domain(&self) -> &Domain<R> {
        &self.domain
    }

    /// The number of entries.
    ///
    /// Exact when no insert or remove is in flight. Under concurrent updates
    /// it is a counter updated just after each operation's linearization
    /// point, so it may lag behind by the operations in flight (it never
    /// goes below zero). `O(1)`.
    ///
    /// ```
    /// # if vvmalloc::LOOM_BUILD { return; }
    /// use vvmalloc::SkipList;
    /// let m: SkipList<_, _> = (0..5).map(|k| (k, ())).collect();
    /// assert_eq!(m.len(), 5);
    /// ```
    pub fn len(&self) -> usize {
        // Relaxed: a statistic; no memory is read through it.
        self.len.0.load(Ordering::Relaxed).max(0) as usize
    }

    /// Whether the map has no entries. Like [`len`](Self::len), exact when
    /// no update is in flight.
    ///
    /// ```
    /// # if vvmalloc::LOOM_BUILD { return; }
    /// use vvmalloc::SkipList;
    /// let m: SkipList<u8, u8> = SkipList::new();
    /// assert!(m.is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl<K, V, R: Reclaim> Drop for SkipList<K, V, R> {
    fn drop(&mut self) {
        // Relaxed: `&mut self` excludes every other thread.
        let mut cur = untagged(self.head[0].load(Ordering::Relaxed));
        // A loop, so a long map cannot overflow the stack. Every node
        // reachable at level 0 is unmarked (removers unlink before they
        // finish) and so not retired; each is freed once.
        while !cur.is_null() {
            // SAFETY: live, level 0 exists.
            let next = unsafe { Node::next(cur, 0) }.load(Ordering::Relaxed);
            debug_assert!(!is_marked(next), "a removed node still linked at drop");
            // SAFETY: reachable only from the map, which is being dropped; no
            // `Ref` exists (they borrow the map); freed once.
            unsafe { Node::free(cur) };
            cur = untagged(next);
        }
        // The domain field drops next: with an own domain that frees every
        // node retired into it.
    }
}

impl<K, V, R> fmt::Debug for SkipList<K, V, R>
where
    K: Ord + Send + fmt::Debug,
    V: Send + fmt::Debug,
    R: Reclaim,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut m = f.debug_map();
        for e in self.iter() {
            m.entry(e.key(), e.value());
        }
        m.finish()
    }
}

impl<K, V, R> FromIterator<(K, V)> for SkipList<K, V, R>
where
    K: Ord + Send + 'static,
    V: Send + 'static,
    R: Reclaim,
{
    /// Inserts each pair; a repeated key keeps its last value, as with
    /// `BTreeMap`.
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        let map = Self::new();
        for (k, v) in iter {
            map.insert(k, v);
        }
        map
    }
}

impl<K, V, R> Extend<(K, V)> for SkipList<K, V, R>
where
    K: Ord + Send,
    V: Send,
    R: Reclaim,
{
    /// Inserts each pair, replacing existing values.
    fn extend<I: IntoIterator<Item = (K, V)>>(&mut self, iter: I) {
        for (k, v) in iter {
            self.insert(k, v);
        }
    }
}

impl<K, V, R> Default for SkipList<K, V, R>
where
    K: 'static,
    V: 'static,
    R: Reclaim,
{
    /// An empty map, as [`SkipList::new`].
    fn default() -> Self {
        Self::new()
    }
}
