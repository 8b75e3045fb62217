//! Each thread's claimed slots of the asymmetric hazard domains it used
//! most recently (`claims::Cache`): a thread claims a slot of a domain
//! once, and every later operation finds it here without touching shared
//! memory. A thread that exits gives its claims back, and the next thread
//! to claim reuses the slot, its hazards and its pending retired nodes.

use core::cell::RefCell;

use super::slots::{Registry, Slot, SlotClaim};
use crate::reclaim::claims::Cache;
use crate::sync::{thread_local, Arc};

#[cfg(not(loom))]
thread_local! {
    // No allocation on first use (const), as the other schemes' caches.
    static CACHE: RefCell<Cache<Slot>> = const { RefCell::new(Cache::new()) };
}

// Loom's macro takes no `const` block; each model thread gets its own.
#[cfg(loom)]
thread_local! {
    static CACHE: RefCell<Cache<Slot>> = RefCell::new(Cache::new());
}

/// The calling thread's slot of `registry` (`arc` holds it, or it is the
/// static process-wide one), claimed and cached on the thread's first use;
/// a one-off claim when the cache cannot take it.
pub(super) fn slot_of<'d>(registry: &'d Registry, arc: Option<&Arc<Registry>>) -> &'d SlotClaim {
    let cached = CACHE
        .try_with(|cache| {
            // Busy only if a pin runs inside another's cache lookup (a
            // value's drop run by a scan inside a claim): that one pin goes
            // uncached.
            let mut cache = cache.try_borrow_mut().ok()?;
            if let Some(slot) = cache.find(registry) {
                return Some(slot);
            }
            let slot = registry.claim_slot(false);
            if cache.insert(registry, arc, slot) {
                Some(slot as *const SlotClaim)
            } else {
                // Every entry is in use: no room. Give the claim back
                // (nothing uses it yet).
                // SAFETY: claimed above, unused.
                unsafe { slot.release() };
                None
            }
        })
        .ok()
        .flatten();
    match cached {
        // SAFETY: a slot of `registry` (invariant 3 of `claims`), which
        // lives for `'d`.
        Some(slot) => unsafe { &*slot },
        // During thread-local destruction, or with a busy or full cache: a
        // claim for this one user, released when its users are gone.
        None => registry.claim_slot(true),
    }
}
