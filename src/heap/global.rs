//! [`VvMalloc`]: the process heap as a `#[global_allocator]`.

use core::alloc::{GlobalAlloc, Layout};
use core::cell::Cell;
use core::ptr;

use super::class::{class_of, good_size, CLASS_SIZES};
use super::config::HeapConfig;
use super::index::SkipIndex;
use super::instance::Heap;
use super::state::{Core, CHECK_UNKNOWN};
use super::stats::Stats;
use super::thread_heap::ThreadHeap;
use super::tls;
use crate::sync::plain::{AtomicU8, PlainUnsafeCell};

/// The process heap, shared by every `VvMalloc` value.
static HEAP: Heap = Heap::global();

/// A thread's cache on [`HEAP`], and where it stands.
///
/// It has no destructor and a `const` initialiser, so reaching it is one
/// thread-pointer-relative access that never allocates and never fails,
/// even during thread exit. Handing the cached blocks back at thread exit is
/// the job of [`ExitGuard`], a second thread-local whose only content is a
/// destructor, touched once per thread.
struct Local {
    state: Cell<u8>,
    bins: PlainUnsafeCell<ThreadHeap>,
}

/// The cache has not been used on this thread yet.
const UNINIT: u8 = 0;
/// The cache is ready for the next call, and the heap is unchecked: the
/// fast paths may use it.
const READY: u8 = 1;
/// The cache is ready for the next call, and the heap is in checked mode:
/// every call takes the general path.
const READY_CHECKED: u8 = 4;
/// A call is inside the cache, or setting it up: a call that arrives
/// meanwhile (the thread-local machinery's own allocations) takes the
/// cache-less path.
const BUSY: u8 = 2;
/// The thread is exiting and the cache was handed back: cache-less from now.
const DEAD: u8 = 3;

/// Hands the thread's cached blocks back to the central heaps when the
/// thread exits.
struct ExitGuard;

impl Drop for ExitGuard {
    fn drop(&mut self) {
        LOCAL.with(|l| {
            // The fast paths no longer find the cache.
            tls::set(0);
            l.state.set(BUSY);
            // SAFETY: `BUSY` keeps every other call out of the cache.
            unsafe { &mut *l.bins.get() }.abandon(&HEAP.core);
            l.state.set(DEAD);
        });
    }
}

thread_local! {
    static LOCAL: Local = const { Local { state: Cell::new(UNINIT), bins: PlainUnsafeCell::new(ThreadHeap::new()) } };
    static EXIT_GUARD: ExitGuard = const { ExitGuard };
}

/// Registers `pthread_atfork` handlers that ready the process heap for a
/// `fork` (see [`Heap::prepare_fork`]). Called once, when the heap reserves
/// its arena (the registration may allocate: the heap is usable by then).
pub(super) fn register_fork_handlers() {
    extern "C" fn prepare() {
        HEAP.prepare_fork();
    }
    extern "C" fn parent() {
        HEAP.after_fork_parent();
    }
    extern "C" fn child() {
        HEAP.after_fork_child();
    }
    // SAFETY: three `extern "C"` functions that live as long as the process.
    // A failure (ENOMEM) leaves the heap without the handlers: a child
    // forked during a large operation may then leak, nothing worse.
    unsafe { libc::pthread_atfork(Some(prepare), Some(parent), Some(child)) };
}

/// Runs `f` with this thread's cache, or with none when the cache is busy
/// (a re-entrant call), being set up, or handed back at thread exit.
#[inline]
fn with_cache<R>(f: impl FnOnce(Option<&mut ThreadHeap>) -> R) -> R {
    LOCAL.with(|l| {
        let ready = match l.state.get() {
            s @ (READY | READY_CHECKED) => s,
            UNINIT => {
                l.state.set(BUSY);
                // Registers the exit guard's destructor, which may allocate
                // (those calls see `BUSY`). Fails when the thread is already
                // exiting: then the cache is never used.
                let registered = EXIT_GUARD.try_with(|_| ()).is_ok();
                // SAFETY: `BUSY` keeps every other call out of the cache.
                unsafe { &mut *l.bins.get() }.init();
                // Decides the mode (reserving the arena, which may
                // allocate: those calls see `BUSY` too).
                let ready = if HEAP.core.checks() {
                    READY_CHECKED
                } else {
                    READY
                };
                l.state.set(if registered { ready } else { DEAD });
                if !registered {
                    return f(None);
                }
                // The fast paths find the cache through the thread's word
                // (see `with_ready_cache`); the exit guard clears it.
                tls::set(ptr::from_ref(l) as usize);
                ready
            }
            _ => return f(None),
        };
        l.state.set(BUSY);
        // SAFETY: the state was ready and is `BUSY` until `f` returns, so
        // no other call on this thread reaches the cache meanwhile.
        let r = f(Some(unsafe { &mut *l.bins.get() }));
        l.state.set(ready);
        r
    })
}

/// Runs `f` with this thread's cache if it is `READY` (set up, unchecked,
/// no call inside it), else returns `None`. For the fast paths alone:
/// `f` must not allocate or free through the process heap (it does not
/// mark the cache `BUSY`, to save the two stores).
///
/// The cache is found through the thread's word in the static TLS block
/// ([`tls`]): two instructions, where `LOCAL` costs a call to
/// `__tls_get_addr` in the preloadable library.
#[inline(always)]
fn with_ready_cache<R>(f: impl FnOnce(&mut ThreadHeap) -> R) -> Option<R> {
    let l = tls::get() as *const Local;
    if l.is_null() {
        return None;
    }
    // SAFETY: a non-null word is this thread's `LOCAL` (set when the cache
    // was set up, cleared by the exit guard before the cache goes away),
    // and a thread's thread-locals outlive every call on that thread
    // before the exit guard runs.
    let l = unsafe { &*l };
    // SAFETY: `READY` means no call on this thread is inside the cache (a
    // call inside marks it `BUSY`), and `f` makes no call that could reach
    // it (this function's contract), so this is the only reference while
    // it lives.
    (l.state.get() == READY).then(|| f(unsafe { &mut *l.bins.get() }))
}

/// The vvmalloc global allocator: every value is a handle to one process
/// heap (like [`std::alloc::System`]).
///
/// ```no_run
/// #[global_allocator]
/// static GLOBAL: vvmalloc::VvMalloc = vvmalloc::VvMalloc::new();
///
/// fn main() {
///     let v: Vec<u64> = (0..1000).collect();
///     assert_eq!(v[999], 999);
/// }
/// ```
///
/// [`VvMalloc::stats`] and [`VvMalloc::trim`] reach the process heap (they
/// are not in the `--cfg loom` build, whose `VvMalloc` forwards to the
/// system allocator). This example is compiled, not run: Miri, which runs
/// the doctests in CI, has no `mmap` of reserved address space;
/// `tests/global.rs` runs a whole test binary on `VvMalloc`.
///
/// Each thread gets a cache of small blocks on its first allocation; it goes
/// back to the central heaps when the thread exits. Setting
/// `VVMALLOC_CHECKED=1` in the environment before the first allocation turns
/// on the checked mode (see [`HeapConfig::checked`](super::HeapConfig)).
#[derive(Clone, Copy, Debug, Default)]
pub struct VvMalloc;

impl VvMalloc {
    /// A handle to the process heap.
    pub const fn new() -> Self {
        VvMalloc
    }

    /// The process heap (for its statistics, `trim`, or a cache-less call).
    pub fn heap() -> &'static Heap {
        &HEAP
    }

    /// Whether the process heap runs in checked mode (`VVMALLOC_CHECKED=1`
    /// when it reserved its arena; asking reserves it if nothing has yet).
    #[inline]
    pub fn is_checked() -> bool {
        HEAP.core.checks()
    }

    /// The process heap's statistics.
    pub fn stats() -> Stats {
        HEAP.stats()
    }

    /// Gives free memory back to the OS; see [`Heap::trim`]. Returns the
    /// bytes released.
    pub fn trim() -> usize {
        Self::flush_thread_cache();
        HEAP.trim()
    }

    /// Allocates at least `size` bytes aligned to 16, as C's `malloc` does:
    /// the block's usable size (its class size; in checked mode, `size`
    /// exactly) is what the heap counts as requested, since a C program
    /// may use all of it (`malloc_usable_size`) and `free` does not say
    /// how much it asked for. Null when no memory can be had.
    ///
    /// The size class is computed once, on the fast path.
    ///
    /// ```
    /// # // No 64 GiB reservation under Miri, no process heap under loom (see `VvMalloc`):
    /// # if cfg!(miri) || vvmalloc::LOOM_BUILD { return; }
    /// use vvmalloc::VvMalloc;
    /// let p = VvMalloc::malloc(20);
    /// assert!(!p.is_null());
    /// assert_eq!(VvMalloc::usable_size(p), Some(32));
    /// // SAFETY: `p` came from `VvMalloc::malloc` and is not used again.
    /// unsafe { VvMalloc::free(p) };
    /// ```
    #[inline]
    pub fn malloc(size: usize) -> *mut u8 {
        if let Some(c) = class_of(size.max(1), MALLOC_ALIGN) {
            let p = with_ready_cache(|th| {
                let p = th.alloc_fast(c);
                if !p.is_null() {
                    th.requested += CLASS_SIZES[c] as isize;
                }
                p
            });
            if let Some(p) = p.filter(|p| !p.is_null()) {
                return p;
            }
        }
        malloc_slow(size)
    }

    /// Frees a block of the process heap without its size, as C's `free`
    /// does (through this thread's cache); null is ignored. See
    /// [`Heap::free`].
    ///
    /// # Safety
    ///
    /// `p` is null or was returned by [`VvMalloc`] and is not used
    /// afterwards.
    #[inline]
    pub unsafe fn free(p: *mut u8) {
        // SAFETY: the caller's contract; the fast path takes no lock and
        // makes no allocation.
        if with_ready_cache(|th| unsafe { HEAP.free_fast(th, p, None) }) != Some(true) {
            // SAFETY: the caller's contract.
            unsafe { free_slow(p) }
        }
    }

    /// The usable size of a block of the process heap; see
    /// [`Heap::usable_size`].
    #[inline]
    pub fn usable_size(p: *const u8) -> Option<usize> {
        HEAP.usable_size(p)
    }

    /// Hands this thread's cached blocks back to the central heaps.
    pub fn flush_thread_cache() {
        with_cache(|bins| {
            if let Some(b) = bins {
                b.flush(&HEAP.core);
            }
        })
    }
}

// SAFETY: forwards to the process heap, whose blocks satisfy `GlobalAlloc`'s
// contracts (see `Heap`); the thread cache only changes which free list
// serves a small block.
unsafe impl GlobalAlloc for VvMalloc {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // The fast path: a pop from the page allocations of the class come
        // from (nothing in it allocates). Everything else is out of line,
        // so that the fast path saves few registers.
        if let Some(c) = class_of(layout.size().max(1), layout.align()) {
            let p = with_ready_cache(|th| {
                let p = th.alloc_fast(c);
                if !p.is_null() {
                    th.requested += layout.size() as isize;
                }
                p
            });
            if let Some(p) = p.filter(|p| !p.is_null()) {
                return p;
            }
        }
        alloc_slow(layout)
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if class_of(layout.size().max(1), layout.align()).is_some() {
            with_cache(|bins| HEAP.alloc_zeroed_in(bins, layout))
        } else {
            HEAP.alloc_zeroed(layout)
        }
    }

    #[inline]
    unsafe fn dealloc(&self, p: *mut u8, layout: Layout) {
        // The fast path: a small block of the arena (unchecked mode), freed
        // to its page (nothing in it allocates).
        // SAFETY: `GlobalAlloc::dealloc`'s contract is ours.
        let done = with_ready_cache(|th| unsafe { HEAP.free_fast(th, p, Some(layout.size())) });
        if done != Some(true) {
            // SAFETY: as above.
            unsafe { dealloc_slow(p, layout) }
        }
    }

    unsafe fn realloc(&self, p: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let small = |s: usize| class_of(s.max(1), layout.align()).is_some();
        if small(layout.size()) && small(new_size) {
            // SAFETY: `GlobalAlloc::realloc`'s contract is ours.
            with_cache(|bins| unsafe { HEAP.realloc_in(bins, p, layout, new_size) })
        } else {
            // SAFETY: as above.
            unsafe { HEAP.realloc(p, layout, new_size) }
        }
    }
}

/// `alloc` beyond the fast path: the slow path of the thread heap, large
/// and huge blocks, the checked mode, and the first allocation (which
/// decides it).
#[cold]
#[inline(never)]
fn alloc_slow(layout: Layout) -> *mut u8 {
    if class_of(layout.size().max(1), layout.align()).is_some() {
        with_cache(|bins| HEAP.alloc_in(bins, layout))
    } else {
        HEAP.alloc(layout)
    }
}

/// `dealloc` beyond the fast path.
///
/// # Safety
///
/// As for `GlobalAlloc::dealloc`.
#[cold]
#[inline(never)]
unsafe fn dealloc_slow(p: *mut u8, layout: Layout) {
    if class_of(layout.size().max(1), layout.align()).is_some() {
        // SAFETY: the caller's contract.
        with_cache(|bins| unsafe { HEAP.dealloc_in(bins, p, layout) })
    } else {
        // SAFETY: as above.
        unsafe { HEAP.dealloc(p, layout) }
    }
}

/// `malloc`'s alignment: that of `max_align_t` on x86-64 and AArch64.
const MALLOC_ALIGN: usize = 16;

/// `VvMalloc::malloc` beyond the fast path.
#[cold]
#[inline(never)]
fn malloc_slow(size: usize) -> *mut u8 {
    let n = if VvMalloc::is_checked() {
        Some(size.max(1))
    } else {
        good_size(size, MALLOC_ALIGN)
    };
    match n.and_then(|n| Layout::from_size_align(n, MALLOC_ALIGN).ok()) {
        Some(l) => alloc_slow(l),
        None => ptr::null_mut(),
    }
}

/// `VvMalloc::free` beyond the fast path.
///
/// # Safety
///
/// As for `VvMalloc::free`.
#[cold]
#[inline(never)]
unsafe fn free_slow(p: *mut u8) {
    // SAFETY: the caller's contract.
    with_cache(|bins| unsafe { HEAP.release_in(bins, p, None) })
}

impl Heap<SkipIndex> {
    /// The process heap of [`VvMalloc`](crate::VvMalloc).
    pub(super) const fn global() -> Self {
        let mut core = Core::new(HeapConfig::new());
        core.checked = AtomicU8::new(CHECK_UNKNOWN);
        core.on_reserve = Some(register_fork_handlers);
        Self {
            core,
            index: SkipIndex::new(),
        }
    }
}
