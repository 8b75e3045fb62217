//! Size classes of small blocks.
//!
//! | sizes              | spacing          | classes |
//! |--------------------|------------------|---------|
//! | 16 ..= 128         | 16 bytes         | 8       |
//! | 160 ..= 16 384     | 4 per doubling   | 28      |
//!
//! 36 classes in all. Every class size is a multiple of 16 (so every block is
//! 16-byte aligned) and every power of two from 16 to 16 KiB is a class (so an
//! alignment up to the class size is served by a power-of-two class, whose
//! blocks are aligned to their size within a span aligned to [`SPAN`]).
//!
//! **Worst-case internal waste.** Above 128 bytes a class is at most 25%
//! larger than the class below it, so a request of `s` bytes gets a block of
//! less than `1.25 s`: the waste is under 20% of the block (for example 129
//! bytes in a 160-byte block: 19.4%). Up to 128 bytes the 16-byte granule
//! dominates: 17 bytes take a 32-byte block (47%), which every allocator with
//! 16-byte alignment shares. Each class's span of 64 KiB loses its tail when
//! the class size does not divide it: at most 8 KiB of 64 (12.5%, for the
//! 14 336-byte class), under 2% for classes up to 1 KiB.

use super::os::{self, PAGE};

/// Bytes of a span: the unit the small heap carves into blocks of one class.
pub const SPAN: usize = 64 * 1024;

/// The largest small size.
pub const SMALL_MAX: usize = 16 * 1024;

/// Requests of this many bytes or more get a mapping of their own.
pub const HUGE_MIN: usize = 16 << 20;

/// Number of size classes.
pub const CLASSES: usize = 36;

const fn build() -> [u32; CLASSES] {
    let mut t = [0u32; CLASSES];
    let mut i = 0;
    while i < 8 {
        t[i] = 16 * (i as u32 + 1);
        i += 1;
    }
    let mut base = 128u32;
    while i < CLASSES {
        let step = base / 4;
        let mut k = 1;
        while k <= 4 {
            t[i] = base + step * k;
            i += 1;
            k += 1;
        }
        base *= 2;
    }
    t
}

/// The size of each class, ascending.
pub const CLASS_SIZES: [u32; CLASSES] = build();

/// The class that serves `size` bytes at alignment `align` (a power of two),
/// or `None` when the request is not small.
#[inline]
pub(crate) fn class_of(size: usize, align: usize) -> Option<usize> {
    if align <= 16 {
        if size <= 128 {
            return Some(size.saturating_sub(1) / 16);
        }
        if size > SMALL_MAX {
            return None;
        }
        // size in (2^k, 2^(k+1)]: 4 classes per doubling above 128.
        let k = usize::BITS - 1 - (size - 1).leading_zeros(); // 2^k < size <= 2^(k+1)
        let base = 1usize << k;
        let step = base / 4;
        let sub = (size - base).div_ceil(step); // 1..=4
        Some(8 + (k as usize - 7) * 4 + sub - 1)
    } else {
        // A power-of-two class at least as large as both: its blocks sit at
        // multiples of its size in a SPAN-aligned span.
        let need = size.max(align);
        if need > SMALL_MAX {
            return None;
        }
        let p = need.next_power_of_two();
        class_of(p, 16)
    }
}

/// What the free path needs to check that an offset in a span is a block
/// start: `ceil(2^64 / size)` and the end of the span's last whole block.
#[derive(Clone, Copy)]
pub(crate) struct BlockStarts {
    divisor: u64,
    end: u32,
}

impl BlockStarts {
    /// Whether `off` (an offset in a span of this class, `< SPAN`) is the
    /// start of one of its blocks: one multiplication, no division.
    /// `off` is a multiple of `size` exactly when `off * ceil(2^64 / size)`
    /// wraps to less than `ceil(2^64 / size)`, for every `off < 2^32`
    /// (Lemire, Kaser and Kurz, "Faster remainder by direct computation",
    /// 2019, section 4: the divisibility test with `F = 64`, `N = 32`).
    #[inline(always)]
    pub(crate) fn is_start(self, off: usize) -> bool {
        (off as u64).wrapping_mul(self.divisor) < self.divisor && off < self.end as usize
    }
}

/// Per class, see [`BlockStarts`].
pub(crate) const BLOCK_STARTS: [BlockStarts; CLASSES] = {
    let mut r = [BlockStarts { divisor: 0, end: 0 }; CLASSES];
    let mut i = 0;
    while i < CLASSES {
        let size = CLASS_SIZES[i] as u64;
        r[i] = BlockStarts {
            divisor: u64::MAX / size + 1,
            end: (blocks_per_span(i) as u64 * size) as u32,
        };
        i += 1;
    }
    r
};

/// How many blocks a span of class `c` holds.
#[inline]
pub(crate) const fn blocks_per_span(c: usize) -> usize {
    BLOCKS_PER_SPAN[c] as usize
}

/// How many blocks a page carves from its untouched memory at once: 4 KiB
/// worth (one page: carving writes a link into each block, so every page
/// it reaches is faulted in, used or not), at least 1 and at most 64.
#[inline]
pub(crate) const fn batch(c: usize) -> usize {
    BATCH[c] as usize
}

/// Tables, so that the hot paths load instead of divide.
const BLOCKS_PER_SPAN: [u16; CLASSES] = {
    let mut t = [0u16; CLASSES];
    let mut i = 0;
    while i < CLASSES {
        t[i] = (SPAN / CLASS_SIZES[i] as usize) as u16;
        i += 1;
    }
    t
};

const BATCH: [u16; CLASSES] = {
    let mut t = [0u16; CLASSES];
    let mut i = 0;
    while i < CLASSES {
        let n = 4 * 1024 / CLASS_SIZES[i] as usize;
        t[i] = if n < 1 {
            1
        } else if n > 64 {
            64
        } else {
            n as u16 as usize
        } as u16;
        i += 1;
    }
    t
};

/// The usable size of the block an allocation of `size` bytes aligned to
/// `align` gets (its class size, or whole pages): allocating that much
/// costs the same and wastes nothing. `None` when no block could serve
/// the request.
///
/// ```
/// use vvmalloc::heap::good_size;
/// assert_eq!(good_size(20, 8), Some(32));
/// assert_eq!(good_size(20_000, 8), Some(20_480));
/// ```
pub fn good_size(size: usize, align: usize) -> Option<usize> {
    let size = size.max(1);
    if let Some(c) = class_of(size, align) {
        Some(CLASS_SIZES[c] as usize)
    } else if size < HUGE_MIN {
        Some(size.next_multiple_of(PAGE))
    } else {
        size.checked_next_multiple_of(os::page_size())
            .filter(|&n| n <= isize::MAX as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_ascending_multiples_of_16_with_powers_of_two() {
        assert_eq!(CLASS_SIZES[0], 16);
        assert_eq!(CLASS_SIZES[CLASSES - 1] as usize, SMALL_MAX);
        for w in CLASS_SIZES.windows(2) {
            assert!(w[0] < w[1] && w[1] % 16 == 0);
        }
        for k in 4..=14 {
            assert!(CLASS_SIZES.contains(&(1 << k)), "2^{k} missing");
        }
    }

    #[test]
    fn class_of_is_the_smallest_fitting_class_and_waste_is_bounded() {
        let step = if cfg!(miri) { 13 } else { 1 };
        for size in (1..=SMALL_MAX).step_by(step) {
            let c = class_of(size, 1).unwrap();
            let cs = CLASS_SIZES[c] as usize;
            assert!(cs >= size, "{size} -> {cs}");
            assert!(
                c == 0 || (CLASS_SIZES[c - 1] as usize) < size,
                "{size} not smallest"
            );
            if size > 128 {
                assert!((cs - size) * 5 < cs, "{size} -> {cs}: waste over 20%");
            }
        }
        assert_eq!(class_of(0, 1), Some(0));
        assert_eq!(class_of(SMALL_MAX + 1, 1), None);
    }

    #[test]
    fn block_starts_are_found_exactly_within_a_span() {
        // Every offset natively; a sample under Miri (interpreted, slow).
        let step = if cfg!(miri) { 97 } else { 1 };
        for (c, &size) in CLASS_SIZES.iter().enumerate() {
            let size = size as usize;
            let blocks = blocks_per_span(c);
            for off in (0..SPAN).step_by(step) {
                let start = off % size == 0 && off / size < blocks;
                assert_eq!(
                    BLOCK_STARTS[c].is_start(off),
                    start,
                    "class {size}, offset {off}"
                );
            }
        }
    }

    #[test]
    fn aligned_classes_are_aligned() {
        let mut align = 32;
        while align <= SMALL_MAX {
            for size in [1, align / 2, align, align + 1, 3 * align] {
                match class_of(size, align) {
                    Some(c) => {
                        let cs = CLASS_SIZES[c] as usize;
                        assert!(cs >= size && cs % align == 0 && SPAN % cs == 0);
                    }
                    None => assert!(size.max(align).next_power_of_two() > SMALL_MAX),
                }
            }
            align *= 2;
        }
    }
}
