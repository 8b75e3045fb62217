//! What the structure benchmarks drive, shared by the criterion benches
//! (`tools/benches/stack.rs`, `list.rs`, `skiplist.rs`) and the report
//! (`tools/examples/report`): the project's structures under each reclamation
//! scheme and the peers a user would otherwise reach for, behind two small
//! traits.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, RwLock};

use crossbeam_queue::{ArrayQueue, SegQueue};
use vvmalloc::reclaim::{AsymHazard, Epoch, Hazard, Leak, Reclaim};
use vvmalloc::{List, SkipList, TreiberStack};

use super::xorshift;

/// A shared pool of `u64` (the Treiber stack and its peers).
pub trait Pool: Send + Sync + 'static {
    /// Adds `v`.
    fn put(&self, v: u64);
    /// Takes a value out, `None` when empty.
    fn take(&self) -> Option<u64>;
}

impl<R: Reclaim> Pool for TreiberStack<u64, R> {
    fn put(&self, v: u64) {
        self.push(v)
    }
    fn take(&self) -> Option<u64> {
        self.pop()
    }
}

impl Pool for Mutex<Vec<u64>> {
    fn put(&self, v: u64) {
        self.lock().unwrap().push(v)
    }
    fn take(&self) -> Option<u64> {
        self.lock().unwrap().pop()
    }
}

impl Pool for SegQueue<u64> {
    fn put(&self, v: u64) {
        self.push(v)
    }
    fn take(&self) -> Option<u64> {
        self.pop()
    }
}

impl Pool for ArrayQueue<u64> {
    fn put(&self, v: u64) {
        // Full only if more threads than capacity hold values; not here.
        let _ = self.push(v);
    }
    fn take(&self) -> Option<u64> {
        self.pop()
    }
}

/// Every pool, empty.
pub fn pools() -> Vec<(&'static str, Arc<dyn Pool>)> {
    vec![
        ("treiber-epoch", Arc::new(TreiberStack::<u64, Epoch>::new())),
        (
            "treiber-hazard",
            Arc::new(TreiberStack::<u64, Hazard>::new()),
        ),
        (
            "treiber-asym-hazard",
            Arc::new(TreiberStack::<u64, AsymHazard>::new()),
        ),
        ("treiber-leak", Arc::new(TreiberStack::<u64, Leak>::new())),
        ("mutex-vec", Arc::new(Mutex::new(Vec::new()))),
        ("segqueue", Arc::new(SegQueue::new())),
        ("arrayqueue", Arc::new(ArrayQueue::new(1024))),
    ]
}

/// An ordered map of `u64` (the list, the skip list and their peers).
pub trait Map: Send + Sync + 'static {
    /// Whether `k` is present.
    fn get(&self, k: u64) -> bool;
    /// Inserts `k` (mapped to itself).
    fn insert(&self, k: u64);
    /// Removes `k`; whether it was present.
    fn remove(&self, k: u64) -> bool;
}

impl<R: Reclaim> Map for List<u64, u64, R> {
    fn get(&self, k: u64) -> bool {
        List::get(self, &k).is_some()
    }
    fn insert(&self, k: u64) {
        List::insert(self, k, k);
    }
    fn remove(&self, k: u64) -> bool {
        List::remove(self, &k).is_some()
    }
}

impl<R: Reclaim> Map for SkipList<u64, u64, R> {
    fn get(&self, k: u64) -> bool {
        SkipList::get(self, &k).is_some()
    }
    fn insert(&self, k: u64) {
        SkipList::insert(self, k, k);
    }
    fn remove(&self, k: u64) -> bool {
        SkipList::remove(self, &k).is_some()
    }
}

impl Map for crossbeam_skiplist::SkipMap<u64, u64> {
    fn get(&self, k: u64) -> bool {
        crossbeam_skiplist::SkipMap::get(self, &k).is_some()
    }
    fn insert(&self, k: u64) {
        crossbeam_skiplist::SkipMap::insert(self, k, k);
    }
    fn remove(&self, k: u64) -> bool {
        crossbeam_skiplist::SkipMap::remove(self, &k).is_some()
    }
}

impl Map for Mutex<BTreeMap<u64, u64>> {
    fn get(&self, k: u64) -> bool {
        self.lock().unwrap().contains_key(&k)
    }
    fn insert(&self, k: u64) {
        self.lock().unwrap().insert(k, k);
    }
    fn remove(&self, k: u64) -> bool {
        self.lock().unwrap().remove(&k).is_some()
    }
}

impl Map for RwLock<BTreeMap<u64, u64>> {
    fn get(&self, k: u64) -> bool {
        self.read().unwrap().contains_key(&k)
    }
    fn insert(&self, k: u64) {
        self.write().unwrap().insert(k, k);
    }
    fn remove(&self, k: u64) -> bool {
        self.write().unwrap().remove(&k).is_some()
    }
}

/// Fills each map with the even keys of `0..keys`, in random order (so that
/// node addresses are not in key order either).
fn fill(maps: &[(&'static str, Arc<dyn Map>)], keys: u64) {
    let mut order: Vec<u64> = (0..keys).step_by(2).collect();
    let mut s = 0x1234_5678_9ABC_DEF1;
    for i in (1..order.len()).rev() {
        order.swap(i, (xorshift(&mut s) % (i as u64 + 1)) as usize);
    }
    for (_, m) in maps {
        for &k in &order {
            m.insert(k);
        }
    }
}

/// The list under each scheme (global and own domains) and its peer,
/// half full.
pub fn list_maps(keys: u64) -> Vec<(&'static str, Arc<dyn Map>)> {
    let maps: Vec<(&'static str, Arc<dyn Map>)> = vec![
        ("list-epoch", Arc::new(List::<u64, u64, Epoch>::new())),
        ("list-hazard", Arc::new(List::<u64, u64, Hazard>::new())),
        (
            "list-asym-hazard",
            Arc::new(List::<u64, u64, AsymHazard>::new()),
        ),
        // Own domains: what non-'static keys and values cost.
        (
            "list-epoch-own",
            Arc::new(List::<u64, u64, Epoch>::with_own_domain()),
        ),
        (
            "list-hazard-own",
            Arc::new(List::<u64, u64, Hazard>::with_own_domain()),
        ),
        (
            "list-asym-hazard-own",
            Arc::new(List::<u64, u64, AsymHazard>::with_own_domain()),
        ),
        ("list-leak", Arc::new(List::<u64, u64, Leak>::new())),
        ("mutex-btreemap", Arc::new(Mutex::new(BTreeMap::new()))),
    ];
    fill(&maps, keys);
    maps
}

/// The skip list under each scheme and its peers, half full.
pub fn skiplist_maps(keys: u64) -> Vec<(&'static str, Arc<dyn Map>)> {
    let maps: Vec<(&'static str, Arc<dyn Map>)> = vec![
        (
            "skiplist-epoch",
            Arc::new(SkipList::<u64, u64, Epoch>::new()),
        ),
        (
            "skiplist-hazard",
            Arc::new(SkipList::<u64, u64, Hazard>::new()),
        ),
        (
            "skiplist-asym-hazard",
            Arc::new(SkipList::<u64, u64, AsymHazard>::new()),
        ),
        ("skiplist-leak", Arc::new(SkipList::<u64, u64, Leak>::new())),
        (
            "crossbeam-skipmap",
            Arc::new(crossbeam_skiplist::SkipMap::new()),
        ),
        ("mutex-btreemap", Arc::new(Mutex::new(BTreeMap::new()))),
        ("rwlock-btreemap", Arc::new(RwLock::new(BTreeMap::new()))),
    ];
    fill(&maps, keys);
    maps
}

/// The skip list in own domains (what non-'static keys and values cost),
/// half full: for the reclamation study, beside [`skiplist_maps`].
pub fn skiplist_own_maps(keys: u64) -> Vec<(&'static str, Arc<dyn Map>)> {
    let maps: Vec<(&'static str, Arc<dyn Map>)> = vec![
        (
            "skiplist-epoch-own",
            Arc::new(SkipList::<u64, u64, Epoch>::with_own_domain()),
        ),
        (
            "skiplist-hazard-own",
            Arc::new(SkipList::<u64, u64, Hazard>::with_own_domain()),
        ),
        (
            "skiplist-asym-hazard-own",
            Arc::new(SkipList::<u64, u64, AsymHazard>::with_own_domain()),
        ),
    ];
    fill(&maps, keys);
    maps
}

/// An operation mix: percentages of `get` and `insert` (the rest is
/// `remove`).
#[derive(Clone, Copy, Debug)]
pub struct Mix {
    /// Its name in the tables.
    pub name: &'static str,
    /// Percentage of `get`s.
    pub get: u64,
    /// Percentage of `insert`s.
    pub insert: u64,
}

/// Lookups only.
pub const READ_ONLY: Mix = Mix {
    name: "read-only",
    get: 100,
    insert: 0,
};
/// 90% lookups, 5% inserts, 5% removals.
pub const READ_MOSTLY: Mix = Mix {
    name: "read-mostly",
    get: 90,
    insert: 5,
};
/// 50% lookups, 25% inserts, 25% removals.
pub const MIXED: Mix = Mix {
    name: "mixed",
    get: 50,
    insert: 25,
};
/// 10% lookups, 45% inserts, 45% removals.
pub const WRITE_HEAVY: Mix = Mix {
    name: "write-heavy",
    get: 10,
    insert: 45,
};

/// One operation of `mix` on a uniformly random key of `0..keys`, chosen
/// by the random `r`.
#[inline]
pub fn op(map: &dyn Map, mix: Mix, r: u64, keys: u64) -> bool {
    let k = (r >> 8) % keys;
    let p = r % 100;
    if p < mix.get {
        map.get(k)
    } else if p < mix.get + mix.insert {
        map.insert(k);
        true
    } else {
        map.remove(k)
    }
}
