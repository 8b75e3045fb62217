//! The algorithm (Michael's search, which unlinks marked nodes; the
//! removal's hand-offs) and the map's operations on it.

use core::borrow::Borrow;
use core::marker::PhantomData;
use core::mem;
use core::ops::{Bound, RangeBounds};
use core::ptr::{self, NonNull};

use crate::raw::Liveness;
use crate::reclaim::{Guard, Reclaim};
use crate::sync::{AtomicPtr, Ordering};

use super::node::{is_marked, marked, unmarked, Node, MARK, POPPED, RESERVED, TAGS};
use super::{Iter, List, Position, Range, Ref};

/// An entry, and (when the step could take one with the same validation)
/// a second protection of it for an iterator to keep.
pub(super) type Kept<'a, K, V, R> = (Ref<'a, K, V, R>, Option<Ref<'a, K, V, R>>);

impl<K, V, R> List<K, V, R>
where
    K: Ord + Send,
    V: Send,
    R: Reclaim,
{
    /// The first unmarked node whose key satisfies `stop`, unlinking every
    /// marked node met on the way (Michael's `find`). `stop` must be
    /// monotone along increasing keys.
    pub(super) fn search<'a>(
        &'a self,
        guard: Guard<'a, R>,
        stop: impl Fn(&K) -> bool,
    ) -> Position<'a, K, V, R> {
        let mut prev_shield = guard.shield();
        let mut cur_shield = guard.shield();
        let mut next_shield = guard.shield();
        'retry: loop {
            let mut prev: *const AtomicPtr<Node<K, V>> = &self.head;
            let mut prev_node: *mut Node<K, V> = ptr::null_mut();
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
                        prev_node,
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
                            prev_node,
                            cur,
                            next,
                            guard,
                            prev_shield,
                            cur_shield,
                            next_shield,
                        };
                    }
                    prev = &node.next;
                    prev_node = cur;
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
    pub(super) fn find<'a, Q>(&'a self, guard: Guard<'a, R>, key: &Q) -> Position<'a, K, V, R>
    where
        K: Borrow<Q>,
        Q: Ord + ?Sized,
    {
        self.search(guard, |k| k.borrow() >= key)
    }

    /// Whether `pos.cur` holds `key`.
    pub(super) fn holds<Q>(pos: &Position<'_, K, V, R>, key: &Q) -> bool
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
            prev_node: _,
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
            last: None,
        }
    }

    /// An iterator over the entries whose keys lie in `range`, in increasing
    /// order, with the guarantees of [`iter`](Self::iter). Finding the start
    /// is `O(position)`, as every search of a list. Forward only: see the
    /// [module docs](crate::list) for why there is no `next_back`.
    ///
    /// ```
    /// # if vvmalloc::LOOM_BUILD { return; }
    /// use vvmalloc::List;
    /// let m: List<u32, ()> = (0..10).map(|k| (k, ())).collect();
    /// assert_eq!(m.range(3..6).map(|e| *e.key()).collect::<Vec<_>>(), [3, 4, 5]);
    /// assert_eq!(m.range(8..).count(), 2);
    /// ```
    pub fn range<Q, B>(&self, range: B) -> Range<'_, Q, B, K, V, R>
    where
        K: Borrow<Q>,
        Q: Ord + ?Sized,
        B: RangeBounds<Q>,
    {
        Range {
            inner: self.iter(),
            range,
            _key: PhantomData,
        }
    }

    /// The entry for `key`, inserting `value` if the key is absent (then
    /// the returned entry is the new one; otherwise `value` is dropped).
    ///
    /// ```
    /// # if vvmalloc::LOOM_BUILD { return; }
    /// use vvmalloc::List;
    /// let m: List<u8, &str> = List::new();
    /// assert_eq!(*m.get_or_insert(1, "a").value(), "a");
    /// assert_eq!(*m.get_or_insert(1, "b").value(), "a");
    /// ```
    pub fn get_or_insert(&self, key: K, value: V) -> Ref<'_, K, V, R> {
        self.get_or_insert_with(key, || value)
    }

    /// The entry for `key`, inserting `make()` if the key is absent; `make`
    /// is called at most once, and not when the key is present.
    ///
    /// ```
    /// # if vvmalloc::LOOM_BUILD { return; }
    /// use vvmalloc::List;
    /// let m: List<u8, String> = List::new();
    /// m.insert(1, "a".into());
    /// assert_eq!(m.get_or_insert_with(1, || unreachable!()).value(), "a");
    /// assert_eq!(m.get_or_insert_with(2, || "b".into()).value(), "b");
    /// ```
    pub fn get_or_insert_with(&self, key: K, make: impl FnOnce() -> V) -> Ref<'_, K, V, R> {
        if let Some(e) = self.get(&key) {
            return e;
        }
        let (mut key, mut value) = (key, make());
        loop {
            match self.try_insert(key, value) {
                Ok(e) => return e,
                Err((k, v)) => match self.get(&k) {
                    Some(e) => return e,
                    // Removed again in between: try once more.
                    None => (key, value) = (k, v),
                },
            }
        }
    }

    /// Removes every entry, one `pop_first` at a time. Not atomic: entries
    /// inserted meanwhile may stay.
    ///
    /// ```
    /// # if vvmalloc::LOOM_BUILD { return; }
    /// use vvmalloc::List;
    /// let m: List<u32, ()> = (0..10).map(|k| (k, ())).collect();
    /// m.clear();
    /// assert!(m.is_empty() && m.first().is_none());
    /// ```
    pub fn clear(&self) {
        while self.pop_first().is_some() {}
    }

    /// A second, independent protection of `entry`, if it has not been
    /// removed yet (see the skip list's `Ref::again`: a removed node may be
    /// retired already, out of reach of a protection announced now).
    pub(super) fn again<'a>(&'a self, entry: &Ref<'a, K, V, R>) -> Option<Ref<'a, K, V, R>> {
        let guard = self.domain.pin();
        let mut shield = guard.shield();
        let node = entry.node.as_ptr();
        // SAFETY: (1) `entry` protects `node` for the whole call; (2) a node
        // is retired only by the CAS that unlinks it, after it was marked.
        let live = unsafe {
            shield.protect_live(node, || {
                // Relaxed: `protect_live` orders this load after the
                // protection (its fence, or the pin's); only the mark bit
                // is used.
                !is_marked((*node).next.load(Ordering::Relaxed)) // ordered by protect_live's fence or pin
            })
        };
        live.then(|| Ref {
            node: entry.node,
            _shield: shield,
            _guard: guard,
        })
    }

    /// The entry after `entry`: its unmarked successor, or, when `entry` has
    /// been deleted meanwhile, the first entry with a greater key. With it,
    /// a second protection of it for the iterator to keep, taken with the
    /// same validation (one fence with hazard pointers); `None` in its place
    /// when the entry came from a search (the caller takes it with
    /// `again`).
    pub(super) fn successor_kept<'a>(
        &'a self,
        entry: &Ref<'a, K, V, R>,
    ) -> Option<Kept<'a, K, V, R>> {
        let (guard, kept_guard) = (self.domain.pin(), self.domain.pin());
        let (mut shield, mut kept_shield) = (guard.shield(), kept_guard.shield());
        // SAFETY: `entry` keeps its node protected.
        let node = unsafe { entry.node.as_ref() };
        // Under loom: checks it was not reclaimed.
        node.liveness.check();
        // Acquire: pairs with the Release CAS that linked the successor.
        let mut next = node.next.load(Ordering::Acquire); // pairs with the linking Release CAS
                                                          // Validated against `node.next`: while it holds the same unmarked
                                                          // pointer the node is in the list, so the successor is reachable
                                                          // and not retired.
        while let Err(now) = shield.try_protect_pair(&mut kept_shield, next, &node.next) {
            next = now;
        }
        if is_marked(next) {
            drop((shield, kept_shield, kept_guard));
            let key = entry.key();
            return self
                .search(guard, |k| k > key)
                .into_ref()
                .map(|r| (r, None));
        }
        let succ = NonNull::new(next)?;
        Some((
            Ref {
                node: succ,
                _shield: shield,
                _guard: guard,
            },
            Some(Ref {
                node: succ,
                _shield: kept_shield,
                _guard: kept_guard,
            }),
        ))
    }
}
