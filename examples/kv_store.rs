//! An ordered in-memory key-value store built on `vvmalloc`'s public API
//! only, as another crate would use it: a `SkipList` of string keys to
//! versioned values, written by some threads while others serve point
//! lookups and range scans, with the reclamation scheme chosen on the
//! command line.
//!
//! ```text
//! cargo run --release --example kv_store            # epoch, the default
//! cargo run --release --example kv_store -- hazard  # hazard pointers
//! cargo run --release --example kv_store -- asym-hazard-own
//! cargo run --release --example kv_store -- epoch-own
//! ```
//!
//! `asym-hazard` uses the library's own hazard pointers (readers without a
//! hardware fence). The `-own` variants give the store a reclamation domain of its
//! own, which is what lets its keys borrow from data the program owns
//! (`&str` into a `Vec<String>` here): removed entries are freed by the
//! time the store is dropped, not later by a process-wide collector. The
//! program checks what it can (every scan sorted, every value the latest
//! or an earlier version of its key, the final contents what the writers
//! left) and prints what each kind of thread did.

use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;

use vvmalloc::reclaim::{AsymHazard, Epoch, Hazard, Leak, Reclaim};
use vvmalloc::SkipList;

/// A value: which writer wrote it, and that writer's version counter for
/// the key (so readers can check they never see a version go back).
#[derive(Clone, Copy, Debug)]
struct Value {
    writer: usize,
    version: u64,
}

const KEYS: usize = 2_000;
const WRITERS: usize = 2;
const READERS: usize = 2;
const WRITES_PER_WRITER: u64 = 200_000;

/// The store: keys borrowed from `names`; writer `w` owns the keys with
/// index `i % WRITERS == w`, so each key's versions only go up.
struct Store<'k, R: Reclaim> {
    map: SkipList<&'k str, Value, R>,
}

impl<'k, R: Reclaim> Store<'k, R> {
    fn put(&self, key: &'k str, value: Value) {
        self.map.insert(key, value);
    }

    fn get(&self, key: &str) -> Option<Value> {
        self.map.get(key).map(|e| *e.value())
    }

    fn delete(&self, key: &str) -> bool {
        self.map.remove(key).is_some()
    }

    /// The entries with keys in `[from, to)`, as owned pairs.
    fn scan(&self, from: &str, to: &str, limit: usize) -> Vec<(&'k str, Value)> {
        self.map
            .range::<str, _>((
                std::ops::Bound::Included(from),
                std::ops::Bound::Excluded(to),
            ))
            .take(limit)
            .map(|e| (*e.key(), *e.value()))
            .collect()
    }
}

/// Counts of what the threads did.
#[derive(Default, Debug)]
struct Tally {
    puts: u64,
    deletes: u64,
    hits: u64,
    misses: u64,
    scans: u64,
    scanned: u64,
}

fn run<'k, R: Reclaim>(label: &str, map: SkipList<&'k str, Value, R>, names: &'k [String]) {
    let store = Store { map };
    let done = AtomicBool::new(false);
    let start = std::time::Instant::now();
    let (writers, readers) = thread::scope(|s| {
        let writers: Vec<_> = (0..WRITERS)
            .map(|w| {
                let (store, done) = (&store, &done);
                s.spawn(move || {
                    let mut t = Tally::default();
                    let mut seed = 0x9E37_79B9_7F4A_7C15_u64 ^ (w as u64 + 1);
                    let mut version = 0;
                    while version < WRITES_PER_WRITER {
                        seed ^= seed << 13;
                        seed ^= seed >> 7;
                        seed ^= seed << 17;
                        // One of this writer's keys.
                        let i = (seed as usize % (KEYS / WRITERS)) * WRITERS + w;
                        version += 1;
                        if (seed >> 32) % 8 == 0 {
                            t.deletes += u64::from(store.delete(&names[i]));
                        } else {
                            store.put(&names[i], Value { writer: w, version });
                            t.puts += 1;
                        }
                    }
                    // Relaxed: a stop flag for the readers; the scope's
                    // join orders everything else.
                    done.store(true, Ordering::Relaxed); // a stop flag: pairs with nothing (joins order the rest)
                    t
                })
            })
            .collect();
        let readers: Vec<_> = (0..READERS)
            .map(|r| {
                let (store, done) = (&store, &done);
                s.spawn(move || {
                    let mut t = Tally::default();
                    let mut seed = 0xD1B5_4A32_D192_ED03_u64 ^ (r as u64 + 1);
                    // The newest version seen per key: it must never go back.
                    let mut seen = vec![0u64; KEYS];
                    while !done.load(Ordering::Relaxed) {
                        // the stop flag: pairs with nothing
                        seed ^= seed << 13;
                        seed ^= seed >> 7;
                        seed ^= seed << 17;
                        let i = seed as usize % KEYS;
                        if (seed >> 32) % 16 == 0 {
                            // A range scan of up to 50 keys from a random one.
                            let rows = store.scan(&names[i], "~", 50);
                            assert!(rows.windows(2).all(|w| w[0].0 < w[1].0), "unsorted scan");
                            t.scans += 1;
                            t.scanned += rows.len() as u64;
                        } else {
                            match store.get(&names[i]) {
                                Some(v) => {
                                    assert_eq!(
                                        v.writer,
                                        i % WRITERS,
                                        "a key written by a stranger"
                                    );
                                    assert!(v.version >= seen[i], "a version went back");
                                    seen[i] = v.version;
                                    t.hits += 1;
                                }
                                None => t.misses += 1,
                            }
                        }
                    }
                    t
                })
            })
            .collect();
        let w: Vec<Tally> = writers.into_iter().map(|h| h.join().unwrap()).collect();
        let r: Vec<Tally> = readers.into_iter().map(|h| h.join().unwrap()).collect();
        (w, r)
    });
    let elapsed = start.elapsed();
    let sum = |ts: &[Tally], f: fn(&Tally) -> u64| ts.iter().map(f).sum::<u64>();
    // The final contents: sorted, each key at most once (a map), each value
    // from the key's own writer.
    let rows = store.scan("", "~", usize::MAX);
    assert!(rows.windows(2).all(|w| w[0].0 < w[1].0));
    assert!(rows
        .iter()
        .all(|(k, v)| names[v.writer..].iter().step_by(WRITERS).any(|n| n == k)));
    println!(
        "{label:<11} {:>6.0} ms  puts {:>7}  deletes {:>6}  lookups {:>8} ({:.0}% hits)  scans {:>6} ({:.1} rows each)  final size {}",
        elapsed.as_secs_f64() * 1e3,
        sum(&writers, |t| t.puts),
        sum(&writers, |t| t.deletes),
        sum(&readers, |t| t.hits + t.misses),
        100.0 * sum(&readers, |t| t.hits) as f64 / sum(&readers, |t| t.hits + t.misses).max(1) as f64,
        sum(&readers, |t| t.scans),
        sum(&readers, |t| t.scanned) as f64 / sum(&readers, |t| t.scans).max(1) as f64,
        rows.len(),
    );
}

fn main() {
    let scheme = std::env::args().nth(1).unwrap_or_else(|| "epoch".into());
    // Zero-padded, so the string order is the numeric order; '~' sorts
    // after every digit, so "~" bounds a scan to the end.
    let names: Vec<String> = (0..KEYS).map(|i| format!("user:{i:05}")).collect();
    match scheme.as_str() {
        // The process-wide domains need `'static` data, so these two leak
        // the names (once, for the program's life).
        "epoch" | "hazard" | "asym-hazard" | "leak" => {
            let names: &'static [String] = Vec::leak(names);
            match scheme.as_str() {
                "epoch" => run(&scheme, SkipList::<_, _, Epoch>::new(), names),
                "hazard" => run(&scheme, SkipList::<_, _, Hazard>::new(), names),
                "asym-hazard" => run(&scheme, SkipList::<_, _, AsymHazard>::new(), names),
                _ => run(&scheme, SkipList::<_, _, Leak>::new(), names),
            }
        }
        "epoch-own" => run(&scheme, SkipList::<_, _, Epoch>::with_own_domain(), &names),
        "hazard-own" => run(&scheme, SkipList::<_, _, Hazard>::with_own_domain(), &names),
        "asym-hazard-own" => run(
            &scheme,
            SkipList::<_, _, AsymHazard>::with_own_domain(),
            &names,
        ),
        other => {
            eprintln!("kv_store: unknown scheme {other:?}; use epoch, hazard, asym-hazard, leak, epoch-own, hazard-own or asym-hazard-own");
            std::process::exit(2);
        }
    }
}
