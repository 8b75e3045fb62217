//! Fork safety: the handlers around a `fork` (the gate they close is in
//! `fork_gate`).

use super::index::FreeIndex;
use super::instance::Heap;
use crate::sync::Ordering;

impl<I: FreeIndex> Heap<I> {
    /// Readies the heap for a `fork()`: call it on the forking thread right
    /// before, and [`after_fork_parent`](Self::after_fork_parent) or
    /// [`after_fork_child`](Self::after_fork_child) right after (as
    /// `pthread_atfork` handlers do; the process heap of
    /// [`VvMalloc`](crate::VvMalloc) registers them itself).
    ///
    /// The heap's small paths hold no lock and leave every shared structure
    /// consistent between any two atomic steps, so a child can use them
    /// whatever the other threads were doing. The large path's operations
    /// may hold free runs out of the index for a moment, and pin an epoch
    /// of the free index's reclamation scheme: a child forked then would
    /// lose those runs and, with epoch reclamation, never free a retired
    /// node again (the pinned thread does not exist in it). So this waits
    /// until no large operation is in flight and makes new ones (on other
    /// threads) wait until the fork is over; it also waits out a running
    /// scavenger.
    pub fn prepare_fork(&self) {
        let core = &self.core;
        // Acquire: as in `Core::scavenge` (we hold the scavenger's flag
        // until the fork is over).
        while core
            .scavenging
            .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            crate::sync::thread::yield_now();
        }
        core.fork_gate.close();
    }

    /// Ends what [`prepare_fork`](Self::prepare_fork) began, in the parent.
    pub fn after_fork_parent(&self) {
        let core = &self.core;
        core.fork_gate.open();
        // Release: as in `Core::scavenge`.
        core.scavenging.store(false, Ordering::Release);
    }

    /// Ends what [`prepare_fork`](Self::prepare_fork) began, in the child.
    /// The other threads' caches are lost to the child (their blocks stay
    /// allocated there: a bounded leak, as in every allocator with thread
    /// caches).
    pub fn after_fork_child(&self) {
        self.after_fork_parent();
    }
}
