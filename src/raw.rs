//! Unsafe building blocks for writing structures on [`crate::reclaim`].
//!
//! The crate's own structures are built from these; they are public so that
//! other crates (and the seeded-bug models in `loom_tests/`) can build on the
//! same interface.

/// The atomic pointer type that [`Shield::protect`](crate::reclaim::Shield::protect)
/// reads: `core`'s normally, loom's under `cfg(loom)`.
pub use crate::sync::AtomicPtr;

/// A node that a reclamation scheme can free once no thread can reach it.
///
/// # Safety
///
/// Implementors guarantee that [`reclaim`](Self::reclaim) frees the node
/// without touching anything but the node's own memory and what it owns, so
/// that it may run on any thread, at any later time up to the drop of the
/// domain it was retired into (with the global domain: after the structure
/// that retired it is gone). Whatever `reclaim` touches (a borrowed key, say)
/// must stay valid that long: see condition 5 of
/// [`Guard::retire`](crate::reclaim::Guard::retire).
///
/// ```
/// # if vvmalloc::LOOM_BUILD { return; }
/// use vvmalloc::raw::Retirable;
/// struct Node { value: u64 }
/// // SAFETY: `reclaim` only frees the `Box` the node was allocated in.
/// unsafe impl Retirable for Node {
///     unsafe fn reclaim(this: *mut Self) {
///         // SAFETY: nodes are allocated by `Box`, reclaimed once.
///         drop(unsafe { Box::from_raw(this) });
///     }
/// }
/// ```
pub unsafe trait Retirable {
    /// Frees the node.
    ///
    /// # Safety
    ///
    /// 1. `this` was retired and no thread can reach it any more.
    /// 2. It is called at most once per node.
    unsafe fn reclaim(this: *mut Self);
}

/// A `T` on the heap that is reclaimed by dropping its `Box`: the simplest
/// [`Retirable`]. `T: 'static`, since reclamation may drop it at any later
/// time (with the global domain, after everything else it could borrow is
/// gone).
///
/// ```
/// # if vvmalloc::LOOM_BUILD { return; }
/// use vvmalloc::raw::Boxed;
/// let b = Box::new(Boxed(3));
/// assert_eq!(b.0, 3);
/// ```
#[derive(Debug, Default)]
pub struct Boxed<T>(pub T);

// SAFETY: `reclaim` drops the `Box` the value was allocated in, and with it
// the `T`; nothing else is touched.
unsafe impl<T: 'static> Retirable for Boxed<T> {
    unsafe fn reclaim(this: *mut Self) {
        // SAFETY: condition 1-2 of `reclaim`: `this` came from `Box::into_raw`
        // (the type's contract) and is reclaimed once.
        drop(unsafe { Box::from_raw(this) });
    }
}

/// Frees a node allocated with `Box::new` without dropping its contents:
/// the fields must already have been moved out or be `ManuallyDrop`.
///
/// Under `cfg(loom)` the node is poisoned through its [`Liveness`] and leaked
/// instead, so that a late read is a loom report, not undefined behaviour in
/// the checker.
///
/// # Safety
///
/// 1. `this` came from `Box::<N>::into_raw` and is not used again.
/// 2. `liveness` is `this`'s own field.
///
/// ```
/// # if vvmalloc::LOOM_BUILD { return; }
/// use std::mem::ManuallyDrop;
/// use vvmalloc::raw::{free_node, Liveness};
/// struct Node { value: ManuallyDrop<String>, liveness: Liveness }
/// let n = Box::into_raw(Box::new(Node {
///     value: ManuallyDrop::new("moved out first".into()),
///     liveness: Liveness::new(),
/// }));
/// // SAFETY: `n` is ours; its value is moved out before the node is freed.
/// let value = unsafe { ManuallyDrop::take(&mut (*n).value) };
/// // SAFETY: from `Box::into_raw`, never used again; its own `liveness`.
/// unsafe { free_node(n, |n| &n.liveness) };
/// assert_eq!(value, "moved out first");
/// ```
pub unsafe fn free_node<N>(this: *mut N, liveness: impl FnOnce(&N) -> &Liveness) {
    #[cfg(loom)]
    {
        // SAFETY: condition 1: `this` is still allocated (leaked below).
        liveness(unsafe { &*this }).kill();
    }
    #[cfg(not(loom))]
    {
        let _ = liveness;
        let layout = core::alloc::Layout::new::<N>();
        if layout.size() != 0 {
            // SAFETY: condition 1: `Box::new` allocated `this` with `N`'s
            // layout from the global allocator.
            unsafe { std::alloc::dealloc(this.cast(), layout) };
        }
    }
}

/// A use-after-reclaim detector for loom models; zero-sized and free outside
/// loom.
///
/// Under `cfg(loom)` a node's `Liveness` is a loom-tracked cell. Reclamation
/// writes it ([`kill`](Self::kill)); every read of a node through a shared
/// pointer first calls [`check`](Self::check). A read that races with the
/// reclamation is a loom causality report, and a read after it fails the
/// check: either way loom catches the use after free.
///
/// ```
/// # if vvmalloc::LOOM_BUILD { return; }
/// use vvmalloc::raw::Liveness;
/// let l = Liveness::new();
/// l.check();
/// ```
#[derive(Debug)]
pub struct Liveness {
    #[cfg(loom)]
    alive: loom::cell::UnsafeCell<bool>,
}

impl Liveness {
    /// A live node's marker.
    #[cfg(not(loom))]
    pub const fn new() -> Self {
        Self {}
    }

    /// A live node's marker.
    #[cfg(loom)]
    pub fn new() -> Self {
        Self {
            alive: loom::cell::UnsafeCell::new(true),
        }
    }

    /// Asserts (under loom) that the node has not been reclaimed.
    ///
    /// # Panics
    ///
    /// Under loom, if [`kill`](Self::kill) ran before.
    #[inline(always)]
    pub fn check(&self) {
        #[cfg(loom)]
        self.alive.with(|a| {
            // SAFETY: loom reports a read that races with `kill`; ordered
            // reads see a plain `bool`.
            let alive = unsafe { *a };
            assert!(alive, "use after reclaim: node read after it was freed");
        });
    }

    /// Marks the node reclaimed (under loom).
    ///
    /// # Panics
    ///
    /// Under loom, if the node was reclaimed before: a double free (a node
    /// retired twice, say) is a loom report too.
    ///
    /// ```
    /// # if vvmalloc::LOOM_BUILD { return; }
    /// vvmalloc::raw::Liveness::new().kill();
    /// ```
    #[inline(always)]
    pub fn kill(&self) {
        #[cfg(loom)]
        self.alive.with_mut(|a| {
            // SAFETY: loom reports a write that races with a `check` or
            // another `kill`; ordered accesses see a plain `bool`.
            unsafe {
                assert!(*a, "double reclaim: node freed twice");
                *a = false
            }
        });
    }
}

impl Default for Liveness {
    /// A live node's marker (as [`Liveness::new`]; a derived `Default` would
    /// start dead under loom, whose `UnsafeCell<bool>` defaults to `false`).
    fn default() -> Self {
        Self::new()
    }
}
