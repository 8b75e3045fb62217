//! The gate that keeps the large path's operations out of a `fork` in
//! progress: a count of operations in flight, striped over cache lines by
//! thread, and a flag.
//!
//! Each large operation enters the gate (its stripe +1, a `SeqCst` fence,
//! then reads the flag) and leaves it (its stripe -1); `close` sets the
//! flag, fences, and then waits for every stripe to read zero: a Dekker
//! handshake per stripe, so either `close` sees the operation's increment
//! (and waits for it to leave) or the operation sees the flag (and backs
//! off until `open`). (Fences, not `SeqCst` accesses: loom models `SeqCst`
//! fences, and `SeqCst` loads and stores only as acquire and release, which
//! made the model report a race that the hardware cannot produce.) One
//! shared counter did the same with two `SeqCst` read-modify-writes on one
//! cache line per large operation, which every thread of the program
//! fought over; with a stripe per thread (threads
//! beyond the stripes share them round-robin) an operation touches a line
//! no other running thread writes, and only `close` and the rare failed
//! search read them all.

use core::cell::Cell;

use crate::sync::{fence, AtomicBool, AtomicUsize, Ordering};

/// Stripes of the count (fewer under loom, where each is a modelled
/// atomic).
const STRIPES: usize = if cfg!(loom) { 2 } else { 16 };

/// How long (ms) a large operation waits for a `fork` in progress (not
/// under loom, whose executions have no clock: there it waits for `open`).
#[cfg(not(loom))]
const FORK_WAIT_MS: usize = 100;

/// One stripe of the count, on cache lines of its own.
#[repr(align(128))]
struct Stripe(AtomicUsize);

/// See the module documentation.
pub(super) struct ForkGate {
    stripes: [Stripe; STRIPES],
    /// Set while a `fork` is under way.
    closed: AtomicBool,
}

/// The next stripe to hand a thread (round-robin; an id, not a
/// synchronising value).
#[cfg(not(loom))]
static NEXT_STRIPE: AtomicUsize = AtomicUsize::new(0);

#[cfg(not(loom))]
crate::sync::thread_local! {
    /// This thread's stripe (`usize::MAX` until its first large operation).
    static STRIPE: Cell<usize> = const { Cell::new(usize::MAX) };
}

#[cfg(not(loom))]
crate::sync::thread_local! {
    /// The gate this thread closed, if any (its address): the forking
    /// thread may still allocate (its `atfork` handlers of other libraries,
    /// say), and must not wait for itself.
    static CLOSED_HERE: Cell<usize> = const { Cell::new(0) };
}

// (loom's `thread_local!` takes no `const` initialiser.)
#[cfg(loom)]
crate::sync::thread_local! {
    static CLOSED_HERE: Cell<usize> = Cell::new(0);
}

/// The calling thread's stripe. (Under loom, always the last: a model's
/// executions must replay the same accesses, and the round-robin counter
/// lives across them.)
#[cfg(loom)]
fn stripe() -> usize {
    STRIPES - 1
}

/// The calling thread's stripe.
#[cfg(not(loom))]
fn stripe() -> usize {
    STRIPE.with(|s| {
        let i = s.get();
        if i != usize::MAX {
            return i;
        }
        // Relaxed: an id; uniqueness does not matter, spreading does.
        let i = NEXT_STRIPE.fetch_add(1, Ordering::Relaxed) % STRIPES;
        s.set(i);
        i
    })
}

/// A large operation in flight: it leaves the gate when dropped.
pub(super) struct InFlight<'a>(&'a AtomicUsize);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        // Release: pairs with the Acquire loads of `close`, so that the
        // operation happens before the fork.
        self.0.fetch_sub(1, Ordering::Release);
    }
}

impl ForkGate {
    #[cfg(not(loom))]
    pub(super) const fn new() -> Self {
        Self {
            stripes: [const { Stripe(AtomicUsize::new(0)) }; STRIPES],
            closed: AtomicBool::new(false),
        }
    }

    #[cfg(loom)]
    pub(super) fn new() -> Self {
        Self {
            stripes: core::array::from_fn(|_| Stripe(AtomicUsize::new(0))),
            closed: AtomicBool::new(false),
        }
    }

    fn closed_here(&self) -> bool {
        CLOSED_HERE.with(|c| c.get() == self as *const Self as usize)
    }

    /// Enters the gate for one large operation, waiting while a `fork` is
    /// under way on another thread.
    pub(super) fn enter(&self) -> InFlight<'_> {
        let count = &self.stripes[stripe()].0;
        loop {
            if seeded::flag_first() {
                // The seeded bug: the flag read before the count is raised.
                // Acquire, Relaxed: as below.
                let closed = self.closed.load(Ordering::Acquire);
                count.fetch_add(1, Ordering::Relaxed);
                if !closed || self.closed_here() {
                    return InFlight(count);
                }
                // Relaxed: as below.
                count.fetch_sub(1, Ordering::Relaxed);
                self.wait_open();
                continue;
            }
            // Relaxed: ordered before the flag's load by the fence.
            count.fetch_add(1, Ordering::Relaxed);
            // SeqCst: the handshake with the fence in `close` (see the
            // module documentation): either `close` reads our increment,
            // or we read its flag.
            fence(Ordering::SeqCst);
            // Acquire: pairs with the Release store of `open`, so that what
            // the fork did happens before our operation.
            if !self.closed.load(Ordering::Acquire) || self.closed_here() {
                return InFlight(count);
            }
            // Relaxed: we did nothing under the count.
            count.fetch_sub(1, Ordering::Relaxed);
            if self.wait_open() {
                // Relaxed: past the bounded wait (see `wait_open`) the
                // handshake is given up on purpose.
                count.fetch_add(1, Ordering::Relaxed);
                return InFlight(count);
            }
        }
    }

    /// Waits until the gate opens; `true` if it gave up first. The wait is
    /// bounded: the forking thread may be blocked, past its prepare
    /// handlers, on a lock this thread holds (one of the C library's, say).
    /// After `FORK_WAIT_MS` the operation goes on: a child forked meanwhile
    /// may then leak the runs it holds (and, with epoch reclamation, the
    /// nodes retired after), which is better than a deadlock.
    #[cfg(not(loom))]
    fn wait_open(&self) -> bool {
        let start = super::state::now_ms();
        // Relaxed: a wait; the SeqCst load in `enter` decides.
        while self.closed.load(Ordering::Relaxed) {
            if super::state::now_ms().wrapping_sub(start) > FORK_WAIT_MS {
                return true;
            }
            crate::sync::thread::yield_now();
        }
        false
    }

    /// Under loom: waits for `open` (the models fork no process).
    #[cfg(loom)]
    fn wait_open(&self) -> bool {
        // Relaxed: a wait; the SeqCst load in `enter` decides.
        while self.closed.load(Ordering::Relaxed) {
            crate::sync::thread::yield_now();
        }
        false
    }

    /// Whether large operations other than the caller's are in flight (a
    /// heuristic for `alloc_large`: a failed search while others hold runs
    /// out of the index is not a full heap).
    pub(super) fn others_in_flight(&self) -> bool {
        // Relaxed: a heuristic; a stale count only costs a retry or a
        // region mapped early.
        let n: usize = self
            .stripes
            .iter()
            .map(|s| s.0.load(Ordering::Relaxed))
            .sum();
        n > 1
    }

    /// Closes the gate: new large operations on other threads wait, and
    /// this returns once none is in flight.
    pub(super) fn close(&self) {
        CLOSED_HERE.with(|c| c.set(self as *const Self as usize));
        // Relaxed: ordered before the stripes' loads by the fence.
        self.closed.store(true, Ordering::Relaxed);
        // SeqCst: the handshake with the fence in `enter`: each stripe's
        // zero, read after it, means no operation of that stripe missed
        // the flag.
        fence(Ordering::SeqCst);
        // Acquire: pairs with the Release decrement of `InFlight`'s drop.
        while self
            .stripes
            .iter()
            .any(|s| s.0.load(Ordering::Acquire) != 0)
        {
            crate::sync::thread::yield_now();
        }
    }

    /// Opens the gate again.
    pub(super) fn open(&self) {
        CLOSED_HERE.with(|c| c.set(0));
        // Release: pairs with the Acquire load in `enter`.
        self.closed.store(false, Ordering::Release);
    }
}

/// The fork gate on its own, for the loom models (`loom_tests/heap/`):
/// `enter` stands for a large operation, `close` and `open` for
/// `Heap::prepare_fork` and `after_fork_parent`.
#[cfg(loom)]
#[doc(hidden)]
pub struct ModelForkGate(ForkGate);

#[cfg(loom)]
impl ModelForkGate {
    #[allow(clippy::new_without_default)]
    pub fn new() -> Self {
        Self(ForkGate::new())
    }

    /// Enters for one operation, until the guard drops.
    pub fn enter(&self) -> impl Drop + '_ {
        self.0.enter()
    }

    pub fn close(&self) {
        self.0.close()
    }

    pub fn open(&self) {
        self.0.open()
    }
}

/// Switches the seeded bug of the gate on or off for the calling test's
/// loom models: `enter` reads the flag before it raises its count, so a
/// `close` between the two misses the operation, and both go on.
#[cfg(loom)]
#[doc(hidden)]
pub fn seeded_fork_gate_bug(on: bool) {
    seeded::FLAG_FIRST.with(|b| b.set(on));
}

#[cfg(loom)]
mod seeded {
    use core::cell::Cell;

    // std's thread-local: loom runs a model's threads on the OS thread of
    // the test that started it, so the switch is that test's alone.
    thread_local! {
        pub(super) static FLAG_FIRST: Cell<bool> = const { Cell::new(false) };
    }

    pub(super) fn flag_first() -> bool {
        FLAG_FIRST.with(Cell::get)
    }
}

/// Outside loom no bug is seeded.
#[cfg(not(loom))]
mod seeded {
    #[inline(always)]
    pub(super) fn flag_first() -> bool {
        false
    }
}
