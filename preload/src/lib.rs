//! vvmalloc as a drop-in C `malloc`: a shared library that replaces the C
//! library's allocator in any dynamically linked program.
//!
//! ```sh
//! cargo build --release -p vvmalloc-preload
//! LD_PRELOAD=target/release/libvvmalloc.so python3 script.py
//! ```
//!
//! Every function of the `malloc` family is exported and served by the
//! process heap of [`vv::VvMalloc`] (the same code as the Rust global
//! allocator, thread caches included): `malloc`, `free`, `calloc`,
//! `realloc`, `reallocarray`, `posix_memalign`, `aligned_alloc`, `memalign`,
//! `valloc`, `pvalloc`, `malloc_usable_size` (and `cfree`). Failures return
//! null with `errno = ENOMEM` (`posix_memalign` returns the error instead);
//! nothing here panics or aborts, except the checked mode's misuse reports
//! (`VVMALLOC_CHECKED=1`).
//!
//! `free` needs no size: the heap finds it from the block's span (small
//! blocks), a per-page record (large blocks) or its table of huge blocks, so
//! a pointer from `memalign` or `posix_memalign` is freed like any other,
//! and a pointer the heap never returned is detected rather than
//! corrupting it.
//!
//! `fork()` is safe from a multi-threaded program: the heap registers
//! `pthread_atfork` handlers on its first allocation (see
//! `vvmalloc::Heap::prepare_fork`).
//!
//! `VVMALLOC_CHECKED=1` turns on the checked mode for debugging: a misuse
//! the heap can see (a pointer it never returned, a double free, a write
//! past the end of a small block, a free list corrupted by a write to a
//! freed block) is reported on stderr with its kind and address, and the
//! program aborts. Blocks are then allocated at exactly the size asked
//! for, which `malloc_usable_size` reports, so a program that writes up to
//! its usable size stays correct.
//!
//! `VVMALLOC_TRACE=/path/file` records every request (see [`recorder`]).

// The loom build has no process heap (see `vvmalloc::heap`): nothing to
// build there.
#![cfg(not(loom))]

// Rust code in this library allocates from the same heap directly.
#[global_allocator]
static GLOBAL: VvMalloc = VvMalloc::new();

use core::alloc::{GlobalAlloc, Layout};
use core::ffi::{c_int, c_void};
use core::ptr;

use vv::heap::good_size;
use vv::VvMalloc;

pub mod recorder;

/// `malloc`'s alignment: that of `max_align_t` on x86-64 and AArch64.
const MIN_ALIGN: usize = 16;

fn set_errno(e: c_int) {
    // SAFETY: `__errno_location` returns this thread's errno.
    unsafe { *libc::__errno_location() = e };
}

/// The size to ask the heap for when C asks for `size`: its usable size,
/// except in checked mode, which guards the bytes past the size asked for.
#[inline]
fn request(size: usize, align: usize) -> Option<usize> {
    if VvMalloc::is_checked() {
        Some(size.max(1))
    } else {
        good_size(size, align)
    }
}

/// A block of at least `size` bytes aligned to `align` (a power of two), or
/// null with `errno = ENOMEM`. Allocated at its usable size, so that the
/// heap's requested-bytes count stays close when `free` hands back the
/// usable size (a `realloc` that shrinks in place leaves it off by the
/// difference to the class size).
#[inline]
fn alloc_block(size: usize, align: usize, zeroed: bool) -> *mut u8 {
    let layout = request(size, align).and_then(|n| Layout::from_size_align(n, align).ok());
    let p = match layout {
        // SAFETY: the layout's size is not zero (`good_size` >= 1).
        Some(l) if zeroed => unsafe { GLOBAL.alloc_zeroed(l) },
        // SAFETY: as above.
        Some(l) => unsafe { GLOBAL.alloc(l) },
        None => ptr::null_mut(),
    };
    if p.is_null() {
        set_errno(libc::ENOMEM);
    } else {
        recorder::alloc(p, size);
    }
    p
}

/// Frees `p` (null is ignored).
///
/// # Safety
///
/// `p` is null or a live block of this library, not used afterwards.
#[inline]
unsafe fn free_block(p: *mut u8) {
    if p.is_null() {
        return;
    }
    recorder::free(p);
    // SAFETY: the caller's contract.
    unsafe { VvMalloc::free(p) };
}

/// C `malloc`.
///
/// # Safety
///
/// None beyond C's: the block is uninitialised.
#[no_mangle]
pub unsafe extern "C" fn malloc(size: usize) -> *mut c_void {
    // `VvMalloc::malloc` computes the size class once (`alloc_block`
    // would compute it for `good_size`, then again in `alloc`).
    let p = VvMalloc::malloc(size);
    if p.is_null() {
        set_errno(libc::ENOMEM);
    } else {
        recorder::alloc(p, size);
    }
    p.cast()
}

/// C `free`.
///
/// # Safety
///
/// `p` is null or a live block from this library, not used afterwards. A
/// pointer the heap can tell it never returned is counted and left alone
/// (reported and aborted on with `VVMALLOC_CHECKED=1`).
#[no_mangle]
pub unsafe extern "C" fn free(p: *mut c_void) {
    // SAFETY: the caller's contract.
    unsafe { free_block(p.cast()) }
}

/// The obsolete `cfree`, as `free`.
///
/// # Safety
///
/// As for [`free`].
#[no_mangle]
pub unsafe extern "C" fn cfree(p: *mut c_void) {
    // SAFETY: the caller's contract.
    unsafe { free_block(p.cast()) }
}

/// C `calloc`: `n * size` zeroed bytes; null with `ENOMEM` if the product
/// overflows.
///
/// # Safety
///
/// None beyond C's.
#[no_mangle]
pub unsafe extern "C" fn calloc(n: usize, size: usize) -> *mut c_void {
    match n.checked_mul(size) {
        Some(total) => alloc_block(total, MIN_ALIGN, true).cast(),
        None => {
            set_errno(libc::ENOMEM);
            ptr::null_mut()
        }
    }
}

/// Resizes `p` to `size` bytes, recording it.
///
/// # Safety
///
/// `p` is a live block of this library (not null).
unsafe fn resize(p: *mut u8, size: usize) -> *mut u8 {
    let Some(old) = VvMalloc::usable_size(p) else {
        // Not a block of ours: the free path reports it (checked mode) or
        // counts it, and leaves it alone.
        // SAFETY: the heap only inspects a pointer it does not own.
        unsafe { VvMalloc::free(p) };
        set_errno(libc::ENOMEM);
        return ptr::null_mut();
    };
    let layout = request(size, MIN_ALIGN).map(|n| {
        // SAFETY: `old` is a usable size (at most `isize::MAX`); 16 is a
        // power of two.
        (
            unsafe { Layout::from_size_align_unchecked(old, MIN_ALIGN) },
            n,
        )
    });
    let Some((layout, n)) = layout else {
        set_errno(libc::ENOMEM);
        return ptr::null_mut();
    };
    let seq = recorder::before_realloc();
    // SAFETY: `p` is a live block whose usable size is `old` (every byte of
    // it may be read); the caller's contract.
    let q = unsafe { GLOBAL.realloc(p, layout, n) };
    if q.is_null() {
        set_errno(libc::ENOMEM);
    } else {
        recorder::realloc(seq, p, q, size);
    }
    q
}

/// C `realloc`: `realloc(NULL, n)` is `malloc(n)`; `realloc(p, 0)` frees
/// `p` and returns null (as glibc does); on failure `p` stays valid and
/// null is returned with `ENOMEM`.
///
/// # Safety
///
/// `p` is null or a live block from this library; on success it must not
/// be used any more.
#[no_mangle]
pub unsafe extern "C" fn realloc(p: *mut c_void, size: usize) -> *mut c_void {
    if p.is_null() {
        return alloc_block(size, MIN_ALIGN, false).cast();
    }
    if size == 0 {
        // SAFETY: the caller's contract.
        unsafe { free_block(p.cast()) };
        return ptr::null_mut();
    }
    // SAFETY: the caller's contract.
    unsafe { resize(p.cast(), size).cast() }
}

/// `reallocarray`: `realloc(p, n * size)`, null with `ENOMEM` (and `p`
/// untouched) if the product overflows.
///
/// # Safety
///
/// As for [`realloc`].
#[no_mangle]
pub unsafe extern "C" fn reallocarray(p: *mut c_void, n: usize, size: usize) -> *mut c_void {
    match n.checked_mul(size) {
        // SAFETY: the caller's contract.
        Some(total) => unsafe { realloc(p, total) },
        None => {
            set_errno(libc::ENOMEM);
            ptr::null_mut()
        }
    }
}

/// POSIX `posix_memalign`: `EINVAL` unless `align` is a power of two and a
/// multiple of `sizeof(void *)`, `ENOMEM` on failure (errno untouched), 0
/// with the block in `*out` on success.
///
/// # Safety
///
/// `out` is valid for a write.
#[no_mangle]
pub unsafe extern "C" fn posix_memalign(out: *mut *mut c_void, align: usize, size: usize) -> c_int {
    if !align.is_power_of_two() || align % size_of::<*mut c_void>() != 0 {
        return libc::EINVAL;
    }
    // SAFETY: `__errno_location` returns this thread's errno.
    let saved = unsafe { *libc::__errno_location() };
    let p = alloc_block(size, align.max(MIN_ALIGN), false);
    if p.is_null() {
        set_errno(saved);
        return libc::ENOMEM;
    }
    // SAFETY: the caller's contract.
    unsafe { out.write(p.cast()) };
    0
}

/// C11 `aligned_alloc`: null with `EINVAL` unless `align` is a power of two
/// (glibc accepts a size that is not a multiple of it, and so do we).
///
/// # Safety
///
/// None beyond C's.
#[no_mangle]
pub unsafe extern "C" fn aligned_alloc(align: usize, size: usize) -> *mut c_void {
    if !align.is_power_of_two() {
        set_errno(libc::EINVAL);
        return ptr::null_mut();
    }
    alloc_block(size, align.max(MIN_ALIGN), false).cast()
}

/// The obsolete `memalign`: as glibc, an alignment that is not a power of
/// two is rounded up to one.
///
/// # Safety
///
/// None beyond C's.
#[no_mangle]
pub unsafe extern "C" fn memalign(align: usize, size: usize) -> *mut c_void {
    let Some(align) = align.max(MIN_ALIGN).checked_next_power_of_two() else {
        set_errno(libc::EINVAL);
        return ptr::null_mut();
    };
    alloc_block(size, align, false).cast()
}

fn page() -> usize {
    // SAFETY: no preconditions.
    match unsafe { libc::sysconf(libc::_SC_PAGESIZE) } {
        n if n > 0 => n as usize,
        _ => 4096,
    }
}

/// The obsolete `valloc`: page-aligned.
///
/// # Safety
///
/// None beyond C's.
#[no_mangle]
pub unsafe extern "C" fn valloc(size: usize) -> *mut c_void {
    alloc_block(size, page(), false).cast()
}

/// The obsolete `pvalloc`: page-aligned, the size rounded up to whole pages
/// (`pvalloc(0)` is one page).
///
/// # Safety
///
/// None beyond C's.
#[no_mangle]
pub unsafe extern "C" fn pvalloc(size: usize) -> *mut c_void {
    let ps = page();
    match size.max(1).checked_next_multiple_of(ps) {
        Some(n) => alloc_block(n, ps, false).cast(),
        None => {
            set_errno(libc::ENOMEM);
            ptr::null_mut()
        }
    }
}

/// glibc's `malloc_usable_size`: the bytes usable in the block at `p` (at
/// least what was asked for); 0 for null or a pointer that is not a block
/// of this library.
///
/// # Safety
///
/// None: the pointer is only looked up.
#[no_mangle]
pub unsafe extern "C" fn malloc_usable_size(p: *mut c_void) -> usize {
    VvMalloc::usable_size(p.cast()).unwrap_or(0)
}
