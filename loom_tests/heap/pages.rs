//! Pages owned by thread heaps: remote frees, abandonment and adoption, retirement to the pool, span carving.

use super::*;

/// Thread A allocates through its thread heap and hands blocks to thread B,
/// which frees them through its own: remote frees, pushed on the pages'
/// thread-free lists, which A takes back when it allocates again (possibly
/// getting B's blocks back) or which stay with the pages A abandons on exit.
/// No block is ever held twice, the heap's counts add up (the main thread
/// frees A's second blocks through the cache-less path), and `trim` takes
/// every page back.
#[test]
fn remote_frees_abandon_and_trim() {
    // 16 KiB blocks (the request leaves room for the checked mode's 8-byte
    // guard): 4 blocks per span, batches of 4.
    let layout = Layout::from_size_align(16 * 1024 - 8, 16).unwrap();
    model(move || {
        let heap = heap();
        let handoff: Arc<Mutex<Vec<usize>>> = Arc::new(Mutex::new(Vec::new()));
        let a = {
            let (heap, handoff) = (heap.clone(), handoff.clone());
            thread::spawn(move || {
                let local = heap.local();
                let first: Vec<usize> = (0..4).map(|_| local.alloc(layout) as usize).collect();
                for &p in &first {
                    assert!(p != 0);
                    // SAFETY: a live 16 KiB block.
                    unsafe { (p as *mut usize).add(1).write(0xA) };
                }
                handoff.lock().unwrap().extend(&first);
                let second: Vec<usize> = (0..4).map(|_| local.alloc(layout) as usize).collect();
                for &p in &second {
                    // SAFETY: a live block: nobody else may write it.
                    unsafe { (p as *mut usize).add(1).write(0xB) };
                }
                second
            })
        };
        let b = {
            let (heap, handoff) = (heap.clone(), handoff.clone());
            thread::spawn(move || {
                let local = heap.local();
                let mut freed = 0;
                while freed < 4 {
                    let got: Vec<usize> = std::mem::take(&mut *handoff.lock().unwrap());
                    for p in got {
                        // SAFETY: A wrote it before handing it over.
                        assert_eq!(unsafe { (p as *const usize).add(1).read() }, 0xA);
                        // SAFETY: from this heap with `layout`, handed to us.
                        unsafe { local.dealloc(p as *mut u8, layout) };
                        freed += 1;
                    }
                    thread::yield_now();
                }
                // Dropping the thread heap reports its remote frees.
            })
        };
        let second = a.join().unwrap();
        b.join().unwrap();
        let distinct: BTreeSet<usize> = second.iter().copied().collect();
        assert_eq!(distinct.len(), 4, "a block was handed out twice");
        for &p in &second {
            // SAFETY: still live and only A's.
            assert_eq!(unsafe { (p as *const usize).add(1).read() }, 0xB);
            // SAFETY: from this heap with `layout` (the cache-less path).
            unsafe { heap.dealloc(p as *mut u8, layout) };
        }
        let st = heap.stats();
        assert_eq!(st.misuse, 0);
        assert_eq!(st.in_use_bytes, 0, "{st:?}");
        // Every block of every page is free: `trim` takes them all back.
        heap.trim();
        let st = heap.stats();
        let c = st.small.iter().position(|c| c.size == 16 * 1024).unwrap();
        assert_eq!(st.small[c].spans, 0, "{st:?}");
    });
}

/// A remote free racing the owner's allocation and collection: A allocates
/// two blocks of one page, hands the first to B and keeps allocating from
/// the same page (its fourth allocation empties the free list and takes
/// the remote frees) while B frees the first block through its own heap.
fn remote_free_races_owner() {
    let heap = heap();
    let handoff: Arc<Mutex<Option<usize>>> = Arc::new(Mutex::new(None));
    let a = {
        let (heap, handoff) = (heap.clone(), handoff.clone());
        thread::spawn(move || {
            let local = heap.local();
            let x = local.alloc(big()) as usize;
            tag(x, 0xA);
            *handoff.lock().unwrap() = Some(x);
            let mine: Vec<usize> = (0..4).map(|_| local.alloc(big()) as usize).collect();
            for &p in &mine {
                tag(p, 0xB);
            }
            mine
        })
    };
    let b = {
        let (heap, handoff) = (heap.clone(), handoff.clone());
        thread::spawn(move || {
            let local = heap.local();
            let x = loop {
                if let Some(x) = handoff.lock().unwrap().take() {
                    break x;
                }
                thread::yield_now();
            };
            assert_eq!(tagged(x), 0xA);
            // SAFETY: from this heap with `big()`, handed to us.
            unsafe { local.dealloc(x as *mut u8, big()) };
        })
    };
    let mine = a.join().unwrap();
    b.join().unwrap();
    let distinct: BTreeSet<usize> = mine.iter().copied().collect();
    assert_eq!(distinct.len(), 4, "a block was handed out twice");
    for &p in &mine {
        assert_eq!(tagged(p), 0xB, "a live block was overwritten");
        // SAFETY: from this heap with `big()`, live and ours.
        unsafe { heap.dealloc(p as *mut u8, big()) };
    }
    assert_all_back(&heap);
}

#[test]
fn remote_free_races_owner_allocation() {
    model(remote_free_races_owner);
}

/// The seeded bug: the free skips the owner check, so B pushes on A's
/// page's own free list while A pops it.
#[test]
fn seeded_owner_check_skipped_is_caught() {
    assert_seeded_race_caught(
        |on| seeded_page_bug(on.then_some(PageBug::OwnerCheckSkipped)),
        remote_free_races_owner,
    );
}

/// Span carving: two threads' first allocations (different classes) each
/// carve a fresh span from the arena's bump at once. Each gets its own span
/// (formatting a span writes its record's owner's part, a loom cell, so two
/// threads formatting one span is also a causality report).
fn fresh_spans_race() {
    let heap = heap();
    let carve = |layout: Layout| {
        let heap = heap.clone();
        thread::spawn(move || {
            let local = heap.local();
            let p = local.alloc(layout) as usize;
            assert!(p != 0);
            tag(p, layout.size());
            p
        })
    };
    let (a, b) = (carve(big()), carve(other()));
    let (a, b) = (a.join().unwrap(), b.join().unwrap());
    assert!(!same_span(a, b), "two threads carved one span");
    assert_eq!((tagged(a), tagged(b)), (big().size(), other().size()));
    // SAFETY: from this heap with these layouts, live and ours.
    unsafe {
        heap.dealloc(a as *mut u8, big());
        heap.dealloc(b as *mut u8, other());
    }
    assert_all_back(&heap);
}

#[test]
fn fresh_spans_are_carved_once() {
    model(fresh_spans_race);
}

/// The seeded bug: the bump advances with a load and a store, not a CAS.
#[test]
fn seeded_bump_without_cas_is_caught() {
    assert_seeded_bug_caught(
        |on| seeded_page_bug(on.then_some(PageBug::BumpWithoutCas)),
        fresh_spans_race,
        &["Causality violation", "two threads carved one span"],
    );
}

/// A page abandoned at thread exit racing its adoption: A allocates a block
/// and drops its heap (the page, with the block in use, goes on the
/// abandoned stack) while B allocates from the same class (adopting the
/// page when A has abandoned it, else taking a fresh one) and drops its
/// heap in turn; the main thread frees both blocks (cache-less frees into
/// abandoned pages).
fn abandon_races_adoption() -> bool {
    let heap = heap();
    let [a, b] = [0xA, 0xB].map(|t| {
        let heap = heap.clone();
        thread::spawn(move || {
            let local = heap.local();
            let x = local.alloc(big()) as usize;
            tag(x, t);
            x
        })
    });
    let x = a.join().unwrap();
    let y = b.join().unwrap();
    assert_ne!(x, y, "a block was handed out twice");
    assert_eq!(tagged(x), 0xA, "a live block was overwritten");
    assert_eq!(tagged(y), 0xB, "a live block was overwritten");
    // SAFETY: both from this heap with `big()`, live.
    unsafe {
        heap.dealloc(x as *mut u8, big());
        heap.dealloc(y as *mut u8, big());
    }
    assert_all_back(&heap);
    same_span(x, y)
}

/// Both outcomes happen: B adopts A's page (its block in the same span as
/// A's), or takes a fresh one.
#[test]
fn abandoned_page_races_adoption() {
    let outcomes = Outcomes::new();
    let seen = outcomes.clone();
    model(move || seen.record(abandon_races_adoption()));
    outcomes.assert_saw(&[false, true]);
}

/// The seeded bug: `abandon` publishes the page before unlinking it.
#[test]
fn seeded_abandon_publishing_first_is_caught() {
    assert_seeded_race_caught(
        |on| seeded_page_bug(on.then_some(PageBug::AbandonPublishesFirst)),
        || {
            abandon_races_adoption();
        },
    );
}

/// A page going back to the pool racing its next taker, after a late
/// remote free: A allocates two blocks of one page, hands one to B and
/// frees the other; B frees its block (a remote free, the page's last block
/// in use), tells A, and allocates from another class; A, told, flushes:
/// it takes the remote free and puts the emptied page in the pool, where
/// B's allocation may find it.
fn retire_races_remote_free() -> bool {
    let heap = heap();
    // The block handed over, and whether B has freed it.
    let handoff: Arc<Mutex<(Option<usize>, bool)>> = Arc::new(Mutex::new((None, false)));
    let a = {
        let (heap, handoff) = (heap.clone(), handoff.clone());
        thread::spawn(move || {
            let local = heap.local();
            let x = local.alloc(big()) as usize;
            let y = local.alloc(big()) as usize;
            tag(x, 0xA);
            handoff.lock().unwrap().0 = Some(x);
            // SAFETY: from this heap with `big()`, ours.
            unsafe { local.dealloc(y as *mut u8, big()) };
            while !handoff.lock().unwrap().1 {
                thread::yield_now();
            }
            local.flush();
        })
    };
    let b = {
        let (heap, handoff) = (heap.clone(), handoff.clone());
        thread::spawn(move || {
            let local = heap.local();
            let x = loop {
                if let Some(x) = handoff.lock().unwrap().0.take() {
                    break x;
                }
                thread::yield_now();
            };
            assert_eq!(tagged(x), 0xA);
            // SAFETY: from this heap with `big()`, handed to us.
            unsafe { local.dealloc(x as *mut u8, big()) };
            handoff.lock().unwrap().1 = true;
            // A may flush before or after this allocation; the yield lets
            // loom run A here without spending a preemption on it.
            thread::yield_now();
            let z = local.alloc(other()) as usize;
            tag(z, 0xB);
            assert_eq!(tagged(z), 0xB);
            // SAFETY: from this heap with `other()`, ours.
            unsafe { local.dealloc(z as *mut u8, other()) };
            same_span(x, z)
        })
    };
    a.join().unwrap();
    let reused = b.join().unwrap();
    assert_all_back(&heap);
    reused
}

/// Both outcomes happen: B's allocation takes the page A emptied (its block
/// in the span of the block B freed), or a fresh one.
#[test]
fn emptied_page_races_late_remote_free() {
    let outcomes = Outcomes::new();
    let seen = outcomes.clone();
    model(move || seen.record(retire_races_remote_free()));
    outcomes.assert_saw(&[false, true]);
}

/// The seeded bug: `flush` puts the emptied page in the pool before
/// unlinking it, and B's allocation formats it meanwhile.
#[test]
fn seeded_retire_publishing_first_is_caught() {
    assert_seeded_race_caught(
        |on| seeded_page_bug(on.then_some(PageBug::RetirePublishesFirst)),
        || {
            retire_races_remote_free();
        },
    );
}
