//! The heap's statistics.

use super::class::CLASSES;

/// One size class's counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ClassStats {
    /// The class's block size.
    pub size: usize,
    /// Blocks handed out and not freed. Thread heaps count per page, and
    /// add their counts to this once they reach 256 blocks either way (or
    /// when they are flushed or go away), so this lags by less than 256
    /// blocks per thread heap, plus the counts of the pages each heap
    /// allocates from.
    pub in_use_blocks: usize,
    /// Spans of 64 KiB the class holds.
    pub spans: usize,
}

/// A heap's statistics, from [`Heap::stats`](super::Heap::stats).
///
/// The counters are kept on the slow paths and by the thread heaps in
/// batches (see [`ClassStats::in_use_blocks`]; requested bytes likewise,
/// from 1 MiB), so they are cheap enough to leave on; they are a snapshot
/// of counters updated concurrently, not a consistent cut.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stats {
    /// Bytes the program asked for and has not freed.
    pub requested_bytes: usize,
    /// Bytes of the blocks handed out and not freed (small blocks at their
    /// class size, large blocks rounded to pages, huge blocks to pages).
    pub in_use_bytes: usize,
    /// Bytes mapped read-write: the part of the arena in use by spans and
    /// large regions, plus huge blocks (and freed huge mappings kept for
    /// reuse).
    pub mapped_bytes: usize,
    /// Of those, bytes resident in memory (`mincore` of the arena; huge
    /// blocks counted as resident).
    pub resident_bytes: usize,
    /// Per size class.
    pub small: [ClassStats; CLASSES],
    /// Bytes of large blocks in use, with the growth reserves of blocks
    /// that `realloc` grew (address space they hold; untouched pages of it
    /// are not resident).
    pub large_in_use_bytes: usize,
    /// Free runs recorded in the large heap's free index.
    pub free_index_blocks: usize,
    /// Bytes of those runs.
    pub free_index_bytes: usize,
    /// Bytes of freed large blocks (up to 256 KiB) kept for reuse at their
    /// size, outside the free index (see the heap's documentation).
    pub large_cache_bytes: usize,
    /// Nodes of the free index retired by its reclamation scheme and not yet
    /// freed (see [`FreeIndex::held_back`](super::FreeIndex::held_back):
    /// process-wide for the scheme).
    pub reclaim_held_nodes: usize,
    /// Huge blocks (own mappings) in use.
    pub huge_blocks: usize,
    /// Bytes of those.
    pub huge_bytes: usize,
    /// Spans given back to the OS so far (empty pages purged from the
    /// pool of empty pages).
    pub spans_released: usize,
    /// Bytes of empty pages kept resident for reuse by any class (given
    /// back to the OS when they add up to more than 32 MiB, at most once a
    /// second, and by [`Heap::trim`](super::Heap::trim)).
    pub empty_page_bytes: usize,
    /// Misuses detected (invalid or double frees) so far.
    pub misuse: usize,
    /// Address space reserved for the arena.
    pub arena_bytes: usize,
}

impl Stats {
    /// Bytes of small blocks in use.
    pub fn small_in_use_bytes(&self) -> usize {
        self.small.iter().map(|c| c.in_use_blocks * c.size).sum()
    }

    /// Bytes of the small classes' pages not in use by blocks handed out
    /// (free blocks, and the parts of pages not carved yet).
    pub fn small_free_bytes(&self) -> usize {
        self.small
            .iter()
            .map(|c| c.spans * super::SPAN - c.in_use_blocks * c.size)
            .sum()
    }
}
