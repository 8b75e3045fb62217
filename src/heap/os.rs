//! The operating-system layer: every byte of the heap comes from `mmap` and
//! goes back through `madvise` or `munmap`. Each call reports failure as
//! `None`/`false`, never by panicking: the allocator turns it into null.
//!
//! Under Miri, which has no `mmap` of inaccessible memory, no `mprotect`
//! and no partial `munmap`, the same calls are served by the `miri` module
//! at the end: mappings are zeroed allocations of the global allocator,
//! committing is a no-op, releasing zeroes, unmapping leaks (Miri runs the
//! heap's tests with its leak check off) and `remap` copies. So Miri checks
//! the heap's own code (provenance, alignment, data races) on the same
//! paths, with small arenas.

#[cfg(not(miri))]
use core::ptr;
use core::ptr::NonNull;

use crate::stat::Stat;

/// The page size the allocator assumes for its own granularity. The system's
/// page size (queried at first use) must divide it.
pub(crate) const PAGE: usize = 4096;

/// The system page size.
pub(crate) fn page_size() -> usize {
    if cfg!(miri) {
        return PAGE;
    }
    static SIZE: Stat = Stat::new(0);
    // An idempotent cache of a constant.
    let s = SIZE.load();
    if s != 0 {
        return s;
    }
    // SAFETY: sysconf has no preconditions.
    let s = match unsafe { libc::sysconf(libc::_SC_PAGESIZE) } {
        n if n > 0 => n as usize,
        _ => PAGE,
    };
    SIZE.store(s);
    s
}

/// Reserves `len` bytes of address space, inaccessible and not committed.
pub(crate) fn reserve(len: usize) -> Option<NonNull<u8>> {
    map(len, libc::PROT_NONE, libc::MAP_NORESERVE)
}

/// Maps `len` fresh, zeroed, read-write bytes.
pub(crate) fn map_rw(len: usize) -> Option<NonNull<u8>> {
    map(len, libc::PROT_READ | libc::PROT_WRITE, 0)
}

#[cfg(not(miri))]
fn map(len: usize, prot: libc::c_int, extra: libc::c_int) -> Option<NonNull<u8>> {
    if len == 0 || len > isize::MAX as usize {
        return None;
    }
    // SAFETY: an anonymous private mapping at an address of the kernel's
    // choosing touches no existing memory.
    let p = unsafe {
        libc::mmap(
            ptr::null_mut(),
            len,
            prot,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | extra,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        None
    } else {
        NonNull::new(p.cast())
    }
}

/// Makes `[p, p+len)` of a reservation readable and writable.
///
/// # Safety
///
/// The range lies inside a reservation made by [`reserve`] and owned by the
/// caller.
#[cfg(not(miri))]
pub(crate) unsafe fn commit(p: NonNull<u8>, len: usize) -> bool {
    // SAFETY: the caller owns the range (contract).
    unsafe { libc::mprotect(p.as_ptr().cast(), len, libc::PROT_READ | libc::PROT_WRITE) == 0 }
}

/// Gives the physical pages of `[p, p+len)` back to the OS; the range stays
/// mapped and reads as zeros afterwards. Rounds inwards to whole pages.
///
/// # Safety
///
/// The range is mapped read-write, owned by the caller, and holds nothing
/// that anyone still needs.
#[cfg(not(miri))]
pub(crate) unsafe fn release(p: *mut u8, len: usize) {
    let ps = page_size();
    let start = (p as usize).next_multiple_of(ps);
    let end = (p as usize + len) & !(ps - 1);
    if end > start {
        // SAFETY: a sub-range of the caller's range (contract). A failure
        // only leaves the pages resident, which is harmless.
        unsafe {
            libc::madvise(p.with_addr(start).cast(), end - start, libc::MADV_DONTNEED);
        }
    }
}

/// Unmaps `[p, p+len)`.
///
/// # Safety
///
/// The range was mapped by this module, is owned by the caller and is not
/// used afterwards.
#[cfg(not(miri))]
pub(crate) unsafe fn unmap(p: *mut u8, len: usize) {
    // SAFETY: the caller's contract. A failure leaks the range, harmlessly.
    unsafe {
        libc::munmap(p.cast(), len);
    }
}

/// Resizes the mapping at `p` from `old` to `new` bytes, moving it if needed.
///
/// # Safety
///
/// `[p, p+old)` is one whole mapping made by [`map_rw`], owned by the caller;
/// on success the old range must not be used any more.
#[cfg(not(miri))]
pub(crate) unsafe fn remap(p: *mut u8, old: usize, new: usize) -> Option<NonNull<u8>> {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        // SAFETY: the caller's contract; MREMAP_MAYMOVE lets the kernel pick
        // a new place rather than overwrite anything.
        let q = unsafe { libc::mremap(p.cast(), old, new, libc::MREMAP_MAYMOVE) };
        if q == libc::MAP_FAILED {
            None
        } else {
            NonNull::new(q.cast())
        }
    }
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    {
        let _ = (p, old, new);
        None
    }
}

/// How many bytes of `[p, p+len)` are resident (via `mincore`), or `None`
/// when the kernel cannot tell.
///
/// # Safety
///
/// The range is mapped (any protection).
#[cfg(not(miri))]
pub(crate) unsafe fn resident(p: *mut u8, len: usize) -> Option<usize> {
    let ps = page_size();
    let mut vec = [0u8; 4096];
    let mut total = 0;
    let mut at = p as usize;
    let end = p as usize + len;
    while at < end {
        let chunk = (end - at).min(vec.len() * ps);
        // SAFETY: `vec` holds one byte per page of the chunk; the range is
        // mapped (contract).
        let rc = unsafe { libc::mincore(p.with_addr(at).cast(), chunk, vec.as_mut_ptr().cast()) };
        if rc != 0 {
            return None;
        }
        let pages = chunk.div_ceil(ps);
        total += vec[..pages].iter().filter(|&&b| b & 1 != 0).count() * ps;
        at += chunk;
    }
    Some(total)
}

#[cfg(miri)]
pub(crate) use miri::{commit, release, remap, resident, unmap};

/// The OS layer under Miri (see the module documentation).
#[cfg(miri)]
mod miri {
    use core::alloc::Layout;
    use core::ptr::{self, NonNull};

    use super::PAGE;

    /// A zeroed, page-aligned allocation standing for a mapping (the
    /// protection and flags do not matter: all of it is accessible).
    pub(super) fn map(len: usize, _prot: libc::c_int, _extra: libc::c_int) -> Option<NonNull<u8>> {
        let layout = Layout::from_size_align(len, PAGE)
            .ok()
            .filter(|l| l.size() > 0)?;
        // SAFETY: the layout's size is not zero.
        NonNull::new(unsafe { std::alloc::alloc_zeroed(layout) })
    }

    /// Nothing to do: the whole "reservation" is accessible already.
    ///
    /// # Safety
    ///
    /// As for the `mmap` version of [`commit`](super::commit).
    pub(crate) unsafe fn commit(_p: NonNull<u8>, _len: usize) -> bool {
        true
    }

    /// Zeroes the range, as reading released pages would show.
    ///
    /// # Safety
    ///
    /// As for the `mmap` version of [`release`](super::release).
    pub(crate) unsafe fn release(p: *mut u8, len: usize) {
        // SAFETY: the caller owns the range (the contract of `release`).
        unsafe { ptr::write_bytes(p, 0, len) };
    }

    /// Leaks the range (a part of an allocation cannot be freed).
    ///
    /// # Safety
    ///
    /// As for the `mmap` version of [`unmap`](super::unmap).
    pub(crate) unsafe fn unmap(_p: *mut u8, _len: usize) {}

    /// A new zeroed "mapping" with the old bytes copied (the old one leaks).
    ///
    /// # Safety
    ///
    /// As for the `mmap` version of [`remap`](super::remap).
    pub(crate) unsafe fn remap(p: *mut u8, old: usize, new: usize) -> Option<NonNull<u8>> {
        let q = map(new, 0, 0)?;
        // SAFETY: both ranges are live and distinct, each at least as long
        // as what is copied.
        unsafe { ptr::copy_nonoverlapping(p, q.as_ptr(), old.min(new)) };
        Some(q)
    }

    /// Unknown under Miri.
    ///
    /// # Safety
    ///
    /// As for the `mmap` version of [`resident`](super::resident).
    pub(crate) unsafe fn resident(_p: *mut u8, _len: usize) -> Option<usize> {
        None
    }
}

#[cfg(miri)]
use miri::map;
