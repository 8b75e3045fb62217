//! `IntrusiveStack` and `IntrusiveTakeAll`: ABA, payload hand-over, take-all racing a push.

use super::*;

#[repr(C)]
struct Node {
    link: Link,
    id: usize,
}

fn id(l: NonNull<Link>) -> usize {
    // SAFETY: every link here is the first field of a `Node`.
    unsafe { l.cast::<Node>().as_ref().id }
}

/// Stack `[A, B]` (A on top). Thread 1 pops once; thread 2 pops A, pops B and
/// pushes A back. Every node ends up owned exactly once.
fn aba(untagged: bool) {
    let outcomes = Outcomes::new();
    let seen = outcomes.clone();
    model(move || {
        let nodes: Arc<Vec<Node>> = Arc::new(
            (0..2)
                .map(|id| Node {
                    link: Link::new(),
                    id,
                })
                .collect(),
        );
        let s = Arc::new(IntrusiveStack::new());
        for n in nodes.iter().rev() {
            // SAFETY: `nodes` outlives every use of `s` (both are dropped
            // after the threads are joined).
            unsafe { s.push(NonNull::from(&n.link)) };
        }
        let t1 = {
            let s = s.clone();
            thread::spawn(move || {
                let top = if untagged {
                    s.seeded_bug_pop_untagged()
                } else {
                    s.pop()
                };
                top.map(id)
            })
        };
        let t2 = {
            let s = s.clone();
            thread::spawn(move || {
                let a = s.pop();
                let b = s.pop();
                if let Some(a) = a {
                    // SAFETY: we own `a`; `nodes` outlives the stack's use.
                    unsafe { s.push(a) };
                }
                b.map(id)
            })
        };
        let got1 = t1.join().unwrap();
        let got2 = t2.join().unwrap();
        let mut owned: Vec<usize> = got1.into_iter().chain(got2).collect();
        while let Some(n) = s.pop() {
            owned.push(id(n));
        }
        owned.sort_unstable();
        assert_eq!(owned, [0, 1], "a node is owned twice or lost: {owned:?}");
        seen.record((got1, got2));
        drop(nodes);
    });
    if !untagged {
        // (T1's pop, T2's second pop), A = 0, B = 1:
        // - T1 before T2: T1 takes A, T2 takes B then nothing: (A, None).
        // - T2 pops A and B, T1 finds the stack empty: (None, B).
        // - T2 pops A, T1 takes B, T2 finds nothing: (B, None).
        // - T2 pops A and B and pushes A back, T1 takes A: (A, B).
        outcomes.assert_saw(&[
            (Some(0), Some(1)),
            (None, Some(1)),
            (Some(1), None),
            (Some(0), None),
        ]);
    }
}

#[test]
fn intrusive_stack_is_aba_safe() {
    aba(false);
}

#[test]
#[should_panic(expected = "a node is owned twice or lost")]
fn seeded_untagged_pop_is_caught() {
    aba(true);
}

/// A node whose payload is a loom cell: a read not ordered after the write
/// that its pusher made before the push is a causality report.
#[repr(C)]
struct Cargo {
    link: Link,
    payload: loom::cell::UnsafeCell<usize>,
}

// SAFETY: the payload is written by the node's owner only (before its push,
// or after the pop or take that handed the node over); loom checks that.
unsafe impl Sync for Cargo {}

fn payload(l: NonNull<Link>) -> usize {
    // SAFETY: every link here is the first field of a `Cargo` we own.
    unsafe { l.cast::<Cargo>().as_ref().payload.with(|p| *p) }
}

/// The intrusive stack publishes what its pushers wrote: thread 1 writes
/// two nodes' payloads, links them with `set_next` and pushes them as one
/// chain; thread 2 writes a third node and pushes it; the main thread pops
/// one node and takes the rest at once, reading each payload, then drains
/// what the threads pushed after. Every node comes out once, with its
/// payload.
fn intrusive_stack_publishes_what_pushers_wrote() {
    let nodes: Arc<Vec<Cargo>> = Arc::new(
        (0..3)
            .map(|_| Cargo {
                link: Link::new(),
                payload: loom::cell::UnsafeCell::new(0),
            })
            .collect(),
    );
    let s = Arc::new(IntrusiveStack::new());
    let chain = {
        let (s, nodes) = (s.clone(), nodes.clone());
        thread::spawn(move || {
            for (i, n) in nodes[..2].iter().enumerate() {
                // SAFETY: not pushed yet: ours.
                n.payload.with_mut(|p| unsafe { *p = 10 + i });
            }
            nodes[0]
                .link
                .set_next(NonNull::from(&nodes[1].link).as_ptr());
            // SAFETY: nodes 0 and 1 are linked and ours; `nodes` outlives
            // every use of `s`.
            unsafe { s.push_chain(NonNull::from(&nodes[0].link), NonNull::from(&nodes[1].link)) };
        })
    };
    let single = {
        let (s, nodes) = (s.clone(), nodes.clone());
        thread::spawn(move || {
            // SAFETY: not pushed yet: ours.
            nodes[2].payload.with_mut(|p| unsafe { *p = 12 });
            // SAFETY: ours; `nodes` outlives every use of `s`.
            unsafe { s.push(NonNull::from(&nodes[2].link)) };
        })
    };
    let mut got: Vec<usize> = s.pop().map(payload).into_iter().collect();
    let mut next = s.take_all().map_or(std::ptr::null_mut(), NonNull::as_ptr);
    while let Some(l) = NonNull::new(next) {
        got.push(payload(l));
        // SAFETY: taken: the chain is ours.
        next = unsafe { l.as_ref() }.next();
    }
    chain.join().unwrap();
    single.join().unwrap();
    while let Some(l) = s.pop() {
        got.push(payload(l));
    }
    got.sort_unstable();
    assert_eq!(
        got,
        [10, 11, 12],
        "a node lost, doubled or read before its payload"
    );
}

#[test]
fn intrusive_stack_publishes_payloads() {
    model(intrusive_stack_publishes_what_pushers_wrote);
}

/// `take_all` racing a push: the stack holds one node when a thread pushes
/// a second while the main thread takes all; whatever the take got is not
/// in the stack any more (a failed CAS must retry, not return), and
/// every node comes out once.
fn intrusive_take_all_races_push() {
    let nodes: Arc<Vec<Cargo>> = Arc::new(
        (0..2)
            .map(|i| Cargo {
                link: Link::new(),
                payload: loom::cell::UnsafeCell::new(20 + i),
            })
            .collect(),
    );
    let s = Arc::new(IntrusiveStack::new());
    // SAFETY: ours; `nodes` outlives every use of `s`.
    unsafe { s.push(NonNull::from(&nodes[0].link)) };
    let pusher = {
        let (s, nodes) = (s.clone(), nodes.clone());
        // SAFETY: as above.
        thread::spawn(move || unsafe { s.push(NonNull::from(&nodes[1].link)) })
    };
    let mut got = Vec::new();
    let mut next = s.take_all().map_or(std::ptr::null_mut(), NonNull::as_ptr);
    while let Some(l) = NonNull::new(next) {
        got.push(payload(l));
        // SAFETY: taken: the chain is ours.
        next = unsafe { l.as_ref() }.next();
    }
    pusher.join().unwrap();
    while let Some(l) = s.pop() {
        got.push(payload(l));
    }
    got.sort_unstable();
    assert_eq!(got, [20, 21], "a node taken twice or lost");
}

#[test]
fn intrusive_take_all_races_a_push() {
    model(intrusive_take_all_races_push);
}
