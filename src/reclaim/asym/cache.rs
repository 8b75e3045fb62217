//! Each thread's claimed slots of the asymmetric hazard domains it used
//! most recently, keyed by registry: a thread claims a slot of a domain
//! once, and every later operation finds it here without touching shared
//! memory. A thread that exits gives its claims back, and the next thread
//! to claim reuses the slot, its hazards and its pending retired nodes.

use core::cell::RefCell;
use core::ptr;

use super::slots::{Registry, Slot};
use crate::sync::{thread_local, Arc};

/// One cached claim: the registry (kept alive while the entry exists, so
/// its address names one registry; `None` for the process-wide one, a
/// static) and the claimed slot in it.
struct Entry {
    key: *const Registry,
    registry: Option<Arc<Registry>>,
    slot: *const Slot,
}

/// Claims a thread keeps: more domains than a thread usually uses at once.
const KEEP: usize = 8;

struct Cache {
    entries: [Option<Entry>; KEEP],
}

impl Cache {
    const fn new() -> Self {
        Self {
            entries: [const { None }; KEEP],
        }
    }

    fn find(&self, key: *const Registry) -> Option<*const Slot> {
        self.entries
            .iter()
            .flatten()
            .find(|e| ptr::eq(e.key, key))
            .map(|e| e.slot)
    }

    /// Caches `entry`, evicting (and releasing) an entry nothing uses if
    /// the cache is full; gives `entry` back if every entry is in use.
    fn insert(&mut self, entry: Entry) -> Result<(), Entry> {
        let free = self.entries.iter().position(Option::is_none).or_else(|| {
            self.entries.iter().position(|e| {
                // SAFETY: every entry's slot is claimed by this thread and
                // lives while the entry holds its registry.
                e.as_ref()
                    .is_some_and(|e| unsafe { (*e.slot).users() } == 0)
            })
        });
        let Some(i) = free else {
            return Err(entry);
        };
        if let Some(old) = self.entries[i].replace(entry) {
            // SAFETY: ours, and nothing uses it (checked).
            unsafe { (*old.slot).release() };
        }
        Ok(())
    }
}

impl Drop for Cache {
    fn drop(&mut self) {
        // A loom model that failed unwinds its threads' locals after the
        // execution is gone: the entries' loom objects cannot be touched.
        #[cfg(loom)]
        if crate::sync::plain::panicking() {
            self.entries
                .iter_mut()
                .filter_map(Option::take)
                .for_each(core::mem::forget);
            return;
        }
        for entry in self.entries.iter_mut().filter_map(Option::take) {
            // SAFETY: claimed by this thread; the entry keeps the slot alive.
            if unsafe { (*entry.slot).users() } == 0 {
                // SAFETY: ours, with no user.
                unsafe { (*entry.slot).release() };
            } else {
                // A guard of this thread outlives its cache (kept in another
                // thread-local): the claim stays held and the registry alive.
                core::mem::forget(entry.registry);
            }
        }
    }
}

#[cfg(not(loom))]
thread_local! {
    // No allocation on first use (const), as the other schemes' caches.
    static CACHE: RefCell<Cache> = const { RefCell::new(Cache::new()) };
}

// Loom's macro takes no `const` block; each model thread gets its own.
#[cfg(loom)]
thread_local! {
    static CACHE: RefCell<Cache> = RefCell::new(Cache::new());
}

/// The calling thread's slot of `registry` (`arc` holds it, or it is the
/// static process-wide one), claimed and cached on the thread's first use;
/// a one-off claim when the cache cannot take it.
pub(super) fn slot_of<'d>(registry: &'d Registry, arc: Option<&Arc<Registry>>) -> &'d Slot {
    let key: *const Registry = registry;
    let cached = CACHE
        .try_with(|cache| {
            // Busy only if a pin runs inside another's cache lookup (a
            // value's drop run by a scan inside `claim`): that one pin goes
            // uncached.
            let mut cache = cache.try_borrow_mut().ok()?;
            if let Some(slot) = cache.find(key) {
                return Some(slot);
            }
            let slot: *const Slot = registry.claim(false);
            match cache.insert(Entry {
                key,
                registry: arc.cloned(),
                slot,
            }) {
                Ok(()) => Some(slot),
                Err(entry) => {
                    // Every entry is in use: no room. Give the claim back
                    // (nothing uses it yet).
                    // SAFETY: claimed above, unused.
                    unsafe { (*entry.slot).release() };
                    None
                }
            }
        })
        .ok()
        .flatten();
    match cached {
        // SAFETY: the slot is in `registry` (invariant 3 of `slots`), which
        // lives for `'d`.
        Some(slot) => unsafe { &*slot },
        // During thread-local destruction, or with a busy or full cache: a
        // claim for this one user, released when its users are gone.
        None => registry.claim(true),
    }
}
