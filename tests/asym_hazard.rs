//! The asymmetric hazard scheme's own guarantees, beyond what the
//! structures' tests check with every scheme: a protected node survives a
//! scan and is freed by the first scan after its protection ends, shields
//! beyond a slot's hazard pointers protect as well, slots are reused by
//! later threads, garbage behind a stalled reader stays bounded, and an own
//! domain's drop frees the retired nodes of threads still alive. A binary
//! of its own: it reads `reclaim::held_back`, which is process-wide, so its
//! tests take a lock, one at a time. Tests named `*own*` use own domains
//! only (Miri runs them with its leak check).

#![cfg(not(loom))]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread;

use vvmalloc::raw::{AtomicPtr, Retirable};
use vvmalloc::reclaim::{held_back, AsymHazard, Domain};
use vvmalloc::{SkipList, TreiberStack};

static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// A node that counts its reclamation.
struct Counted<'a>(&'a AtomicUsize);

// SAFETY: `reclaim` frees the `Box` the node came from, once.
unsafe impl Retirable for Counted<'_> {
    unsafe fn reclaim(this: *mut Self) {
        // SAFETY: made by `Box::into_raw` below, reclaimed once.
        let b = unsafe { Box::from_raw(this) };
        // Relaxed: read by the same thread after the scan that frees it.
        b.0.fetch_add(1, Ordering::Relaxed);
    }
}

/// Retires `n` fresh nodes into `domain` (enough to make the thread scan).
fn retire_fresh(domain: &Domain<AsymHazard>, freed: &AtomicUsize, n: usize) {
    let guard = domain.pin();
    for _ in 0..n {
        let p = Box::into_raw(Box::new(Counted(freed)));
        // SAFETY: never published, retired once, from `Box`.
        unsafe { guard.retire(p) };
    }
}

#[test]
fn protected_node_survives_scans_until_its_shield_moves_own() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let freed = AtomicUsize::new(0);
    let domain: Domain<AsymHazard> = Domain::new();
    let node = Box::into_raw(Box::new(Counted(&freed)));
    let slot = AtomicPtr::new(node);
    let guard = domain.pin();
    let mut shield = guard.shield();
    assert_eq!(shield.protect(&slot), node);
    // Unlink and retire it, then make this thread scan many times over.
    // Release: the unlink; no other thread reads `slot` here.
    slot.store(std::ptr::null_mut(), Ordering::Release);
    // SAFETY: unlinked above, retired once, from `Box`.
    unsafe { guard.retire(node) };
    retire_fresh(&domain, &freed, 500);
    domain.collect();
    assert_eq!(
        freed.load(Ordering::Relaxed), // this thread's own scans wrote it
        500,
        "only the protected node is left"
    );
    // SAFETY: still protected by `shield`.
    assert!(std::ptr::eq(unsafe { (*node).0 }, &freed));
    shield.reset();
    domain.collect();
    // Relaxed: written by this thread's own scans.
    assert_eq!(freed.load(Ordering::Relaxed), 501);
    drop((shield, guard));
}

#[test]
fn shields_beyond_a_slot_protect_and_give_their_slot_back_own() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let freed = AtomicUsize::new(0);
    let domain: Domain<AsymHazard> = Domain::new();
    let nodes: Vec<_> = (0..20)
        .map(|_| AtomicPtr::new(Box::into_raw(Box::new(Counted(&freed)))))
        .collect();
    let guard = domain.pin();
    // 20 shields at once: more than a slot's 8 hazard pointers.
    let shields: Vec<_> = nodes
        .iter()
        .map(|n| {
            let mut s = guard.shield();
            s.protect(n);
            s
        })
        .collect();
    for n in &nodes {
        // AcqRel: the unlink; single-threaded, so nothing to pair with.
        let p = n.swap(std::ptr::null_mut(), Ordering::AcqRel);
        // SAFETY: unlinked, retired once, from `Box`.
        unsafe { guard.retire(p) };
    }
    domain.collect();
    assert_eq!(
        freed.load(Ordering::Relaxed), // this thread's own scans wrote it
        0,
        "a protected node was freed"
    );
    let slots = domain.slots().unwrap();
    assert!(slots > 1, "the extra shields claimed slots of their own");
    drop(shields);
    domain.collect();
    // Relaxed: written by this thread's own scans.
    assert_eq!(freed.load(Ordering::Relaxed), 20);
    drop(guard);
    // The extra slots were given back: another round claims no more.
    let shields: Vec<_> = (0..20).map(|_| domain.pin().shield()).collect();
    drop(shields);
    assert_eq!(domain.slots(), Some(slots));
}

#[test]
fn exited_threads_leave_their_slot_to_the_next_own() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let map: SkipList<u32, u32, AsymHazard> = SkipList::with_domain(Domain::new());
    for t in 0..10 {
        thread::scope(|s| {
            // Joined: the thread's locals (its cached claim) are gone
            // when `join` returns, not when the scope's closure ends.
            s.spawn(|| {
                for i in 0..100 {
                    map.insert(i, t);
                    map.remove(&i);
                }
            })
            .join()
            .unwrap();
        });
    }
    // One thread at a time: the first slot served them all.
    assert_eq!(map.domain().slots(), Some(1));
}

/// A reader stalled while it holds an entry keeps that entry alive, and
/// only it: the writer's garbage stays below its scan threshold.
#[test]
fn garbage_behind_a_stalled_reader_stays_bounded_own() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let n = if cfg!(miri) { 200 } else { 100_000 };
    let map: SkipList<u64, Vec<u8>, AsymHazard> = SkipList::with_domain(Domain::new());
    map.insert(u64::MAX, vec![7; 16]);
    let (holding, held) = mpsc::channel();
    let (release, released) = mpsc::channel::<()>();
    let mut peak = 0;
    thread::scope(|s| {
        let map = &map;
        s.spawn(move || {
            let e = map.get(&u64::MAX).unwrap();
            holding.send(()).unwrap();
            released.recv().unwrap();
            assert_eq!(e.value(), &vec![7; 16]);
        });
        held.recv().unwrap();
        assert!(map.remove(&u64::MAX).is_some()); // held by the reader
        for i in 0..n {
            map.insert(i, vec![1; 16]);
            map.remove(&i);
            peak = peak.max(held_back::<AsymHazard>());
        }
        release.send(()).unwrap();
    });
    // Two slots of 8 hazard pointers: a scan at max(64, 32) retired nodes.
    assert!(
        peak <= 64 + 1,
        "garbage grew to {peak} behind a stalled reader"
    );
    drop(map);
    assert_eq!(held_back::<AsymHazard>(), 0);
}

/// An own domain dropped while a thread that used it is alive, its slot
/// cached and its retired list not yet scanned: the drop frees the list.
#[test]
fn domain_drop_frees_retired_nodes_of_a_live_thread_own() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let stack: Arc<TreiberStack<Vec<u8>, AsymHazard>> = Arc::new(TreiberStack::with_own_domain());
    let (done, pushed) = mpsc::channel();
    let (exit, may_exit) = mpsc::channel::<()>();
    let worker = {
        let stack = stack.clone();
        thread::spawn(move || {
            for i in 0..10u8 {
                stack.push(vec![i; 8]);
                assert!(stack.pop().is_some());
            }
            drop(stack);
            done.send(()).unwrap();
            may_exit.recv().unwrap();
        })
    };
    pushed.recv().unwrap();
    // Ten retired nodes: below the scan threshold, so they wait.
    assert_eq!(held_back::<AsymHazard>(), 10);
    // The last reference: the domain goes while the worker keeps its claim.
    drop(Arc::try_unwrap(stack).unwrap_or_else(|_| panic!("the worker dropped its clone")));
    assert_eq!(held_back::<AsymHazard>(), 0);
    exit.send(()).unwrap();
    worker.join().unwrap();
}

#[test]
fn global_domain_frees_after_scans() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let stack: TreiberStack<u64, AsymHazard> = TreiberStack::new();
    for i in 0..1000 {
        stack.push(i);
        assert_eq!(stack.pop(), Some(i));
    }
    Domain::<AsymHazard>::global().collect();
    assert_eq!(
        held_back::<AsymHazard>(),
        0,
        "a reset hazard still protects a node"
    );
    // Which fences the run used (membarrier is in every Linux since 4.14,
    // but a seccomp filter may forbid it): both are correct.
    eprintln!("asymmetric fences: {}", AsymHazard::uses_membarrier());
}
