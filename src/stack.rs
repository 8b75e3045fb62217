//! Treiber's lock-free stack (R. K. Treiber, *Systems Programming: Coping with
//! Parallelism*, IBM RJ 5118, 1986), generic over the reclamation scheme.
//!
//! # Structure and invariants
//!
//! `head` points to the top node or is null; each node's `next` points to the
//! node below. A node is allocated by `push` and published by one CAS of
//! `head`; from then on its `value` and `next` are never written again. A node
//! leaves the stack by one CAS of `head` from it to its `next`; the thread
//! whose CAS succeeds owns the value, moves it out, and retires the node. Every
//! node is retired exactly once and only after it is unreachable from `head`.
//!
//! # Linearization points
//!
//! - `push`: the successful CAS of `head`.
//! - `pop` returning a value: its successful CAS of `head`.
//! - `pop` returning `None` and `is_empty`: the load of `head` that saw null.
//!
//! # ABA
//!
//! `pop`'s CAS compares addresses: if the top node were freed and its address
//! reused by a new node between the load and the CAS, the CAS would succeed
//! with a stale `next`. The reclamation scheme rules that out: the node read
//! is protected (pinned epoch or hazard pointer), so it is not freed, so no
//! new node can have its address. [`Leak`](crate::reclaim::Leak) never frees.

use core::fmt;
use core::marker::PhantomData;
use core::mem::ManuallyDrop;
use core::ptr;

use crate::raw::{free_node, Liveness, Retirable};
use crate::reclaim::{Domain, Epoch, Reclaim};
use crate::sync::{AtomicPtr, Ordering, UnsafeCell};

struct Node<T> {
    /// Written before the node is published, moved out by the popping thread.
    value: UnsafeCell<ManuallyDrop<T>>,
    /// Written before the node is published, immutable afterwards.
    next: UnsafeCell<*mut Node<T>>,
    liveness: Liveness,
}

// SAFETY: what crosses threads through `Node: Send` is the node's
// reclamation (`Guard::retire` requires `Send`), and `reclaim` deallocates the
// memory without touching the `T` in it (already moved out by `pop`). Values
// themselves cross threads only through the stack's own `Send`/`Sync`, which
// require `T: Send`.
unsafe impl<T> Send for Node<T> {}

// SAFETY: `reclaim` only deallocates the node's memory (its value was moved
// out by `pop`, and `next` and `liveness` own nothing), so it touches no `T`
// and may run on any thread at any later time.
unsafe impl<T> Retirable for Node<T> {
    unsafe fn reclaim(this: *mut Self) {
        // SAFETY: (1) nodes come from `Box::into_raw` in `push`, and the
        // reclamation scheme calls this once no thread can reach the node;
        // (2) `liveness` is the node's own.
        unsafe { free_node(this, |n| &n.liveness) }
    }
}

/// A lock-free LIFO stack (Treiber 1986), generic over the reclamation scheme.
///
/// `push` and `pop` are lock-free: a thread's CAS fails only when another
/// thread's succeeded. Values are moved in by `push` and out by `pop`, so a
/// popped value is dropped by its new owner at once, and `T` need not be
/// `'static` with any scheme or domain.
///
/// # Examples
///
/// ```
/// # if vvmalloc::LOOM_BUILD { return; }
/// use std::sync::Arc;
/// use std::thread;
/// use vvmalloc::TreiberStack;
///
/// let stack: Arc<TreiberStack<i32>> = Arc::new(TreiberStack::new());
/// let handles: Vec<_> = (0..4)
///     .map(|t| {
///         let stack = Arc::clone(&stack);
///         thread::spawn(move || {
///             for i in 0..100 {
///                 stack.push(t * 100 + i);
///             }
///         })
///     })
///     .collect();
/// for h in handles {
///     h.join().unwrap();
/// }
/// let mut all: Vec<i32> = std::iter::from_fn(|| stack.pop()).collect();
/// all.sort();
/// assert_eq!(all, (0..400).collect::<Vec<_>>());
/// ```
///
/// Choosing the scheme and the domain:
///
/// ```
/// # if vvmalloc::LOOM_BUILD { return; }
/// use vvmalloc::reclaim::{Domain, Hazard};
/// use vvmalloc::TreiberStack;
///
/// // Hazard pointers, in a domain of the stack's own: everything the stack
/// // retires is freed when it is dropped.
/// let stack: TreiberStack<String, Hazard> = TreiberStack::with_domain(Domain::new());
/// stack.push("a".to_string());
/// assert_eq!(stack.pop().as_deref(), Some("a"));
/// ```
pub struct TreiberStack<T, R: Reclaim = Epoch> {
    head: AtomicPtr<Node<T>>,
    domain: Domain<R>,
    /// The stack owns its `T`s (for drop check and auto traits).
    _values: PhantomData<T>,
}

// SAFETY: the stack owns its values; sending it sends them (`T: Send`). The
// domain is `Send` by `Reclaim`'s bounds.
unsafe impl<T: Send, R: Reclaim> Send for TreiberStack<T, R> {}
// SAFETY: through `&TreiberStack` values only move in (`push`) and out
// (`pop`) by value, never shared as `&T`, so `T: Send` suffices, as for
// `std::sync::Mutex`.
unsafe impl<T: Send, R: Reclaim> Sync for TreiberStack<T, R> {}

impl<T, R: Reclaim> TreiberStack<T, R> {
    /// An empty stack in the scheme's process-wide domain. It is a `const fn`,
    /// so a stack can be a `static`.
    ///
    /// Under `cfg(loom)` this is not `const` and uses a domain of its own
    /// (see [`Domain::default`]).
    ///
    /// ```
    /// # if vvmalloc::LOOM_BUILD { return; }
    /// use vvmalloc::TreiberStack;
    /// let free: TreiberStack<usize> = TreiberStack::new();
    /// free.push(4);
    /// assert_eq!(free.pop(), Some(4));
    /// ```
    #[cfg(not(loom))]
    pub const fn new() -> Self {
        Self::with_domain(Domain::global())
    }

    /// An empty stack in a fresh domain of its own (`cfg(loom)` has no
    /// process-wide domain).
    #[cfg(loom)]
    pub fn new() -> Self {
        Self::with_domain(Domain::new())
    }

    /// An empty stack that retires its nodes into `domain`.
    ///
    /// ```
    /// # if vvmalloc::LOOM_BUILD { return; }
    /// use vvmalloc::reclaim::{Domain, Epoch};
    /// use vvmalloc::TreiberStack;
    /// let s: TreiberStack<u8, Epoch> = TreiberStack::with_domain(Domain::new());
    /// assert!(s.is_empty());
    /// ```
    #[cfg(not(loom))]
    pub const fn with_domain(domain: Domain<R>) -> Self {
        Self {
            head: AtomicPtr::new(ptr::null_mut()),
            domain,
            _values: PhantomData,
        }
    }

    /// An empty stack that retires its nodes into `domain`.
    #[cfg(loom)]
    pub fn with_domain(domain: Domain<R>) -> Self {
        Self {
            head: AtomicPtr::new(ptr::null_mut()),
            domain,
            _values: PhantomData,
        }
    }

    /// An empty stack with a reclamation domain of its own: every node it
    /// retires is freed when the stack is dropped, at the latest, so its
    /// values need not be `'static`.
    ///
    /// ```
    /// # if vvmalloc::LOOM_BUILD { return; }
    /// use vvmalloc::reclaim::Hazard;
    /// use vvmalloc::TreiberStack;
    /// let local = String::from("borrowed");
    /// let s: TreiberStack<&String, Hazard> = TreiberStack::with_own_domain();
    /// s.push(&local);
    /// assert!(!s.domain().is_global());
    /// ```
    pub fn with_own_domain() -> Self {
        Self::with_domain(Domain::new())
    }

    /// The domain the stack retires its nodes into.
    ///
    /// ```
    /// # if vvmalloc::LOOM_BUILD { return; }
    /// use vvmalloc::TreiberStack;
    /// let s: TreiberStack<u8> = TreiberStack::new();
    /// assert!(s.domain().is_global());
    /// ```
    pub fn domain(&self) -> &Domain<R> {
        &self.domain
    }

    /// Pushes `value` on top of the stack.
    ///
    /// ```
    /// # if vvmalloc::LOOM_BUILD { return; }
    /// use vvmalloc::TreiberStack;
    /// let s: TreiberStack<_> = TreiberStack::new();
    /// s.push('x');
    /// assert!(!s.is_empty());
    /// ```
    pub fn push(&self, value: T) {
        let node = Box::into_raw(Box::new(Node {
            value: UnsafeCell::new(ManuallyDrop::new(value)),
            next: UnsafeCell::new(ptr::null_mut()),
            liveness: Liveness::new(),
        }));
        // Relaxed: `head` is only stored into the private node; the CAS below
        // checks it is still current. Push reads no shared node, so it needs
        // no guard.
        let mut head = self.head.load(Ordering::Relaxed);
        loop {
            // SAFETY: `node` is not published yet: this thread owns it.
            unsafe { (*node).next.with_mut(|next| *next = head) };
            // Release: publishes the node's `value` and `next`; pairs with
            // the Acquire load of `head` in `Shield::protect` (in `pop`).
            // Relaxed on failure: the new `head` is only stored into the node.
            match self
                .head
                .compare_exchange_weak(head, node, Ordering::Release, Ordering::Relaxed)
            {
                Ok(_) => return,
                Err(now) => head = now,
            }
        }
    }

    /// Removes the top value and returns it, or `None` if the stack is empty.
    ///
    /// ```
    /// # if vvmalloc::LOOM_BUILD { return; }
    /// use vvmalloc::TreiberStack;
    /// let s: TreiberStack<_> = [1, 2].into_iter().collect();
    /// assert_eq!(s.pop(), Some(2));
    /// assert_eq!(s.pop(), Some(1));
    /// assert_eq!(s.pop(), None);
    /// ```
    pub fn pop(&self) -> Option<T> {
        let guard = self.domain.pin();
        let mut shield = guard.shield();
        loop {
            let head = shield.protect(&self.head);
            if head.is_null() {
                return None;
            }
            // SAFETY: `head` is non-null and protected by `shield`, so it is
            // a published node that is not reclaimed while we read it.
            let node = unsafe { &*head };
            node.liveness.check();
            // SAFETY: `next` is immutable once the node is published, and the
            // Acquire in `protect` made the pusher's write visible.
            let next = node.next.with(|next| unsafe { *next });
            // Acquire on success: defensive. The Acquire load in `protect`
            // already synchronizes with the pusher's Release CAS (every later
            // write of `head` is a CAS, so it continues that release
            // sequence); this keeps the value read below ordered after the
            // push even without that argument. Costs nothing on x86.
            // Relaxed on failure: the loop protects `head` again.
            if self
                .head
                .compare_exchange_weak(head, next, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
            {
                // SAFETY: our CAS unlinked the node, so this thread alone owns
                // its value; it is read once and never dropped in place.
                let value = node.value.with(|v| unsafe { ptr::read(v) });
                // SAFETY: (1) the node is unlinked: `head` no longer points to
                // it and no node's `next` does (it was the top); (2) only the
                // thread whose CAS succeeded retires it; (3) it came from
                // `Box` and `reclaim` touches no `T`; (4) every reader
                // protects through `self.domain`.
                unsafe { guard.retire(head) };
                return Some(ManuallyDrop::into_inner(value));
            }
        }
    }

    /// Whether the stack was empty at the moment of the call.
    ///
    /// Under concurrent pushes and pops the answer may be stale by the time
    /// it is returned.
    ///
    /// ```
    /// # if vvmalloc::LOOM_BUILD { return; }
    /// use vvmalloc::TreiberStack;
    /// let s: TreiberStack<_> = TreiberStack::new();
    /// assert!(s.is_empty());
    /// s.push(());
    /// assert!(!s.is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        // Relaxed: only null-ness is used; no node is read through it.
        self.head.load(Ordering::Relaxed).is_null()
    }
}

impl<T, R: Reclaim> Default for TreiberStack<T, R> {
    /// An empty stack, as [`TreiberStack::new`].
    fn default() -> Self {
        Self::new()
    }
}

impl<T, R: Reclaim> Drop for TreiberStack<T, R> {
    fn drop(&mut self) {
        // Relaxed: `&mut self` excludes every other thread, and the threads
        // that pushed were joined (or synchronized) before we got `&mut`.
        let mut cur = self.head.load(Ordering::Relaxed);
        // A loop, not recursion: a long stack cannot overflow ours.
        while !cur.is_null() {
            // SAFETY: nodes reachable from `head` are live, owned by the
            // stack, and nobody else can reach them while we hold `&mut`.
            let node = unsafe { Box::from_raw(cur) };
            cur = node.next.with(|next| {
                // SAFETY: exclusive access; `next` was set before publication.
                unsafe { *next }
            });
            node.value.with_mut(|v| {
                // SAFETY: the value was never moved out (the node is still
                // linked), and it is dropped once, here.
                unsafe { ManuallyDrop::drop(&mut *v) }
            });
        }
    }
}

impl<T, R: Reclaim> fmt::Debug for TreiberStack<T, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TreiberStack")
            .field("scheme", &R::NAME)
            .field("is_empty", &self.is_empty())
            .finish_non_exhaustive()
    }
}

impl<T, R: Reclaim> FromIterator<T> for TreiberStack<T, R> {
    /// Pushes the items in order, so the last one is on top.
    fn from_iter<I: IntoIterator<Item = T>>(iter: I) -> Self {
        let mut stack = Self::new();
        stack.extend(iter);
        stack
    }
}

impl<T, R: Reclaim> Extend<T> for TreiberStack<T, R> {
    /// Pushes the items in order, so the last one ends on top.
    fn extend<I: IntoIterator<Item = T>>(&mut self, iter: I) {
        for value in iter {
            self.push(value);
        }
    }
}

impl<T, R: Reclaim> Extend<T> for &TreiberStack<T, R> {
    /// Pushes the items in order through a shared reference.
    fn extend<I: IntoIterator<Item = T>>(&mut self, iter: I) {
        for value in iter {
            self.push(value);
        }
    }
}

/// An iterator that pops every value of a [`TreiberStack`], top first.
///
/// ```
/// # if vvmalloc::LOOM_BUILD { return; }
/// use vvmalloc::TreiberStack;
/// let s: TreiberStack<_> = (1..=3).collect();
/// assert_eq!(s.into_iter().collect::<Vec<_>>(), [3, 2, 1]);
/// ```
#[derive(Debug)]
pub struct IntoIter<T, R: Reclaim = Epoch>(TreiberStack<T, R>);

impl<T, R: Reclaim> Iterator for IntoIter<T, R> {
    type Item = T;
    fn next(&mut self) -> Option<T> {
        self.0.pop()
    }
}

impl<T, R: Reclaim> IntoIterator for TreiberStack<T, R> {
    type Item = T;
    type IntoIter = IntoIter<T, R>;
    fn into_iter(self) -> IntoIter<T, R> {
        IntoIter(self)
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::reclaim::{Hazard, Leak};

    fn lifo<R: Reclaim>(stack: TreiberStack<u32, R>) {
        assert!(stack.is_empty());
        assert_eq!(stack.pop(), None);
        for i in 0..10 {
            stack.push(i);
        }
        assert!(!stack.is_empty());
        for i in (0..10).rev() {
            assert_eq!(stack.pop(), Some(i));
        }
        assert_eq!(stack.pop(), None);
        assert!(stack.is_empty());
    }

    // Tests named `*own*` use only own domains, so they free everything they
    // allocate: CI runs them under Miri with its leak check on.
    #[test]
    fn lifo_epoch_own() {
        lifo::<Epoch>(TreiberStack::with_domain(Domain::new()));
    }

    #[test]
    fn lifo_hazard_own() {
        lifo::<Hazard>(TreiberStack::with_domain(Domain::new()));
    }

    #[test]
    fn lifo_global_domains_and_leak() {
        lifo::<Epoch>(TreiberStack::new());
        lifo::<Hazard>(TreiberStack::new());
        lifo::<Leak>(TreiberStack::new());
    }

    #[test]
    fn own_domain_frees_retired_nodes_on_drop() {
        // Popped values are dropped by their owner at once; the retired
        // nodes are freed when the own domain goes (Miri's leak check and
        // the sanitizers see any that are not).
        let s: TreiberStack<Box<u32>, Hazard> = TreiberStack::with_domain(Domain::new());
        for i in 0..100 {
            s.push(Box::new(i));
        }
        for _ in 0..100 {
            assert!(s.pop().is_some());
        }
        drop(s);
        let s: TreiberStack<Box<u32>, Epoch> = TreiberStack::with_domain(Domain::new());
        s.push(Box::new(1));
        assert_eq!(s.pop().as_deref(), Some(&1));
    }

    #[test]
    fn const_constructible_static() {
        static FREE: TreiberStack<usize, Hazard> = TreiberStack::new();
        FREE.push(4);
        assert_eq!(FREE.pop(), Some(4));
    }

    #[test]
    fn collect_extend_into_iter() {
        let mut s: TreiberStack<i32, Hazard> = (0..3).collect();
        s.extend([10, 11]);
        (&s).extend([20]);
        assert_eq!(s.into_iter().collect::<Vec<_>>(), [20, 11, 10, 2, 1, 0]);
    }

    #[test]
    fn debug_names_scheme() {
        let s: TreiberStack<u8, Hazard> = TreiberStack::default();
        let text = format!("{s:?}");
        assert!(
            text.contains("hazard") && text.contains("is_empty: true"),
            "{text}"
        );
    }

    #[test]
    fn non_static_values() {
        // Values borrowing from the stack frame: fine with every scheme,
        // since retired nodes hold no value.
        let words = [String::from("a"), String::from("b")];
        let s: TreiberStack<&str, Epoch> = TreiberStack::new();
        for w in &words {
            s.push(w.as_str());
        }
        assert_eq!(s.pop(), Some("b"));
        let h: TreiberStack<&String, Hazard> = TreiberStack::new();
        h.push(&words[0]);
        drop(h);
    }

    #[test]
    fn long_stack_drops_without_recursion() {
        let n = if cfg!(miri) { 1_000 } else { 1_000_000 };
        let s: TreiberStack<usize> = (0..n).collect();
        drop(s);
    }

    #[test]
    fn zero_sized_values() {
        let s: TreiberStack<(), Hazard> = TreiberStack::new();
        s.push(());
        s.push(());
        assert_eq!(s.pop(), Some(()));
        assert_eq!(s.into_iter().count(), 1);
    }

    #[test]
    fn send_sync_bounds() {
        fn is_send_sync<X: Send + Sync>() {}
        is_send_sync::<TreiberStack<String, Epoch>>();
        // `Cell` is `Send` but not `Sync`: values are never shared as `&T`.
        is_send_sync::<TreiberStack<std::cell::Cell<u8>, Hazard>>();
    }
}
