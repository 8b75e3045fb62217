//! Counters that order no memory: statistics, limits, triggers, ids.
//!
//! Every access is `Relaxed`, and the types offer no other ordering: what
//! they count is read for reports and heuristics, never to learn that some
//! other memory is ready. So no call site needs an ordering argument, or a
//! comment on what it pairs with (nothing does), and loom need not see them:
//! they are the only atomics outside the `sync` shim's tracked set
//! (`.ci/shim-check` keeps it so). An atomic that publishes or guards memory
//! is a shim atomic instead.
//!
//! The operations keep the names of std's atomics, without the ordering.

use crate::sync::plain::{AtomicIsize, AtomicUsize, Ordering::Relaxed};

macro_rules! stat {
    ($(#[$doc:meta])* $name:ident, $atomic:ident, $int:ty) => {
        $(#[$doc])*
        // `pub` in a private module (unnameable outside the crate): a hidden
        // method of the public `Reclaim` trait returns one.
        #[allow(unreachable_pub)]
        #[derive(Debug, Default)]
        pub struct $name($atomic);

        // Not every counter uses every operation.
        #[allow(dead_code)]
        impl $name {
            pub(crate) const fn new(v: $int) -> Self {
                Self($atomic::new(v))
            }

            #[inline]
            pub(crate) fn load(&self) -> $int {
                // Relaxed: pairs with nothing; a counter orders no memory.
                self.0.load(Relaxed)
            }

            #[inline]
            pub(crate) fn store(&self, v: $int) {
                // Relaxed: pairs with nothing; a counter orders no memory.
                self.0.store(v, Relaxed)
            }

            /// Adds `n` (wrapping), returning the previous value.
            #[inline]
            pub(crate) fn fetch_add(&self, n: $int) -> $int {
                // Relaxed: pairs with nothing; a counter orders no memory.
                self.0.fetch_add(n, Relaxed)
            }

            /// Subtracts `n` (wrapping), returning the previous value.
            #[inline]
            pub(crate) fn fetch_sub(&self, n: $int) -> $int {
                // Relaxed: pairs with nothing; a counter orders no memory.
                self.0.fetch_sub(n, Relaxed)
            }

            #[inline]
            pub(crate) fn swap(&self, v: $int) -> $int {
                // Relaxed: pairs with nothing; a counter orders no memory.
                self.0.swap(v, Relaxed)
            }

            #[inline]
            pub(crate) fn compare_exchange(&self, current: $int, new: $int) -> Result<$int, $int> {
                // Relaxed: pairs with nothing; a counter orders no memory.
                self.0.compare_exchange(current, new, Relaxed, Relaxed)
            }

            #[inline]
            pub(crate) fn fetch_update(
                &self,
                f: impl FnMut($int) -> Option<$int>,
            ) -> Result<$int, $int> {
                // Relaxed: pairs with nothing; a counter orders no memory.
                self.0.fetch_update(Relaxed, Relaxed, f)
            }
        }
    };
}

stat!(
    /// An unsigned counter that orders no memory (see the module docs).
    Stat,
    AtomicUsize,
    usize
);

stat!(
    /// A signed counter that orders no memory (see the module docs): one
    /// that other threads' decrements may take below zero for a moment.
    SignedStat,
    AtomicIsize,
    isize
);

#[cfg(all(test, not(loom)))]
mod tests {
    use super::{SignedStat, Stat};

    #[test]
    fn operations_return_what_std_does() {
        let s = Stat::new(5);
        assert_eq!(s.fetch_add(3), 5);
        assert_eq!(s.fetch_sub(1), 8);
        assert_eq!(s.swap(0), 7);
        assert_eq!(s.compare_exchange(1, 2), Err(0));
        assert_eq!(s.compare_exchange(0, 2), Ok(0));
        assert_eq!(s.fetch_update(|v| v.checked_sub(3)), Err(2));
        assert_eq!(s.fetch_update(|v| v.checked_sub(2)), Ok(2));
        s.store(9);
        assert_eq!(s.load(), 9);
        let d = SignedStat::new(0);
        assert_eq!(d.fetch_sub(2), 0);
        assert_eq!(d.load(), -2);
    }
}
