//! The huge blocks' table and cache slots.

use super::*;

/// The huge table (`src/heap/huge_table.rs`), its slots being loom atomics
/// in the loom build. A free without a size finds a huge block's length
/// through it, so a lookup that finds the key must read that block's
/// length; and a cache slot handed a freed mapping must hand out the
/// mapping's length with it.
///
/// The lookups run on a thread of their own that yields first. Loom's
/// partial-order reduction keeps one last access per atomic, so the
/// insert's first (hint) load of the slot hides its CAS from a lookup that
/// ran before it: without the yield no explored execution has the lookup
/// find the block. And the lookup thread is not the table's creator: loom
/// never lets a thread read a stale value it saw before its last yield,
/// which would hide the initial length from the creator.
fn huge_table_publishes_lengths() {
    use vvmalloc::heap::ModelHugeTable;
    let t = Arc::new(ModelHugeTable::new(2));
    let other = {
        let t = t.clone();
        thread::spawn(move || {
            assert!(t.insert(0x4000_0000, 3 << 20));
            assert!(t.offer(0x8000_0000, 5 << 20));
        })
    };
    let lookups = {
        let t = t.clone();
        thread::spawn(move || {
            thread::yield_now();
            if let Some(len) = t.len_of(0x4000_0000) {
                assert_eq!(len, 3 << 20, "a huge block found before its length");
            }
            if let Some((addr, len)) = t.claim() {
                assert_eq!(
                    (addr, len),
                    (0x8000_0000, 5 << 20),
                    "a cached mapping claimed before its length"
                );
            }
        })
    };
    other.join().unwrap();
    lookups.join().unwrap();
}

/// Two frees of one huge block race a new block's insert into the only
/// slot: exactly one free wins (the other is a detected double free), the
/// insert can reuse the slot only once it is tombstoned, and afterwards
/// the table holds exactly what the winners left.
fn huge_table_double_free_races_reuse() {
    use vvmalloc::heap::ModelHugeTable;
    let t = Arc::new(ModelHugeTable::new(1));
    assert!(t.insert(0x4000_0000, 3 << 20));
    let frees: Vec<_> = (0..2)
        .map(|_| {
            let t = t.clone();
            thread::spawn(move || t.remove(0x4000_0000))
        })
        .collect();
    let inserted = t.insert(0x8000_0000, 7 << 20);
    let won: Vec<_> = frees
        .into_iter()
        .filter_map(|f| f.join().unwrap())
        .collect();
    assert_eq!(won, [3 << 20], "not exactly one free of a huge block won");
    assert_eq!(t.len_of(0x4000_0000), None);
    if inserted {
        assert_eq!(t.len_of(0x8000_0000), Some(7 << 20));
    }
}

/// A cached mapping that one claimer puts back (it does not fit) keeps its
/// length for the next claimer, which may read the put-back's key and not
/// the offer's: the put-back must publish what the offer did.
fn huge_cache_put_back_keeps_the_length() {
    use vvmalloc::heap::ModelHugeTable;
    let t = Arc::new(ModelHugeTable::new(1));
    let offer = {
        let t = t.clone();
        thread::spawn(move || assert!(t.offer(0x8000_0000, 5 << 20)))
    };
    let misfit = {
        let t = t.clone();
        thread::spawn(move || t.claim_misfit())
    };
    if let Some(got) = t.claim() {
        assert_eq!(
            got,
            (0x8000_0000, 5 << 20),
            "a put-back mapping lost its length"
        );
    }
    offer.join().unwrap();
    misfit.join().unwrap();
}

#[test]
fn huge_cache_put_back_publishes_the_length() {
    model(huge_cache_put_back_keeps_the_length);
}

#[test]
fn huge_table_lookups_see_published_lengths() {
    model(huge_table_publishes_lengths);
}

#[test]
fn huge_table_double_free_wins_once_and_slots_are_reused() {
    model(huge_table_double_free_races_reuse);
}

/// Runs `f` under loom with the huge table's seeded `bug`, which must fail
/// with `report`.
fn assert_huge_bug_caught(bug: vvmalloc::heap::HugeTableBug, f: fn(), report: &str) {
    use vvmalloc::heap::{seeded_huge_table_bug, HugeTableBug};
    assert_seeded_bug_caught(
        |on| seeded_huge_table_bug(if on { bug } else { HugeTableBug::None }),
        f,
        &[report],
    );
}

/// Seeded: `insert` and `offer` publish the key before the length. A
/// lookup that sees the key reads the slot's old length.
#[test]
fn seeded_huge_table_key_before_length_is_caught() {
    assert_huge_bug_caught(
        vvmalloc::heap::HugeTableBug::KeyBeforeLength,
        huge_table_publishes_lengths,
        "before its length",
    );
}

/// Seeded: `remove` ignores the result of its CAS, so both frees of one
/// block win (and the block would be unmapped twice).
#[test]
fn seeded_huge_table_remove_ignoring_its_cas_is_caught() {
    assert_huge_bug_caught(
        vvmalloc::heap::HugeTableBug::RemoveIgnoresCas,
        huge_table_double_free_races_reuse,
        "not exactly one free",
    );
}
