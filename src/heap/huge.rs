//! Huge blocks: a mapping each, found by address in the huge table, a few
//! kept mapped for reuse (without their pages).

use core::ptr;

use super::huge_table::HUGE_CACHE_BYTES;
use super::os;
use super::state::Core;

impl Core {
    /// A huge block, and whether it is known to be zero (a fresh mapping,
    /// or a cached one, whose pages were given back).
    pub(super) fn alloc_huge(&self, size: usize, align: usize) -> (*mut u8, bool) {
        let ps = os::page_size();
        let Some(n) = size.checked_next_multiple_of(ps) else {
            return (ptr::null_mut(), false);
        };
        if self.os_fails() {
            return (ptr::null_mut(), false);
        }
        // A cached mapping of the same size (up to an eighth more).
        let fits = |a: usize, len: usize| a % align == 0 && len >= n && len - n <= n / 8;
        if let Some((a, mut len)) = self.huge_cache.iter().find_map(|s| s.claim(fits)) {
            self.huge_cached.fetch_sub(len);
            let p = ptr::with_exposed_provenance_mut::<u8>(a);
            if len > n {
                // The tail goes back, so the block's length is what was
                // asked for (and a free without a size frees just that).
                // SAFETY: the claimed mapping is ours alone; `n` is a
                // multiple of the page size.
                unsafe { os::unmap(p.wrapping_add(n), len - n) };
                len = n;
            }
            if !self.huge.insert(a, len) {
                // SAFETY: the cached mapping is ours alone now.
                unsafe { os::unmap(p, len) };
                return (ptr::null_mut(), false);
            }
            self.huge_blocks.fetch_add(1);
            self.huge_bytes.fetch_add(len);
            // Its pages were given back when it was cached: it reads as
            // zeros, as a fresh mapping does.
            return (p, true);
        }
        (self.map_huge(n, align), true)
    }

    /// A fresh mapping of `n` bytes aligned to `align`, recorded as a huge
    /// block.
    pub(super) fn map_huge(&self, n: usize, align: usize) -> *mut u8 {
        let ps = os::page_size();
        let p = if align <= ps {
            match os::map_rw(n) {
                Some(p) => p.as_ptr(),
                None => return ptr::null_mut(),
            }
        } else {
            let Some(len) = n.checked_add(align) else {
                return ptr::null_mut();
            };
            let Some(r) = os::map_rw(len) else {
                return ptr::null_mut();
            };
            let r = r.as_ptr();
            let p = r.wrapping_add(r.align_offset(align));
            let head = p as usize - r as usize;
            // SAFETY: the slack around `[p, p + n)` is part of our fresh
            // mapping.
            unsafe {
                if head > 0 {
                    os::unmap(r, head);
                }
                if len - head - n > 0 {
                    os::unmap(p.wrapping_add(n), len - head - n);
                }
            }
            p
        };
        if !self.huge.insert(p as usize, n) {
            // SAFETY: our fresh mapping of `n` bytes, never handed out.
            unsafe { os::unmap(p, n) };
            return ptr::null_mut();
        }
        self.huge_blocks.fetch_add(1);
        self.huge_bytes.fetch_add(n);
        p
    }

    /// Frees a huge block, returning its mapping length; the length comes
    /// from the huge table, so a pointer that is not a live huge block of
    /// ours is reported, not unmapped.
    pub(super) fn dealloc_huge(&self, p: *mut u8) -> Option<usize> {
        let Some(n) = self.huge.remove(p as usize) else {
            self.misuse("free of a pointer this heap never returned", p, &[]);
            return None;
        };
        if !self.huge_cache_put(p, n) {
            // SAFETY: the table records whole mappings of huge blocks, and
            // the removal made the block ours alone.
            unsafe { os::unmap(p, n) };
        }
        self.huge_blocks.fetch_sub(1);
        self.huge_bytes.fetch_sub(n);
        Some(n)
    }

    /// Keeps a freed huge mapping for reuse, its pages given back to the
    /// OS first: the cache saves the `mmap`, `munmap` and the kernel's
    /// mapping bookkeeping, and holds address space, not memory (a cache of
    /// resident mappings made a program that grows a `Vec` to 64 MiB over
    /// and over peak at three times glibc's resident memory). `false` if
    /// the cache is full.
    pub(super) fn huge_cache_put(&self, p: *mut u8, len: usize) -> bool {
        // A bound: a race may overshoot it by a mapping per thread.
        if self.huge_cached.fetch_add(len) + len <= HUGE_CACHE_BYTES {
            // SAFETY: the freed mapping is ours alone (removed from the
            // table by the caller) and holds nothing anyone needs.
            unsafe { os::release(p, len) };
            if self
                .huge_cache
                .iter()
                .any(|s| s.offer(p.expose_provenance(), len))
            {
                return true;
            }
        }
        self.huge_cached.fetch_sub(len);
        false
    }

    /// Unmaps every cached huge mapping; returns the bytes.
    pub(super) fn huge_cache_drain(&self) -> usize {
        let mut released = 0;
        for s in &self.huge_cache {
            if let Some((a, len)) = s.claim(|_, _| true) {
                self.huge_cached.fetch_sub(len);
                // SAFETY: the claimed mapping is ours alone.
                unsafe { os::unmap(ptr::with_exposed_provenance_mut::<u8>(a), len) };
                released += len;
            }
        }
        released
    }
}
