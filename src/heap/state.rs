//! The heap state that does not depend on the free index ([`Core`]), its
//! construction, and what every layer above uses: the OS-failure hook, the
//! rate limit of the purges, misuse reporting.

use core::mem::size_of;
use core::ptr;

use super::class::{self, CLASSES, SPAN};
use super::class_pages::ClassPages;
use super::config::HeapConfig;
use super::fork_gate::ForkGate;
use super::huge_table::{HugeSlot, HugeTable, HUGE_CACHE_SLOTS};
use super::large_cache::{LargeCache, LARGE_CACHE_PAGES};
use super::os::PAGE;
use super::page::SpanMeta;
use crate::intrusive::IntrusiveStack;
use crate::stat::{SignedStat, Stat};
use crate::sync::plain::AtomicU8;

/// Not decided yet: the process heap reads `VVMALLOC_CHECKED` when it
/// reserves its arena (see `checked`).
pub(super) const CHECK_UNKNOWN: u8 = 0;
/// Unchecked: misuse is counted, small blocks carry nothing extra.
pub(super) const CHECK_OFF: u8 = 1;
/// Checked: misuse is reported and aborts; small blocks carry a guard and a
/// handed-out bit.
pub(super) const CHECK_ON: u8 = 2;

/// The state of a heap that does not depend on its free index.
pub(crate) struct Core {
    /// Start of the arena's data (after the side table); null until the
    /// arena is reserved. A shim atomic: it publishes the side table (under
    /// loom, records built of loom cells and atomics).
    pub(super) data: crate::sync::AtomicPtr<u8>,
    pub(super) arena_bytes: usize,
    /// Bytes of the side table in front of the arena's data: a `SpanMeta`
    /// per span, then a `u32` per page holding the page count of the large
    /// block starting there (0 where none starts).
    pub(super) table_bytes: usize,
    /// Bytes of the arena handed out to spans and large regions so far.
    pub(super) bump: crate::sync::AtomicUsize,
    /// `CHECK_ON`, `CHECK_OFF`, or `CHECK_UNKNOWN` for the process heap
    /// until it reserves its arena and reads `VVMALLOC_CHECKED` (see the
    /// `checked` module).
    pub(super) checked: AtomicU8,
    /// Each class's shared pages and counters.
    pub(crate) pages: [ClassPages; CLASSES],
    /// Empty pages, still resident: reused first, by any class, and given
    /// back to the OS by `purge_pages`.
    pub(crate) dirty: IntrusiveStack,
    /// Bytes in `dirty`.
    pub(crate) dirty_bytes: Stat,
    /// Free batch descriptors.
    pub(super) batches: IntrusiveStack,
    /// Spans given back to the OS, ready for any use.
    pub(crate) free_spans: IntrusiveStack,
    /// Freed large blocks by page count (index `pages - 1`): a program that
    /// frees and allocates blocks of one size over and over (zlib's 32 and
    /// 64 KiB windows, say) reuses them with two stack operations instead
    /// of a search, split and coalesce in the free index.
    pub(super) large_cache: [LargeCache; LARGE_CACHE_PAGES],
    /// Bytes in `large_cache`.
    pub(super) large_cached: Stat,
    /// Held by a purge of the pool of empty pages or of the large heap's
    /// free runs (and by a fork in progress): one at a time.
    pub(crate) scavenging: crate::sync::AtomicBool,
    pub(crate) requested: SignedStat,
    pub(super) large_in_use: Stat,
    pub(super) large_free: Stat,
    pub(super) large_freed_since_purge: Stat,
    pub(super) last_purge_ms: Stat,
    pub(crate) last_scavenge_ms: Stat,
    /// Large operations that may hold free runs out of the index for a
    /// moment (claimed to split, coalesce or purge, not yet returned) pass
    /// it; `Heap::prepare_fork` closes it while a `fork` is under way.
    pub(super) fork_gate: ForkGate,
    /// Called once the arena is reserved (the process heap registers its
    /// `pthread_atfork` handlers there: it may allocate).
    pub(super) on_reserve: Option<fn()>,
    /// The huge blocks: address and mapping length (see `HugeTable`).
    pub(super) huge: HugeTable,
    /// Freed huge mappings kept for reuse.
    pub(super) huge_cache: [HugeSlot; HUGE_CACHE_SLOTS],
    /// Bytes in `huge_cache`.
    pub(super) huge_cached: Stat,
    pub(super) huge_blocks: Stat,
    pub(super) huge_bytes: Stat,
    pub(crate) spans_released: Stat,
    pub(super) misuse: Stat,
    pub(super) inject_failures: Stat,
}

// SAFETY: the raw pointers inside (arena, free chains) are owned by the heap,
// and every shared access goes through atomics or is owned exclusively by
// the protocols described in the module documentation.
unsafe impl Send for Core {}
// SAFETY: as above.
unsafe impl Sync for Core {}

/// The initialiser of `Core`, shared by the `const` constructor and loom's
/// (whose atomics are not `const`).
macro_rules! core_new {
    ($config:expr, $central:expr, $stack:expr, $cache:expr, $huge_cache:expr) => {{
        let config: HeapConfig = $config;
        let arena_bytes = config.arena_bytes.next_multiple_of(SPAN);
        Self {
            data: crate::sync::AtomicPtr::new(ptr::null_mut()),
            arena_bytes,
            table_bytes: (arena_bytes / SPAN * size_of::<SpanMeta>()
                + arena_bytes / PAGE * size_of::<crate::sync::AtomicU32>())
            .next_multiple_of(SPAN),
            bump: crate::sync::AtomicUsize::new(0),
            checked: AtomicU8::new(if config.checked { CHECK_ON } else { CHECK_OFF }),
            pages: $central,
            dirty: $stack,
            dirty_bytes: Stat::new(0),
            batches: $stack,
            free_spans: $stack,
            large_cache: $cache,
            large_cached: Stat::new(0),
            scavenging: crate::sync::AtomicBool::new(false),
            requested: SignedStat::new(0),
            large_in_use: Stat::new(0),
            large_free: Stat::new(0),
            large_freed_since_purge: Stat::new(0),
            last_purge_ms: Stat::new(0),
            last_scavenge_ms: Stat::new(0),
            fork_gate: ForkGate::new(),
            on_reserve: None,
            huge: HugeTable::new(),
            huge_cache: $huge_cache,
            huge_cached: Stat::new(0),
            huge_blocks: Stat::new(0),
            huge_bytes: Stat::new(0),
            spans_released: Stat::new(0),
            misuse: Stat::new(0),
            inject_failures: Stat::new(0),
        }
    }};
}

impl Core {
    #[cfg(not(loom))]
    pub(super) const fn new(config: HeapConfig) -> Self {
        core_new!(
            config,
            [const { ClassPages::new() }; CLASSES],
            IntrusiveStack::new(),
            [const { LargeCache::new() }; LARGE_CACHE_PAGES],
            [const { HugeSlot::new() }; HUGE_CACHE_SLOTS]
        )
    }

    #[cfg(loom)]
    pub(super) fn new(config: HeapConfig) -> Self {
        core_new!(
            config,
            core::array::from_fn(|_| ClassPages::new()),
            IntrusiveStack::new(),
            core::array::from_fn(|_| LargeCache::new()),
            core::array::from_fn(|_| HugeSlot::new())
        )
    }

    #[inline]
    pub(super) fn table_bytes(&self) -> usize {
        self.table_bytes
    }

    /// Consumes one injected OS failure, if any is pending.
    pub(super) fn os_fails(&self) -> bool {
        self.inject_failures.load() > 0
            && self
                .inject_failures
                .fetch_update(|n| n.checked_sub(1))
                .is_ok()
    }

    /// `true` at most once per `DECAY_MS` for the clock `last` (a
    /// millisecond timestamp): the purges that give memory back run only
    /// when their trigger has held for a while, not every time it holds.
    /// Two threads passing at once is harmless (the scavenger flag
    /// serialises the work).
    pub(crate) fn rate_limit(&self, last: &Stat) -> bool {
        let now = now_ms();
        let prev = last.load();
        now.wrapping_sub(prev) >= DECAY_MS && last.compare_exchange(prev, now).is_ok()
    }

    /// The class of the small block at `p` in the span `unit` of kind
    /// `kind`, or what is wrong with `p`.
    #[inline]
    pub(super) fn small_class_at(
        data: *mut u8,
        unit: usize,
        kind: u32,
        p: *mut u8,
    ) -> Result<usize, &'static str> {
        match kind {
            1..=36 => {
                let c = kind as usize - 1;
                let off = p as usize - (data as usize + unit * SPAN);
                if !class::BLOCK_STARTS[c].is_start(off) {
                    Err("free of a pointer inside a small block (not its start)")
                } else {
                    Ok(c)
                }
            }
            _ => Err("free of a pointer in a span that is not in use"),
        }
    }

    /// Counts (or, in checked mode, reports and aborts on) a misuse: `what`
    /// happened at `p`, with numbers that tell more.
    #[cold]
    pub(crate) fn misuse(&self, what: &str, p: *mut u8, details: &[(&str, usize)]) {
        self.misuse.fetch_add(1);
        if self.checks() {
            report_and_abort(what, p as usize, details);
        }
    }
}

/// Memory is given back at most once per this many milliseconds by each of
/// the automatic triggers (small scavenging, large purging).
const DECAY_MS: usize = 1000;

/// A coarse monotonic clock in milliseconds (no allocation, a vDSO call).
pub(super) fn now_ms() -> usize {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // (Miri knows only the precise clock.)
    let clock = if cfg!(miri) {
        libc::CLOCK_MONOTONIC
    } else {
        libc::CLOCK_MONOTONIC_COARSE
    };
    // SAFETY: `ts` is a valid out-pointer.
    unsafe { libc::clock_gettime(clock, &mut ts) };
    ts.tv_sec as usize * 1000 + ts.tv_nsec as usize / 1_000_000
}

/// Writes `vvmalloc: <what> (address 0x..., <name> <value>, ...)` to stderr
/// without allocating, then aborts.
#[cold]
fn report_and_abort(what: &str, addr: usize, details: &[(&str, usize)]) -> ! {
    let mut buf = [0u8; 512];
    let mut len = 0;
    let mut put = |bytes: &[u8]| {
        let n = bytes.len().min(buf.len() - len);
        buf[len..len + n].copy_from_slice(&bytes[..n]);
        len += n;
    };
    put(b"vvmalloc: ");
    put(what.as_bytes());
    put(b" (address 0x");
    let mut hex = [0u8; 16];
    for (i, h) in hex.iter_mut().enumerate() {
        *h = b"0123456789abcdef"[(addr >> (60 - 4 * i)) & 0xf];
    }
    put(&hex);
    for (name, value) in details {
        put(b", ");
        put(name.as_bytes());
        put(b" ");
        let mut digits = [0u8; 20];
        let mut at = digits.len();
        let mut v = *value;
        loop {
            at -= 1;
            digits[at] = b'0' + (v % 10) as u8;
            v /= 10;
            if v == 0 {
                break;
            }
        }
        put(&digits[at..]);
    }
    put(b")\n");
    // SAFETY: writing our own buffer to fd 2; abort has no preconditions.
    unsafe {
        libc::write(2, buf.as_ptr().cast(), len);
        libc::abort()
    }
}
