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
//! - Lookups (`get`, `lower_bound`, `upper_bound`, `first`, `last`) and
//!   operations that find nothing: the load at level 0 that saw the answer's
//!   predecessor point to it (or to the end), unmarked.

use core::alloc::Layout;
use core::borrow::Borrow;
use core::cmp::Ordering as Ordering_;
use core::fmt;
use core::marker::PhantomData;
use core::mem::{self, MaybeUninit};
use core::ops::{Bound, RangeBounds};
use core::ptr::{self, NonNull};

use crate::raw::{Liveness, Retirable};
use crate::reclaim::{Domain, Epoch, Guard, Reclaim, Shield};
use crate::sync::{fence, AtomicIsize, AtomicPtr, AtomicU32, AtomicUsize, Ordering};

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

/// The mark of a `next[i]` pointer.
const MARK: usize = 1;
/// With `MARK`, on a node's `next[0]`: the node was removed by `pop_first`.
const POPPED: usize = 2;
/// On `head[0]` only: the first node is reserved by a `pop_first`.
const RESERVED: usize = 2;
/// Every tag bit. Nodes are at least 4-aligned (they hold an `AtomicUsize`).
const TAGS: usize = 3;

#[inline(always)]
fn tag<T>(p: *mut T) -> usize {
    p.addr() & TAGS
}

#[inline(always)]
fn is_marked<T>(p: *mut T) -> bool {
    p.addr() & MARK != 0
}

#[inline(always)]
fn with_tag<T>(p: *mut T, tag: usize) -> *mut T {
    p.map_addr(|a| a | tag)
}

#[inline(always)]
fn untagged<T>(p: *mut T) -> *mut T {
    p.map_addr(|a| a & !TAGS)
}

/// A node's header; its tower of `height` pointers follows it in the same
/// allocation (see [`Node::layout`]). Nodes are only handled through raw
/// pointers to the whole allocation, so that reaching the tower never goes
/// through a reference that covers the header alone.
///
/// The key comes last, next to the tower: a search reads only the key and
/// one tower slot of each node it visits, so they should share a cache line.
#[repr(C)]
struct Node<K, V> {
    value: V,
    /// The parties that must finish before the node is retired: 2 at
    /// allocation, the inserter and the remover (see the module docs).
    refs: AtomicU32,
    height: u32,
    key: K,
    liveness: Liveness,
}

impl<K, V> Node<K, V> {
    /// The layout of a node of `height` levels, and the tower's offset.
    fn layout(height: usize) -> (Layout, usize) {
        let (layout, offset) = Layout::new::<Self>()
            .extend(Layout::array::<AtomicPtr<Self>>(height).expect("tower layout"))
            .expect("node layout");
        (layout.pad_to_align(), offset)
    }

    /// A new, unpublished node with a tower of null pointers. Aborts through
    /// [`std::alloc::handle_alloc_error`] when memory runs out, as `Box` does.
    fn alloc(key: K, value: V, height: usize) -> *mut Self {
        debug_assert!((1..=MAX_HEIGHT).contains(&height));
        let (layout, offset) = Self::layout(height);
        debug_assert!(layout.align() > TAGS, "nodes must leave two tag bits");
        debug_assert_eq!(offset, Self::TOWER);
        // SAFETY: the layout has a non-zero size (it holds `refs`).
        let p = unsafe { std::alloc::alloc(layout) }.cast::<Self>();
        if p.is_null() {
            std::alloc::handle_alloc_error(layout);
        }
        // SAFETY: `p` is a fresh allocation of `layout`: the header fits at
        // offset 0 and `height` pointers at `offset`.
        unsafe {
            p.write(Node {
                value,
                refs: AtomicU32::new(2),
                height: height as u32,
                key,
                liveness: Liveness::new(),
            });
            let tower = p.cast::<u8>().add(offset).cast::<AtomicPtr<Self>>();
            for i in 0..height {
                tower.add(i).write(AtomicPtr::new(ptr::null_mut()));
            }
        }
        p
    }

    /// The node's `next` pointer at `level`.
    ///
    /// # Safety
    ///
    /// 1. `node` points to a live node (protected, or owned by the caller).
    /// 2. `level < height`.
    #[inline(always)]
    unsafe fn next<'a>(node: *mut Self, level: usize) -> &'a AtomicPtr<Self> {
        // SAFETY: (1) the node is live; (2) the tower has `height > level`
        // slots, initialized by `alloc`, at the offset `layout` gives.
        unsafe {
            debug_assert!(level < (*node).height as usize);
            &*Self::tower(node).add(level)
        }
    }

    /// The tower's offset in the allocation: the header's size rounded up
    /// to a pointer's alignment, whatever the height (`layout` agrees).
    const TOWER: usize = {
        let align = mem::align_of::<AtomicPtr<Self>>();
        (mem::size_of::<Self>() + align - 1) & !(align - 1)
    };

    /// The first slot of the node's tower.
    ///
    /// # Safety
    ///
    /// 1. `node` points to a live node.
    #[inline(always)]
    unsafe fn tower(node: *mut Self) -> *const AtomicPtr<Self> {
        // SAFETY: (1) within the node's allocation, which `alloc` sized for
        // the tower.
        unsafe { node.cast::<u8>().add(Self::TOWER).cast::<AtomicPtr<Self>>() }
    }

    /// Drops the node's key, value and tower and frees it.
    ///
    /// # Safety
    ///
    /// 1. `node` came from [`Node::alloc`] and no other thread can reach it.
    /// 2. It is freed once.
    unsafe fn free(node: *mut Self) {
        // SAFETY: (1-2) exclusive and live until the `dealloc` below.
        unsafe {
            let height = (*node).height as usize;
            let tower = Self::tower(node).cast_mut();
            for i in 0..height {
                ptr::drop_in_place(tower.add(i));
            }
            ptr::drop_in_place(node);
            std::alloc::dealloc(node.cast(), Self::layout(height).0);
        }
    }

    /// Takes the key and value back out of a node that was never published,
    /// and frees it.
    ///
    /// # Safety
    ///
    /// 1. `node` came from [`Node::alloc`] and was never published.
    unsafe fn into_entry(node: *mut Self) -> (K, V) {
        // SAFETY: (1) the node is ours alone; its key and value are read
        // once, then its memory is freed without dropping them.
        unsafe {
            let key = ptr::read(&(*node).key);
            let value = ptr::read(&(*node).value);
            let height = (*node).height as usize;
            let tower = Self::tower(node).cast_mut();
            for i in 0..height {
                ptr::drop_in_place(tower.add(i));
            }
            ptr::drop_in_place(&mut (*node).refs);
            ptr::drop_in_place(&mut (*node).liveness);
            std::alloc::dealloc(node.cast(), Self::layout(height).0);
            (key, value)
        }
    }
}

// SAFETY: `reclaim` drops the node's key and value and frees it; the scheme
// calls it once no thread can reach the node. `Guard::retire` requires
// `Node: Send`, which holds exactly when `K: Send` and `V: Send`.
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
        // SAFETY: nodes come from `Node::alloc`; conditions 1-2.
        #[cfg(not(loom))]
        unsafe {
            Node::free(this)
        };
    }
}

/// A tower height drawn from a per-thread xorshift generator: 1, then one
/// more level with probability 1/2 each, at most [`MAX_HEIGHT`].
///
/// Why 1/2 rather than 1/4: both visit about as many nodes per search, but
/// with 1/2 a search takes one step per level where 1/4 takes three, and
/// only the lowest levels miss the cache: on a million keys the 1/4 lists
/// measured about 35% slower.
#[cfg(not(loom))]
fn random_height() -> usize {
    use core::cell::Cell;
    thread_local! {
        static STATE: Cell<u32> = const { Cell::new(0) };
    }
    STATE
        .try_with(|state| {
            let mut x = state.get();
            if x == 0 {
                // Seed from the slot's address, which differs per thread.
                let addr = state as *const Cell<u32> as usize as u64;
                x = (addr.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32) as u32 | 1;
            }
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            state.set(x);
            // One zero bit per extra level: probability 1/2 each.
            (1 + x.trailing_zeros() as usize).min(MAX_HEIGHT)
        })
        // During thread-local destruction: a plain level-0 node.
        .unwrap_or(1)
}

/// Under loom every node gets two levels, so that models cover the upper
/// levels without random choices loom cannot replay; models that want
/// other heights use the hidden `*_with_height` methods.
#[cfg(loom)]
fn random_height() -> usize {
    2
}

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

impl<K, V, R> Ref<'_, K, V, R>
where
    K: Ord + Send,
    V: Send,
    R: Reclaim,
{
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

impl<K: fmt::Debug, V: fmt::Debug, R: Reclaim> fmt::Debug for Ref<'_, K, V, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ref")
            .field("key", self.key())
            .field("value", self.value())
            .finish()
    }
}

/// Marks the node's upper levels top-down, then tries to mark level 0 with
/// `MARK | extra`. Returns whether this call's CAS marked level 0, that is,
/// removed the entry.
///
/// # Safety
///
/// 1. `node` is protected by the caller.
unsafe fn mark_tower<K, V>(node: *mut Node<K, V>, extra: usize) -> bool {
    // SAFETY: (1) protected; the height is immutable.
    let height = unsafe { (*node).height as usize };
    for level in (1..height).rev() {
        // SAFETY: (1) protected; `level < height`.
        unsafe { mark_level(node, level) };
    }
    // SAFETY: as above; level 0 exists.
    let next = unsafe { Node::next(node, 0) };
    // Acquire: as any load of a `next` pointer (see `search`).
    let mut cur = next.load(Ordering::Acquire);
    loop {
        if is_marked(cur) {
            return false;
        }
        // AcqRel: an RMW continues the release sequence of the pointer's
        // publication for the threads that will unlink the node; the Release
        // half orders the upper marks above before this one. Acquire on
        // failure: we read the new value's pointee.
        match next.compare_exchange_weak(
            cur,
            with_tag(cur, MARK | extra),
            Ordering::AcqRel, // RMW: continues the release sequence; Acquire half as above
            Ordering::Acquire,
        ) {
            Ok(_) => return true,
            Err(now) => cur = now,
        }
    }
}

/// Marks the node at `level`, unless it is marked already.
///
/// # Safety
///
/// 1. `node` is protected by the caller and `level` is below its height.
unsafe fn mark_level<K, V>(node: *mut Node<K, V>, level: usize) {
    // SAFETY: (1).
    let next = unsafe { Node::next(node, level) };
    // Relaxed: only the mark bit matters here; the CAS below re-checks it.
    let mut cur = next.load(Ordering::Relaxed);
    while !is_marked(cur) {
        // Release: keeps the upper marks ordered before the level-0 mark for
        // a thread that reads them through it. Relaxed on failure: we only
        // look at the mark bit of what we read.
        match next.compare_exchange_weak(
            cur,
            with_tag(cur, MARK),
            Ordering::Release, // pairs with the Acquire loads of links
            Ordering::Relaxed,
        ) {
            Ok(_) => return,
            Err(now) => cur = now,
        }
    }
}

/// A search's state: the guard, three shields, and where the last search
/// stopped. Reused across the searches of one operation, so an operation
/// takes its hazard pointers once.
struct Cursor<'a, K, V, R: Reclaim> {
    guard: Guard<'a, R>,
    /// The last node passed at the search's level (null: `head`).
    pred: *mut Node<K, V>,
    /// `pred`'s tower, or `head`'s.
    pred_tower: *const AtomicPtr<Node<K, V>>,
    /// The first unmarked node at the search's level that satisfied the
    /// search (null: the end).
    curr: *mut Node<K, V>,
    pred_shield: Shield<'a, R>,
    curr_shield: Shield<'a, R>,
    /// Protects `curr`'s successor during the walk. Held, not read after.
    succ_shield: Shield<'a, R>,
    /// The levels `(lowest, highest)` the last search went through, whose
    /// `pred_tower` and `curr` it left in `preds` and `succs`. Unprotected
    /// (only `pred` and `curr` of the last level are): usable only where
    /// the guard alone protects (`R::GUARD_PROTECTS_ALL`).
    /// Written only where `R::GUARD_PROTECTS_ALL`, for the levels in
    /// `recorded`.
    recorded: (usize, usize),
    preds: [MaybeUninit<*const AtomicPtr<Node<K, V>>>; MAX_HEIGHT],
    succs: [MaybeUninit<*mut Node<K, V>>; MAX_HEIGHT],
}

impl<'a, K, V, R: Reclaim> Cursor<'a, K, V, R> {
    fn new(domain: &'a Domain<R>) -> Self {
        let guard = domain.pin();
        Self {
            pred: ptr::null_mut(),
            pred_tower: ptr::null(),
            curr: ptr::null_mut(),
            pred_shield: guard.shield(),
            curr_shield: guard.shield(),
            succ_shield: guard.shield(),
            guard,
            recorded: (1, 0),
            preds: [const { MaybeUninit::uninit() }; MAX_HEIGHT],
            succs: [const { MaybeUninit::uninit() }; MAX_HEIGHT],
        }
    }

    /// `curr` as a [`Ref`], if any.
    fn into_curr(self, list: &'a SkipList<K, V, R>) -> Option<Ref<'a, K, V, R>> {
        Some(Ref {
            list,
            node: NonNull::new(self.curr)?,
            _shield: self.curr_shield,
            _guard: self.guard,
        })
    }

    /// `pred` as a [`Ref`], if it is a node.
    fn into_pred(self, list: &'a SkipList<K, V, R>) -> Option<Ref<'a, K, V, R>> {
        Some(Ref {
            list,
            node: NonNull::new(self.pred)?,
            _shield: self.pred_shield,
            _guard: self.guard,
        })
    }
}

/// The result of an insert attempt.
enum Inserted<'a, K, V, R: Reclaim> {
    /// The new entry.
    New(Ref<'a, K, V, R>),
    /// The key was present (and not replaced): the entry found, and the
    /// given key and value back.
    Present(Ref<'a, K, V, R>, K, V),
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

impl<K, V, R> SkipList<K, V, R>
where
    K: Ord + Send,
    V: Send,
    R: Reclaim,
{
    /// Walks from the top level down to `level` and leaves in `c` the first
    /// unmarked node at `level` whose key satisfies `stop` (`curr`) and the
    /// node before it (`pred`), both protected, unlinking every marked node
    /// met on the way and helping a reserved head. `stop` must be monotone
    /// along increasing keys.
    fn search(&self, c: &mut Cursor<'_, K, V, R>, stop: impl Fn(&K) -> bool, level: usize) {
        // `pred` and its tower live in locals during the walk (the cursor is
        // in memory) and go to the cursor at the end.
        'retry: loop {
            let mut pred: *mut Node<K, V> = ptr::null_mut();
            let mut pred_tower: *const AtomicPtr<Node<K, V>> = self.head.as_ptr();
            // Relaxed: a hint (see `max_height`); any start level is correct.
            let mut lvl = self.max_height.load(Ordering::Relaxed).max(level + 1) - 1;
            c.recorded = (level, lvl);
            // The node the level above stopped at, still protected by
            // `curr_shield` (null: none).
            let mut above: *mut Node<K, V> = ptr::null_mut();
            loop {
                // SAFETY: `pred_tower` is `head`'s tower or that of `pred`,
                // which `pred_shield` protects and which was reached at a
                // level `>= lvl`, so its height exceeds `lvl`.
                let mut slot = unsafe { &*pred_tower.add(lvl) };
                // Acquire (here and for every `next` load): pairs with the
                // Release CAS that linked the pointee (or the RMWs that
                // continue its release sequence), so its fields are visible.
                let mut curr = slot.load(Ordering::Acquire);
                if tag(curr) != 0 {
                    if pred.is_null() && tag(curr) == RESERVED {
                        // `head[0]` is reserved by a `pop_first`: help it.
                        if c.curr_shield.try_protect(curr, slot).is_ok() {
                            // SAFETY: protected while `head[0]` pointed to
                            // it, so linked and not retired.
                            unsafe { self.help_pop(untagged(curr)) };
                        }
                    }
                    // Otherwise `pred` was marked at this level meanwhile.
                    continue 'retry;
                }
                // The node the level above stopped at needs no new
                // protection (`curr_shield` has held it since before this
                // load) and no new comparison (`stop` is a function of the
                // key).
                let mut known_stop = !curr.is_null() && curr == above;
                if !known_stop && c.curr_shield.try_protect(curr, slot).is_err() {
                    continue 'retry;
                }
                loop {
                    if curr.is_null() {
                        break;
                    }
                    // SAFETY: `curr` is protected, and was seen in an
                    // unmarked `pred.next[lvl]` after it was: it was linked
                    // at `lvl`, so not retired, and its height exceeds `lvl`.
                    let next = unsafe { Node::next(curr, lvl) };
                    // SAFETY: as above.
                    unsafe { (*curr).liveness.check() };
                    // Acquire: as above.
                    let succ = next.load(Ordering::Acquire);
                    if is_marked(succ) {
                        // `curr` is being removed: unlink it at this level.
                        // `succ` may already be unlinked, so it is used only
                        // if our CAS shows it was still reachable after it
                        // was protected.
                        if c.succ_shield.try_protect(succ, next).is_err() {
                            continue 'retry;
                        }
                        let succ = untagged(succ);
                        // Release: a thread that reaches `succ` through
                        // `pred` must see its fields as we did. Relaxed on
                        // failure: we start again.
                        match slot.compare_exchange(
                            curr,
                            succ,
                            Ordering::Release, // pairs with the Acquire loads of links
                            Ordering::Relaxed,
                        ) {
                            Ok(_) => {
                                curr = succ;
                                mem::swap(&mut c.curr_shield, &mut c.succ_shield);
                                known_stop = false;
                                continue;
                            }
                            Err(_) => continue 'retry,
                        }
                    }
                    // SAFETY: protected; keys are immutable.
                    if known_stop || stop(unsafe { &(*curr).key }) {
                        // `succ` is not needed: no protection for it.
                        break;
                    }
                    // Validated against `curr.next[lvl]`: while it holds
                    // `succ` unmarked, `curr` is linked, so `succ` is too.
                    if c.succ_shield.try_protect(succ, next).is_err() {
                        continue 'retry;
                    }
                    pred = curr;
                    // SAFETY: protected.
                    pred_tower = unsafe { Node::tower(curr) };
                    slot = next;
                    mem::swap(&mut c.pred_shield, &mut c.curr_shield);
                    curr = succ;
                    mem::swap(&mut c.curr_shield, &mut c.succ_shield);
                }
                if R::GUARD_PROTECTS_ALL {
                    c.preds[lvl].write(pred_tower);
                    c.succs[lvl].write(curr);
                }
                if lvl == level {
                    c.pred = pred;
                    c.pred_tower = pred_tower;
                    c.curr = curr;
                    return;
                }
                above = curr;
                lvl -= 1;
            }
        }
    }

    /// Completes the `pop_first` that reserved `node` at `head[0]`: marks
    /// `node` as popped (unless a `remove` marked it first), then unlinks it
    /// from `head[0]`, ending the reservation.
    ///
    /// # Safety
    ///
    /// 1. `node` is protected by the caller and `head[0]` held
    ///    `node | RESERVED` when it was protected.
    unsafe fn help_pop(&self, node: *mut Node<K, V>) {
        // SAFETY: (1).
        unsafe { mark_tower(node, POPPED) };
        // SAFETY: (1); level 0 exists.
        let next = unsafe { Node::next(node, 0) };
        // Acquire: we publish the successor in `head[0]` below.
        let succ = untagged(next.load(Ordering::Acquire));
        // Release: as the unlinking CAS in `search`. Relaxed on failure:
        // someone else ended the reservation.
        let _ = self.head[0].compare_exchange(
            with_tag(node, RESERVED),
            succ,
            Ordering::Release, // pairs with the Acquire loads of links
            Ordering::Relaxed,
        );
    }

    /// Releases one of the two parties of `node` (see the module docs);
    /// the last one retires it.
    ///
    /// # Safety
    ///
    /// 1. `node` is protected by the caller.
    /// 2. The caller is the inserter, done linking, or the remover, done with
    ///    its clean-up search; each releases once.
    unsafe fn release(&self, guard: &Guard<'_, R>, node: *mut Node<K, V>) {
        // AcqRel: the Release half publishes this party's work (links or
        // unlinks) to the party that reaches zero; the Acquire half, in that
        // party, makes the other party's work visible before the retire.
        // SAFETY: (1).
        if unsafe { (*node).refs.fetch_sub(1, Ordering::AcqRel) } == 1 {
            // SAFETY: (retire 1) both parties are done: the remover's search
            // unlinked the node at every level linked before its fence, the
            // inserter's after it, and nobody links it again; (2) only the
            // party that reaches zero retires; (3) from `Node::alloc`,
            // reclaimed by `Node::reclaim`; (4) one domain per map.
            unsafe { guard.retire(node) };
        }
    }

    /// The remover's part after its mark removed `node`: count it, unlink
    /// it at every level, release it.
    ///
    /// # Safety
    ///
    /// 1. This thread's CAS marked `node`'s level 0 (or, for `pop_first`,
    ///    the reservation this thread made).
    /// 2. `node` stays protected by the caller until this returns.
    unsafe fn finish_removal(&self, c: &mut Cursor<'_, K, V, R>, node: *mut Node<K, V>) {
        // Relaxed: a statistic (see `len`).
        self.len.0.fetch_sub(1, Ordering::Relaxed);
        // SeqCst: pairs with the fence in `link_upper`: either the inserter
        // sees our mark, or the search below sees its links.
        fence(Ordering::SeqCst);
        // SAFETY: (2) protected.
        if !(R::GUARD_PROTECTS_ALL && unsafe { self.unlink_recorded(c, node) }) {
            // SAFETY: (2) protected; keys are immutable.
            let key = unsafe { &(*node).key };
            self.search(c, |k| k >= key, 0);
        }
        // SAFETY: (2) protected; (1) we are the remover, once.
        unsafe { self.release(&c.guard, node) };
    }

    /// Unlinks the removed `node` at every level through the predecessors
    /// the cursor's last search recorded, as Herlihy and Shavit do, without
    /// a new search. Succeeds only if that search found `node` linked at
    /// every level of its tower (so its inserter had finished and links it
    /// nowhere again) and every unlinking CAS succeeds; `false` leaves the
    /// rest to a search.
    ///
    /// # Safety
    ///
    /// 1. `node` is protected and marked at every level; the caller's fence
    ///    follows the mark.
    /// 2. `R::GUARD_PROTECTS_ALL`, and the guard of `c` has been pinned
    ///    since the search that recorded the predecessors.
    unsafe fn unlink_recorded(&self, c: &Cursor<'_, K, V, R>, node: *mut Node<K, V>) -> bool {
        // SAFETY: (1) protected.
        let height = unsafe { (*node).height as usize };
        if c.recorded.0 != 0 || c.recorded.1 + 1 < height {
            return false;
        }
        for level in 0..height {
            // SAFETY: the last search wrote every level in `c.recorded`.
            if unsafe { c.succs[level].assume_init() } != node {
                return false;
            }
        }
        for level in (0..height).rev() {
            // SAFETY: (1); `level < height`.
            let next = unsafe { Node::next(node, level) };
            // Acquire: we republish the successor.
            let succ = untagged(next.load(Ordering::Acquire));
            // SAFETY: recorded above; (2) the pinned guard keeps the
            // predecessor from being freed; its height exceeds `level`.
            let slot = unsafe { &*c.preds[level].assume_init().add(level) };
            // Release: as the unlinking CAS in `search`. Relaxed on failure:
            // a search finishes the job.
            if slot
                .compare_exchange(node, succ, Ordering::Release, Ordering::Relaxed) // Release pairs with the Acquire loads of links; Relaxed on failure: retried
                .is_err()
            {
                return false;
            }
        }
        true
    }

    /// [`finish_removal`](Self::finish_removal), then the removed entry as
    /// a [`Ref`] that `own` keeps protected.
    ///
    /// # Safety
    ///
    /// 1. As `finish_removal`'s 1: this thread's mark removed `node`.
    /// 2. `own` protects `node`, which is non-null.
    unsafe fn removed_entry<'a>(
        &'a self,
        mut c: Cursor<'a, K, V, R>,
        own: Shield<'a, R>,
        node: *mut Node<K, V>,
    ) -> Ref<'a, K, V, R> {
        // SAFETY: (1); (2) protected until the `Ref` drops.
        unsafe { self.finish_removal(&mut c, node) };
        Ref {
            list: self,
            // SAFETY: (2) non-null.
            node: unsafe { NonNull::new_unchecked(node) },
            _shield: own,
            _guard: c.guard,
        }
    }

    /// Links `node` (already linked at level 0) at levels `1..height`, stops
    /// early if it is removed, unlinks it again if it was removed while we
    /// linked, and releases the inserter's part.
    ///
    /// # Safety
    ///
    /// 1. This thread inserted `node` at level 0 and protects it until this
    ///    returns.
    ///
    /// `clean_up` is false only in the seeded-bug model (`cfg(loom)`).
    unsafe fn link_upper(
        &self,
        c: &mut Cursor<'_, K, V, R>,
        node: *mut Node<K, V>,
        clean_up: bool,
    ) {
        // SAFETY: (1) protected; immutable fields.
        let (key, height) = unsafe { (&(*node).key, (*node).height as usize) };
        if height > 1 {
            // Relaxed: a hint for where searches start (see `max_height`).
            self.max_height.fetch_max(height, Ordering::Relaxed);
        }
        'levels: for level in 1..height {
            // SAFETY: (1); `level < height`.
            let own = unsafe { Node::next(node, level) };
            // Where the guard alone protects, the first try uses what the
            // last search saw at this level (Herlihy and Shavit's `preds`
            // and `succs`); with hazard pointers, and after a failed CAS, a
            // search down to this level.
            let mut recorded =
                R::GUARD_PROTECTS_ALL && (c.recorded.0..=c.recorded.1).contains(&level);
            loop {
                let pair = if recorded {
                    recorded = false;
                    // SAFETY: the last search wrote every level in
                    // `c.recorded` (the scheme protects all, checked above).
                    Some(unsafe { (c.preds[level].assume_init(), c.succs[level].assume_init()) })
                } else {
                    None
                };
                // A recorded successor removed since the search must not get
                // our node in front of it: if it has our key (an older entry
                // removed before our level-0 link), its remover's clean-up
                // search stops at our node, the first live one of the key,
                // and would leave it linked here after its retire. A search
                // unlinks it instead.
                let pair = pair.filter(|&(_, succ)| {
                    succ.is_null() || {
                        // SAFETY: recorded at `level`, so its height exceeds
                        // `level`; the pinned guard keeps it from being freed.
                        let next = unsafe { Node::next(succ, level) };
                        // Relaxed: coherence suffices. An older entry of our
                        // key was marked at every level before our level-0
                        // search saw it marked or unlinked (through Acquire
                        // loads), so that mark happens before this load.
                        !is_marked(next.load(Ordering::Relaxed))
                    }
                });
                let (pred_tower, succ) = match pair {
                    Some(pair) => pair,
                    None => {
                        self.search(c, |k| k >= key, level);
                        (c.pred_tower, c.curr)
                    }
                };
                // Relaxed: the CAS below validates it; only we set it
                // unmarked.
                let cur = own.load(Ordering::Relaxed);
                if is_marked(cur) {
                    break 'levels;
                }
                // Release: a thread that reaches `succ` through our tower
                // sees its fields as we did. Relaxed on failure: only a mark
                // can change it, and then we stop.
                if cur != succ
                    && own
                        .compare_exchange(cur, succ, Ordering::Release, Ordering::Relaxed) // Release pairs with the Acquire loads of links; Relaxed on failure: retried
                        .is_err()
                {
                    break 'levels;
                }
                // SAFETY: `pred_tower` is `head`'s, or a node's with height
                // above `level` that `pred_shield` protects, or (recorded)
                // that the pinned guard keeps from being freed.
                let slot = unsafe { &*pred_tower.add(level) };
                // Release: publishes our tower; pairs with the Acquire loads
                // in `search`. Relaxed on failure: we search again. A
                // predecessor removed since the search is marked at this
                // level, which makes the CAS fail.
                if slot
                    .compare_exchange(succ, node, Ordering::Release, Ordering::Relaxed) // Release pairs with the Acquire loads of links; Relaxed on failure: retried
                    .is_ok()
                {
                    break;
                }
            }
        }
        // SeqCst: pairs with the fence in `finish_removal`.
        fence(Ordering::SeqCst);
        // SAFETY: (1).
        let bottom = unsafe { Node::next(node, 0) };
        // Relaxed: the fences above order it (see the module docs).
        if clean_up && is_marked(bottom.load(Ordering::Relaxed)) {
            // Removed while we linked: unlink what we linked after the
            // remover's search passed.
            self.search(c, |k| k >= key, 0);
        }
        // SAFETY: (1) protected; we are the inserter, once.
        unsafe { self.release(&c.guard, node) };
    }

    /// Inserts a node of `height` levels, replacing an entry with the same
    /// key if `replace`. (`clean_up`: see `link_upper`.)
    fn insert_internal(
        &self,
        key: K,
        value: V,
        height: usize,
        replace: bool,
        clean_up: bool,
    ) -> Inserted<'_, K, V, R> {
        let height = height.clamp(1, MAX_HEIGHT);
        let node = Node::alloc(key, value, height);
        let mut c = Cursor::new(&self.domain);
        let mut own = c.guard.shield();
        // SAFETY: `node` is not published until the CASes below.
        unsafe { own.protect_unpublished(node) };
        // SAFETY: ours (then protected); keys are immutable.
        let key = unsafe { &(*node).key };
        // SAFETY: ours; level 0 exists.
        let bottom = unsafe { Node::next(node, 0) };
        loop {
            self.search(&mut c, |k| k >= key, 0);
            // SAFETY: a non-null `curr` is protected.
            let found = !c.curr.is_null() && unsafe { (*c.curr).key == *key };
            if found && !replace {
                drop(own);
                // SAFETY: never published.
                let (key, value) = unsafe { Node::into_entry(node) };
                let existing = c.into_curr(self).expect("found");
                return Inserted::Present(existing, key, value);
            }
            if found {
                let old = c.curr;
                // SAFETY: protected by `curr_shield` until the next search.
                if unsafe { self.replace(old, node) } {
                    // Keep `old` protected for its clean-up.
                    let mut old_shield = c.guard.shield();
                    mem::swap(&mut old_shield, &mut c.curr_shield);
                    // SeqCst: as in `finish_removal` (we are `old`'s remover).
                    fence(Ordering::SeqCst);
                    self.search(&mut c, |k| k >= key, 0);
                    // SAFETY: protected by `old_shield`; we removed it.
                    unsafe { self.release(&c.guard, old) };
                    drop(old_shield);
                    break;
                }
                continue;
            }
            // Relaxed: unpublished; the CAS below publishes it.
            bottom.store(c.curr, Ordering::Relaxed);
            // SAFETY: `pred_tower` is `head`'s or a protected node's.
            let slot = unsafe { &*c.pred_tower };
            // Release: publishes the node; pairs with the Acquire loads in
            // `search`. Relaxed on failure: we search again. A marked or
            // reserved `slot` makes it fail.
            if slot
                .compare_exchange(c.curr, node, Ordering::Release, Ordering::Relaxed) // Release pairs with the Acquire loads of links; Relaxed on failure: retried
                .is_ok()
            {
                // Relaxed: a statistic (see `len`).
                self.len.0.fetch_add(1, Ordering::Relaxed);
                break;
            }
        }
        // SAFETY: we linked `node` at level 0; `own` protects it.
        unsafe { self.link_upper(&mut c, node, clean_up) };
        Inserted::New(Ref {
            list: self,
            // SAFETY: from `Node::alloc`, so non-null.
            node: unsafe { NonNull::new_unchecked(node) },
            _shield: own,
            _guard: c.guard,
        })
    }

    /// Removes `old` and links `node` in its place at level 0, in one CAS
    /// that marks `old` with `node` as its successor. Returns `false` if
    /// `old` was removed by someone else first.
    ///
    /// # Safety
    ///
    /// 1. `old` is protected; `node` is unpublished and protected.
    unsafe fn replace(&self, old: *mut Node<K, V>, node: *mut Node<K, V>) -> bool {
        // SAFETY: (1) protected.
        let height = unsafe { (*old).height as usize };
        for level in (1..height).rev() {
            // SAFETY: (1); `level < height`.
            unsafe { mark_level(old, level) };
        }
        // SAFETY: (1); level 0 exists in both towers.
        let (next, bottom) = unsafe { (Node::next(old, 0), Node::next(node, 0)) };
        // Acquire: as any `next` load; we republish the successor.
        let mut cur = next.load(Ordering::Acquire);
        loop {
            if is_marked(cur) {
                return false;
            }
            // Relaxed: unpublished; the CAS below publishes it.
            bottom.store(cur, Ordering::Relaxed);
            // AcqRel: Release publishes `node` (a search reaches it through
            // `old`'s marked pointer once it unlinks `old`); the RMW also
            // continues `cur`'s release sequence. Acquire on failure: we
            // republish the new successor.
            match next.compare_exchange_weak(
                cur,
                with_tag(node, MARK),
                Ordering::AcqRel, // RMW: continues the release sequence; Acquire half as above
                Ordering::Acquire,
            ) {
                Ok(_) => return true,
                Err(now) => cur = now,
            }
        }
    }

    /// Inserts `key` with `value`, replacing the entry with the same key if
    /// there is one, and returns the new entry. The replacement is atomic: no
    /// lookup sees the key missing in between. Expected `O(log n)`.
    ///
    /// ```
    /// # if vvmalloc::LOOM_BUILD { return; }
    /// use vvmalloc::SkipList;
    /// let m: SkipList<u8, &str> = SkipList::new();
    /// assert_eq!(*m.insert(1, "one").value(), "one");
    /// m.insert(1, "uno");
    /// assert_eq!(*m.get(&1).unwrap().value(), "uno");
    /// assert_eq!(m.len(), 1);
    /// ```
    pub fn insert(&self, key: K, value: V) -> Ref<'_, K, V, R> {
        match self.insert_internal(key, value, random_height(), true, true) {
            Inserted::New(entry) => entry,
            Inserted::Present(..) => unreachable!("insert replaces"),
        }
    }

    /// Inserts `key` with `value` unless the key is present (insert-if-
    /// absent). Returns the new entry, or the given key and value back.
    /// Expected `O(log n)`.
    ///
    /// ```
    /// # if vvmalloc::LOOM_BUILD { return; }
    /// use vvmalloc::SkipList;
    /// let m: SkipList<u8, String> = SkipList::new();
    /// assert_eq!(m.try_insert(1, "a".into()).unwrap().value(), "a");
    /// let (k, v) = m.try_insert(1, "b".into()).unwrap_err();
    /// assert_eq!((k, v.as_str()), (1, "b"));
    /// ```
    pub fn try_insert(&self, key: K, value: V) -> Result<Ref<'_, K, V, R>, (K, V)> {
        self.try_insert_with_height(key, value, random_height())
    }

    /// [`try_insert`](Self::try_insert) with a chosen tower height (clamped
    /// to `1..=MAX_HEIGHT`), for tests and models that need a given shape.
    #[doc(hidden)]
    pub fn try_insert_with_height(
        &self,
        key: K,
        value: V,
        height: usize,
    ) -> Result<Ref<'_, K, V, R>, (K, V)> {
        match self.insert_internal(key, value, height, false, true) {
            Inserted::New(entry) => Ok(entry),
            Inserted::Present(_, key, value) => Err((key, value)),
        }
    }

    /// [`insert`](Self::insert) with a chosen tower height (clamped to
    /// `1..=MAX_HEIGHT`), for tests and models that need a given shape.
    #[doc(hidden)]
    pub fn insert_with_height(&self, key: K, value: V, height: usize) -> Ref<'_, K, V, R> {
        match self.insert_internal(key, value, height, true, true) {
            Inserted::New(entry) => entry,
            Inserted::Present(..) => unreachable!("insert replaces"),
        }
    }

    /// The entry for `key`, inserting `value` if the key is absent. The
    /// given value is dropped if the key was present. Expected `O(log n)`.
    ///
    /// ```
    /// # if vvmalloc::LOOM_BUILD { return; }
    /// use vvmalloc::SkipList;
    /// let m: SkipList<u8, &str> = SkipList::new();
    /// assert_eq!(*m.get_or_insert(1, "a").value(), "a");
    /// assert_eq!(*m.get_or_insert(1, "b").value(), "a");
    /// ```
    pub fn get_or_insert(&self, key: K, value: V) -> Ref<'_, K, V, R> {
        match self.insert_internal(key, value, random_height(), false, true) {
            Inserted::New(entry) | Inserted::Present(entry, ..) => entry,
        }
    }

    /// The entry for `key`, inserting the value `make` returns if the key is
    /// absent. `make` is not called when the key is found at first; it may
    /// be called and its value dropped if another thread inserts the key at
    /// the same time. Expected `O(log n)`.
    ///
    /// ```
    /// # if vvmalloc::LOOM_BUILD { return; }
    /// use vvmalloc::SkipList;
    /// let m: SkipList<u8, String> = SkipList::new();
    /// assert_eq!(m.get_or_insert_with(1, || "a".into()).value(), "a");
    /// assert_eq!(m.get_or_insert_with(1, || unreachable!()).value(), "a");
    /// ```
    pub fn get_or_insert_with(&self, key: K, make: impl FnOnce() -> V) -> Ref<'_, K, V, R> {
        if let Some(entry) = self.get(&key) {
            return entry;
        }
        self.get_or_insert(key, make())
    }

    /// The entry with key `key`, if present. Expected `O(log n)`.
    ///
    /// ```
    /// # if vvmalloc::LOOM_BUILD { return; }
    /// use vvmalloc::SkipList;
    /// let m: SkipList<String, u32> = SkipList::new();
    /// m.insert("a".to_string(), 1);
    /// assert_eq!(m.get("a").map(|e| *e.value()), Some(1)); // `&str` lookups
    /// assert!(m.get("b").is_none());
    /// ```
    pub fn get<Q>(&self, key: &Q) -> Option<Ref<'_, K, V, R>>
    where
        K: Borrow<Q>,
        Q: Ord + ?Sized,
    {
        let mut c = Cursor::new(&self.domain);
        self.search(&mut c, |k| k.borrow() >= key, 0);
        // SAFETY: a non-null `curr` is protected.
        if !c.curr.is_null() && unsafe { (*c.curr).key.borrow() == key } {
            c.into_curr(self)
        } else {
            None
        }
    }

    /// Whether `key` is present. Expected `O(log n)`.
    ///
    /// ```
    /// # if vvmalloc::LOOM_BUILD { return; }
    /// use vvmalloc::SkipList;
    /// let m: SkipList<u8, ()> = [(1, ())].into_iter().collect();
    /// assert!(m.contains(&1) && !m.contains(&2));
    /// ```
    pub fn contains<Q>(&self, key: &Q) -> bool
    where
        K: Borrow<Q>,
        Q: Ord + ?Sized,
    {
        self.get(key).is_some()
    }

    /// Removes the entry with key `key` and returns it, still protected: its
    /// key and value are dropped once the returned `Ref` and every other
    /// protection of it are gone. Expected `O(log n)`.
    ///
    /// ```
    /// # if vvmalloc::LOOM_BUILD { return; }
    /// use vvmalloc::SkipList;
    /// let m: SkipList<u8, String> = SkipList::new();
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
        let mut c = Cursor::new(&self.domain);
        let mut own = c.guard.shield();
        loop {
            self.search(&mut c, |k| k.borrow() >= key, 0);
            let node = c.curr;
            // SAFETY: a non-null `curr` is protected.
            if node.is_null() || unsafe { (*node).key.borrow() != key } {
                return None;
            }
            // SAFETY: protected.
            if unsafe { mark_tower(node, 0) } {
                mem::swap(&mut own, &mut c.curr_shield);
                // SAFETY: our mark removed it (1); `own` protects it (2); non-null.
                return Some(unsafe { self.removed_entry(c, own, node) });
            }
            // Removed by someone else: the key may be back; search again.
        }
    }

    /// The entry with the smallest key. Expected `O(1)`.
    ///
    /// ```
    /// # if vvmalloc::LOOM_BUILD { return; }
    /// use vvmalloc::SkipList;
    /// let m: SkipList<u8, ()> = [(5, ()), (2, ())].into_iter().collect();
    /// assert_eq!(m.first().map(|e| *e.key()), Some(2));
    /// ```
    pub fn first(&self) -> Option<Ref<'_, K, V, R>> {
        let mut c = Cursor::new(&self.domain);
        self.search(&mut c, |_| true, 0);
        c.into_curr(self)
    }

    /// The entry with the largest key. Expected `O(log n)`.
    ///
    /// ```
    /// # if vvmalloc::LOOM_BUILD { return; }
    /// use vvmalloc::SkipList;
    /// let m: SkipList<u8, ()> = [(5, ()), (2, ())].into_iter().collect();
    /// assert_eq!(m.last().map(|e| *e.key()), Some(5));
    /// ```
    pub fn last(&self) -> Option<Ref<'_, K, V, R>> {
        let mut c = Cursor::new(&self.domain);
        self.search(&mut c, |_| false, 0);
        c.into_pred(self)
    }

    /// Removes the entry with the smallest key and returns it (protected, as
    /// [`remove`](Self::remove) does). Linearizable: the entry is the
    /// smallest at the moment it is removed, even with concurrent inserts of
    /// smaller keys; concurrent `pop_first`s take each entry once. Expected
    /// `O(log n)` (the clean-up after the removal).
    ///
    /// ```
    /// # if vvmalloc::LOOM_BUILD { return; }
    /// use vvmalloc::SkipList;
    /// let m: SkipList<u8, ()> = [(5, ()), (2, ())].into_iter().collect();
    /// assert_eq!(m.pop_first().map(|e| *e.key()), Some(2));
    /// assert_eq!(m.len(), 1);
    /// ```
    pub fn pop_first(&self) -> Option<Ref<'_, K, V, R>> {
        let mut c = Cursor::new(&self.domain);
        let mut own = c.guard.shield();
        loop {
            self.search(&mut c, |_| true, 0);
            let node = c.curr;
            if node.is_null() {
                return None;
            }
            // Nothing passes the first unmarked node, so `pred` is `head`.
            debug_assert!(c.pred.is_null());
            // AcqRel: Acquire as any `next` load; Release keeps the
            // reservation ordered for the helpers that read it. Relaxed on
            // failure: we search again.
            if self.head[0]
                .compare_exchange(
                    node,
                    with_tag(node, RESERVED),
                    Ordering::AcqRel, // RMW: continues the release sequence; Acquire half as above
                    Ordering::Relaxed,
                )
                .is_err()
            {
                continue;
            }
            // SAFETY: protected, and reserved by us just now.
            unsafe { self.help_pop(node) };
            // SAFETY: protected; level 0 exists.
            let next = unsafe { Node::next(node, 0) };
            // Relaxed: the node is marked by now (by us or a helper) and its
            // level 0 is frozen; we read the tag our `help_pop` already saw.
            if tag(next.load(Ordering::Relaxed)) == MARK | POPPED {
                mem::swap(&mut own, &mut c.curr_shield);
                // SAFETY: our mark removed it (1); `own` protects it (2); non-null.
                return Some(unsafe { self.removed_entry(c, own, node) });
            }
            // A `remove` marked it first: try the next one.
        }
    }

    /// Removes the entry with the largest key and returns it (protected).
    /// Linearizable: the entry is the largest at the moment it is removed.
    /// Expected `O(log n)`.
    ///
    /// If an insert after the last entry races with it, `pop_last` tries
    /// again; the entry it had chosen stays, but may lose its upper levels
    /// (it becomes a one-level node, found more slowly, never lost).
    ///
    /// ```
    /// # if vvmalloc::LOOM_BUILD { return; }
    /// use vvmalloc::SkipList;
    /// let m: SkipList<u8, ()> = [(5, ()), (2, ())].into_iter().collect();
    /// assert_eq!(m.pop_last().map(|e| *e.key()), Some(5));
    /// assert_eq!(m.len(), 1);
    /// ```
    pub fn pop_last(&self) -> Option<Ref<'_, K, V, R>> {
        let mut c = Cursor::new(&self.domain);
        let mut own = c.guard.shield();
        loop {
            self.search(&mut c, |_| false, 0);
            let node = c.pred;
            if node.is_null() {
                return None;
            }
            // SAFETY: protected by `pred_shield`; level 0 exists.
            let next = unsafe { Node::next(node, 0) };
            // Relaxed: a cheap early check; the CAS below decides.
            if !next.load(Ordering::Relaxed).is_null() {
                continue;
            }
            mem::swap(&mut own, &mut c.pred_shield);
            // SAFETY: protected by `own`.
            let height = unsafe { (*node).height as usize };
            for level in (1..height).rev() {
                // SAFETY: protected; `level < height`.
                unsafe { mark_level(node, level) };
            }
            // AcqRel: as the level-0 mark in `mark_tower`. Expecting null is
            // what makes the node the last one at the moment of the mark.
            // Relaxed on failure: we search again.
            if next
                .compare_exchange(
                    ptr::null_mut(),
                    with_tag(ptr::null_mut(), MARK),
                    Ordering::AcqRel, // RMW: continues the release sequence; Acquire half as above
                    Ordering::Relaxed,
                )
                .is_ok()
            {
                // SAFETY: our mark removed it (1); `own` protects it (2); non-null.
                return Some(unsafe { self.removed_entry(c, own, node) });
            }
            // Not last any more (or removed): unlink the levels we marked
            // and try again.
            // SAFETY: protected by `own`; keys are immutable.
            let key = unsafe { &(*node).key };
            self.search(&mut c, |k| k >= key, 0);
        }
    }

    /// The first entry whose key lies at or above `bound`: `Included(k)`
    /// gives the smallest key `>= k` (a ceiling search: best fit on a
    /// `(size, address)` key), `Excluded(k)` the smallest key `> k`,
    /// `Unbounded` the first entry. Expected `O(log n)`.
    ///
    /// ```
    /// # if vvmalloc::LOOM_BUILD { return; }
    /// use std::ops::Bound::{Excluded, Included, Unbounded};
    /// use vvmalloc::SkipList;
    /// let m: SkipList<u32, ()> = [(10, ()), (20, ())].into_iter().collect();
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
        let mut c = Cursor::new(&self.domain);
        match bound {
            Bound::Included(b) => self.search(&mut c, |k| k.borrow() >= b, 0),
            Bound::Excluded(b) => self.search(&mut c, |k| k.borrow() > b, 0),
            Bound::Unbounded => self.search(&mut c, |_| true, 0),
        }
        c.into_curr(self)
    }

    /// The last entry whose key lies at or below `bound`: `Included(k)`
    /// gives the largest key `<= k` (a floor search), `Excluded(k)` the
    /// largest key `< k`, `Unbounded` the last entry. Expected `O(log n)`.
    ///
    /// ```
    /// # if vvmalloc::LOOM_BUILD { return; }
    /// use std::ops::Bound::{Excluded, Included, Unbounded};
    /// use vvmalloc::SkipList;
    /// let m: SkipList<u32, ()> = [(10, ()), (20, ())].into_iter().collect();
    /// assert_eq!(m.upper_bound(Included(&20)).map(|e| *e.key()), Some(20));
    /// assert_eq!(m.upper_bound(Excluded(&20)).map(|e| *e.key()), Some(10));
    /// assert_eq!(m.upper_bound(Unbounded).map(|e| *e.key()), Some(20));
    /// assert!(m.upper_bound(Excluded(&10)).is_none());
    /// ```
    pub fn upper_bound<Q>(&self, bound: Bound<&Q>) -> Option<Ref<'_, K, V, R>>
    where
        K: Borrow<Q>,
        Q: Ord + ?Sized,
    {
        let mut c = Cursor::new(&self.domain);
        match bound {
            Bound::Included(b) => self.search(&mut c, |k| k.borrow() > b, 0),
            Bound::Excluded(b) => self.search(&mut c, |k| k.borrow() >= b, 0),
            Bound::Unbounded => self.search(&mut c, |_| false, 0),
        }
        c.into_pred(self)
    }

    /// An iterator over the entries in increasing key order.
    ///
    /// Iteration is *weakly consistent*: it never yields a key twice, keys
    /// come in strictly increasing order, and every entry it yields was in
    /// the map at some moment during the iteration. Entries inserted or
    /// removed concurrently may or may not be seen; an entry present
    /// throughout is seen. Each step is expected `O(1)` (`O(log n)` when
    /// the current entry was removed meanwhile). Each [`Ref`] holds its own
    /// protection, so it may be kept after the iterator moves on.
    ///
    /// It is double-ended: `next_back` (and `.rev()`) walks from the
    /// largest key down, one floor search per step (`O(log n)`); the two
    /// ends never yield the same key.
    ///
    /// ```
    /// # if vvmalloc::LOOM_BUILD { return; }
    /// use vvmalloc::SkipList;
    /// let m: SkipList<u8, char> = [(2, 'b'), (1, 'a')].into_iter().collect();
    /// let pairs: Vec<(u8, char)> = m.iter().map(|e| (*e.key(), *e.value())).collect();
    /// assert_eq!(pairs, [(1, 'a'), (2, 'b')]);
    /// assert_eq!(m.iter().rev().map(|e| *e.key()).collect::<Vec<_>>(), [2, 1]);
    /// ```
    pub fn iter(&self) -> Iter<'_, K, V, R> {
        Iter::new(self, self.first())
    }

    /// An iterator over the entries whose keys lie in `range`, in increasing
    /// order, with the guarantees of [`iter`](Self::iter). Finding the start
    /// is expected `O(log n)`.
    ///
    /// ```
    /// # if vvmalloc::LOOM_BUILD { return; }
    /// use vvmalloc::SkipList;
    /// let m: SkipList<u32, ()> = (0..10).map(|k| (k, ())).collect();
    /// let keys: Vec<u32> = m.range(3..6).map(|e| *e.key()).collect();
    /// assert_eq!(keys, [3, 4, 5]);
    /// assert_eq!(m.range(8..).count(), 2);
    /// assert_eq!(m.range(..=2).rev().map(|e| *e.key()).collect::<Vec<_>>(), [2, 1, 0]);
    /// ```
    pub fn range<Q, B>(&self, range: B) -> Range<'_, Q, B, K, V, R>
    where
        K: Borrow<Q>,
        Q: Ord + ?Sized,
        B: RangeBounds<Q>,
    {
        let front = self.lower_bound(range.start_bound());
        Range {
            inner: Iter::new(self, front),
            range,
            _key: PhantomData,
        }
    }

    /// Removes every entry, one at a time (`O(n log n)` in all). Not atomic:
    /// entries inserted meanwhile may stay.
    ///
    /// ```
    /// # if vvmalloc::LOOM_BUILD { return; }
    /// use vvmalloc::SkipList;
    /// let m: SkipList<u32, ()> = (0..10).map(|k| (k, ())).collect();
    /// m.clear();
    /// assert!(m.is_empty() && m.first().is_none());
    /// ```
    pub fn clear(&self) {
        while self.pop_first().is_some() {}
    }

    /// The entry after `entry`: its successor at level 0, or, when `entry`
    /// has been removed meanwhile, the first entry with a greater key.
    fn successor<'a>(&'a self, entry: &Ref<'a, K, V, R>) -> Option<Ref<'a, K, V, R>> {
        let guard = self.domain.pin();
        let mut shield = guard.shield();
        // SAFETY: `entry` keeps its node protected; level 0 exists.
        let next = unsafe { Node::next(entry.node.as_ptr(), 0) };
        // Validated against the node's `next[0]`: while it holds the same
        // unmarked pointer the node is linked, so the successor is reachable
        // and not retired.
        let succ = shield.protect(next);
        if is_marked(succ) {
            drop(shield);
            drop(guard);
            let key = entry.key();
            return self.lower_bound_by(|k| k > key);
        }
        Some(Ref {
            list: self,
            node: NonNull::new(succ)?,
            _shield: shield,
            _guard: guard,
        })
    }

    /// The last entry with a key below `entry`'s.
    fn predecessor<'a>(&'a self, entry: &Ref<'a, K, V, R>) -> Option<Ref<'a, K, V, R>> {
        let key = entry.key();
        let mut c = Cursor::new(&self.domain);
        self.search(&mut c, |k| k >= key, 0);
        c.into_pred(self)
    }

    fn lower_bound_by(&self, stop: impl Fn(&K) -> bool) -> Option<Ref<'_, K, V, R>> {
        let mut c = Cursor::new(&self.domain);
        self.search(&mut c, stop, 0);
        c.into_curr(self)
    }
}

impl<K, V, R: Reclaim> SkipList<K, V, R> {
    /// Checks the structure's invariants: at every level keys strictly
    /// increase, each level is a sublist of the one below, towers are no
    /// taller than [`MAX_HEIGHT`], no removed entry is still linked, every
    /// inserter and remover has finished, and [`len`](Self::len) counts the
    /// entries. Needs `&mut self` (no concurrent updates); tests call it
    /// after their threads are joined.
    ///
    /// # Panics
    ///
    /// With a message naming the broken invariant.
    ///
    /// ```
    /// # if vvmalloc::LOOM_BUILD { return; }
    /// use vvmalloc::SkipList;
    /// let mut m: SkipList<u32, ()> = (0..100).map(|k| (k, ())).collect();
    /// m.remove(&3);
    /// m.check_invariants();
    /// ```
    pub fn check_invariants(&mut self)
    where
        K: Ord + fmt::Debug,
    {
        // Relaxed loads throughout: `&mut self` excludes concurrent updates.
        let head0 = self.head[0].load(Ordering::Relaxed);
        assert_eq!(tag(head0), 0, "head[0] is still tagged");
        let mut count = 0;
        let mut cur = head0;
        let mut last: Option<&K> = None;
        while !cur.is_null() {
            // SAFETY: reachable nodes are live; `&mut self` keeps them so.
            let node = unsafe { &*cur };
            assert!(
                (1..=MAX_HEIGHT).contains(&(node.height as usize)),
                "height {} out of range",
                node.height
            );
            assert_eq!(
                node.refs.load(Ordering::Relaxed), // exclusive access (`&mut self`)
                1,
                "an inserter of {:?} has not finished",
                node.key
            );
            // SAFETY: live; level 0 exists.
            let next = unsafe { Node::next(cur, 0) }.load(Ordering::Relaxed);
            assert!(
                !is_marked(next),
                "removed entry {:?} still linked",
                node.key
            );
            if let Some(prev) = last {
                assert!(
                    prev < &node.key,
                    "keys out of order: {prev:?} before {:?}",
                    node.key
                );
            }
            last = Some(&node.key);
            count += 1;
            cur = next;
        }
        assert_eq!(count, self.len(), "len() disagrees with the entries");
        for level in 1..MAX_HEIGHT {
            // Walk `level` and `level - 1` together: every node of the upper
            // one must come up in the lower one, in the same order. A marked
            // pointer at an upper level can remain when a racing `pop_last`
            // shortened an entry (its level 0 stays unmarked, checked
            // above); a search unlinks it later.
            let mut upper = untagged(self.head[level].load(Ordering::Relaxed));
            let mut lower = untagged(self.head[level - 1].load(Ordering::Relaxed)); // exclusive access (`&mut self`)
            while !upper.is_null() {
                // SAFETY: reachable, so live.
                let height = unsafe { (*upper).height as usize };
                assert!(height > level, "a node of height {height} at level {level}");
                while lower != upper {
                    assert!(
                        !lower.is_null(),
                        "a node at level {level} is missing from level {}",
                        level - 1
                    );
                    // SAFETY: reachable, so live; its height exceeds
                    // `level - 1`.
                    // Relaxed: exclusive access (`&mut self`).
                    let next = unsafe { Node::next(lower, level - 1) }.load(Ordering::Relaxed);
                    lower = untagged(next);
                }
                // SAFETY: as above.
                upper = untagged(unsafe { Node::next(upper, level) }.load(Ordering::Relaxed));
            }
        }
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
    fn new(list: &'a SkipList<K, V, R>, front: Option<Ref<'a, K, V, R>>) -> Self {
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
    inner: Iter<'a, K, V, R>,
    range: B,
    _key: PhantomData<fn() -> Box<Q>>,
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

/// A lock-free ordered set: a [`SkipList`] with `()` values.
///
/// Entries are reached through [`Ref`]s with a `()` value; see [`SkipList`]
/// for the algorithm, the guarantees, the costs and the choice of domain.
///
/// ```
/// # if vvmalloc::LOOM_BUILD { return; }
/// use std::ops::Bound::Included;
/// use vvmalloc::SkipSet;
///
/// let set: SkipSet<u32> = [30, 10, 20].into_iter().collect();
/// assert!(!set.insert(10));
/// assert_eq!(set.lower_bound(Included(&15)).map(|e| *e.key()), Some(20));
/// assert_eq!(set.pop_last().map(|e| *e.key()), Some(30));
/// assert_eq!(set.iter().map(|e| *e.key()).collect::<Vec<_>>(), [10, 20]);
/// ```
pub struct SkipSet<K, R: Reclaim = Epoch> {
    map: SkipList<K, (), R>,
}

impl<K: 'static, R: Reclaim> SkipSet<K, R> {
    /// An empty set in the scheme's process-wide domain. A `const fn`
    /// (except under `cfg(loom)`).
    ///
    /// ```
    /// # if vvmalloc::LOOM_BUILD { return; }
    /// use vvmalloc::SkipSet;
    /// let set: SkipSet<u64> = SkipSet::new();
    /// assert!(set.insert(1));
    /// ```
    #[cfg(not(loom))]
    pub const fn new() -> Self {
        Self {
            map: SkipList::new(),
        }
    }

    /// An empty set in a domain of its own (`cfg(loom)` has no process-wide
    /// domain).
    #[cfg(loom)]
    pub fn new() -> Self {
        Self {
            map: SkipList::new(),
        }
    }

    /// An empty set that retires its nodes into `domain`.
    ///
    /// ```
    /// # if vvmalloc::LOOM_BUILD { return; }
    /// use vvmalloc::reclaim::{Domain, Hazard};
    /// use vvmalloc::SkipSet;
    /// let s: SkipSet<u64, Hazard> = SkipSet::with_domain(Domain::new());
    /// assert!(!s.domain().is_global());
    /// ```
    pub fn with_domain(domain: Domain<R>) -> Self {
        Self {
            map: SkipList::with_domain(domain),
        }
    }
}

impl<K, R: Reclaim> SkipSet<K, R> {
    /// An empty set with a domain of its own, so keys need not be
    /// `'static` (see [`SkipList::with_own_domain`]).
    ///
    /// ```
    /// # if vvmalloc::LOOM_BUILD { return; }
    /// use vvmalloc::SkipSet;
    /// let word = String::from("w");
    /// let s: SkipSet<&str> = SkipSet::with_own_domain();
    /// assert!(s.insert(word.as_str()));
    /// ```
    pub fn with_own_domain() -> Self {
        Self {
            map: SkipList::with_own_domain(),
        }
    }

    /// The domain the set retires its nodes into.
    ///
    /// ```
    /// # if vvmalloc::LOOM_BUILD { return; }
    /// use vvmalloc::SkipSet;
    /// let s: SkipSet<u8> = SkipSet::new();
    /// assert!(s.domain().is_global());
    /// ```
    pub fn domain(&self) -> &Domain<R> {
        self.map.domain()
    }

    /// The number of keys; exact when no update is in flight (see
    /// [`SkipList::len`]).
    ///
    /// ```
    /// # if vvmalloc::LOOM_BUILD { return; }
    /// use vvmalloc::SkipSet;
    /// let s: SkipSet<u8> = (0..3).collect();
    /// assert_eq!(s.len(), 3);
    /// ```
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether the set is empty; exact when no update is in flight.
    ///
    /// ```
    /// # if vvmalloc::LOOM_BUILD { return; }
    /// use vvmalloc::SkipSet;
    /// assert!(SkipSet::<u8>::new().is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Checks the structure's invariants (see
    /// [`SkipList::check_invariants`]).
    ///
    /// ```
    /// # if vvmalloc::LOOM_BUILD { return; }
    /// use vvmalloc::SkipSet;
    /// let mut s: SkipSet<u8> = (0..3).collect();
    /// s.check_invariants();
    /// ```
    pub fn check_invariants(&mut self)
    where
        K: Ord + fmt::Debug,
    {
        self.map.check_invariants()
    }
}

impl<K: Ord + Send, R: Reclaim> SkipSet<K, R> {
    /// Inserts `key` unless present; returns whether it inserted.
    ///
    /// ```
    /// # if vvmalloc::LOOM_BUILD { return; }
    /// use vvmalloc::SkipSet;
    /// let s: SkipSet<u8> = SkipSet::new();
    /// assert!(s.insert(1) && !s.insert(1));
    /// ```
    pub fn insert(&self, key: K) -> bool {
        self.map.try_insert(key, ()).is_ok()
    }

    /// The entry for `key`, inserting it if absent.
    ///
    /// ```
    /// # if vvmalloc::LOOM_BUILD { return; }
    /// use vvmalloc::SkipSet;
    /// let s: SkipSet<u8> = SkipSet::new();
    /// assert_eq!(*s.get_or_insert(4).key(), 4);
    /// ```
    pub fn get_or_insert(&self, key: K) -> Ref<'_, K, (), R> {
        self.map.get_or_insert(key, ())
    }

    /// The entry for `key`, if present.
    ///
    /// ```
    /// # if vvmalloc::LOOM_BUILD { return; }
    /// use vvmalloc::SkipSet;
    /// let s: SkipSet<String> = ["a".to_string()].into_iter().collect();
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
    /// use vvmalloc::SkipSet;
    /// let s: SkipSet<u8> = [1].into_iter().collect();
    /// assert!(s.contains(&1) && !s.contains(&2));
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
    /// use vvmalloc::SkipSet;
    /// let s: SkipSet<u8> = [1].into_iter().collect();
    /// assert!(s.remove(&1) && !s.remove(&1));
    /// ```
    pub fn remove<Q>(&self, key: &Q) -> bool
    where
        K: Borrow<Q>,
        Q: Ord + ?Sized,
    {
        self.map.remove(key).is_some()
    }

    /// Removes `key` and returns its entry (protected), if it was present.
    ///
    /// ```
    /// # if vvmalloc::LOOM_BUILD { return; }
    /// use vvmalloc::SkipSet;
    /// let s: SkipSet<String> = ["a".to_string()].into_iter().collect();
    /// assert_eq!(s.take("a").unwrap().key(), "a");
    /// ```
    pub fn take<Q>(&self, key: &Q) -> Option<Ref<'_, K, (), R>>
    where
        K: Borrow<Q>,
        Q: Ord + ?Sized,
    {
        self.map.remove(key)
    }

    /// The smallest key.
    ///
    /// ```
    /// # if vvmalloc::LOOM_BUILD { return; }
    /// use vvmalloc::SkipSet;
    /// let s: SkipSet<u8> = [5, 2].into_iter().collect();
    /// assert_eq!(s.first().map(|e| *e.key()), Some(2));
    /// ```
    pub fn first(&self) -> Option<Ref<'_, K, (), R>> {
        self.map.first()
    }

    /// The largest key.
    ///
    /// ```
    /// # if vvmalloc::LOOM_BUILD { return; }
    /// use vvmalloc::SkipSet;
    /// let s: SkipSet<u8> = [5, 2].into_iter().collect();
    /// assert_eq!(s.last().map(|e| *e.key()), Some(5));
    /// ```
    pub fn last(&self) -> Option<Ref<'_, K, (), R>> {
        self.map.last()
    }

    /// Removes and returns the smallest key (see [`SkipList::pop_first`]).
    ///
    /// ```
    /// # if vvmalloc::LOOM_BUILD { return; }
    /// use vvmalloc::SkipSet;
    /// let s: SkipSet<u8> = [5, 2].into_iter().collect();
    /// assert_eq!(s.pop_first().map(|e| *e.key()), Some(2));
    /// ```
    pub fn pop_first(&self) -> Option<Ref<'_, K, (), R>> {
        self.map.pop_first()
    }

    /// Removes and returns the largest key (see [`SkipList::pop_last`]).
    ///
    /// ```
    /// # if vvmalloc::LOOM_BUILD { return; }
    /// use vvmalloc::SkipSet;
    /// let s: SkipSet<u8> = [5, 2].into_iter().collect();
    /// assert_eq!(s.pop_last().map(|e| *e.key()), Some(5));
    /// ```
    pub fn pop_last(&self) -> Option<Ref<'_, K, (), R>> {
        self.map.pop_last()
    }

    /// The smallest key at or above `bound` (see [`SkipList::lower_bound`]).
    ///
    /// ```
    /// # if vvmalloc::LOOM_BUILD { return; }
    /// use std::ops::Bound::Included;
    /// use vvmalloc::SkipSet;
    /// let s: SkipSet<u8> = [5, 2].into_iter().collect();
    /// assert_eq!(s.lower_bound(Included(&3)).map(|e| *e.key()), Some(5));
    /// ```
    pub fn lower_bound<Q>(&self, bound: Bound<&Q>) -> Option<Ref<'_, K, (), R>>
    where
        K: Borrow<Q>,
        Q: Ord + ?Sized,
    {
        self.map.lower_bound(bound)
    }

    /// The largest key at or below `bound` (see [`SkipList::upper_bound`]).
    ///
    /// ```
    /// # if vvmalloc::LOOM_BUILD { return; }
    /// use std::ops::Bound::Included;
    /// use vvmalloc::SkipSet;
    /// let s: SkipSet<u8> = [5, 2].into_iter().collect();
    /// assert_eq!(s.upper_bound(Included(&3)).map(|e| *e.key()), Some(2));
    /// ```
    pub fn upper_bound<Q>(&self, bound: Bound<&Q>) -> Option<Ref<'_, K, (), R>>
    where
        K: Borrow<Q>,
        Q: Ord + ?Sized,
    {
        self.map.upper_bound(bound)
    }

    /// The keys in `range`, in increasing order (see [`SkipList::range`]).
    ///
    /// ```
    /// # if vvmalloc::LOOM_BUILD { return; }
    /// use vvmalloc::SkipSet;
    /// let s: SkipSet<u8> = (0..10).collect();
    /// assert_eq!(s.range(2..4).map(|e| *e.key()).collect::<Vec<_>>(), [2, 3]);
    /// ```
    pub fn range<Q, B>(&self, range: B) -> Range<'_, Q, B, K, (), R>
    where
        K: Borrow<Q>,
        Q: Ord + ?Sized,
        B: RangeBounds<Q>,
    {
        self.map.range(range)
    }

    /// The keys in increasing order (see [`SkipList::iter`]).
    ///
    /// ```
    /// # if vvmalloc::LOOM_BUILD { return; }
    /// use vvmalloc::SkipSet;
    /// let s: SkipSet<u8> = [3, 1, 2].into_iter().collect();
    /// assert_eq!(s.iter().map(|e| *e.key()).collect::<Vec<_>>(), [1, 2, 3]);
    /// ```
    pub fn iter(&self) -> Iter<'_, K, (), R> {
        self.map.iter()
    }

    /// Removes every key (see [`SkipList::clear`]).
    ///
    /// ```
    /// # if vvmalloc::LOOM_BUILD { return; }
    /// use vvmalloc::SkipSet;
    /// let s: SkipSet<u8> = (0..3).collect();
    /// s.clear();
    /// assert!(s.is_empty());
    /// ```
    pub fn clear(&self) {
        self.map.clear()
    }
}

impl<K: Ord + Send + fmt::Debug, R: Reclaim> fmt::Debug for SkipSet<K, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut set = f.debug_set();
        for e in self.iter() {
            set.entry(e.key());
        }
        set.finish()
    }
}

impl<K: Ord + Send + 'static, R: Reclaim> FromIterator<K> for SkipSet<K, R> {
    fn from_iter<I: IntoIterator<Item = K>>(iter: I) -> Self {
        let set = Self::new();
        set.extend_from(iter);
        set
    }
}

impl<K: Ord + Send, R: Reclaim> Extend<K> for SkipSet<K, R> {
    fn extend<I: IntoIterator<Item = K>>(&mut self, iter: I) {
        self.extend_from(iter);
    }
}

impl<K: Ord + Send, R: Reclaim> SkipSet<K, R> {
    fn extend_from<I: IntoIterator<Item = K>>(&self, iter: I) {
        for k in iter {
            self.insert(k);
        }
    }
}

impl<K: 'static, R: Reclaim> Default for SkipSet<K, R> {
    /// An empty set, as [`SkipSet::new`].
    fn default() -> Self {
        Self::new()
    }
}

impl<'a, K: Ord + Send, R: Reclaim> IntoIterator for &'a SkipSet<K, R> {
    type Item = Ref<'a, K, (), R>;
    type IntoIter = Iter<'a, K, (), R>;

    fn into_iter(self) -> Iter<'a, K, (), R> {
        self.iter()
    }
}

#[cfg(loom)]
impl<K: Ord + Send, V: Send, R: Reclaim> SkipList<K, V, R> {
    /// **A deliberately broken `try_insert`**, for the seeded-bug model of
    /// `loom_tests/skiplist.rs`: after linking its upper levels it does not
    /// check whether the node was removed meanwhile, so a level it linked
    /// after the remover's clean-up search keeps a removed (and, once both
    /// parties release it, retired) node linked. Compiled only under
    /// `cfg(loom)`; never call it.
    #[doc(hidden)]
    pub fn seeded_bug_try_insert_without_clean_up(&self, key: K, value: V, height: usize) -> bool {
        matches!(
            self.insert_internal(key, value, height, false, false),
            Inserted::New(_)
        )
    }

    /// **A deliberately broken `pop_first`**, for the seeded-bug model of
    /// `loom_tests/skiplist.rs`: it marks the first node without reserving
    /// `head[0]`, so an insert of a smaller key can complete, and be seen,
    /// between the search and the mark (the race the reservation closes).
    /// Compiled only under `cfg(loom)`; never call it.
    #[doc(hidden)]
    pub fn seeded_bug_pop_first_without_reservation(&self) -> Option<Ref<'_, K, V, R>> {
        let mut c = Cursor::new(&self.domain);
        let mut own = c.guard.shield();
        loop {
            self.search(&mut c, |_| true, 0);
            let node = c.curr;
            if node.is_null() {
                return None;
            }
            // SAFETY: protected by `curr_shield`.
            if unsafe { mark_tower(node, 0) } {
                mem::swap(&mut own, &mut c.curr_shield);
                // SAFETY: our mark removed it (1); `own` protects it (2); non-null.
                return Some(unsafe { self.removed_entry(c, own, node) });
            }
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::reclaim::{Hazard, Leak};
    use proptest::prelude::*;
    use std::collections::BTreeMap;
    use std::ops::Bound::{Excluded, Included, Unbounded};

    fn keys<K: Ord + Send + Copy, V: Send, R: Reclaim>(m: &SkipList<K, V, R>) -> Vec<K> {
        m.iter().map(|e| *e.key()).collect()
    }

    fn basics<R: Reclaim>(mut m: SkipList<u32, String, R>) {
        assert!(m.is_empty() && m.first().is_none() && m.last().is_none());
        assert!(m.pop_first().is_none() && m.pop_last().is_none());
        for k in [5, 1, 9, 3, 7] {
            assert_eq!(m.insert(k, k.to_string()).value(), &k.to_string());
        }
        assert_eq!(m.insert(3, "three".into()).value(), "three");
        assert!(m.try_insert(3, "x".into()).is_err());
        assert_eq!(m.get_or_insert(3, "y".into()).value(), "three");
        assert_eq!(m.get_or_insert_with(4, || "4".into()).value(), "4");
        assert_eq!(m.len(), 6);
        assert_eq!(m.get(&3).unwrap().value(), "three");
        assert!(m.get(&2).is_none() && !m.contains(&2) && m.contains(&9));
        let at = |e: Option<Ref<'_, u32, String, R>>| e.map(|e| *e.key());
        assert_eq!(at(m.lower_bound(Included(&6))), Some(7));
        assert_eq!(at(m.lower_bound(Excluded(&7))), Some(9));
        assert_eq!(at(m.lower_bound(Unbounded)), Some(1));
        assert_eq!(at(m.lower_bound(Excluded(&9))), None);
        assert_eq!(at(m.upper_bound(Included(&6))), Some(5));
        assert_eq!(at(m.upper_bound(Excluded(&5))), Some(4));
        assert_eq!(at(m.upper_bound(Unbounded)), Some(9));
        assert_eq!(at(m.upper_bound(Excluded(&1))), None);
        assert_eq!(keys(&m), [1, 3, 4, 5, 7, 9]);
        assert_eq!(
            m.range(3..=7).map(|e| *e.key()).collect::<Vec<_>>(),
            [3, 4, 5, 7]
        );
        assert_eq!(m.range((Excluded(3), Excluded(7))).count(), 2);
        assert_eq!(m.remove(&5).unwrap().value(), "5");
        assert!(m.remove(&5).is_none());
        assert_eq!(at(m.pop_first()), Some(1));
        assert_eq!(at(m.pop_last()), Some(9));
        assert_eq!(at(m.first()), Some(3));
        assert_eq!(at(m.last()), Some(7));
        assert_eq!(m.len(), 3);
        m.check_invariants();
        assert_eq!(format!("{m:?}"), r#"{3: "three", 4: "4", 7: "7"}"#);
        m.clear();
        assert!(m.is_empty() && m.iter().next().is_none());
        m.check_invariants();
    }

    // Tests named `*own*` use only own domains, so they free everything they
    // allocate: CI runs them under Miri with its leak check on.
    #[test]
    fn basics_epoch_own() {
        basics::<Epoch>(SkipList::with_own_domain());
    }

    #[test]
    fn basics_hazard_own() {
        basics::<Hazard>(SkipList::with_own_domain());
    }

    #[test]
    fn basics_global_domains_and_leak() {
        basics::<Epoch>(SkipList::new());
        basics::<Hazard>(SkipList::new());
        basics::<Leak>(SkipList::new());
    }

    #[test]
    fn towers_of_every_height_own() {
        // Explicit heights build a known shape: every level is used, and
        // removing tall nodes must unlink them everywhere.
        let mut m: SkipList<u32, u32, Hazard> = SkipList::with_own_domain();
        for k in 0..64u32 {
            let h = 1 + (k as usize % MAX_HEIGHT);
            assert!(m.try_insert_with_height(k, k, h).is_ok());
        }
        m.check_invariants();
        for k in (0..64).step_by(3) {
            assert!(m.remove(&k).is_some());
        }
        m.check_invariants();
        // A replacement of a tall entry by a short one, and back.
        m.insert_with_height(1, 100, 1);
        m.insert_with_height(2, 200, MAX_HEIGHT);
        assert_eq!(*m.get(&1).unwrap().value(), 100);
        assert_eq!(*m.get(&2).unwrap().value(), 200);
        m.check_invariants();
        assert_eq!(m.len(), 64 - 22);
    }

    #[test]
    fn random_heights_are_geometric() {
        let n = if cfg!(miri) { 2_000 } else { 200_000 };
        let mut counts = [0usize; MAX_HEIGHT + 1];
        for _ in 0..n {
            counts[random_height()] += 1;
        }
        assert_eq!(counts[0], 0);
        // P(height >= 2) = 1/2, P(height >= 3) = 1/4.
        let at_least = |h: usize| counts[h..].iter().sum::<usize>() as f64 / n as f64;
        assert!((at_least(2) - 0.5).abs() < 0.04, "{counts:?}");
        assert!((at_least(3) - 0.25).abs() < 0.03, "{counts:?}");
    }

    #[test]
    fn ref_remove_takes_an_entry_once() {
        let m: SkipList<(usize, usize), (), Hazard> = SkipList::with_own_domain();
        m.insert((64, 1), ());
        m.insert((128, 2), ());
        let a = m.lower_bound(Included(&(100, 0))).unwrap();
        let b = m.lower_bound(Included(&(100, 0))).unwrap();
        assert!(a.remove());
        assert!(!b.remove() && b.is_removed());
        assert!(m.lower_bound(Included(&(100, 0))).is_none());
        assert_eq!(m.len(), 1);
    }

    #[test]
    fn removed_entry_stays_readable_until_its_ref_drops_own() {
        use std::sync::Arc;
        let v = Arc::new(());
        {
            let m: SkipList<u8, Arc<()>, Hazard> = SkipList::with_own_domain();
            m.insert_with_height(1, v.clone(), MAX_HEIGHT);
            let e = m.get(&1).unwrap();
            let removed = m.remove(&1).unwrap();
            assert!(e.is_removed() && removed.is_removed());
            m.domain().collect();
            assert_eq!(Arc::strong_count(&v), 2, "reclaimed while protected");
            drop((e, removed));
            m.domain().collect();
            assert_eq!(Arc::strong_count(&v), 1, "not reclaimed once unprotected");
        }
        assert_eq!(Arc::strong_count(&v), 1);
    }

    #[test]
    fn replaced_and_unpublished_values_are_dropped_once_own() {
        use std::sync::Arc;
        let v = Arc::new(());
        let m: SkipList<u32, Arc<()>, Epoch> = SkipList::with_own_domain();
        for k in 0..40 {
            m.insert(k % 10, v.clone()); // 30 replacements
            let _ = m.try_insert(k % 10, v.clone()); // always refused
            m.get_or_insert(k % 10, v.clone());
        }
        for k in 0..5 {
            m.remove(&k);
        }
        assert_eq!(m.len(), 5);
        drop(m);
        assert_eq!(Arc::strong_count(&v), 1);
    }

    #[test]
    fn borrowed_keys_with_own_domain() {
        let words: Vec<String> = ["pear", "apple", "fig"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let s: SkipSet<&str, Hazard> = SkipSet::with_own_domain();
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
        let mut s: SkipSet<u16> = (0..10).rev().collect();
        s.extend([20, 5]);
        assert_eq!(s.len(), 11);
        assert!(s.contains(&20) && s.get(&7).is_some());
        assert_eq!(s.take(&7).map(|e| *e.key()), Some(7));
        assert_eq!(s.pop_first().map(|e| *e.key()), Some(0));
        assert_eq!(s.pop_last().map(|e| *e.key()), Some(20));
        assert_eq!(s.first().map(|e| *e.key()), Some(1));
        assert_eq!(s.last().map(|e| *e.key()), Some(9));
        assert_eq!(*s.get_or_insert(30).key(), 30);
        assert_eq!(s.lower_bound(Included(&10)).map(|e| *e.key()), Some(30));
        assert_eq!(s.upper_bound(Excluded(&30)).map(|e| *e.key()), Some(9));
        assert_eq!(s.range(2..4).count(), 2);
        assert_eq!((&s).into_iter().count(), s.len());
        s.check_invariants();
        s.clear();
        assert!(s.is_empty());
    }

    #[test]
    fn long_map_drops_without_recursion() {
        let n = if cfg!(miri) { 300 } else { 200_000 };
        let m: SkipList<u32, ()> = (0..n).map(|k| (k, ())).collect();
        assert_eq!(m.len(), n as usize);
        drop(m);
    }

    #[test]
    fn double_ended_iteration_meets_in_the_middle() {
        for n in [0u32, 1, 2, 7, 8] {
            let m: SkipList<u32, ()> = (0..n).map(|k| (k, ())).collect();
            assert_eq!(
                m.iter().rev().map(|e| *e.key()).collect::<Vec<_>>(),
                (0..n).rev().collect::<Vec<_>>()
            );
            // Alternate ends: every key once.
            let mut it = m.iter();
            let mut seen = Vec::new();
            for i in 0.. {
                let e = if i % 2 == 0 {
                    it.next()
                } else {
                    it.next_back()
                };
                match e {
                    Some(e) => seen.push(*e.key()),
                    None => break,
                }
            }
            assert!(it.next().is_none() && it.next_back().is_none());
            seen.sort_unstable();
            assert_eq!(seen, (0..n).collect::<Vec<_>>(), "n = {n}");
            // Ranges from the back respect both bounds.
            assert_eq!(
                m.range(2..6).rev().map(|e| *e.key()).collect::<Vec<_>>(),
                (2..6.min(n)).rev().collect::<Vec<_>>()
            );
            let mut r = m.range(1..=4);
            let (a, b) = (r.next_back().map(|e| *e.key()), r.next().map(|e| *e.key()));
            if n > 4 {
                assert_eq!((a, b), (Some(4), Some(1)));
                assert_eq!(r.map(|e| *e.key()).collect::<Vec<_>>(), [2, 3]);
            }
        }
    }

    #[test]
    fn const_constructible_in_statics() {
        static MAP: SkipList<u64, u64> = SkipList::new();
        static SET: SkipSet<u64, Hazard> = SkipSet::new();
        MAP.insert(1, 2);
        assert!(SET.insert(1));
        assert_eq!((MAP.len(), SET.len()), (1, 1));
    }

    #[test]
    fn send_sync_bounds() {
        fn is_send_sync<X: Send + Sync>() {}
        is_send_sync::<SkipList<String, Vec<u8>, Epoch>>();
        is_send_sync::<SkipSet<u64, Hazard>>();
    }

    /// One step of the model test.
    #[derive(Debug, Clone)]
    enum Step {
        Insert(u8, u16),
        TryInsert(u8, u16),
        Remove(u8),
        Get(u8),
        PopFirst,
        PopLast,
        LowerBound(u8),
        UpperBound(u8),
        Range(u8, u8),
    }

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            (0u8..24, any::<u16>()).prop_map(|(k, v)| Step::Insert(k, v)),
            (0u8..24, any::<u16>()).prop_map(|(k, v)| Step::TryInsert(k, v)),
            (0u8..24).prop_map(Step::Remove),
            (0u8..24).prop_map(Step::Get),
            Just(Step::PopFirst),
            Just(Step::PopLast),
            (0u8..24).prop_map(Step::LowerBound),
            (0u8..24).prop_map(Step::UpperBound),
            (0u8..24, 0u8..24).prop_map(|(a, b)| Step::Range(a.min(b), a.max(b))),
        ]
    }

    /// Runs `steps` on the map and on a `BTreeMap`; every result, the
    /// invariants and the final contents must agree.
    fn agrees_with_btreemap<R: Reclaim>(mut map: SkipList<u8, u16, R>, steps: &[Step]) {
        let mut model = BTreeMap::new();
        let pair = |e: Ref<'_, u8, u16, R>| (*e.key(), *e.value());
        let kv = |(&k, &v): (&u8, &u16)| (k, v);
        for s in steps {
            match *s {
                Step::Insert(k, v) => {
                    model.insert(k, v);
                    assert_eq!(pair(map.insert(k, v)), (k, v));
                }
                Step::TryInsert(k, v) => {
                    let fresh = !model.contains_key(&k);
                    if fresh {
                        model.insert(k, v);
                    }
                    assert_eq!(map.try_insert(k, v).is_ok(), fresh, "{s:?}");
                }
                Step::Remove(k) => {
                    assert_eq!(map.remove(&k).map(pair), model.remove(&k).map(|v| (k, v)))
                }
                Step::Get(k) => assert_eq!(map.get(&k).map(pair), model.get_key_value(&k).map(kv)),
                Step::PopFirst => assert_eq!(map.pop_first().map(pair), model.pop_first()),
                Step::PopLast => assert_eq!(map.pop_last().map(pair), model.pop_last()),
                Step::LowerBound(k) => assert_eq!(
                    map.lower_bound(Included(&k)).map(pair),
                    model.range(k..).next().map(kv)
                ),
                Step::UpperBound(k) => assert_eq!(
                    map.upper_bound(Excluded(&k)).map(pair),
                    model.range(..k).next_back().map(kv)
                ),
                Step::Range(a, b) => {
                    assert_eq!(
                        map.range(a..b).map(pair).collect::<Vec<_>>(),
                        model.range(a..b).map(kv).collect::<Vec<_>>()
                    );
                    assert_eq!(
                        map.range(a..=b).rev().map(pair).collect::<Vec<_>>(),
                        model.range(a..=b).rev().map(kv).collect::<Vec<_>>()
                    );
                }
            }
            assert_eq!(map.len(), model.len());
        }
        map.check_invariants();
        let all: Vec<_> = map.iter().map(pair).collect();
        assert_eq!(all, model.into_iter().collect::<Vec<_>>());
    }

    /// Steps per case: fewer under Miri, which runs about 1000x slower.
    const STEPS: usize = if cfg!(miri) { 16 } else { 96 };

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
            agrees_with_btreemap::<Epoch>(SkipList::with_own_domain(), &steps);
        }

        #[test]
        fn model_hazard_own(steps in prop::collection::vec(step(), 0..STEPS)) {
            agrees_with_btreemap::<Hazard>(SkipList::with_own_domain(), &steps);
        }

        #[test]
        fn model_leak(steps in prop::collection::vec(step(), 0..STEPS)) {
            agrees_with_btreemap::<Leak>(SkipList::new(), &steps);
        }
    }
}
