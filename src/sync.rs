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

/// Asymmetric fences: a cheap one for the frequent side of a Dekker-style
/// handshake (a hazard-pointer reader announcing a pointer, then
/// re-reading its source) and a heavy one for the rare side (the reclaimer
/// that unlinked nodes, then reads every announcement), which together
/// order like a `SeqCst` fence on each side (Dice, Huang and Yang,
/// "Asymmetric Dekker Synchronization").
///
/// On Linux the heavy side is `membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED)`
/// (membarrier(2)): the kernel runs a full memory barrier on every CPU that
/// is running a thread of this process, so each reader's instruction
/// stream gets a barrier between its program-ordered accesses around the
/// call, and the light side need only keep the compiler from reordering
/// them. This is outside the C11 model (a compiler fence orders nothing
/// between threads there); it is the guarantee the kernel documents, and
/// what Linux's userspace RCU and folly's hazard pointers rely on. The
/// process registers its intent once (`MEMBARRIER_CMD_REGISTER_PRIVATE_
/// EXPEDITED`, about a syscall's cost) the first time either side asks.
///
/// Where that is unavailable (not Linux, a kernel without it, a seccomp
/// filter, Miri) both sides are `SeqCst` fences. Under loom both sides are
/// loom's `SeqCst` fence, which is how loom models the pair.
pub(crate) mod asymmetric {
    #[cfg(not(loom))]
    use core::sync::atomic::AtomicU8;
    use core::sync::atomic::Ordering;

    /// Not yet asked.
    #[cfg(not(loom))]
    const UNKNOWN: u8 = 0;
    /// Registered: the heavy side is `membarrier`, the light a compiler fence.
    #[cfg(not(loom))]
    const MEMBARRIER: u8 = 1;
    /// Both sides are `SeqCst` fences.
    #[cfg(not(loom))]
    const FENCES: u8 = 2;

    /// Which of the above; moves once from `UNKNOWN` to one of the others.
    /// The light side may read `UNKNOWN` or `FENCES` and then fences fully,
    /// which is correct whatever the heavy side does; it reads `MEMBARRIER`
    /// only after the registration succeeded, and the heavy side always
    /// settles the mode before it runs (`heavy`), so a reader that skipped
    /// its fence is always met by a `membarrier`.
    #[cfg(not(loom))]
    static MODE: AtomicU8 = AtomicU8::new(UNKNOWN);

    /// Registers for `membarrier` if the platform allows, once; returns the
    /// mode.
    #[cfg(not(loom))]
    #[cold]
    fn settle() -> u8 {
        #[cfg(all(target_os = "linux", not(miri)))]
        let mode = {
            // membarrier(2): MEMBARRIER_CMD_PRIVATE_EXPEDITED is 1 << 3 and
            // its registration 1 << 4 (linux/membarrier.h, since 4.14).
            const REGISTER_PRIVATE_EXPEDITED: libc::c_long = 1 << 4;
            // SAFETY: the syscall takes three integer arguments and touches
            // no memory of ours.
            let r =
                unsafe { libc::syscall(libc::SYS_membarrier, REGISTER_PRIVATE_EXPEDITED, 0, 0) };
            if r == 0 {
                MEMBARRIER
            } else {
                FENCES
            }
        };
        #[cfg(not(all(target_os = "linux", not(miri))))]
        let mode = FENCES;
        // Relaxed: a racing registration reaches the same answer, and the
        // mode publishes no memory (the kernel's registration is in effect
        // before the syscall returns).
        match MODE.compare_exchange(UNKNOWN, mode, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => mode,
            Err(now) => now,
        }
    }

    /// Whether the heavy side is `membarrier` (the light side then costs no
    /// fence). Registers on first use.
    pub(crate) fn uses_membarrier() -> bool {
        #[cfg(not(loom))]
        {
            // Relaxed: see `MODE`.
            let mode = MODE.load(Ordering::Relaxed);
            (if mode == UNKNOWN { settle() } else { mode }) == MEMBARRIER
        }
        #[cfg(loom)]
        false
    }

    /// The frequent side: between a reader's announcement and its
    /// re-validating load.
    #[inline(always)]
    pub(crate) fn light() {
        #[cfg(not(loom))]
        {
            // Relaxed: see `MODE`.
            if MODE.load(Ordering::Relaxed) == MEMBARRIER {
                // SeqCst: keeps the compiler from moving the announcement
                // after the load; the reclaimer's `membarrier` is the
                // hardware fence this pairs with (see the module docs).
                core::sync::atomic::compiler_fence(Ordering::SeqCst);
            } else {
                // SeqCst: pairs with the SeqCst fence of `heavy`.
                core::sync::atomic::fence(Ordering::SeqCst);
            }
        }
        // SeqCst: pairs with the SeqCst fence of `heavy`.
        #[cfg(loom)]
        loom::sync::atomic::fence(Ordering::SeqCst);
    }

    /// The rare side: after a reclaimer unlinked what it frees, before it
    /// reads the readers' announcements.
    pub(crate) fn heavy() {
        #[cfg(all(target_os = "linux", not(miri), not(loom)))]
        if uses_membarrier() {
            const PRIVATE_EXPEDITED: libc::c_long = 1 << 3;
            // SAFETY: as in `settle`.
            let r = unsafe { libc::syscall(libc::SYS_membarrier, PRIVATE_EXPEDITED, 0, 0) };
            // The command cannot fail once registered (membarrier(2) lists
            // no error for it then); if it ever did, readers that skipped
            // their fence would be unprotected, so that is fatal.
            assert_eq!(
                r, 0,
                "membarrier(PRIVATE_EXPEDITED) failed after registration"
            );
            return;
        }
        #[cfg(not(loom))]
        {
            let _ = uses_membarrier(); // settles the mode: see `MODE`
                                       // SeqCst: pairs with the SeqCst fence of `light`.
            core::sync::atomic::fence(Ordering::SeqCst);
        }
        // SeqCst: pairs with the SeqCst fence of `light`.
        #[cfg(loom)]
        loom::sync::atomic::fence(Ordering::SeqCst);
    }
}
