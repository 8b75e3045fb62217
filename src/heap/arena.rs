//! The arena: one reservation per heap, its side table of span records and
//! large-block page counts, and the bump that hands out fresh spans.

use core::ptr::{self, NonNull};

use super::class::SPAN;
use super::os::{self, PAGE};
use super::page::SpanMeta;
use super::state::{Core, CHECK_OFF, CHECK_ON, CHECK_UNKNOWN};
use super::thread_heap::seeded::{self, PageBug};
use crate::sync::{AtomicU32, Ordering};

impl Core {
    /// The arena's data start, reserving the arena on first use.
    #[inline]
    pub(crate) fn arena(&self) -> Option<*mut u8> {
        // Acquire: pairs with the AcqRel CAS in `reserve_arena` that
        // published the arena (and its initialised side table).
        let d = self.data.load(Ordering::Acquire);
        if !d.is_null() {
            return Some(d);
        }
        self.reserve_arena()
    }

    #[cold]
    pub(super) fn reserve_arena(&self) -> Option<*mut u8> {
        if self.os_fails() {
            return None;
        }
        // Relaxed: a configuration flag; see `Core::checks`.
        if self.checked.load(Ordering::Relaxed) == CHECK_UNKNOWN {
            // SAFETY: a NUL-terminated name; `getenv` does not allocate, and
            // the value is only read here, before any thread of ours could
            // call `setenv` through this heap.
            let v = unsafe { libc::getenv(c"VVMALLOC_CHECKED".as_ptr()) };
            // SAFETY: `getenv` returns null or a NUL-terminated string.
            let on = !v.is_null() && unsafe { core::ffi::CStr::from_ptr(v) }.to_bytes() == b"1";
            // Relaxed: published with the arena by the Release CAS below
            // (racing reservers read the same environment and agree).
            self.checked
                .store(if on { CHECK_ON } else { CHECK_OFF }, Ordering::Relaxed);
        }
        let table = self.table_bytes();
        let bits = self.bits_bytes();
        let total = table.checked_add(self.arena_bytes)?.checked_add(bits)?;
        let r = os::reserve(total.checked_add(SPAN)?)?.as_ptr();
        let start = r.wrapping_add(r.align_offset(SPAN));
        let head = start as usize - r as usize;
        // SAFETY: the slack before `start` and after `start + total` is part
        // of the reservation just made, which nobody else knows.
        unsafe {
            if head > 0 {
                os::unmap(r, head);
            }
            if SPAN - head > 0 {
                os::unmap(start.wrapping_add(total), SPAN - head);
            }
        }
        let bitmap = start.wrapping_add(table + self.arena_bytes);
        // SAFETY: `[start, start + table)` is inside our reservation.
        let table_ok = unsafe { os::commit(NonNull::new_unchecked(start), table) };
        // SAFETY: the checked mode's bitmap, `bits` bytes right after the
        // arena, is inside our reservation too.
        let bits_ok = bits == 0 || unsafe { os::commit(NonNull::new_unchecked(bitmap), bits) };
        if !table_ok || !bits_ok {
            // SAFETY: our reservation, never published.
            unsafe { os::unmap(start, total) };
            return None;
        }
        #[cfg(loom)]
        {
            let units = self.arena_bytes / SPAN;
            for i in 0..units {
                // SAFETY: the table is committed and ours; loom's atomics
                // must be constructed (zeroed memory is not a valid loom
                // atomic).
                unsafe { start.cast::<SpanMeta>().add(i).write(SpanMeta::new()) };
            }
            let records = start
                .wrapping_add(units * size_of::<SpanMeta>())
                .cast::<AtomicU32>();
            for i in 0..self.arena_bytes / PAGE {
                // SAFETY: the page records follow the span records inside
                // the committed table (`table_bytes`); constructed as above.
                unsafe { records.add(i).write(AtomicU32::new(0)) };
            }
        }
        let data = start.wrapping_add(table);
        // AcqRel: Release publishes the zeroed (or constructed) side table
        // to the Acquire load in `arena`; Acquire on failure reads the
        // winner's table.
        match self
            .data
            .compare_exchange(ptr::null_mut(), data, Ordering::AcqRel, Ordering::Acquire)
        {
            Ok(_) => {
                // Published first: the hook may allocate from this heap.
                if let Some(hook) = self.on_reserve {
                    hook();
                }
                Some(data)
            }
            Err(winner) => {
                // SAFETY: our reservation lost the race and was never
                // published.
                unsafe { os::unmap(start, total) };
                Some(winner)
            }
        }
    }

    /// The arena's data start, if it is reserved.
    pub(crate) fn reserved(&self) -> Option<*mut u8> {
        // Acquire: as in `arena`.
        let d = self.data.load(Ordering::Acquire);
        (!d.is_null()).then_some(d)
    }

    /// The arena data start if `p` lies in the arena.
    #[inline]
    pub(super) fn arena_of(&self, p: *mut u8) -> Option<*mut u8> {
        // Acquire: as in `arena`.
        let d = self.data.load(Ordering::Acquire);
        let off = (p as usize).wrapping_sub(d as usize);
        (!d.is_null() && off < self.arena_bytes).then_some(d)
    }

    #[inline]
    pub(crate) fn meta(&self, data: *mut u8, unit: usize) -> &SpanMeta {
        debug_assert!(unit < self.arena_bytes / SPAN);
        // SAFETY: the side table has one initialised record per unit, in
        // front of `data`, and lives as long as `self`.
        unsafe {
            &*data
                .wrapping_sub(self.table_bytes())
                .cast::<SpanMeta>()
                .add(unit)
        }
    }

    #[inline]
    pub(crate) fn unit_of(data: *mut u8, p: *mut u8) -> usize {
        (p as usize - data as usize) / SPAN
    }

    pub(crate) fn unit_of_meta(&self, data: *mut u8, m: *const SpanMeta) -> usize {
        let table = data.wrapping_sub(self.table_bytes()) as usize;
        (m as usize - table) / size_of::<SpanMeta>()
    }

    /// The page record of the large block starting at `p` (see
    /// `table_bytes`): its length in pages, or 0.
    #[inline]
    pub(super) fn page_entry(&self, data: *mut u8, p: *mut u8) -> &AtomicU32 {
        let page = (p as usize - data as usize) / PAGE;
        debug_assert!(page < self.arena_bytes / PAGE);
        // SAFETY: the side table has one zero-initialised `u32` per page of
        // the arena after its span records, and lives as long as `self`.
        unsafe {
            &*data
                .wrapping_sub(self.table_bytes())
                .wrapping_add(self.arena_bytes / SPAN * size_of::<SpanMeta>())
                .cast::<AtomicU32>()
                .add(page)
        }
    }

    /// Takes `len` bytes of fresh arena, committed. Lock-free.
    pub(super) fn bump(&self, data: *mut u8, len: usize) -> Option<*mut u8> {
        // Relaxed: the CAS below is the only synchronisation needed (each
        // thread commits and uses only the range it won).
        let mut cur = self.bump.load(Ordering::Relaxed);
        loop {
            let end = cur.checked_add(len).filter(|&e| e <= self.arena_bytes)?;
            if seeded::is(PageBug::BumpWithoutCas) {
                // The seeded bug (loom only): no CAS, so a concurrent carve
                // may take the same range.
                self.bump.store(end, Ordering::Relaxed);
                break;
            }
            // Relaxed: as above.
            match self
                .bump
                .compare_exchange_weak(cur, end, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => break,
                Err(now) => cur = now,
            }
        }
        let p = data.wrapping_add(cur);
        // SAFETY: `[p, p + len)` is inside the reservation and was won by
        // this thread alone.
        if self.os_fails() || !unsafe { os::commit(NonNull::new_unchecked(p), len) } {
            // The range stays reserved and unused (it cannot be handed back
            // to the bump without a lock); this is an out-of-memory path.
            return None;
        }
        Some(p)
    }
}
