//! [`VvMalloc`]: the process heap as a `#[global_allocator]`.

use core::alloc::{GlobalAlloc, Layout};
use core::cell::Cell;

use super::class::class_of;
use super::core_heap::Heap;
use super::local::Bins;
use super::stats::Stats;
use crate::sync::plain::PlainUnsafeCell;

/// The process heap, shared by every `VvMalloc` value.
static HEAP: Heap = Heap::global();

/// A thread's cache on [`HEAP`]; its destructor hands the cached blocks back
/// to the central heaps when the thread exits.
struct ThreadCache {
    bins: PlainUnsafeCell<Bins>,
}

impl Drop for ThreadCache {
    fn drop(&mut self) {
        self.bins.get_mut().flush(&HEAP.core);
    }
}

thread_local! {
    /// Set while this thread is inside the cache (or setting it up): a call
    /// that arrives meanwhile (the thread-local machinery's own allocations)
    /// takes the cache-less path. `const` and without destructor, so reading
    /// it never allocates and always works, even during thread exit.
    static BUSY: Cell<bool> = const { Cell::new(false) };

    static CACHE: ThreadCache = const { ThreadCache { bins: PlainUnsafeCell::new(Bins::new()) } };
}

/// Runs `f` with this thread's cache, or with none when the cache is busy
/// (a re-entrant call), not set up yet and being set up, or torn down.
#[inline]
fn with_cache<R>(f: impl FnOnce(Option<&mut Bins>) -> R) -> R {
    let entered = BUSY.try_with(|b| !b.replace(true)).unwrap_or(false);
    if !entered {
        return f(None);
    }
    let mut f = Some(f);
    let r = CACHE.try_with(|c| {
        // SAFETY: `BUSY` is set, so no other call on this thread is inside
        // the cache: this is the only reference to it.
        let bins = unsafe { &mut *c.bins.get() };
        (f.take().expect("called once"))(Some(bins))
    });
    let _ = BUSY.try_with(|b| b.set(false));
    match r {
        Ok(r) => r,
        Err(_) => (f.take().expect("not called: the cache is gone"))(None),
    }
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
///     println!("{} bytes in use", vvmalloc::VvMalloc::stats().in_use_bytes);
///     drop(v);
///     vvmalloc::VvMalloc::trim();
/// }
/// ```
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
        if class_of(layout.size().max(1), layout.align()).is_some() {
            with_cache(|bins| HEAP.alloc_in(bins, layout))
        } else {
            HEAP.alloc(layout)
        }
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
        if class_of(layout.size().max(1), layout.align()).is_some() {
            // SAFETY: `GlobalAlloc::dealloc`'s contract is ours.
            with_cache(|bins| unsafe { HEAP.dealloc_in(bins, p, layout) })
        } else {
            // SAFETY: as above.
            unsafe { HEAP.dealloc(p, layout) }
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
