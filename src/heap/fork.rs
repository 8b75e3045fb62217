//! Fork safety: the gate that keeps large operations out of a `fork` in
//! progress, and the handlers around it.

use super::index::FreeIndex;
use super::instance::Heap;
use super::state::{now_ms, Core};
use crate::sync::plain::AtomicUsize;
use crate::sync::Ordering;

/// How long (ms) a large operation waits for a `fork` in progress.
const FORK_WAIT_MS: usize = 100;

/// Counts a large operation in flight for as long as it lives (see
/// `Core::large_in_flight`), and keeps it out of a `fork` in progress.
pub(super) struct InFlight<'a>(&'a AtomicUsize);

impl<'a> InFlight<'a> {
    pub(super) fn new(core: &'a Core) -> Self {
        loop {
            // SeqCst (here and on `forking`): a Dekker handshake with
            // `Heap::prepare_fork`, which sets `forking` and then waits for
            // this counter to reach zero: either it sees our increment, or
            // we see its flag. Also a heuristic counter read by
            // `alloc_large` after a failed search.
            core.large_in_flight.fetch_add(1, Ordering::SeqCst);
            if !core.forking.load(Ordering::SeqCst) || core.is_fork_owner() {
                return InFlight(&core.large_in_flight);
            }
            // SeqCst: as above.
            core.large_in_flight.fetch_sub(1, Ordering::SeqCst);
            // The wait is bounded: the forking thread may be blocked, past
            // its prepare handlers, on a lock this thread holds (one of the
            // C library's, say). After `FORK_WAIT_MS` we go on: a child
            // forked meanwhile may then leak the runs we hold (and, with
            // epoch reclamation, the nodes retired after), which is better
            // than a deadlock.
            let start = now_ms();
            // Relaxed: a wait; the SeqCst load above decides.
            while core.forking.load(Ordering::Relaxed) {
                if now_ms().wrapping_sub(start) > FORK_WAIT_MS {
                    // SeqCst: as above.
                    core.large_in_flight.fetch_add(1, Ordering::SeqCst);
                    return InFlight(&core.large_in_flight);
                }
                crate::sync::thread::yield_now();
            }
        }
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        // SeqCst: as in `new`.
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Core {
    /// Whether the calling thread is the one forking (see `InFlight`).
    #[cold]
    pub(super) fn is_fork_owner(&self) -> bool {
        // SAFETY: no preconditions.
        let me = unsafe { libc::pthread_self() } as usize;
        // Relaxed: written by this very thread when it is the owner.
        self.fork_owner.load(Ordering::Relaxed) == me
    }
}

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
        // SAFETY: no preconditions.
        let me = unsafe { libc::pthread_self() } as usize;
        // Relaxed: read by this thread only (`Core::is_fork_owner`); other
        // threads compare it with their own id, which never matches.
        core.fork_owner.store(me, Ordering::Relaxed);
        // SeqCst: the handshake with `InFlight::new`.
        core.forking.store(true, Ordering::SeqCst);
        // SeqCst: as above.
        while core.large_in_flight.load(Ordering::SeqCst) > 0 {
            crate::sync::thread::yield_now();
        }
    }

    /// Ends what [`prepare_fork`](Self::prepare_fork) began, in the parent.
    pub fn after_fork_parent(&self) {
        let core = &self.core;
        // Relaxed: see `prepare_fork`.
        core.fork_owner.store(0, Ordering::Relaxed);
        // SeqCst: the handshake with `InFlight::new`.
        core.forking.store(false, Ordering::SeqCst);
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
