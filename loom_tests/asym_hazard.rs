//! Loom models of the asymmetric hazard scheme's own protocol
//! (`src/reclaim/asym/`), beyond the structures' models that run with it
//! (`loom_stack`, `loom_list`, `loom_skiplist`).
//!
//! Run with `RUSTFLAGS="--cfg loom" cargo test --release --test loom_asym_hazard`.
//!
//! Under loom both sides of the asymmetric fence are loom's `SeqCst` fence
//! (loom has no `membarrier`; the pair orders like one fence per side),
//! every retire scans, and the scheme's atomics, cells and thread-local
//! cache are loom's, so loom sees the whole protocol: announcements,
//! fences, validating re-loads, scans, and the reuse of hazard slots by
//! later threads (which the haphazard-backed `Hazard` scheme cannot show
//! under loom: there a dropped shield's record is never reused).
//!
//! - A reader protects a node while another thread unlinks, retires and
//!   (at once) scans: the reader either sees the unlink or keeps the node
//!   alive while it reads it. The seeded bug skips the readers' light
//!   fence: the scan and the re-load can then both miss each other (store
//!   buffering), and loom reports the reclamation racing the read.
//! - A thread's slot, given back when the thread exits, is claimed by a
//!   later thread in some executions (one slot made) and not in others
//!   (two): both are seen. The seeded bug gives back and claims the slot
//!   with `Relaxed`: the next claimant's use of the slot's cells is then
//!   not ordered after the last one's, a causality violation.
#![cfg(loom)]

mod common;

use std::sync::atomic::Ordering;

use common::{assert_seeded_bug_caught, model, Outcomes, UAF_REPORTS};
use loom::cell::UnsafeCell;
use loom::sync::Arc;
use loom::thread;
use vvmalloc::raw::{AtomicPtr, Retirable};
use vvmalloc::reclaim::{seed_asym_hazard, AsymHazard, AsymSeed, Domain};

/// A node whose reclamation writes its tracked cell: a read of the cell
/// that the reclamation is not ordered with is a loom report.
struct Node(UnsafeCell<u64>);

// SAFETY: reclaim only writes the node's own cell (and leaks it: loom
// checks the accesses, and the model is small).
unsafe impl Retirable for Node {
    unsafe fn reclaim(this: *mut Self) {
        // SAFETY: retired once, valid until here; the write stands for the
        // free.
        unsafe { (*this).0.with_mut(|v| *v = 0) };
    }
}

/// One thread protects and reads the node in `slot` while the main thread
/// unlinks it, retires it and scans; returns whether the reader got it.
fn protect_races_unlink_and_retire() -> bool {
    let domain: Arc<Domain<AsymHazard>> = Arc::new(Domain::new());
    let node = Box::into_raw(Box::new(Node(UnsafeCell::new(7))));
    let slot = Arc::new(AtomicPtr::new(node));
    let reader = {
        let (domain, slot) = (domain.clone(), slot.clone());
        thread::spawn(move || {
            let guard = domain.pin();
            let mut shield = guard.shield();
            let p = shield.protect(&slot);
            if p.is_null() {
                return false;
            }
            // SAFETY: protected by `shield` (unless the seeded bug let the
            // scan miss it: the model must catch that).
            unsafe { (*p).0.with(|v| assert_eq!(*v, 7, "read after reclaim")) };
            true
        })
    };
    let guard = domain.pin();
    // AcqRel: the Release half publishes nothing here; Acquire orders the
    // node's creation (by this thread) trivially. Either is enough.
    let old = slot.swap(std::ptr::null_mut(), Ordering::AcqRel);
    // SAFETY: unlinked above, retired once, and every reader protects
    // through `domain`. (Reclaim leaks the box: see `Node`.)
    unsafe { guard.retire(old) };
    let got = reader.join().unwrap();
    drop(guard);
    got
}

#[test]
fn protect_races_unlink_and_retire_and_scan() {
    let outcomes = Outcomes::new();
    let seen = outcomes.clone();
    model(move || seen.record(protect_races_unlink_and_retire()));
    outcomes.assert_saw(&[false, true]);
}

#[test]
fn seeded_skip_light_fence_is_caught() {
    assert_seeded_bug_caught(
        |on| {
            seed_asym_hazard(if on {
                AsymSeed::SkipLightFence
            } else {
                AsymSeed::None
            })
        },
        || {
            let _ = protect_races_unlink_and_retire();
        },
        UAF_REPORTS,
    );
}

/// Two threads, one protected read each, on an own domain; returns the
/// slots the domain made.
fn two_threads_one_read_each() -> usize {
    let domain: Arc<Domain<AsymHazard>> = Arc::new(Domain::new());
    let node = Box::into_raw(Box::new(Node(UnsafeCell::new(7))));
    let slot = Arc::new(AtomicPtr::new(node));
    let spawn = || {
        let (domain, slot) = (domain.clone(), slot.clone());
        thread::spawn(move || {
            let guard = domain.pin();
            let mut shield = guard.shield();
            let p = shield.protect(&slot);
            // SAFETY: protected, and never retired in this model.
            unsafe { (*p).0.with(|v| assert_eq!(*v, 7)) };
        })
    };
    let (a, b) = (spawn(), spawn());
    a.join().unwrap();
    b.join().unwrap();
    // SAFETY: never published to a reclaimer; freed once, here.
    drop(unsafe { Box::from_raw(slot.load(Ordering::Relaxed)) }); // after the joins
    domain.slots().expect("an own domain")
}

#[test]
fn released_slot_is_reused_in_order() {
    let outcomes = Outcomes::new();
    let seen = outcomes.clone();
    model(move || seen.record(two_threads_one_read_each()));
    outcomes.assert_saw(&[1, 2]);
}

#[test]
fn seeded_relaxed_claim_is_caught() {
    assert_seeded_bug_caught(
        |on| {
            seed_asym_hazard(if on {
                AsymSeed::RelaxedClaim
            } else {
                AsymSeed::None
            })
        },
        || {
            let _ = two_threads_one_read_each();
        },
        &["Causality violation"],
    );
}
