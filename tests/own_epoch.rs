//! Own epoch domains' per-thread participants (`src/reclaim/own_epoch.rs`):
//! a thread registers once per domain, a thread that exits leaves its
//! participant to the next, a domain dropped while threads still hold their
//! claims frees everything at once, and a thread using more domains than
//! its cache holds (even pinned in all of them at once) stays correct.
//!
//! Every test uses own domains only, so CI runs them under Miri with the
//! leak check on (`-- own`).
#![cfg(not(loom))]

mod common;

use std::sync::{mpsc, Arc, Barrier};
use std::thread;

use common::DropLedger;
use vvmalloc::reclaim::{Domain, Epoch};
use vvmalloc::{List, SkipList, TreiberStack};

const THREADS: usize = if cfg!(miri) { 2 } else { 4 };
const ROUNDS: usize = if cfg!(miri) { 3 } else { 50 };

#[test]
fn own_epoch_thread_registers_once_and_exiting_threads_leave_theirs() {
    let list: List<u32, u32, Epoch> = List::with_own_domain();
    for i in 0..100 {
        list.insert(i, i);
        list.remove(&i);
    }
    assert_eq!(list.domain().participants(), Some(1), "one per thread");
    // Threads one after another: each takes the participant the previous
    // one left (the main thread keeps its own). `join` waits for the
    // thread's end, thread-local destructors (the claim's release)
    // included; the end of a scope alone does not.
    for r in 0..ROUNDS as u32 {
        thread::scope(|s| {
            s.spawn(|| assert!(list.insert(1000 + r, r)))
                .join()
                .unwrap();
        });
    }
    assert_eq!(list.domain().participants(), Some(2));
    assert_eq!(list.len(), ROUNDS);
}

#[test]
fn own_epoch_participants_stay_bounded_by_concurrent_threads() {
    let list: List<u32, u32, Epoch> = List::with_own_domain();
    for r in 0..ROUNDS as u32 {
        let barrier = Barrier::new(THREADS);
        thread::scope(|s| {
            let handles: Vec<_> = (0..THREADS as u32)
                .map(|t| {
                    let (list, barrier) = (&list, &barrier);
                    s.spawn(move || {
                        barrier.wait();
                        assert!(list.insert(r * 100 + t, t));
                        assert!(list.remove(&(r * 100 + t)).is_some());
                    })
                })
                .collect();
            // `join`, not the scope's end: it waits for the claims' release.
            handles.into_iter().for_each(|h| h.join().unwrap());
        });
    }
    let n = list.domain().participants().unwrap();
    assert!(
        (1..=THREADS).contains(&n),
        "{n} participants for {THREADS} threads at a time"
    );
}

/// The domain is dropped while a thread that retired into it is alive, its
/// participant claimed and holding the removed values in its local bag: the
/// drop frees them all, at once.
#[test]
fn own_epoch_domain_drop_frees_garbage_of_live_claimants() {
    let n = if cfg!(miri) { 8 } else { 200 };
    let ledger = DropLedger::new(n * THREADS);
    let list: Arc<List<usize, common::Tracked, Epoch>> = Arc::new(List::with_own_domain());
    let (done_tx, done_rx) = mpsc::channel();
    let mut exits = Vec::new();
    let handles: Vec<_> = (0..THREADS)
        .map(|t| {
            let (list, ledger, done_tx) = (list.clone(), ledger.clone(), done_tx.clone());
            let (exit_tx, exit_rx) = mpsc::channel::<()>();
            exits.push(exit_tx);
            thread::spawn(move || {
                for i in 0..n {
                    let id = t * n + i;
                    assert!(list.insert(id, ledger.value(id)));
                    // Removed: retired into this thread's participant.
                    assert_eq!(list.remove(&id).map(|e| e.value().id), Some(id));
                }
                drop(list);
                done_tx.send(()).unwrap();
                // Stays alive with its claim cached until the list is gone.
                exit_rx.recv().unwrap();
            })
        })
        .collect();
    for _ in 0..THREADS {
        done_rx.recv().unwrap();
    }
    let list = Arc::into_inner(list).expect("every thread dropped its clone");
    drop(list);
    ledger.assert_all_dropped_once();
    for (exit, h) in exits.into_iter().zip(handles) {
        exit.send(()).unwrap();
        h.join().unwrap();
    }
}

/// More own domains than a thread's cache holds (8), used in turn and all
/// pinned at once: entries are evicted only when no guard is pinned through
/// them, and a pin that finds every entry pinned takes a slot for itself.
#[test]
fn own_epoch_more_domains_than_the_cache_holds() {
    let domains = 12;
    let lists: Vec<List<u32, u32, Epoch>> = (0..domains).map(|_| List::with_own_domain()).collect();
    let stacks: Vec<TreiberStack<u32, Epoch>> = (0..domains)
        .map(|_| TreiberStack::with_domain(Domain::new()))
        .collect();
    for round in 0..3 {
        for (i, (l, s)) in lists.iter().zip(&stacks).enumerate() {
            assert!(l.insert(round, i as u32));
            s.push(i as u32);
        }
    }
    // A `Ref` of each list keeps its guard pinned, so all 12 domains are
    // pinned at once on this thread.
    let refs: Vec<_> = lists.iter().map(|l| l.get(&1).expect("inserted")).collect();
    for (i, s) in stacks.iter().enumerate() {
        assert_eq!(s.pop(), Some(i as u32));
    }
    for (i, r) in refs.iter().enumerate() {
        assert_eq!(*r.value(), i as u32);
    }
    drop(refs);
    for (i, l) in lists.iter().enumerate() {
        assert_eq!(l.len(), 3);
        // Evicted and re-claimed domains reuse their slot: one participant.
        assert_eq!(l.domain().participants(), Some(1), "domain {i}");
    }
    let map: SkipList<u32, u32, Epoch> = SkipList::with_own_domain();
    map.insert(1, 1);
    assert_eq!(map.domain().participants(), Some(1));
}
