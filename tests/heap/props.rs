//! The property test: random operation sequences against a model, each free index.

use super::*;

#[derive(Clone, Debug)]
enum Op {
    Alloc { size: usize, align_log: u32 },
    Free(usize),
    Realloc(usize, usize),
}

fn op() -> impl Strategy<Value = Op> {
    let size = prop_oneof![
        6 => 1usize..512,
        3 => 512usize..20_000,
        2 => 20_000usize..600_000,
        1 => HUGE_MIN..HUGE_MIN + 100_000,
    ];
    prop_oneof![
        4 => (size.clone(), 0u32..13).prop_map(|(size, align_log)| Op::Alloc { size, align_log }),
        3 => any::<usize>().prop_map(Op::Free),
        2 => (any::<usize>(), size).prop_map(|(i, s)| Op::Realloc(i, s)),
    ]
}

/// Random alloc/free/realloc sequences: blocks never overlap, are aligned,
/// keep their bytes until freed, and `realloc` keeps the contents.
fn run_ops<I: FreeIndex>(ops: &[Op], use_local: bool, checked: bool) -> Result<(), TestCaseError> {
    let heap: Heap<I> = Heap::with_config(HeapConfig {
        arena_bytes: ARENA,
        checked,
    });
    let local = heap.local();
    let alloc = |l: Layout| {
        if use_local {
            local.alloc(l)
        } else {
            heap.alloc(l)
        }
    };
    let mut live: BTreeMap<usize, (Layout, u8)> = BTreeMap::new();
    let overlaps = |live: &BTreeMap<usize, (Layout, u8)>, p: usize, n: usize| {
        live.range(..p + n.max(1))
            .next_back()
            .is_some_and(|(&q, &(l, _))| q + l.size().max(1) > p)
    };
    for (seed, op) in ops.iter().enumerate() {
        let seed = seed as u8;
        match *op {
            Op::Alloc { size, align_log } => {
                let l = Layout::from_size_align(size, 1 << align_log).unwrap();
                let p = alloc(l);
                prop_assert!(!p.is_null());
                prop_assert_eq!(p as usize % l.align(), 0);
                prop_assert!(!overlaps(&live, p as usize, size), "overlap at {:p}", p);
                fill(p, size.min(2048), seed);
                live.insert(p as usize, (l, seed));
            }
            Op::Free(i) | Op::Realloc(i, _) if live.is_empty() => {
                let _ = i;
            }
            Op::Free(i) => {
                let (&p, &(l, s)) = live.iter().nth(i % live.len()).unwrap();
                prop_assert!(
                    check(p as *const u8, l.size().min(2048), s),
                    "bytes changed"
                );
                live.remove(&p);
                // SAFETY: a live block of this heap with layout `l`.
                unsafe {
                    if use_local {
                        local.dealloc(p as *mut u8, l)
                    } else {
                        heap.dealloc(p as *mut u8, l)
                    }
                }
            }
            Op::Realloc(i, new) => {
                let (&p, &(l, s)) = live.iter().nth(i % live.len()).unwrap();
                live.remove(&p);
                // SAFETY: as above.
                let q = unsafe {
                    if use_local {
                        local.realloc(p as *mut u8, l, new)
                    } else {
                        heap.realloc(p as *mut u8, l, new)
                    }
                };
                prop_assert!(!q.is_null());
                prop_assert_eq!(q as usize % l.align(), 0);
                prop_assert!(
                    check(q, l.size().min(new).min(2048), s),
                    "realloc lost bytes"
                );
                prop_assert!(!overlaps(&live, q as usize, new));
                fill(q, new.min(2048), seed);
                live.insert(
                    q as usize,
                    (Layout::from_size_align(new, l.align()).unwrap(), seed),
                );
            }
        }
    }
    for (p, (l, s)) in live {
        prop_assert!(check(p as *const u8, l.size().min(2048), s));
        // SAFETY: as above.
        unsafe { heap.dealloc(p as *mut u8, l) };
    }
    drop(local);
    let st = heap.stats();
    prop_assert_eq!(st.misuse, 0);
    prop_assert_eq!(st.requested_bytes, 0);
    prop_assert_eq!(st.in_use_bytes, 0, "{:?}", st);
    Ok(())
}

/// 48 cases, 2 under Miri, which also cannot write failure files.
fn config() -> ProptestConfig {
    let mut config = ProptestConfig::with_cases(if cfg!(miri) { 2 } else { 48 });
    if cfg!(miri) {
        config.failure_persistence = None;
    }
    config
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn prop_skip_index(ops in prop::collection::vec(op(), 1..150), local: bool) {
        run_ops::<SkipIndex>(&ops, local, false)?;
    }

    #[test]
    fn prop_list_index(ops in prop::collection::vec(op(), 1..150), local: bool) {
        run_ops::<ListIndex>(&ops, local, false)?;
    }

    #[test]
    fn prop_skip_index_hazard(ops in prop::collection::vec(op(), 1..150), local: bool) {
        run_ops::<SkipIndex<Hazard>>(&ops, local, false)?;
    }

    #[test]
    fn prop_list_index_hazard(ops in prop::collection::vec(op(), 1..150), local: bool) {
        run_ops::<ListIndex<Hazard>>(&ops, local, false)?;
    }

    #[test]
    fn prop_btree_index(ops in prop::collection::vec(op(), 1..150), local: bool) {
        run_ops::<BTreeIndex>(&ops, local, false)?;
    }

    #[test]
    fn prop_checked(ops in prop::collection::vec(op(), 1..150), local: bool) {
        run_ops::<SkipIndex>(&ops, local, true)?;
    }
}
