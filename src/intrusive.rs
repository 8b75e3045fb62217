//! An intrusive, ABA-safe Treiber stack: the nodes are the caller's memory.
//!
//! [`TreiberStack`](crate::TreiberStack) allocates a node per value and frees
//! it through a reclamation scheme. An allocator cannot work that way: its
//! free lists *are* the memory it manages, and freeing a node would call the
//! allocator itself. [`IntrusiveStack`] links nodes that the caller owns
//! through a [`Link`] embedded in each of them, allocates nothing, and needs no
//! reclamation scheme.
//!
//! # ABA
//!
//! A plain Treiber `pop` reads the top node `A` and its successor `B`, then
//! CASes the head from `A` to `B`. If meanwhile other threads pop `A`, pop `B`
//! and push `A` again, the CAS still sees `A` and succeeds, making the stack's
//! top `B`, a node that is no longer in it (the ABA problem).
//! [`TreiberStack`](crate::TreiberStack) rules that out by protecting `A` from
//! reuse. Here the head is a *tagged pointer*: the node address and a 64-bit
//! counter, changed together by one 128-bit CAS (`cmpxchg16b` on x86_64,
//! `casp` or `ldxp`/`stxp` on aarch64, through `portable-atomic`). Every
//! successful CAS increments the counter, so a CAS whose expected value was
//! read before any other successful CAS fails. A 64-bit counter cannot wrap
//! around while one thread is between its load and its CAS.
//!
//! # Type-stable memory
//!
//! `pop` reads the `next` link of a node that another thread may have popped
//! (and pushed somewhere else) in the meantime; that read is an atomic load
//! whose value is thrown away when the CAS fails. So a node's memory must stay
//! allocated, and its `Link` must stay a `Link`, for as long as any thread may
//! still be inside an operation on a stack it was ever pushed on: *type-stable
//! memory*. The allocator keeps its batch descriptors and span records in
//! side tables it never frees, which is exactly that.
//!
//! # Linearization points
//!
//! `push` and `push_chain`: the successful CAS. `pop` and `take_all`: the
//! successful CAS, or the load that saw an empty stack.
//!
//! ```
//! # if vvmalloc::LOOM_BUILD { return; }
//! use std::ptr::NonNull;
//! use vvmalloc::intrusive::{IntrusiveStack, Link};
//!
//! #[repr(C)]
//! struct Block {
//!     link: Link, // first field: a `*mut Link` is a `*mut Block`
//!     id: u32,
//! }
//!
//! let blocks: Vec<Block> = (0..3).map(|id| Block { link: Link::new(), id }).collect();
//! let stack = IntrusiveStack::new();
//! for b in &blocks {
//!     // SAFETY: `blocks` outlives `stack` and is not moved while in use.
//!     unsafe { stack.push(NonNull::from(&b.link)) };
//! }
//! let top = stack.pop().unwrap();
//! // SAFETY: `Link` is the first field of the `repr(C)` `Block`.
//! let id = unsafe { top.cast::<Block>().as_ref().id };
//! assert_eq!(id, 2);
//! ```

use core::fmt;
use core::ptr::{self, NonNull};

use crate::sync::{AtomicPtr, AtomicU128, Ordering};

/// The link embedded in each node of an [`IntrusiveStack`].
///
/// Put it in the node (first field of a `repr(C)` struct, to convert between
/// the two pointers for free) and hand the stack a pointer to it.
#[derive(Debug)]
#[repr(transparent)]
pub struct Link {
    next: AtomicPtr<Link>,
}

impl Link {
    /// A link that points nowhere.
    #[cfg(not(loom))]
    pub const fn new() -> Self {
        Self {
            next: AtomicPtr::new(ptr::null_mut()),
        }
    }

    /// A link that points nowhere.
    #[cfg(loom)]
    pub fn new() -> Self {
        Self {
            next: AtomicPtr::new(ptr::null_mut()),
        }
    }

    /// The node below this one when it was pushed, or the next one of a chain
    /// (see [`IntrusiveStack::take_all`] and
    /// [`IntrusiveStack::push_chain`]); null at the end.
    pub fn next(&self) -> *mut Link {
        // Relaxed: read by the node's owner, which acquired the node (the
        // Acquire load or CAS of the head that paired with the Release CAS
        // that published it, or its own earlier `set_next`).
        self.next.load(Ordering::Relaxed)
    }

    /// Sets the next node of a chain that is about to be pushed with
    /// [`IntrusiveStack::push_chain`].
    pub fn set_next(&self, next: *mut Link) {
        // Relaxed: published by the Release CAS of the `push_chain` that
        // pushes the chain.
        self.next.store(next, Ordering::Relaxed);
    }
}

impl Default for Link {
    fn default() -> Self {
        Self::new()
    }
}

/// An intrusive Treiber stack with a tagged (pointer, counter) head: lock-free,
/// ABA-safe, allocation-free. See the [module documentation](self).
pub struct IntrusiveStack {
    /// Low 64 bits: the top node's address (exposed provenance); high 64
    /// bits: the counter, incremented by every successful CAS.
    head: AtomicU128,
}

// SAFETY: the stack holds addresses, not values; what crosses threads is the
// ownership of nodes, which the unsafe `push` contracts make the caller's
// responsibility.
unsafe impl Send for IntrusiveStack {}
// SAFETY: every shared access goes through the atomic head and the atomic
// links, and the type-stable-memory contract of `push` keeps the links valid.
unsafe impl Sync for IntrusiveStack {}

#[inline]
fn pack(node: *mut Link, tag: u64) -> u128 {
    (node.expose_provenance() as u64 as u128) | ((tag as u128) << 64)
}

#[inline]
fn node_of(head: u128) -> *mut Link {
    ptr::with_exposed_provenance_mut(head as u64 as usize)
}

#[inline]
fn tag_of(head: u128) -> u64 {
    (head >> 64) as u64
}

impl IntrusiveStack {
    /// An empty stack.
    #[cfg(not(loom))]
    pub const fn new() -> Self {
        Self {
            head: AtomicU128::new(0),
        }
    }

    /// An empty stack.
    #[cfg(loom)]
    pub fn new() -> Self {
        Self {
            head: AtomicU128::new(0),
        }
    }

    /// Whether the stack was empty when looked at.
    pub fn is_empty(&self) -> bool {
        // Relaxed: a snapshot; nothing is read through it.
        node_of(self.head.load(Ordering::Relaxed)).is_null()
    }

    /// Pushes one node.
    ///
    /// # Safety
    ///
    /// 1. `node` is valid for reads and writes, is not on any stack, and the
    ///    caller gives up its ownership to the stack until it is popped.
    /// 2. Type-stable memory: the `Link` stays valid (allocated and not
    ///    reused as anything but a `Link`) as long as any thread may still be
    ///    in an operation on this stack, even after the node is popped.
    pub unsafe fn push(&self, node: NonNull<Link>) {
        // SAFETY: a single node is a chain from itself to itself; the caller
        // upholds the rest.
        unsafe { self.push_chain(node, node) }
    }

    /// Pushes a chain of nodes linked by [`Link::set_next`], `first` ending up
    /// on top, in one CAS. `last`'s link is overwritten.
    ///
    /// # Safety
    ///
    /// As for [`push`](Self::push), for every node of the chain; and `last` is
    /// reached from `first` by following the links.
    pub unsafe fn push_chain(&self, first: NonNull<Link>, last: NonNull<Link>) {
        // Relaxed: only a guess for the CAS, which validates it.
        let mut head = self.head.load(Ordering::Relaxed);
        loop {
            // SAFETY: the caller owns `last` (contract 1).
            unsafe { last.as_ref() }.set_next(node_of(head));
            let new = pack(first.as_ptr(), tag_of(head).wrapping_add(1));
            // Release on success: publishes the chain's links and contents
            // to the Acquire load/CAS of the `pop` or `take_all` that takes
            // them. Relaxed on failure: the value is only the next guess.
            match self
                .head
                .compare_exchange_weak(head, new, Ordering::Release, Ordering::Relaxed)
            {
                Ok(_) => return,
                Err(now) => head = now,
            }
        }
    }

    /// Pops the top node, handing its ownership to the caller.
    pub fn pop(&self) -> Option<NonNull<Link>> {
        // Acquire: pairs with the Release CAS that pushed the top node (or a
        // later CAS, all of which are read-modify-writes continuing its
        // release sequence), so its link is visible.
        let mut head = self.head.load(Ordering::Acquire);
        loop {
            let top = NonNull::new(node_of(head))?;
            // SAFETY: type-stable memory (contract 2 of `push`): the link is
            // valid even if another thread popped the node meanwhile; then
            // the tag changed and the CAS below fails, discarding `next`.
            let next = unsafe { top.as_ref() }.next();
            let new = pack(next, tag_of(head).wrapping_add(1));
            // Acquire on success and failure: as for the load above (the
            // node now owned, or the next top to try).
            match self
                .head
                .compare_exchange_weak(head, new, Ordering::Acquire, Ordering::Acquire)
            {
                Ok(_) => return Some(top),
                Err(now) => head = now,
            }
        }
    }

    /// Takes every node at once, leaving the stack empty; the nodes stay
    /// linked (top first, follow [`Link::next`] to null).
    pub fn take_all(&self) -> Option<NonNull<Link>> {
        // Acquire: as in `pop`.
        let mut head = self.head.load(Ordering::Acquire);
        loop {
            let top = NonNull::new(node_of(head))?;
            let new = pack(ptr::null_mut(), tag_of(head).wrapping_add(1));
            // Acquire on success and failure: as for the load above.
            match self
                .head
                .compare_exchange_weak(head, new, Ordering::Acquire, Ordering::Acquire)
            {
                Ok(_) => return Some(top),
                Err(now) => head = now,
            }
        }
    }

    /// A deliberately broken `pop` that compares only the address (as an
    /// untagged Treiber stack over reused memory would), for the loom model
    /// that must catch ABA. Not part of the API.
    #[cfg(loom)]
    #[doc(hidden)]
    pub fn seeded_bug_pop_untagged(&self) -> Option<NonNull<Link>> {
        loop {
            let head = self.head.load(Ordering::Acquire);
            let top = NonNull::new(node_of(head))?;
            // SAFETY: as in `pop`.
            let next = unsafe { top.as_ref() }.next();
            // The bug: re-read the head and accept any value with the same
            // address, whatever happened in between.
            let now = self.head.load(Ordering::Acquire);
            if node_of(now) != top.as_ptr() {
                continue;
            }
            let new = pack(next, tag_of(now).wrapping_add(1));
            // Acquire on success and failure: as in `pop`.
            if self
                .head
                .compare_exchange(now, new, Ordering::Acquire, Ordering::Acquire)
                .is_ok()
            {
                return Some(top);
            }
        }
    }
}

impl Default for IntrusiveStack {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for IntrusiveStack {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IntrusiveStack")
            .field("is_empty", &self.is_empty())
            .finish()
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use std::collections::HashSet;
    use std::sync::Arc;

    #[repr(C)]
    struct Node {
        link: Link,
        id: usize,
    }

    fn nodes(n: usize) -> Vec<Node> {
        (0..n)
            .map(|id| Node {
                link: Link::new(),
                id,
            })
            .collect()
    }

    fn id(link: NonNull<Link>) -> usize {
        // SAFETY: every link in these tests is the first field of a `Node`.
        unsafe { link.cast::<Node>().as_ref().id }
    }

    #[test]
    fn lifo_and_empty() {
        let ns = nodes(4);
        let s = IntrusiveStack::new();
        assert!(s.is_empty() && s.pop().is_none() && s.take_all().is_none());
        for n in &ns {
            // SAFETY: `ns` outlives `s`.
            unsafe { s.push(NonNull::from(&n.link)) };
        }
        assert!(!s.is_empty());
        let got: Vec<usize> = std::iter::from_fn(|| s.pop().map(id)).collect();
        assert_eq!(got, [3, 2, 1, 0]);
        assert!(s.is_empty());
    }

    #[test]
    fn chains_push_and_take_all() {
        let ns = nodes(5);
        let s = IntrusiveStack::new();
        // SAFETY: `ns` outlives `s`.
        unsafe { s.push(NonNull::from(&ns[4].link)) };
        for w in ns[..4].windows(2) {
            w[0].link.set_next(NonNull::from(&w[1].link).as_ptr());
        }
        // SAFETY: nodes 0..=3 are linked in order and owned by us.
        unsafe { s.push_chain(NonNull::from(&ns[0].link), NonNull::from(&ns[3].link)) };
        let mut got = Vec::new();
        let mut cur = s.take_all().map_or(ptr::null_mut(), NonNull::as_ptr);
        while let Some(n) = NonNull::new(cur) {
            got.push(id(n));
            // SAFETY: we own the chain.
            cur = unsafe { n.as_ref() }.next();
        }
        assert_eq!(got, [0, 1, 2, 3, 4]);
        assert!(s.is_empty());
    }

    /// Threads pop and push back nodes of a shared pool; every node is held
    /// by at most one thread at a time, and all come back.
    #[test]
    fn stress_no_node_held_twice() {
        let (threads, n, rounds) = if cfg!(miri) {
            (2, 4, 50)
        } else {
            (4, 64, 20_000)
        };
        let ns: Arc<Vec<Node>> = Arc::new(nodes(n));
        let held: Arc<Vec<crate::sync::plain::AtomicBool>> = Arc::new(
            (0..n)
                .map(|_| crate::sync::plain::AtomicBool::new(false))
                .collect(),
        );
        let s = Arc::new(IntrusiveStack::new());
        for node in ns.iter() {
            // SAFETY: `ns` is kept alive by the Arc until after the threads.
            unsafe { s.push(NonNull::from(&node.link)) };
        }
        let hs: Vec<_> = (0..threads)
            .map(|_| {
                let (s, ns, held) = (s.clone(), ns.clone(), held.clone());
                crate::sync::thread::spawn(move || {
                    let _keep = &ns;
                    for _ in 0..rounds {
                        if let Some(node) = s.pop() {
                            let i = id(node);
                            assert!(
                                !held[i].swap(true, Ordering::SeqCst),
                                "node {i} popped twice"
                            );
                            held[i].store(false, Ordering::SeqCst);
                            // SAFETY: we own `node`; `ns` outlives the stack's use.
                            unsafe { s.push(node) };
                        }
                    }
                })
            })
            .collect();
        for h in hs {
            h.join().unwrap();
        }
        let mut seen = HashSet::new();
        while let Some(node) = s.pop() {
            assert!(seen.insert(id(node)));
        }
        assert_eq!(seen.len(), n);
    }
}
