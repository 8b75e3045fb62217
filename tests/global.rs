//! This test binary runs with `VvMalloc` as its global allocator: every
//! allocation of the test harness, of std and of the tests goes through it.

#![cfg(not(loom))]

use std::alloc::{alloc, dealloc, Layout};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::mpsc;
use std::sync::Mutex;

use vvmalloc::heap::HUGE_MIN;
use vvmalloc::VvMalloc;

#[global_allocator]
static GLOBAL: VvMalloc = VvMalloc::new();

/// Tests that measure the process's memory run one at a time.
static MEASURE: Mutex<()> = Mutex::new(());

/// `VVMALLOC_CHECKED=1` turns the checked mode on for the process heap
/// (`.ci/run` runs this binary both ways): every test here then also runs
/// with guarded small blocks and double-free checks.
#[test]
fn checked_mode_follows_the_environment() {
    let wanted = std::env::var("VVMALLOC_CHECKED").is_ok_and(|v| v == "1");
    assert_eq!(VvMalloc::is_checked(), wanted);
    assert_eq!(VvMalloc::heap().config().checked, wanted);
    let v: Box<[u8]> = Box::new([7u8; 20]);
    if wanted {
        assert_eq!(VvMalloc::usable_size(v.as_ptr()), Some(20));
    }
    assert_eq!(VvMalloc::stats().misuse, 0);
}

#[test]
fn std_collections_and_strings() {
    let mut m: HashMap<String, Vec<u32>> = HashMap::new();
    for i in 0..20_000u32 {
        m.entry(format!("key-{}", i % 997)).or_default().push(i);
    }
    assert_eq!(m.len(), 997);
    assert_eq!(m.values().map(Vec::len).sum::<usize>(), 20_000);
    let b: BTreeMap<u64, String> = (0..10_000).map(|i| (i, i.to_string())).collect();
    assert_eq!(b[&4321], "4321");
    let mut d: VecDeque<Box<[u8]>> = VecDeque::new();
    for i in 0..5_000usize {
        d.push_back(vec![i as u8; i % 3000].into_boxed_slice());
        if i % 3 == 0 {
            d.pop_front();
        }
    }
    assert!(d.iter().all(|b| b
        .iter()
        .all(|&x| x as usize == b.len() % 256 || b.is_empty() || x == b[0])));
    let s: String = (0..100_000)
        .map(|i| char::from(b'a' + (i % 26) as u8))
        .collect();
    assert_eq!(s.len(), 100_000);
    assert_eq!(&s[..3], "abc");
}

#[test]
fn threads_start_allocate_and_exit_by_the_hundred() {
    for round in 0..20 {
        let hs: Vec<_> = (0..16)
            .map(|t| {
                std::thread::spawn(move || {
                    let v: Vec<String> = (0..200).map(|i| format!("{round}-{t}-{i}")).collect();
                    v.iter().map(String::len).sum::<usize>()
                })
            })
            .collect();
        for h in hs {
            assert!(h.join().unwrap() > 0);
        }
    }
}

#[test]
fn large_and_huge_blocks_and_every_alignment_up_to_1_mib() {
    for size in [20_000usize, 300_000, 3 << 20, HUGE_MIN, 20 << 20] {
        let mut v = vec![7u8; size];
        v[size - 1] = 9;
        v.resize(size * 2, 1);
        assert_eq!((v[0], v[size - 1], v[size * 2 - 1]), (7, 9, 1));
    }
    let mut align = 1;
    while align <= 1 << 20 {
        for size in [1, align, 3 * align + 5] {
            let l = Layout::from_size_align(size, align).unwrap();
            // SAFETY: `l` has a non-zero size.
            let p = unsafe { alloc(l) };
            assert!(!p.is_null());
            assert_eq!(p as usize % align, 0, "{size} @ {align}");
            // SAFETY: a live block of `size` bytes.
            unsafe {
                p.write_bytes(0xab, size);
                dealloc(p, l);
            }
        }
        align *= 2;
    }
}

#[test]
fn blocks_freed_by_other_threads() {
    let (tx, rx) = mpsc::sync_channel::<Vec<Box<[u64; 8]>>>(16);
    let producer = std::thread::spawn(move || {
        for i in 0..2_000u64 {
            tx.send((0..100).map(|j| Box::new([i * 1000 + j; 8])).collect())
                .unwrap();
        }
    });
    let mut total = 0u64;
    for batch in rx {
        for b in batch {
            assert!(b.iter().all(|&x| x == b[0]));
            total += 1;
        }
    }
    producer.join().unwrap();
    assert_eq!(total, 200_000);
}

fn rss_bytes() -> usize {
    let s = std::fs::read_to_string("/proc/self/statm").unwrap();
    let pages: usize = s.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4096
}

/// A producer/consumer pair cycling blocks through the central heaps keeps
/// a flat footprint: after a warm-up, rounds add (almost) nothing.
#[test]
fn producer_consumer_footprint_is_flat() {
    let _g = MEASURE.lock().unwrap_or_else(|p| p.into_inner());
    let run = |rounds: usize| {
        let (tx, rx) = mpsc::sync_channel::<Vec<Box<[u8; 200]>>>(8);
        let p = std::thread::spawn(move || {
            for _ in 0..rounds {
                tx.send((0..500).map(|_| Box::new([1u8; 200])).collect())
                    .unwrap();
            }
        });
        for batch in rx {
            drop(batch);
        }
        p.join().unwrap();
    };
    run(2_000);
    let after_warmup = VvMalloc::stats().mapped_bytes;
    run(20_000);
    let after = VvMalloc::stats().mapped_bytes;
    assert!(
        after <= after_warmup + (8 << 20),
        "footprint grew from {after_warmup} to {after}"
    );
}

/// Hundreds of MiB allocated and freed go back to the OS.
#[test]
fn freed_memory_goes_back_to_the_os() {
    let _g = MEASURE.lock().unwrap_or_else(|p| p.into_inner());
    let base = rss_bytes();
    let mut small: Vec<Box<[u8; 240]>> = (0..600_000).map(|_| Box::new([3u8; 240])).collect();
    let large: Vec<Vec<u8>> = (0..400).map(|i| vec![i as u8; 200_000 + i * 100]).collect();
    let huge: Vec<Vec<u8>> = (0..4).map(|_| vec![1u8; 32 << 20]).collect();
    let peak = rss_bytes();
    assert!(
        peak > base + (300 << 20),
        "the test did not allocate: {base} -> {peak}"
    );
    small.truncate(0);
    small.shrink_to_fit();
    drop((small, large, huge));
    let released = VvMalloc::trim();
    let after = rss_bytes();
    let st = VvMalloc::stats();
    // Most of the small spans were released by the scavenger while the
    // blocks were being freed, the rest by `trim`.
    assert!(
        st.spans_released * 64 * 1024 > 100 << 20,
        "{released} {st:?}"
    );
    assert!(
        after < base + (64 << 20),
        "RSS {base} -> {peak} -> {after}; {st:?}"
    );
    assert!(st.resident_bytes < 96 << 20, "{st:?}");
}
