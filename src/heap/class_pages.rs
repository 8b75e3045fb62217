//! Each size class's shared state: its stacks of abandoned and full pages
//! and its counters. The operations on them are in `pool`.

use crate::intrusive::IntrusiveStack;
use crate::stat::{SignedStat, Stat};

/// One size class's shared pages and counters, on cache lines of its own.
#[repr(align(128))]
pub(crate) struct ClassPages {
    /// Pages left by thread heaps that went away, and pages with free
    /// blocks used by cache-less operations.
    pub(super) abandoned: IntrusiveStack,
    /// Full pages no thread heap owns.
    pub(super) full: IntrusiveStack,
    /// Frees into pages no thread heap owned, since `full` was last
    /// searched (a heuristic trigger, no ordering).
    pub(super) orphan_frees: Stat,
    /// Blocks handed out and not freed (owners report per page, when they
    /// switch pages, collect or flush).
    pub(crate) in_use: SignedStat,
    /// Pages of the class.
    pub(crate) spans: Stat,
    /// Bytes requested through thread heaps, minus bytes freed there.
    pub(crate) requested: SignedStat,
}

impl ClassPages {
    #[cfg(not(loom))]
    pub(crate) const fn new() -> Self {
        Self {
            abandoned: IntrusiveStack::new(),
            full: IntrusiveStack::new(),
            orphan_frees: Stat::new(0),
            in_use: SignedStat::new(0),
            spans: Stat::new(0),
            requested: SignedStat::new(0),
        }
    }

    #[cfg(loom)]
    pub(crate) fn new() -> Self {
        Self {
            abandoned: IntrusiveStack::new(),
            full: IntrusiveStack::new(),
            orphan_frees: Stat::new(0),
            in_use: SignedStat::new(0),
            spans: Stat::new(0),
            requested: SignedStat::new(0),
        }
    }
}
