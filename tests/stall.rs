//! Fault injection: a thread that stalls in the middle of its work, holding
//! what reclamation makes it hold (a pinned epoch, or a hazard pointer
//! through a `Ref`), must not stop the others. Lock-freedom says the other
//! threads keep completing operations; each case below fails (exits with a
//! message rather than hanging) when two workers do not finish their
//! operations within a generous deadline while a third thread is stalled.

#![cfg(not(loom))]

use std::alloc::Layout;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use vvmalloc::heap::{HeapConfig, ListIndex, SkipIndex};
use vvmalloc::reclaim::{AsymHazard, Domain, Epoch, Hazard, Reclaim};
use vvmalloc::{Heap, List, SkipList, TreiberStack};

/// Operations per worker.
const OPS: u64 = if cfg!(miri) { 200 } else { 100_000 };

/// Runs `stall` on one thread (it calls the `hold` it is given while
/// holding its guard), waits until it holds, then runs `op(i)` `OPS` times
/// on each of two workers. Exits the process with a message if the workers
/// do not finish within 120 s.
fn workers_finish_while_one_stalls(
    name: &str,
    stall: &(dyn Fn(&dyn Fn()) + Sync),
    op: &(dyn Fn(u64) + Sync),
) {
    let release = AtomicBool::new(false);
    let holding = Barrier::new(2);
    let (done, finished) = mpsc::channel();
    thread::scope(|s| {
        s.spawn(|| {
            stall(&|| {
                holding.wait();
                // Acquire: pairs with the Release store below; only timing.
                while !release.load(Ordering::Acquire) {
                    thread::sleep(Duration::from_millis(1));
                }
            })
        });
        holding.wait();
        for w in 0..2u64 {
            let done = done.clone();
            s.spawn(move || {
                for i in 0..OPS {
                    op(i * 2 + w);
                }
                done.send(()).unwrap();
            });
        }
        let deadline = Instant::now() + Duration::from_secs(120);
        for _ in 0..2 {
            let left = deadline.saturating_duration_since(Instant::now());
            if finished.recv_timeout(left).is_err() {
                eprintln!("{name}: the workers made no progress while a thread stalled");
                std::process::exit(1);
            }
        }
        // Release: pairs with the stalled thread's Acquire load.
        release.store(true, Ordering::Release);
    });
}

fn stack_case<R: Reclaim>(name: &str) {
    let stack: TreiberStack<u64, R> = TreiberStack::new();
    workers_finish_while_one_stalls(
        name,
        &|hold| {
            // A guard of the stack's domain, held across the stall.
            let _guard = stack.domain().pin();
            hold();
        },
        &|i| {
            stack.push(i);
            assert!(stack.pop().is_some());
        },
    );
}

/// Keys 1..=64 for the workers; key 0 is the stalled thread's.
fn key(i: u64) -> u64 {
    1 + (i.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 58)
}

fn list_case<R: Reclaim>(name: &str) {
    let list: List<u64, u64, R> = List::new();
    list.insert(0, 0);
    workers_finish_while_one_stalls(
        name,
        &|hold| {
            // A `Ref` keeps its thread pinned (epoch) or holds a hazard
            // pointer on the entry (hazard).
            let _entry = list.get(&0).expect("key 0 is never removed");
            hold();
        },
        &|i| {
            let k = key(i);
            list.insert(k, i);
            list.remove(&k);
        },
    );
    // Every worker's last operation on a key is a remove: only key 0 is
    // left.
    assert_eq!(list.len(), 1);
    assert!(list.contains(&0));
}

fn skiplist_case<R: Reclaim>(name: &str) {
    let map: SkipList<u64, u64, R> = SkipList::new();
    map.insert(0, 0);
    workers_finish_while_one_stalls(
        name,
        &|hold| {
            let _entry = map.get(&0).expect("key 0 is never removed");
            hold();
        },
        &|i| {
            let k = key(i);
            map.insert(k, i);
            map.remove(&k);
        },
    );
    // As for the list: only key 0 is left.
    assert_eq!(map.len(), 1);
    assert!(map.contains(&0));
}

#[test]
fn stack_operations_continue_while_a_thread_holds_a_guard() {
    stack_case::<Epoch>("stack, epoch");
    stack_case::<Hazard>("stack, hazard");
    stack_case::<AsymHazard>("stack, asym-hazard");
}

#[test]
fn list_operations_continue_while_a_thread_holds_a_ref() {
    list_case::<Epoch>("list, epoch");
    list_case::<Hazard>("list, hazard");
    list_case::<AsymHazard>("list, asym-hazard");
}

#[test]
fn skiplist_operations_continue_while_a_thread_holds_a_ref() {
    skiplist_case::<Epoch>("skip list, epoch");
    skiplist_case::<Hazard>("skip list, hazard");
    skiplist_case::<AsymHazard>("skip list, asym-hazard");
}

/// The allocator's large path uses a free index under a reclamation
/// scheme: a thread pinned in the global epoch (say, stalled inside a skip
/// list operation of its own) must not stop large allocations and frees.
#[test]
fn large_allocations_continue_while_a_thread_is_pinned() {
    if cfg!(miri) {
        return; // Miri has no mmap(PROT_NONE) for the arena.
    }
    fn case<I: vvmalloc::heap::FreeIndex>(name: &str) {
        let heap: Heap<I> = Heap::with_config(HeapConfig {
            arena_bytes: 1 << 30,
            ..HeapConfig::new()
        });
        workers_finish_while_one_stalls(
            name,
            &|hold| {
                let global = Domain::<Epoch>::global();
                let _pinned = global.pin();
                hold();
            },
            &|i| {
                // Above the large-block cache (256 KiB), so the index works.
                let l = Layout::from_size_align(300_000 + (i as usize % 7) * 4096, 8).unwrap();
                let p = heap.alloc(l);
                assert!(!p.is_null());
                // SAFETY: from this heap with `l`.
                unsafe { heap.dealloc(p, l) };
            },
        );
        assert_eq!(heap.stats().in_use_bytes, 0);
    }
    case::<SkipIndex>("heap, skip-list index");
    case::<ListIndex>("heap, list index");
}
