//! A lock-free ordered list: Harris's algorithm (T. L. Harris, *A Pragmatic
//! Implementation of Non-Blocking Linked-Lists*, DISC 2001) in the form Maged
//! M. Michael gave it (*High Performance Dynamic Lock-Free Hash Tables and
//! List-Based Sets*, SPAA 2002), which is safe with hazard pointers.
//!
//! # Structure and invariants
//!
//! `head` points to the first node or is null. Each node holds a key, a value
//! and `next`, whose lowest bit is the node's *mark*. Keys strictly increase
//! along the unmarked nodes reachable from `head`; these nodes are the
//! contents of the map.
//!
//! - A node is published once, by a CAS on its predecessor's `next` (or on
//!   `head`); its key and value are never written again.
//! - A node is removed in two steps. *Logical* deletion sets the mark of its
//!   `next` (one CAS); a marked `next` never changes again. *Physical*
//!   deletion unlinks it, by a CAS of the predecessor's `next` from the node
//!   to its successor; a CAS on a marked `next` fails, so nothing is ever
//!   inserted after a deleted node (Harris's fix for the lost insert).
//! - The thread whose unlinking CAS succeeds retires the node, so each node
//!   is retired once, after it is unreachable.
//! - `pop_first` first *reserves* the first node `n` by tagging `head` (a CAS
//!   from `n` to `n | RESERVED`), then marks `n` with a `POPPED` tag. While
//!   `head` is reserved no insert can link before `n` (its CAS expects an
//!   untagged `head`), so `n` is still the smallest key when it is marked.
//!   Whoever meets a reserved `head` helps: it marks `n` and unlinks it.
//!   Without the reservation a `pop_first` could take a key after a smaller
//!   one was inserted and seen (the loom model
//!   `pop_first_races_smaller_insert` shows it).
//!
//! # Traversal (Michael)
//!
//! A traversal keeps three protected pointers: `prev` (the node whose `next`
//! it came through, or `head`), `cur` and `next`. After protecting `next` it
//! checks that `cur.next` still holds it and that `prev` still points to `cur`
//! unmarked: then `cur` was in the list when `next` was protected, so `next`
//! was not yet retired. When it meets a marked `cur` it unlinks it (or starts
//! again) instead of walking through it, so it never follows a pointer out of
//! a node that may already be retired. That is what makes the list safe with
//! hazard pointers, and it bounds the hazards a thread holds at three.
//!
//! # Linearization points
//!
//! - `insert` that inserts: the CAS that links the node.
//! - `insert` that finds the key, `get`, `contains`, `lower_bound`, `first`:
//!   the load of `prev` that confirmed the node was present, unmarked.
//! - `remove` that removes: the CAS that marks the node; `pop_first`: the
//!   CAS that marks the node, done while `head` is reserved.
//! - an operation that finds nothing: the load that saw the end of the list
//!   or a greater key, with `prev` confirmed unmarked.
//! - `last`, `upper_bound`: the load that saw the end of the list (or a
//!   greater key) through the found node's unmarked `next`; `pop_last`: the
//!   CAS that marks the last node, which succeeds only while its `next` is
//!   still null.
//!
//! # What a singly linked list offers, and what it does not
//!
//! Everything at the front is `O(1)`-ish; everything else walks from
//! `head`, `O(n)`: `get`, `lower_bound`, and also `last`, `upper_bound` and
//! `pop_last` (offered, linearizable, and as costly as a full walk). There
//! is no backward iteration (`next_back`, `.rev()`): with no backward
//! links each backward step would be a walk from `head`, `O(n^2)` for a
//! pass; collect a forward pass and reverse it, or use
//! [`SkipList`](crate::SkipList), whose backward steps are `O(log n)`.

use core::fmt;
use core::marker::PhantomData;
use core::ptr::{self, NonNull};

use crate::reclaim::{Domain, Epoch, Guard, Reclaim, Shield};
use crate::sync::{AtomicIsize, AtomicPtr, Ordering};

use node::{is_marked, unmarked, Node, TAGS};

mod back;
mod iter;
mod map;
mod node;
#[cfg(loom)]
mod seeded;
mod set;

pub use iter::{Iter, Range};
pub use set::ListSet;

/// A lock-free ordered map: Harris's list with Michael's traversal, generic
/// over the reclamation scheme.
///
/// Keys are kept in increasing order and need only [`Ord`]. All operations
/// are lock-free and linearizable; iteration is weakly consistent (see
/// [`iter`](Self::iter)). Operations take `O(n)` steps: the list is meant for
/// small maps and as an address-ordered free index (first fit through
/// [`lower_bound`](Self::lower_bound)); the skip list is the fast map.
///
/// Values are reached through a [`Ref`], which keeps its entry protected (a
/// pinned epoch or a hazard pointer) for as long as it lives and cannot
/// outlive the list. A removed entry's key and value are dropped when the last
/// protection goes, by the reclamation scheme.
///
/// # `'static` and domains
///
/// With the process-wide domain ([`List::new`]) an entry removed from the
/// list may be dropped after the list itself is gone, so keys and values must
/// be `'static`. [`List::with_own_domain`] gives the list a domain of its own
/// that is dropped with it, freeing every removed entry then, so it takes
/// borrowed keys and values too.
///
/// # Examples
///
/// ```
/// # if vvmalloc::LOOM_BUILD { return; }
/// use vvmalloc::List;
///
/// let map: List<u32, &str> = List::new();
/// assert!(map.insert(3, "c"));
/// assert!(map.insert(1, "a"));
/// assert!(!map.insert(1, "again")); // no overwrite
/// assert_eq!(*map.get(&1).unwrap().value(), "a");
///
/// // First fit: the first entry with a key of at least 2.
/// let e = map.lower_bound(std::ops::Bound::Included(&2)).unwrap();
/// assert_eq!((*e.key(), *e.value()), (3, "c"));
/// drop(e);
///
/// assert_eq!(map.remove(&1).map(|e| *e.value()), Some("a"));
/// assert_eq!(map.iter().map(|e| *e.key()).collect::<Vec<_>>(), [3]);
/// ```
///
/// Hazard pointers, borrowed keys:
///
/// ```
/// # if vvmalloc::LOOM_BUILD { return; }
/// use vvmalloc::reclaim::Hazard;
/// use vvmalloc::List;
///
/// let names = vec![String::from("b"), String::from("a")];
/// let map: List<&str, usize, Hazard> = List::with_own_domain();
/// for (i, n) in names.iter().enumerate() {
///     map.insert(n.as_str(), i);
/// }
/// assert_eq!(map.first().map(|e| *e.key()), Some("a"));
/// ```
pub struct List<K, V, R: Reclaim = Epoch> {
    head: AtomicPtr<Node<K, V>>,
    /// Successful inserts minus successful removes.
    len: AtomicIsize,
    domain: Domain<R>,
    /// The list owns its keys and values.
    _entries: PhantomData<(K, V)>,
}

// SAFETY: sending the list sends its entries (`K: Send, V: Send`); entries
// removed through one thread may have been inserted by another, and `Ref`s
// on several threads share `&K` and `&V` (`Sync`).
unsafe impl<K: Send + Sync, V: Send + Sync, R: Reclaim> Send for List<K, V, R> {}
// SAFETY: through `&List` threads share `&K`/`&V` (`Sync`) and drop entries
// other threads inserted (`Send`).
unsafe impl<K: Send + Sync, V: Send + Sync, R: Reclaim> Sync for List<K, V, R> {}

/// A protected entry of a [`List`] (or [`ListSet`]): its key and value stay
/// valid for as long as the `Ref` lives, even if the entry is removed
/// meanwhile.
///
/// A `Ref` holds its own protection: with [`Epoch`] it keeps the thread
/// pinned (so holding one for long delays reclamation for every thread), with
/// [`Hazard`](crate::reclaim::Hazard) it holds one hazard pointer. It borrows
/// the list, so it cannot outlive it, and it is not `Send`.
///
/// ```compile_fail
/// use vvmalloc::List;
/// let map: List<u8, u8> = List::new();
/// map.insert(1, 1);
/// let e = map.get(&1).unwrap();
/// drop(map); // error: `map` is still borrowed by `e`
/// let _ = e.value();
/// ```
pub struct Ref<'a, K, V, R: Reclaim = Epoch> {
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
    /// use vvmalloc::List;
    /// let m: List<i32, ()> = [(7, ())].into_iter().collect();
    /// assert_eq!(*m.first().unwrap().key(), 7);
    /// ```
    pub fn key(&self) -> &K {
        // SAFETY: the node is protected by `_shield`/`_guard` for the `Ref`'s
        // life, and its key is never written after publication.
        unsafe { &self.node.as_ref().key }
    }

    /// The entry's value.
    ///
    /// ```
    /// # if vvmalloc::LOOM_BUILD { return; }
    /// use vvmalloc::List;
    /// let m: List<i32, char> = [(7, 'x')].into_iter().collect();
    /// assert_eq!(*m.get(&7).unwrap().value(), 'x');
    /// ```
    pub fn value(&self) -> &V {
        // SAFETY: as in `key`.
        unsafe { &self.node.as_ref().value }
    }

    /// Whether the entry has been removed from the list (it may have been
    /// removed by the time the answer is used).
    ///
    /// ```
    /// # if vvmalloc::LOOM_BUILD { return; }
    /// use vvmalloc::List;
    /// let m: List<i32, ()> = [(1, ())].into_iter().collect();
    /// let e = m.get(&1).unwrap();
    /// assert!(!e.is_removed());
    /// m.remove(&1);
    /// assert!(e.is_removed());
    /// ```
    pub fn is_removed(&self) -> bool {
        // SAFETY: as in `key`.
        let node = unsafe { self.node.as_ref() };
        // Relaxed: a snapshot of the mark; nothing is read through it.
        is_marked(node.next.load(Ordering::Relaxed))
    }
}

/// A set's entry (a [`ListSet`]'s, or a list's with `()` values) derefs to
/// its key.
///
/// ```
/// # if vvmalloc::LOOM_BUILD { return; }
/// use vvmalloc::ListSet;
/// let s: ListSet<String> = ["ab".to_string()].into_iter().collect();
/// let e = s.first().unwrap();
/// assert_eq!(e.len(), 2); // `String::len`, through `Deref`
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

/// Where a search stopped: `cur` is the first unmarked node that satisfied
/// the search (or null at the end), `prev` the `next` field (or `head`) that
/// pointed to it, unmarked, when last checked.
struct Position<'a, K, V, R: Reclaim> {
    prev: *const AtomicPtr<Node<K, V>>,
    /// The node that owns `prev` (null: `prev` is `head`).
    prev_node: *mut Node<K, V>,
    cur: *mut Node<K, V>,
    /// `cur`'s successor, unmarked; meaningless when `cur` is null.
    next: *mut Node<K, V>,
    guard: Guard<'a, R>,
    /// Protects the node that owns `prev` (nothing when `prev` is `head`).
    /// Held, never read: its protection is what keeps `prev` valid.
    #[allow(dead_code)]
    prev_shield: Shield<'a, R>,
    cur_shield: Shield<'a, R>,
    /// Protects `next`. Held, never read.
    #[allow(dead_code)]
    next_shield: Shield<'a, R>,
}

impl<'a, K, V, R: Reclaim> Position<'a, K, V, R> {
    /// The position's `cur` as a [`Ref`], if any.
    fn into_ref(self) -> Option<Ref<'a, K, V, R>> {
        Some(Ref {
            node: NonNull::new(self.cur)?,
            _shield: self.cur_shield,
            _guard: self.guard,
        })
    }

    /// The node that owns `prev` as a [`Ref`], if `prev` is not `head`.
    fn into_prev_ref(self) -> Option<Ref<'a, K, V, R>> {
        Some(Ref {
            node: NonNull::new(self.prev_node)?,
            _shield: self.prev_shield,
            _guard: self.guard,
        })
    }
}

impl<K, V, R: Reclaim> List<K, V, R>
where
    K: 'static,
    V: 'static,
{
    /// An empty list in the scheme's process-wide domain. A `const fn`
    /// (except under `cfg(loom)`, where it uses a domain of its own).
    ///
    /// ```
    /// # if vvmalloc::LOOM_BUILD { return; }
    /// use vvmalloc::List;
    /// let m: List<u64, String> = List::new();
    /// assert!(m.is_empty());
    /// ```
    #[cfg(not(loom))]
    pub const fn new() -> Self {
        Self::with_domain(Domain::global())
    }

    /// An empty list in a domain of its own (`cfg(loom)` has no process-wide
    /// domain).
    #[cfg(loom)]
    pub fn new() -> Self {
        Self::with_domain(Domain::new())
    }

    /// An empty list that retires its nodes into `domain`.
    ///
    /// ```
    /// # if vvmalloc::LOOM_BUILD { return; }
    /// use vvmalloc::reclaim::{Domain, Hazard};
    /// use vvmalloc::List;
    /// let m: List<u64, u64, Hazard> = List::with_domain(Domain::global());
    /// assert!(m.domain().is_global());
    /// ```
    #[cfg(not(loom))]
    pub const fn with_domain(domain: Domain<R>) -> Self {
        Self::from_domain(domain)
    }

    /// An empty list that retires its nodes into `domain`.
    #[cfg(loom)]
    pub fn with_domain(domain: Domain<R>) -> Self {
        Self::from_domain(domain)
    }
}

impl<K, V, R: Reclaim> List<K, V, R> {
    /// An empty list with a reclamation domain of its own: every entry it
    /// removes is freed when the list is dropped, at the latest, so keys and
    /// values need not be `'static`.
    ///
    /// ```
    /// # if vvmalloc::LOOM_BUILD { return; }
    /// use vvmalloc::List;
    /// let local = String::from("borrowed");
    /// let m: List<u8, &String> = List::with_own_domain();
    /// m.insert(1, &local);
    /// assert!(!m.domain().is_global());
    /// ```
    pub fn with_own_domain() -> Self {
        Self::from_domain(Domain::new())
    }

    #[cfg(not(loom))]
    const fn from_domain(domain: Domain<R>) -> Self {
        Self {
            head: AtomicPtr::new(ptr::null_mut()),
            len: AtomicIsize::new(0),
            domain,
            _entries: PhantomData,
        }
    }

    #[cfg(loom)]
    fn from_domain(domain: Domain<R>) -> Self {
        Self {
            head: AtomicPtr::new(ptr::null_mut()),
            len: AtomicIsize::new(0),
            domain,
            _entries: PhantomData,
        }
    }

    /// The domain the list retires its nodes into.
    ///
    /// ```
    /// # if vvmalloc::LOOM_BUILD { return; }
    /// use vvmalloc::List;
    /// let m: List<u8, u8> = List::new();
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
    /// use vvmalloc::List;
    /// let m: List<_, _> = (0..5).map(|k| (k, ())).collect();
    /// assert_eq!(m.len(), 5);
    /// ```
    pub fn len(&self) -> usize {
        // Relaxed: a statistic; no memory is read through it.
        self.len.load(Ordering::Relaxed).max(0) as usize
    }

    /// Whether the list has no entries. Like [`len`](Self::len), exact when
    /// no update is in flight.
    ///
    /// ```
    /// # if vvmalloc::LOOM_BUILD { return; }
    /// use vvmalloc::List;
    /// let m: List<u8, u8> = List::new();
    /// assert!(m.is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl<K, V, R: Reclaim> List<K, V, R> {
    /// Checks the structure's invariants: keys strictly increase along the
    /// unmarked nodes, and the count of unmarked nodes equals
    /// [`len`](Self::len). Needs `&mut self` (no concurrent updates); tests
    /// call it after their threads are joined.
    ///
    /// # Panics
    ///
    /// With a message naming the broken invariant.
    ///
    /// ```
    /// # if vvmalloc::LOOM_BUILD { return; }
    /// use vvmalloc::List;
    /// let mut m: List<u8, ()> = (0..10).map(|k| (k, ())).collect();
    /// m.remove(&3);
    /// m.check_invariants();
    /// ```
    pub fn check_invariants(&mut self)
    where
        K: Ord + fmt::Debug,
    {
        let mut count = 0;
        let mut last: Option<&K> = None;
        // Relaxed: `&mut self` excludes concurrent updates.
        let mut cur = self.head.load(Ordering::Relaxed);
        assert_eq!(cur.addr() & TAGS, 0, "head is marked or reserved");
        while !cur.is_null() {
            // SAFETY: nodes reachable from `head` are live, and `&mut self`
            // keeps them so.
            let node = unsafe { &*cur };
            // Relaxed: exclusive access, as above.
            let next = node.next.load(Ordering::Relaxed);
            if !is_marked(next) {
                if let Some(prev) = last {
                    assert!(
                        prev < &node.key,
                        "keys out of order: {prev:?} before {:?}",
                        node.key
                    );
                }
                last = Some(&node.key);
                count += 1;
            }
            cur = unmarked(next);
        }
        assert_eq!(
            count,
            self.len(),
            "len() disagrees with the nodes in the list"
        );
    }
}

impl<K, V, R: Reclaim> Drop for List<K, V, R> {
    fn drop(&mut self) {
        // Relaxed: `&mut self` excludes every other thread.
        let mut cur = unmarked(self.head.load(Ordering::Relaxed)); // exclusive: `&mut self`
                                                                   // A loop, so a long list cannot overflow the stack. Every node
                                                                   // reachable from `head` (marked ones included) is not retired: only
                                                                   // unlinked nodes are.
        while !cur.is_null() {
            // SAFETY: reachable, not retired, from `Box`, and no `Ref` can
            // exist (they borrow the list).
            let node = unsafe { Box::from_raw(cur) };
            // Relaxed: exclusive access, as above.
            cur = unmarked(node.next.load(Ordering::Relaxed));
        }
        // The domain field drops next: with an own domain that frees every
        // node retired into it.
    }
}

impl<K, V, R> fmt::Debug for List<K, V, R>
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

impl<K, V, R> FromIterator<(K, V)> for List<K, V, R>
where
    K: Ord + Send + 'static,
    V: Send + 'static,
    R: Reclaim,
{
    /// Inserts each pair; a repeated key keeps its first value.
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        let list = Self::new();
        for (k, v) in iter {
            list.insert(k, v);
        }
        list
    }
}

impl<K, V, R> Extend<(K, V)> for List<K, V, R>
where
    K: Ord + Send,
    V: Send,
    R: Reclaim,
{
    /// Inserts each pair; keys already present keep their values.
    fn extend<I: IntoIterator<Item = (K, V)>>(&mut self, iter: I) {
        for (k, v) in iter {
            self.insert(k, v);
        }
    }
}

impl<K, V, R> Default for List<K, V, R>
where
    K: 'static,
    V: 'static,
    R: Reclaim,
{
    /// An empty list, as [`List::new`].
    fn default() -> Self {
        Self::new()
    }
}
