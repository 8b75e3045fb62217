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

use core::borrow::Borrow;
use core::fmt;
use core::marker::PhantomData;
use core::mem;
use core::ops::Bound;
use core::ptr::{self, NonNull};

use crate::raw::{Liveness, Retirable};
use crate::reclaim::{Domain, Epoch, Guard, Reclaim, Shield};
use crate::sync::{AtomicIsize, AtomicPtr, Ordering};

struct Node<K, V> {
    key: K,
    value: V,
    /// The successor, with the node's mark in bit 0.
    next: AtomicPtr<Node<K, V>>,
    liveness: Liveness,
}

/// The mark bit of a `next` pointer. Nodes are at least pointer-aligned, so
/// bits 0 and 1 of a node's address are always zero.
const MARK: usize = 1;
/// With `MARK`, on a node's `next`: the node was removed by `pop_first`.
const POPPED: usize = 2;
/// On `head` only: the first node is reserved by a `pop_first`.
const RESERVED: usize = 2;
/// Every tag bit.
const TAGS: usize = 3;

#[inline(always)]
fn is_marked<T>(p: *mut T) -> bool {
    p.addr() & MARK != 0
}

#[inline(always)]
fn marked<T>(p: *mut T) -> *mut T {
    p.map_addr(|a| a | MARK)
}

#[inline(always)]
fn unmarked<T>(p: *mut T) -> *mut T {
    p.map_addr(|a| a & !TAGS)
}

// SAFETY: `reclaim` drops the node's key and value and frees its memory; the
// scheme calls it once no thread can reach the node. `Guard::retire` requires
// `Node: Send`, which holds exactly when `K: Send` and `V: Send`, the bounds
// under which dropping them on another thread is allowed.
unsafe impl<K, V> Retirable for Node<K, V> {
    unsafe fn reclaim(this: *mut Self) {
        #[cfg(loom)]
        {
            // Under loom: drop the key and value, poison the node and leak
            // it, so a late read is a loom report (see `raw::Liveness`).
            // SAFETY: the node is unreachable (condition 1) and reclaimed
            // once (2); its key and value are dropped here only.
            unsafe {
                (*this).liveness.kill();
                ptr::drop_in_place(&mut (*this).key);
                ptr::drop_in_place(&mut (*this).value);
            }
        }
        #[cfg(not(loom))]
        // SAFETY: nodes come from `Box::into_raw` in `insert`; conditions 1-2.
        drop(unsafe { Box::from_raw(this) });
    }
}

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

impl<K, V, R> List<K, V, R>
where
    K: Ord + Send,
    V: Send,
    R: Reclaim,
{
    /// The first unmarked node whose key satisfies `stop`, unlinking every
    /// marked node met on the way (Michael's `find`). `stop` must be
    /// monotone along increasing keys.
    fn search<'a>(
        &'a self,
        guard: Guard<'a, R>,
        stop: impl Fn(&K) -> bool,
    ) -> Position<'a, K, V, R> {
        let mut prev_shield = guard.shield();
        let mut cur_shield = guard.shield();
        let mut next_shield = guard.shield();
        'retry: loop {
            let mut prev: *const AtomicPtr<Node<K, V>> = &self.head;
            // `head` is never marked, but may be reserved.
            let mut cur = cur_shield.protect(&self.head);
            if cur.addr() & RESERVED != 0 {
                // SAFETY: `cur_shield` protects it, validated against `head`.
                unsafe { self.help_pop(&guard, unmarked(cur)) };
                continue 'retry;
            }
            loop {
                if cur.is_null() {
                    return Position {
                        prev,
                        cur,
                        next: ptr::null_mut(),
                        guard,
                        prev_shield,
                        cur_shield,
                        next_shield,
                    };
                }
                // SAFETY: `cur` is non-null and protected by `cur_shield`; it
                // was validated against `prev` when it was protected.
                let node = unsafe { &*cur };
                node.liveness.check();
                // Acquire: pairs with the Release CAS that linked the
                // successor (or marked `cur`), so its fields are visible.
                let next = node.next.load(Ordering::Acquire);
                if next_shield.try_protect(next, &node.next).is_err() {
                    continue 'retry;
                }
                // SAFETY: `prev` is `head` or the `next` of the node that
                // `prev_shield` protects.
                let prev_ref = unsafe { &*prev };
                // Acquire: as above. `prev` must still point to `cur`,
                // unmarked: then `cur` was in the list when `next` was
                // protected, so `next` had not been retired.
                if prev_ref.load(Ordering::Acquire) != cur {
                    continue 'retry;
                }
                if !is_marked(next) {
                    if stop(&node.key) {
                        return Position {
                            prev,
                            cur,
                            next,
                            guard,
                            prev_shield,
                            cur_shield,
                            next_shield,
                        };
                    }
                    prev = &node.next;
                    mem::swap(&mut prev_shield, &mut cur_shield);
                } else {
                    // `cur` is logically deleted: unlink it.
                    let succ = unmarked(next);
                    // Release: a thread that reaches `succ` through `prev`
                    // must see its fields as we did (we acquired it above).
                    // Relaxed on failure: we start again.
                    match prev_ref.compare_exchange(cur, succ, Ordering::Release, Ordering::Relaxed)
                    {
                        // SAFETY: (1) our CAS unlinked `cur`; marked, it can
                        // never be linked again; (2) only the unlinking CAS
                        // retires it; (3) from `Box`, reclaimed by
                        // `Node::reclaim`; (4) all readers use `self.domain`.
                        Ok(_) => unsafe { guard.retire(cur) },
                        Err(_) => continue 'retry,
                    }
                }
                cur = unmarked(next);
                mem::swap(&mut cur_shield, &mut next_shield);
            }
        }
    }

    /// The position of `key`, or of where it would go.
    fn find<'a, Q>(&'a self, guard: Guard<'a, R>, key: &Q) -> Position<'a, K, V, R>
    where
        K: Borrow<Q>,
        Q: Ord + ?Sized,
    {
        self.search(guard, |k| k.borrow() >= key)
    }

    /// Whether `pos.cur` holds `key`.
    fn holds<Q>(pos: &Position<'_, K, V, R>, key: &Q) -> bool
    where
        K: Borrow<Q>,
        Q: Ord + ?Sized,
    {
        // SAFETY: a non-null `cur` is protected by `pos.cur_shield`.
        !pos.cur.is_null() && unsafe { (*pos.cur).key.borrow() == key }
    }

    /// Inserts `key` with `value` unless the key is present; returns whether
    /// it inserted. An existing entry is not overwritten; on `false` the given
    /// key and value are dropped (use [`try_insert`](Self::try_insert) to get
    /// them back).
    ///
    /// ```
    /// # if vvmalloc::LOOM_BUILD { return; }
    /// use vvmalloc::List;
    /// let m: List<u8, &str> = List::new();
    /// assert!(m.insert(1, "one"));
    /// assert!(!m.insert(1, "uno"));
    /// assert_eq!(*m.get(&1).unwrap().value(), "one");
    /// ```
    pub fn insert(&self, key: K, value: V) -> bool {
        self.try_insert(key, value).is_ok()
    }

    /// Inserts `key` with `value` unless the key is present. Returns the new
    /// entry, or the given key and value back if the key was present.
    ///
    /// ```
    /// # if vvmalloc::LOOM_BUILD { return; }
    /// use vvmalloc::List;
    /// let m: List<u8, String> = List::new();
    /// assert_eq!(m.try_insert(1, "a".into()).unwrap().value(), "a");
    /// let (k, v) = m.try_insert(1, "b".into()).unwrap_err();
    /// assert_eq!((k, v.as_str()), (1, "b"));
    /// ```
    pub fn try_insert(&self, key: K, value: V) -> Result<Ref<'_, K, V, R>, (K, V)> {
        let node = Box::into_raw(Box::new(Node {
            key,
            value,
            next: AtomicPtr::new(ptr::null_mut()),
            liveness: Liveness::new(),
        }));
        let mut guard = self.domain.pin();
        let mut own = guard.shield();
        // SAFETY: `node` is not published until the CAS below.
        unsafe { own.protect_unpublished(node) };
        loop {
            // SAFETY: `node` is ours until published; its key is immutable.
            let key = unsafe { &(*node).key };
            let pos = self.find(guard, key);
            if Self::holds(&pos, key) {
                drop((own, pos));
                // SAFETY: never published, so this thread alone owns it.
                let node = unsafe { Box::from_raw(node) };
                return Err((node.key, node.value));
            }
            // SAFETY: unpublished: `next` is private until the CAS below.
            // Relaxed: the CAS below publishes it.
            unsafe { (*node).next.store(pos.cur, Ordering::Relaxed) };
            // SAFETY: `prev` is `head` or the `next` of a protected node.
            let prev = unsafe { &*pos.prev };
            // Release: publishes the node's key, value and `next`; pairs
            // with the Acquire loads in `search`. Relaxed on failure: we
            // search again. A marked `prev` makes the CAS fail, which is
            // what keeps a node from being linked after a deleted one.
            if prev
                .compare_exchange(pos.cur, node, Ordering::Release, Ordering::Relaxed)
                .is_ok()
            {
                // Relaxed: a statistic (see `len`).
                self.len.fetch_add(1, Ordering::Relaxed);
                return Ok(Ref {
                    // SAFETY: from `Box`, so non-null.
                    node: unsafe { NonNull::new_unchecked(node) },
                    _shield: own,
                    _guard: pos.guard,
                });
            }
            guard = pos.guard;
        }
    }

    /// The entry with key `key`, if present.
    ///
    /// ```
    /// # if vvmalloc::LOOM_BUILD { return; }
    /// use vvmalloc::List;
    /// let m: List<String, u32> = List::new();
    /// m.insert("a".to_string(), 1);
    /// assert_eq!(m.get("a").map(|e| *e.value()), Some(1)); // `&str` lookups
    /// assert!(m.get("b").is_none());
    /// ```
    pub fn get<Q>(&self, key: &Q) -> Option<Ref<'_, K, V, R>>
    where
        K: Borrow<Q>,
        Q: Ord + ?Sized,
    {
        let pos = self.find(self.domain.pin(), key);
        if Self::holds(&pos, key) {
            pos.into_ref()
        } else {
            None
        }
    }

    /// Whether `key` is present.
    ///
    /// ```
    /// # if vvmalloc::LOOM_BUILD { return; }
    /// use vvmalloc::List;
    /// let m: List<u8, ()> = [(1, ())].into_iter().collect();
    /// assert!(m.contains(&1) && !m.contains(&2));
    /// ```
    pub fn contains<Q>(&self, key: &Q) -> bool
    where
        K: Borrow<Q>,
        Q: Ord + ?Sized,
    {
        self.get(key).is_some()
    }

    /// Marks `pos.cur` deleted and unlinks it; `None` if another thread
    /// marked or changed it first (the caller searches again).
    fn remove_at<'a>(
        &'a self,
        pos: Position<'a, K, V, R>,
        key: impl Fn(&K) -> bool,
    ) -> Result<Ref<'a, K, V, R>, Guard<'a, R>> {
        let Position {
            prev,
            cur,
            next,
            guard,
            cur_shield,
            // Keeps `prev`'s node protected until the function returns.
            prev_shield: _prev_shield,
            next_shield: _next_shield,
        } = pos;
        // SAFETY: the caller checked `cur` is non-null; `cur_shield`
        // protects it.
        let node = unsafe { &*cur };
        // Release: a thread that sees the mark and unlinks the node stores
        // `next` into its predecessor; the release sequence carries `next`'s
        // publication to it. Relaxed on failure: the caller searches again.
        if node
            .next
            .compare_exchange(next, marked(next), Ordering::Release, Ordering::Relaxed)
            .is_err()
        {
            return Err(guard);
        }
        // Relaxed: a statistic (see `len`).
        self.len.fetch_sub(1, Ordering::Relaxed);
        // SAFETY: `prev` is `head` or the `next` of a protected node.
        let prev = unsafe { &*prev };
        // Release: as the unlinking CAS in `search`. Relaxed on failure.
        let guard = if prev
            .compare_exchange(cur, next, Ordering::Release, Ordering::Relaxed)
            .is_ok()
        {
            // SAFETY: (1) unlinked by our CAS and marked, so never linked
            // again; (2) the unlinking CAS is the only retire; (3) from
            // `Box`; (4) one domain.
            unsafe { guard.retire(cur) };
            guard
        } else {
            // Someone changed `prev`: a search unlinks the marked node
            // (Michael's `remove` does the same).
            self.search(guard, key).guard
        };
        Ok(Ref {
            // SAFETY: non-null, checked by the caller.
            node: unsafe { NonNull::new_unchecked(cur) },
            _shield: cur_shield,
            _guard: guard,
        })
    }

    /// Removes the entry with key `key` and returns it, still protected: its
    /// key and value are dropped once the returned `Ref` and every other
    /// protection of it are gone.
    ///
    /// ```
    /// # if vvmalloc::LOOM_BUILD { return; }
    /// use vvmalloc::List;
    /// let m: List<u8, String> = List::new();
    /// m.insert(1, "one".into());
    /// let e = m.remove(&1).unwrap();
    /// assert_eq!(e.value(), "one");
    /// assert!(m.remove(&1).is_none());
    /// ```
    pub fn remove<Q>(&self, key: &Q) -> Option<Ref<'_, K, V, R>>
    where
        K: Borrow<Q>,
        Q: Ord + ?Sized,
    {
        let mut guard = self.domain.pin();
        loop {
            let pos = self.find(guard, key);
            if !Self::holds(&pos, key) {
                return None;
            }
            match self.remove_at(pos, |k| k.borrow() >= key) {
                Ok(entry) => return Some(entry),
                Err(g) => guard = g,
            }
        }
    }

    /// The entry with the smallest key.
    ///
    /// ```
    /// # if vvmalloc::LOOM_BUILD { return; }
    /// use vvmalloc::List;
    /// let m: List<u8, ()> = [(5, ()), (2, ())].into_iter().collect();
    /// assert_eq!(m.first().map(|e| *e.key()), Some(2));
    /// ```
    pub fn first(&self) -> Option<Ref<'_, K, V, R>> {
        self.search(self.domain.pin(), |_| true).into_ref()
    }

    /// Removes the entry with the smallest key and returns it (protected, as
    /// [`remove`](Self::remove) does). Linearizable: the entry is the
    /// smallest at the moment it is removed, even with concurrent inserts of
    /// smaller keys; concurrent `pop_first`s take each entry once.
    ///
    /// ```
    /// # if vvmalloc::LOOM_BUILD { return; }
    /// use vvmalloc::List;
    /// let m: List<u8, ()> = [(5, ()), (2, ())].into_iter().collect();
    /// assert_eq!(m.pop_first().map(|e| *e.key()), Some(2));
    /// assert_eq!(m.len(), 1);
    /// ```
    pub fn pop_first(&self) -> Option<Ref<'_, K, V, R>> {
        let mut guard = self.domain.pin();
        loop {
            let pos = self.search(guard, |_| true);
            if pos.cur.is_null() {
                return None;
            }
            // Nothing passes the first unmarked node: `prev` is `head`.
            debug_assert!(ptr::eq(pos.prev, &self.head));
            // AcqRel: Acquire as any load of a link; the Release half orders
            // the reservation for the helpers that read it. Relaxed on
            // failure: we search again.
            if self
                .head
                .compare_exchange(
                    pos.cur,
                    pos.cur.map_addr(|a| a | RESERVED),
                    Ordering::AcqRel, // RMW: continues the release sequence; Acquire half as above
                    Ordering::Relaxed,
                )
                .is_err()
            {
                guard = pos.guard;
                continue;
            }
            // SAFETY: protected by `pos.cur_shield`; reserved by us.
            unsafe { self.help_pop(&pos.guard, pos.cur) };
            // SAFETY: protected.
            let node = unsafe { &*pos.cur };
            // Relaxed: the node is marked by now and its `next` frozen; we
            // read the tag `help_pop` already saw.
            if node.next.load(Ordering::Relaxed).addr() & TAGS == MARK | POPPED {
                // Only one reservation of a node can succeed, so the popped
                // mark is ours.
                // Relaxed: a statistic (see `len`).
                self.len.fetch_sub(1, Ordering::Relaxed);
                return pos.into_ref();
            }
            // A `remove` marked it first: try again.
            guard = pos.guard;
        }
    }

    /// Completes the `pop_first` that reserved `node` at `head`: marks it as
    /// popped (unless a `remove` marked it first), then unlinks it from
    /// `head`, ending the reservation; the thread whose CAS unlinks it
    /// retires it.
    ///
    /// # Safety
    ///
    /// 1. `node` is protected by the caller, and `head` held
    ///    `node | RESERVED` when it was protected.
    unsafe fn help_pop(&self, guard: &Guard<'_, R>, node: *mut Node<K, V>) {
        // SAFETY: (1).
        let next = unsafe { &(*node).next };
        // Acquire: we republish the successor in `head` below.
        let mut cur = next.load(Ordering::Acquire);
        while !is_marked(cur) {
            // AcqRel: the RMW continues the successor's release sequence,
            // Acquire on failure as any load of a link.
            match next.compare_exchange_weak(
                cur,
                cur.map_addr(|a| a | MARK | POPPED),
                Ordering::AcqRel, // RMW: continues the release sequence; Acquire half as above
                Ordering::Acquire,
            ) {
                Ok(_) => break,
                Err(now) => cur = now,
            }
        }
        let succ = unmarked(cur);
        // Release: as the unlinking CAS in `search`. Relaxed on failure:
        // someone else ended the reservation (and retired the node).
        if self
            .head
            .compare_exchange(
                node.map_addr(|a| a | RESERVED),
                succ,
                Ordering::Release, // pairs with the Acquire loads of links
                Ordering::Relaxed,
            )
            .is_ok()
        {
            // SAFETY: (1) our CAS unlinked the marked node, which is never
            // linked again; (2) the unlinking CAS is the only retire; (3)
            // from `Box`; (4) one domain.
            unsafe { guard.retire(node) };
        }
    }

    /// The first entry whose key lies at or above `bound`: `Included(k)`
    /// gives the first key `>= k` (a ceiling search, what first fit needs),
    /// `Excluded(k)` the first key `> k`, `Unbounded` the first entry.
    ///
    /// ```
    /// # if vvmalloc::LOOM_BUILD { return; }
    /// use std::ops::Bound::{Excluded, Included, Unbounded};
    /// use vvmalloc::List;
    /// let m: List<u32, ()> = [(10, ()), (20, ())].into_iter().collect();
    /// assert_eq!(m.lower_bound(Included(&10)).map(|e| *e.key()), Some(10));
    /// assert_eq!(m.lower_bound(Excluded(&10)).map(|e| *e.key()), Some(20));
    /// assert_eq!(m.lower_bound(Unbounded).map(|e| *e.key()), Some(10));
    /// assert!(m.lower_bound(Excluded(&20)).is_none());
    /// ```
    pub fn lower_bound<Q>(&self, bound: Bound<&Q>) -> Option<Ref<'_, K, V, R>>
    where
        K: Borrow<Q>,
        Q: Ord + ?Sized,
    {
        let guard = self.domain.pin();
        match bound {
            Bound::Included(b) => self.search(guard, |k| k.borrow() >= b),
            Bound::Excluded(b) => self.search(guard, |k| k.borrow() > b),
            Bound::Unbounded => self.search(guard, |_| true),
        }
        .into_ref()
    }

    /// An iterator over the entries in increasing key order.
    ///
    /// Iteration is *weakly consistent*: it never yields a key twice, keys
    /// come in strictly increasing order, and every entry it yields was in
    /// the list at some moment during the iteration. Entries inserted or
    /// removed concurrently may or may not be seen; an entry present
    /// throughout is seen. Each yielded [`Ref`] holds its own protection, so
    /// it may be kept after the iterator moves on.
    ///
    /// ```
    /// # if vvmalloc::LOOM_BUILD { return; }
    /// use vvmalloc::List;
    /// let m: List<u8, char> = [(2, 'b'), (1, 'a')].into_iter().collect();
    /// let pairs: Vec<(u8, char)> = m.iter().map(|e| (*e.key(), *e.value())).collect();
    /// assert_eq!(pairs, [(1, 'a'), (2, 'b')]);
    /// ```
    pub fn iter(&self) -> Iter<'_, K, V, R> {
        Iter {
            list: self,
            next: self.first(),
        }
    }

    /// The entry after `entry`: its unmarked successor, or, when `entry` has
    /// been deleted meanwhile, the first entry with a greater key.
    fn successor<'a>(&'a self, entry: &Ref<'a, K, V, R>) -> Option<Ref<'a, K, V, R>> {
        let guard = self.domain.pin();
        let mut shield = guard.shield();
        // SAFETY: `entry` keeps its node protected.
        let node = unsafe { entry.node.as_ref() };
        // Validated against `node.next`: while it holds the same unmarked
        // pointer the node is in the list, so the successor is reachable
        // and not retired.
        let next = shield.protect(&node.next);
        if is_marked(next) {
            drop(shield);
            let key = entry.key();
            return self.search(guard, |k| k > key).into_ref();
        }
        Some(Ref {
            node: NonNull::new(next)?,
            _shield: shield,
            _guard: guard,
        })
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
    list: &'a List<K, V, R>,
    next: Option<Ref<'a, K, V, R>>,
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

#[cfg(loom)]
impl<K: Ord + Send, V: Send, R: Reclaim> List<K, V, R> {
    /// **A deliberately broken remove**, for the seeded-bug model of
    /// `loom_tests/list.rs`: it unlinks the node without marking it first,
    /// so an insert that has already chosen the node as its predecessor
    /// still links after it and is lost (the race Harris's mark prevents).
    /// Compiled only under `cfg(loom)`; never call it.
    #[doc(hidden)]
    pub fn seeded_bug_remove_without_marking<Q>(&self, key: &Q) -> bool
    where
        K: Borrow<Q>,
        Q: Ord + ?Sized,
    {
        let mut guard = self.domain.pin();
        loop {
            let pos = self.find(guard, key);
            if !Self::holds(&pos, key) {
                return false;
            }
            // SAFETY: `prev` is `head` or the `next` of a protected node.
            let prev = unsafe { &*pos.prev };
            // Release: as the unlinking CAS in `search`. Relaxed on failure.
            if prev
                .compare_exchange(pos.cur, pos.next, Ordering::Release, Ordering::Relaxed) // Release pairs with the Acquire loads of links; Relaxed on failure: retried
                .is_ok()
            {
                // Relaxed: a statistic.
                self.len.fetch_sub(1, Ordering::Relaxed);
                // SAFETY: unlinked by our CAS, retired once, from `Box`, one
                // domain. (Not marked: that is the seeded bug.)
                unsafe { pos.guard.retire(pos.cur) };
                return true;
            }
            guard = pos.guard;
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::reclaim::{Hazard, Leak};
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    fn basics<R: Reclaim>(m: List<u32, String, R>) {
        assert!(m.is_empty() && m.first().is_none() && m.pop_first().is_none());
        for k in [5, 1, 9, 3] {
            assert!(m.insert(k, k.to_string()));
        }
        assert!(!m.insert(3, "x".into()));
        assert_eq!(m.len(), 4);
        assert_eq!(m.get(&3).unwrap().value(), "3");
        assert!(m.get(&4).is_none() && !m.contains(&4) && m.contains(&9));
        assert_eq!(
            m.lower_bound(Bound::Included(&4)).map(|e| *e.key()),
            Some(5)
        );
        assert_eq!(
            m.lower_bound(Bound::Excluded(&5)).map(|e| *e.key()),
            Some(9)
        );
        assert!(m.lower_bound(Bound::Excluded(&9)).is_none());
        let keys: Vec<u32> = m.iter().map(|e| *e.key()).collect();
        assert_eq!(keys, [1, 3, 5, 9]);
        assert_eq!(m.remove(&5).unwrap().value(), "5");
        assert!(m.remove(&5).is_none());
        assert_eq!(m.pop_first().map(|e| *e.key()), Some(1));
        assert_eq!(m.first().map(|e| *e.key()), Some(3));
        assert_eq!(m.len(), 2);
        assert_eq!(format!("{m:?}"), r#"{3: "3", 9: "9"}"#);
    }

    // Tests named `*own*` use only own domains, so they free everything they
    // allocate: CI runs them under Miri with its leak check on.
    #[test]
    fn basics_epoch_own() {
        basics::<Epoch>(List::with_own_domain());
    }

    #[test]
    fn basics_hazard_own() {
        basics::<Hazard>(List::with_own_domain());
    }

    #[test]
    fn basics_global_domains_and_leak() {
        basics::<Epoch>(List::new());
        basics::<Hazard>(List::new());
        basics::<Leak>(List::new());
    }

    #[test]
    fn try_insert_gives_the_pair_back() {
        let m: List<u8, Vec<u8>, Hazard> = List::with_own_domain();
        assert_eq!(m.try_insert(1, vec![1]).unwrap().value(), &[1]);
        let (k, v) = m.try_insert(1, vec![2]).unwrap_err();
        assert_eq!((k, v), (1, vec![2]));
    }

    #[test]
    fn removed_entry_stays_readable_until_its_ref_drops_own() {
        use std::sync::Arc as Rc;
        // The count of live copies shows when the list's value is dropped:
        // only once the `Ref`s go and the domain reclaims.
        let v = Rc::new(());
        {
            let m: List<u8, Rc<()>, Hazard> = List::with_own_domain();
            m.insert(1, v.clone());
            let e = m.get(&1).unwrap();
            let removed = m.remove(&1).unwrap();
            assert!(e.is_removed() && removed.is_removed());
            assert_eq!(Rc::strong_count(e.value()), 2);
            m.domain().collect();
            assert_eq!(Rc::strong_count(&v), 2, "reclaimed while protected");
            drop((e, removed));
            m.domain().collect();
            assert_eq!(Rc::strong_count(&v), 1, "not reclaimed once unprotected");
        }
        assert_eq!(Rc::strong_count(&v), 1);
    }

    #[test]
    fn own_domain_drops_every_value_with_the_list() {
        use std::sync::Arc as Rc;
        let v = Rc::new(());
        let m: List<u32, Rc<()>, Epoch> = List::with_own_domain();
        for k in 0..50 {
            m.insert(k, v.clone());
        }
        for k in 0..25 {
            m.remove(&k);
        }
        drop(m);
        assert_eq!(Rc::strong_count(&v), 1);
    }

    #[test]
    fn borrowed_keys_with_own_domain() {
        let words: Vec<String> = ["pear", "apple", "fig"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let s: ListSet<&str, Hazard> = ListSet::with_own_domain();
        for w in &words {
            s.insert(w.as_str());
        }
        assert!(s.remove(&"fig"));
        assert_eq!(
            s.iter().map(|e| *e.key()).collect::<Vec<_>>(),
            ["apple", "pear"]
        );
        assert_eq!(format!("{s:?}"), r#"{"apple", "pear"}"#);
    }

    #[test]
    fn set_operations() {
        let mut s: ListSet<u16> = (0..10).rev().collect();
        s.extend([20, 5]);
        assert_eq!(s.len(), 11);
        assert!(s.contains(&20) && s.get(&7).is_some());
        assert_eq!(s.take(&7).map(|e| *e.key()), Some(7));
        assert_eq!(s.pop_first().map(|e| *e.key()), Some(0));
        assert_eq!(s.first().map(|e| *e.key()), Some(1));
        assert_eq!(
            s.lower_bound(Bound::Included(&10)).map(|e| *e.key()),
            Some(20)
        );
        s.check_invariants();
    }

    #[test]
    fn long_list_drops_without_recursion() {
        let n = if cfg!(miri) { 500 } else { 100_000 };
        // Inserting in decreasing order keeps each insert O(1).
        let m: List<u32, ()> = (0..n).rev().map(|k| (k, ())).collect();
        assert_eq!(m.len(), n as usize);
        drop(m);
    }

    #[test]
    fn send_sync_bounds() {
        fn is_send_sync<X: Send + Sync>() {}
        is_send_sync::<List<String, Vec<u8>, Epoch>>();
        is_send_sync::<ListSet<u64, Hazard>>();
    }

    /// One step of the model test.
    #[derive(Debug, Clone)]
    enum Step {
        Insert(u8, u16),
        Remove(u8),
        Get(u8),
        PopFirst,
        LowerBound(u8),
    }

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            (0u8..16, any::<u16>()).prop_map(|(k, v)| Step::Insert(k, v)),
            (0u8..16).prop_map(Step::Remove),
            (0u8..16).prop_map(Step::Get),
            Just(Step::PopFirst),
            (0u8..16).prop_map(Step::LowerBound),
        ]
    }

    /// Runs `steps` on the list and on a `BTreeMap`; every result and the
    /// final contents must agree.
    fn agrees_with_btreemap<R: Reclaim>(mut list: List<u8, u16, R>, steps: &[Step]) {
        let mut model = BTreeMap::new();
        let pair = |e: Ref<'_, u8, u16, R>| (*e.key(), *e.value());
        for s in steps {
            match *s {
                Step::Insert(k, v) => {
                    let fresh = !model.contains_key(&k);
                    if fresh {
                        model.insert(k, v);
                    }
                    assert_eq!(list.insert(k, v), fresh, "{s:?}");
                }
                Step::Remove(k) => {
                    assert_eq!(list.remove(&k).map(pair), model.remove(&k).map(|v| (k, v)))
                }
                Step::Get(k) => {
                    assert_eq!(list.get(&k).map(pair), model.get(&k).map(|&v| (k, v)))
                }
                Step::PopFirst => assert_eq!(list.pop_first().map(pair), model.pop_first()),
                Step::LowerBound(k) => assert_eq!(
                    list.lower_bound(Bound::Included(&k)).map(pair),
                    model.range(k..).next().map(|(&k, &v)| (k, v))
                ),
            }
            assert_eq!(list.len(), model.len());
        }
        list.check_invariants();
        let all: Vec<_> = list.iter().map(pair).collect();
        assert_eq!(all, model.into_iter().collect::<Vec<_>>());
    }

    /// Steps per case: fewer under Miri, which runs about 1000x slower.
    const STEPS: usize = if cfg!(miri) { 16 } else { 64 };

    /// 256 cases; under Miri 4, and no failure file (Miri's isolation has
    /// no working directory).
    fn config() -> ProptestConfig {
        let mut config = ProptestConfig::with_cases(if cfg!(miri) { 4 } else { 256 });
        if cfg!(miri) {
            config.failure_persistence = None;
        }
        config
    }

    proptest! {
        #![proptest_config(config())]

        #[test]
        fn model_epoch_own(steps in prop::collection::vec(step(), 0..STEPS)) {
            agrees_with_btreemap::<Epoch>(List::with_own_domain(), &steps);
        }

        #[test]
        fn model_hazard_own(steps in prop::collection::vec(step(), 0..STEPS)) {
            agrees_with_btreemap::<Hazard>(List::with_own_domain(), &steps);
        }

        #[test]
        fn model_leak(steps in prop::collection::vec(step(), 0..STEPS)) {
            agrees_with_btreemap::<Leak>(List::new(), &steps);
        }
    }
}
