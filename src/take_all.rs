//! A multi-producer stack whose consumers take everything at once: `push` is
//! one CAS, `take_all` one swap.
//!
//! This is the structure behind mimalloc's per-page *thread-free list* and
//! Linux's `llist` (`llist_add` / `llist_del_all`): threads that do not own
//! a resource hand items back to its owner by pushing them, and the owner
//! collects the whole batch with one atomic swap when it next looks. It
//! needs no memory reclamation scheme and has no ABA problem:
//!
//! - `push` never dereferences the head it read: it only links its own
//!   node to it and swings `head` with a CAS, so if the head was taken,
//!   freed and reused at the same address in between, the node links to the
//!   head that is there now, which is what a push at that moment would do.
//! - Nodes leave only through `take_all`, which swaps `head` to null and so
//!   owns the whole chain it got: no other thread can reach those nodes any
//!   more, so the taker may free them at once.
//!
//! # Structure and invariants
//!
//! `head` points to the newest node or is null; each node's `next` points
//! to the node pushed before it. A node's value and `next` are written
//! before the CAS that publishes it (`Release`) and never again while it is
//! in the stack; `take_all`'s swap (`Acquire`) makes them visible to the
//! taker, which owns every node of the chain from then on.
//!
//! # Linearization points
//!
//! - `push`: its successful CAS of `head`.
//! - `take_all`: its swap of `head` (returning everything pushed before it,
//!   newest first); `is_empty`: its load of `head`.
//!
//! # Progress
//!
//! `take_all` and `is_empty` are wait-free; `push` is lock-free (its CAS
//! fails only when another push or a take succeeded).

use core::fmt;
use core::iter::FusedIterator;
use core::marker::PhantomData;
use core::mem::ManuallyDrop;
use core::ptr;

use crate::sync::{AtomicPtr, Ordering, UnsafeCell};

struct Node<T> {
    /// Written before the node is published; moved out by the taker.
    value: UnsafeCell<ManuallyDrop<T>>,
    /// Written before the node is published (and again by a failed CAS's
    /// retry, while still unpublished); immutable in the stack.
    next: UnsafeCell<*mut Node<T>>,
}

/// A multi-producer stack from which consumers take everything at once.
///
/// Any number of threads [`push`](Self::push); any thread
/// [`take_all`](Self::take_all)s, getting every value pushed so far, newest
/// first, with one atomic swap. There is no single-value `pop`: that is
/// what makes the stack free of ABA problems without a reclamation scheme
/// (a [`TreiberStack`](crate::TreiberStack) pops one value at a time and
/// needs one). Use it to hand items to the thread that owns a resource,
/// which collects them in batches, as mimalloc's thread-free lists do.
///
/// ```
/// # if vvmalloc::LOOM_BUILD { return; }
/// use std::sync::Arc;
/// use std::thread;
/// use vvmalloc::TakeAllStack;
///
/// let returns = Arc::new(TakeAllStack::new());
/// let workers: Vec<_> = (0..4)
///     .map(|t| {
///         let returns = returns.clone();
///         thread::spawn(move || (0..10).for_each(|i| returns.push(t * 10 + i)))
///     })
///     .collect();
/// workers.into_iter().for_each(|w| w.join().unwrap());
/// let mut all: Vec<u32> = returns.take_all().collect();
/// all.sort();
/// assert_eq!(all, (0..40).collect::<Vec<_>>());
/// assert!(returns.is_empty());
/// ```
pub struct TakeAllStack<T> {
    head: AtomicPtr<Node<T>>,
    _owns: PhantomData<Box<Node<T>>>,
}

// SAFETY: the stack hands values between threads (pushed on one, taken on
// another), so it is `Send` and `Sync` exactly when `T: Send`; it never
// gives out `&T`, so `T: Sync` is not needed.
unsafe impl<T: Send> Send for TakeAllStack<T> {}
// SAFETY: as above.
unsafe impl<T: Send> Sync for TakeAllStack<T> {}

impl<T> TakeAllStack<T> {
    /// An empty stack.
    ///
    /// ```
    /// # if vvmalloc::LOOM_BUILD { return; }
    /// use vvmalloc::TakeAllStack;
    /// let returns: TakeAllStack<u64> = TakeAllStack::new();
    /// returns.push(1);
    /// assert_eq!(returns.take_all().collect::<Vec<_>>(), [1]);
    /// ```
    ///
    /// Outside loom builds it is a `const fn`, so a stack can be a
    /// `static`.
    #[cfg(not(loom))]
    pub const fn new() -> Self {
        Self {
            head: AtomicPtr::new(ptr::null_mut()),
            _owns: PhantomData,
        }
    }

    /// An empty stack (loom's atomics have no `const` constructor).
    #[cfg(loom)]
    pub fn new() -> Self {
        Self {
            head: AtomicPtr::new(ptr::null_mut()),
            _owns: PhantomData,
        }
    }

    /// Pushes `value`: one allocation and one CAS (retried only if another
    /// push or a take changed the head in between).
    ///
    /// ```
    /// # if vvmalloc::LOOM_BUILD { return; }
    /// use vvmalloc::TakeAllStack;
    /// let s = TakeAllStack::new();
    /// s.push("a");
    /// s.push("b");
    /// assert_eq!(s.take_all().collect::<Vec<_>>(), ["b", "a"]);
    /// ```
    pub fn push(&self, value: T) {
        let node = Box::into_raw(Box::new(Node {
            value: UnsafeCell::new(ManuallyDrop::new(value)),
            next: UnsafeCell::new(ptr::null_mut()),
        }));
        // Relaxed: the CAS below validates it, and `push` never reads
        // through it.
        let mut head = self.head.load(Ordering::Relaxed);
        loop {
            // SAFETY: `node` is not published yet: ours alone.
            unsafe { (*node).next.with_mut(|n| *n = head) };
            // Release: publishes the node's value and `next` to the
            // Acquire swap of `take_all`. Relaxed on failure: we retry
            // with the head we got.
            match self.head.compare_exchange_weak(
                head,
                node,
                seeded::push_order(),
                Ordering::Relaxed,
            ) {
                Ok(_) => return,
                Err(now) => head = now,
            }
        }
    }

    /// Takes every value pushed so far, newest first, with one atomic swap.
    /// The values are the caller's: the returned iterator moves them out,
    /// and drops those it does not yield when it is dropped.
    ///
    /// ```
    /// # if vvmalloc::LOOM_BUILD { return; }
    /// use vvmalloc::TakeAllStack;
    /// let s: TakeAllStack<i32> = [1, 2, 3].into_iter().collect();
    /// let mut batch = s.take_all();
    /// s.push(4); // a push after the take goes to the next batch
    /// assert_eq!(batch.next(), Some(3));
    /// drop(batch); // 2 and 1 are dropped here
    /// assert_eq!(s.take_all().collect::<Vec<_>>(), [4]);
    /// ```
    pub fn take_all(&self) -> TakeAll<T> {
        // Acquire: pairs with the Release CAS of every push in the chain
        // (each push's CAS read the previous one's value, so the chain's
        // pushes form one release sequence ending at the head we take).
        let head = self.head.swap(ptr::null_mut(), seeded::take_order());
        TakeAll {
            next: head,
            _owns: PhantomData,
        }
    }

    /// Whether the stack was empty when looked at.
    ///
    /// ```
    /// # if vvmalloc::LOOM_BUILD { return; }
    /// use vvmalloc::TakeAllStack;
    /// let s = TakeAllStack::new();
    /// assert!(s.is_empty());
    /// s.push(());
    /// assert!(!s.is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        // Relaxed: no node is read through the pointer.
        self.head.load(Ordering::Relaxed).is_null()
    }
}

impl<T> Default for TakeAllStack<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> Drop for TakeAllStack<T> {
    fn drop(&mut self) {
        // A loom model that caught a bug unwinds after its execution is
        // gone: its loom objects cannot be touched; leak them.
        #[cfg(loom)]
        if crate::sync::plain::panicking() {
            return;
        }
        // `&mut self`: no push or take runs; the iterator frees the rest.
        drop(self.take_all());
    }
}

impl<T> Extend<T> for TakeAllStack<T> {
    fn extend<I: IntoIterator<Item = T>>(&mut self, iter: I) {
        for v in iter {
            self.push(v);
        }
    }
}

impl<T> FromIterator<T> for TakeAllStack<T> {
    /// A stack holding the values in order, so that the last one is taken
    /// first.
    fn from_iter<I: IntoIterator<Item = T>>(iter: I) -> Self {
        let mut s = Self::new();
        s.extend(iter);
        s
    }
}

impl<T> fmt::Debug for TakeAllStack<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TakeAllStack")
            .field("is_empty", &self.is_empty())
            .finish()
    }
}

/// The values one [`TakeAllStack::take_all`] took, newest first; owned by
/// the caller (dropping it drops the values not yet yielded).
pub struct TakeAll<T> {
    next: *mut Node<T>,
    _owns: PhantomData<Box<Node<T>>>,
}

// SAFETY: the iterator owns its chain outright (no other thread can reach
// it after the swap), so it may move to another thread with its values.
unsafe impl<T: Send> Send for TakeAll<T> {}
// SAFETY: `&TakeAll` gives access to nothing.
unsafe impl<T: Send> Sync for TakeAll<T> {}

impl<T> Iterator for TakeAll<T> {
    type Item = T;

    fn next(&mut self) -> Option<T> {
        if self.next.is_null() {
            return None;
        }
        // SAFETY: the chain is ours since the swap (module docs); each node
        // came from `Box::into_raw` in `push` and is visited once; its
        // fields were published by the push's Release, which our Acquire
        // swap (or, for later nodes, the release sequence) made visible.
        let node = unsafe { Box::from_raw(self.next) };
        // SAFETY: as above; the value is moved out once, here.
        let value = node
            .value
            .with_mut(|v| unsafe { ManuallyDrop::take(&mut *v) });
        // SAFETY: as above.
        self.next = node.next.with(|n| unsafe { *n });
        Some(value)
    }
}

impl<T> FusedIterator for TakeAll<T> {}

impl<T> Drop for TakeAll<T> {
    fn drop(&mut self) {
        // As in `TakeAllStack`'s drop: a loom report unwinding.
        #[cfg(loom)]
        if crate::sync::plain::panicking() {
            return;
        }
        self.for_each(drop);
    }
}

impl<T> fmt::Debug for TakeAll<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TakeAll")
            .field("is_empty", &self.next.is_null())
            .finish()
    }
}

/// The intrusive flavour of [`TakeAllStack`], for memory blocks: each
/// pushed block's first word holds the link, so a push allocates nothing.
/// This is the allocator's per-page *thread-free list*: a thread frees a
/// block of a page it does not own with one CAS, and the page's owner takes
/// every such block with one swap.
///
/// The protocol, orderings and guarantees are [`TakeAllStack`]'s (see the
/// [module documentation](self)); the chain a [`take_all`](Self::take_all)
/// returns is linked through the blocks' first words, newest first, ending
/// in null.
///
/// ```
/// # if vvmalloc::LOOM_BUILD { return; }
/// use vvmalloc::take_all::IntrusiveTakeAll;
///
/// let list = IntrusiveTakeAll::new();
/// let mut blocks = [[0usize; 2]; 3];
/// for b in &mut blocks {
///     // SAFETY: each block is at least a word, aligned, and ours until taken.
///     unsafe { list.push(b.as_mut_ptr().cast()) };
/// }
/// let mut p: *mut u8 = list.take_all();
/// let mut n = 0;
/// while !p.is_null() {
///     n += 1;
///     // SAFETY: the chain is ours; each block's first word is the next one.
///     p = unsafe { p.cast::<*mut u8>().read() };
/// }
/// assert_eq!(n, 3);
/// assert!(list.is_empty());
/// ```
pub struct IntrusiveTakeAll {
    head: AtomicPtr<u8>,
}

impl IntrusiveTakeAll {
    /// An empty list.
    #[cfg(not(loom))]
    pub const fn new() -> Self {
        Self {
            head: AtomicPtr::new(ptr::null_mut()),
        }
    }

    /// An empty list (loom's atomics have no `const` constructor).
    #[cfg(loom)]
    pub fn new() -> Self {
        Self {
            head: AtomicPtr::new(ptr::null_mut()),
        }
    }

    /// Pushes the block at `p`, writing the link into its first word: one
    /// CAS (retried only if another push or a take changed the head).
    ///
    /// # Safety
    ///
    /// `p` is valid for writes of a pointer, aligned for one, and belongs to
    /// the list (untouched by the caller) until a `take_all` returns it.
    #[inline]
    pub unsafe fn push(&self, p: *mut u8) {
        // Relaxed: the CAS below validates it, and `push` never reads
        // through it.
        let mut head = self.head.load(Ordering::Relaxed);
        loop {
            // SAFETY: the caller's contract: the block is ours until the CAS
            // publishes it.
            unsafe { p.cast::<*mut u8>().write(head) };
            // Release: publishes the link (and whatever the caller wrote to
            // the block) to the Acquire swap of `take_all`. Relaxed on
            // failure: we retry with the head we got.
            match self
                .head
                .compare_exchange_weak(head, p, seeded::push_order(), Ordering::Relaxed)
            {
                Ok(_) => return,
                Err(now) => head = now,
            }
        }
    }

    /// Takes every block pushed so far: the newest, linked through first
    /// words to the oldest, whose link is null; null when the list is
    /// empty. Costs one load when the list is empty, else one swap.
    #[inline]
    pub fn take_all(&self) -> *mut u8 {
        // Relaxed: a peek that reads nothing through the pointer; the swap
        // below acquires.
        if self.head.load(Ordering::Relaxed).is_null() {
            return ptr::null_mut();
        }
        // Acquire: pairs with the Release CAS of every push in the chain
        // (one release sequence, as in `TakeAllStack::take_all`).
        self.head.swap(ptr::null_mut(), seeded::take_order())
    }

    /// Whether the list was empty when looked at.
    pub fn is_empty(&self) -> bool {
        // Relaxed: no block is read through the pointer.
        self.head.load(Ordering::Relaxed).is_null()
    }
}

impl Default for IntrusiveTakeAll {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for IntrusiveTakeAll {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IntrusiveTakeAll")
            .field("is_empty", &self.is_empty())
            .finish()
    }
}

/// The publishing half of the protocol: pairs with `TAKE`.
const PUSH: Ordering = Ordering::Release;
/// Pairs with `PUSH`, through the release sequence of the head.
const TAKE: Ordering = Ordering::Acquire;

/// The two orderings of the protocol. Outside loom they are the constants
/// (one source for both builds, so the loom models check the orderings the
/// release build runs).
#[cfg(not(loom))]
mod seeded {
    use crate::sync::Ordering;

    #[inline(always)]
    pub(super) fn push_order() -> Ordering {
        super::PUSH
    }

    #[inline(always)]
    pub(super) fn take_order() -> Ordering {
        super::TAKE
    }
}

/// Under loom a model can weaken either ordering ([`seeded_weaken`]) to
/// check that the models catch it.
#[cfg(loom)]
mod seeded {
    use core::cell::Cell;

    use crate::sync::Ordering;

    // std's thread-local: loom runs a model's threads on the OS thread of
    // the test that started it, so the switch is that test's alone.
    thread_local! {
        static WEAK_PUSH: Cell<bool> = const { Cell::new(false) };
        static WEAK_TAKE: Cell<bool> = const { Cell::new(false) };
    }

    pub(super) fn set(push: bool, take: bool) {
        WEAK_PUSH.with(|w| w.set(push));
        WEAK_TAKE.with(|w| w.set(take));
    }

    pub(super) fn push_order() -> Ordering {
        if WEAK_PUSH.with(Cell::get) {
            Ordering::Relaxed // the seeded bug: pairs with nothing
        } else {
            super::PUSH
        }
    }

    pub(super) fn take_order() -> Ordering {
        if WEAK_TAKE.with(Cell::get) {
            Ordering::Relaxed // the seeded bug: pairs with nothing
        } else {
            super::TAKE
        }
    }
}

/// The seeded bugs of [`TakeAllStack`], for the loom models: `push`'s CAS
/// `Relaxed` instead of `Release`, or `take_all`'s swap `Relaxed` instead
/// of `Acquire`. Affects the calling test thread's models only.
#[cfg(loom)]
#[doc(hidden)]
pub fn seeded_weaken(push: bool, take: bool) {
    seeded::set(push, take);
}
