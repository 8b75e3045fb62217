//! The synchronization shim: every atomic, `UnsafeCell`, fence, spin hint and
//! thread API that the crate uses comes from here.
//!
//! Normally these are `core`'s and `std`'s own types. Under `--cfg loom` they
//! are [loom]'s, so that `loom::model` sees every shared access the crate
//! makes. No other module reaches `std::sync::atomic` directly, and
//! `.ci/shim-check` makes that a CI error (clippy's `disallowed-types` cannot
//! tell the shim's re-exports from direct uses: they are the same types).
//!
//! haphazard switches to loom's atomics by itself under `cfg(loom)`. The
//! crate's hazard-pointer protocol (its fence and validating re-load) must
//! pair with haphazard's fences and hazard slots inside loom, so the types
//! re-exported here must be the same loom 0.7 ones haphazard uses (the
//! crate's `Cargo.toml` keeps a single loom in the tree).
//!
//! [loom]: https://docs.rs/loom

// The allocator layers use the spin hint, the other atomics and the thread
// API; the shim offers the whole set so that no module reaches around it.
#[cfg(loom)]
pub(crate) use loom::sync::atomic::fence;
/// Re-exported publicly as [`crate::raw::AtomicPtr`].
#[cfg(loom)]
pub use loom::sync::atomic::AtomicPtr;
#[cfg(loom)]
#[allow(unused_imports)]
pub(crate) use loom::{
    hint::spin_loop,
    sync::atomic::{AtomicBool, AtomicIsize, AtomicU32, AtomicUsize},
    thread,
};

/// Reference counting whose drops loom orders (the own epoch domains' slot
/// registry is shared through it with threads' caches).
#[cfg(loom)]
pub(crate) use loom::sync::Arc;
/// Thread-locals that loom gives each model thread its own copy of, and drops
/// when the model thread ends.
#[cfg(loom)]
pub(crate) use loom::thread_local;

#[cfg(not(loom))]
pub(crate) use core::sync::atomic::fence;
/// Re-exported publicly as [`crate::raw::AtomicPtr`].
#[cfg(not(loom))]
pub use core::sync::atomic::AtomicPtr;
#[cfg(not(loom))]
#[allow(unused_imports)]
pub(crate) use core::{
    hint::spin_loop,
    sync::atomic::{AtomicBool, AtomicIsize, AtomicU32, AtomicUsize},
};
#[cfg(not(loom))]
pub(crate) use std::sync::Arc;
#[cfg(not(loom))]
#[allow(unused_imports)]
pub(crate) use std::thread;
#[cfg(not(loom))]
pub(crate) use std::thread_local;

pub(crate) use core::sync::atomic::Ordering;

/// A cell with loom's closure-based API (`with`, `with_mut`), so the same code
/// runs on loom's tracked cell under `cfg(loom)` and on `core`'s cell
/// otherwise. Loom reports any two accesses to a tracked cell that are not
/// ordered by happens-before, which is how the models catch a value published
/// with too weak an ordering.
#[cfg(loom)]
pub(crate) use loom::cell::UnsafeCell;

/// A cell with loom's closure-based API (`with`, `with_mut`), so the same code
/// runs on loom's tracked cell under `cfg(loom)` and on `core`'s cell
/// otherwise.
#[cfg(not(loom))]
#[derive(Debug, Default)]
#[repr(transparent)]
pub(crate) struct UnsafeCell<T: ?Sized>(core::cell::UnsafeCell<T>);

#[cfg(not(loom))]
impl<T> UnsafeCell<T> {
    /// Wraps `value`.
    #[inline(always)]
    pub(crate) const fn new(value: T) -> Self {
        Self(core::cell::UnsafeCell::new(value))
    }
}

#[cfg(not(loom))]
impl<T: ?Sized> UnsafeCell<T> {
    /// Runs `f` with a shared raw pointer to the contents.
    #[inline(always)]
    pub(crate) fn with<R>(&self, f: impl FnOnce(*const T) -> R) -> R {
        f(self.0.get())
    }

    /// Runs `f` with an exclusive raw pointer to the contents.
    #[inline(always)]
    pub(crate) fn with_mut<R>(&self, f: impl FnOnce(*mut T) -> R) -> R {
        f(self.0.get())
    }
}

/// A 128-bit atomic for tagged pointers (pointer and ABA counter in one CAS):
/// `portable-atomic`'s, which is `cmpxchg16b` on x86_64 (detected at run
/// time) and `casp`/`ldxp`/`stxp` on aarch64.
#[cfg(not(loom))]
pub(crate) use portable_atomic::AtomicU128;

/// Loom has no 128-bit atomic. The loom build packs the two halves of the
/// one 128-bit value its only user holds (`IntrusiveStack`'s head: an
/// address below 2^48 in the low half, an ABA counter in the high half)
/// into a loom `AtomicU64`: the address in the low 48 bits, the counter's
/// low 16 bits above. Loom then sees every ordering of the head, not a lock
/// that makes each operation `SeqCst`. A model runs far fewer than 2^16
/// operations, so the counter's wrap-around changes nothing a model can
/// observe; an address that does not fit panics.
#[cfg(loom)]
#[derive(Debug)]
pub(crate) struct AtomicU128(loom::sync::atomic::AtomicU64);

#[cfg(loom)]
const LOW_BITS: u32 = 48;

#[cfg(loom)]
impl AtomicU128 {
    fn pack(v: u128) -> u64 {
        let (low, high) = (v as u64, (v >> 64) as u64);
        assert!(
            low >> LOW_BITS == 0,
            "loom's 128-bit atomic holds 48-bit addresses only"
        );
        low | (high << LOW_BITS)
    }

    fn unpack(v: u64) -> u128 {
        ((v & ((1 << LOW_BITS) - 1)) as u128) | (((v >> LOW_BITS) as u128) << 64)
    }

    pub(crate) fn new(value: u128) -> Self {
        Self(loom::sync::atomic::AtomicU64::new(Self::pack(value)))
    }

    pub(crate) fn load(&self, order: Ordering) -> u128 {
        Self::unpack(self.0.load(order))
    }

    pub(crate) fn compare_exchange(
        &self,
        current: u128,
        new: u128,
        success: Ordering,
        failure: Ordering,
    ) -> Result<u128, u128> {
        self.0
            .compare_exchange(Self::pack(current), Self::pack(new), success, failure)
            .map(Self::unpack)
            .map_err(Self::unpack)
    }

    pub(crate) fn compare_exchange_weak(
        &self,
        current: u128,
        new: u128,
        success: Ordering,
        failure: Ordering,
    ) -> Result<u128, u128> {
        self.0
            .compare_exchange_weak(Self::pack(current), Self::pack(new), success, failure)
            .map(Self::unpack)
            .map_err(Self::unpack)
    }
}

/// What loom does not see: for `crate::stat`'s counters and the few other
/// users that `.ci/shim-check` allows, with its reasons.
pub(crate) mod plain {
    pub(crate) use core::sync::atomic::{AtomicIsize, AtomicUsize, Ordering};

    // The allocator's own users (absent without the `heap`
    // feature, so without their imports).
    /// A cell for state owned by one thread (a thread cache): nothing to model.
    #[cfg(feature = "heap")]
    pub(crate) use core::cell::UnsafeCell as PlainUnsafeCell;
    /// For a unit test of the intrusive stack.
    #[cfg(all(test, not(loom)))]
    pub(crate) use core::sync::atomic::AtomicBool;
    #[cfg(feature = "heap")]
    #[cfg_attr(loom, allow(unused_imports))]
    pub(crate) use core::sync::atomic::AtomicU64;
    #[cfg(feature = "heap")]
    pub(crate) use core::sync::atomic::AtomicU8;
    /// Whether this thread unwinds: the loom build's drop checks stay quiet
    /// then, so the model's own panic is the one reported.
    #[cfg(loom)]
    pub(crate) use std::thread::panicking;
}
