//! The algorithm: the search that unlinks marked nodes, marking, the
//! removal's hand-offs, and the insert that links a tower level by level.

use core::mem::{self, MaybeUninit};
use core::ptr::{self, NonNull};

use crate::reclaim::{Domain, Guard, Reclaim, Shield};
use crate::sync::{fence, AtomicPtr, Ordering};

use super::node::{is_marked, tag, untagged, with_tag, Node, MARK, POPPED, RESERVED};
use super::{Ref, SkipList, MAX_HEIGHT};

/// Marks the node's upper levels top-down, then tries to mark level 0 with
/// `MARK | extra`. Returns whether this call's CAS marked level 0, that is,
/// removed the entry.
///
/// # Safety
///
/// 1. `node` is protected by the caller.
pub(super) unsafe fn mark_tower<K, V>(node: *mut Node<K, V>, extra: usize) -> bool {
    // SAFETY: (1) protected; the height is immutable.
    let height = unsafe { (*node).height as usize };
    for level in (1..height).rev() {
        // SAFETY: (1) protected; `level < height`.
        unsafe { mark_level(node, level) };
    }
    // SAFETY: as above; level 0 exists.
    let next = unsafe { Node::next(node, 0) };
    // Acquire: as any load of a `next` pointer (see `search`).
    let mut cur = next.load(Ordering::Acquire);
    loop {
        if is_marked(cur) {
            return false;
        }
        // AcqRel: an RMW continues the release sequence of the pointer's
        // publication for the threads that will unlink the node; the Release
        // half orders the upper marks above before this one. Acquire on
        // failure: we read the new value's pointee.
        match next.compare_exchange_weak(
            cur,
            with_tag(cur, MARK | extra),
            Ordering::AcqRel, // RMW: continues the release sequence; Acquire half as above
            Ordering::Acquire,
        ) {
            Ok(_) => return true,
            Err(now) => cur = now,
        }
    }
}

/// Marks the node at `level`, unless it is marked already.
///
/// # Safety
///
/// 1. `node` is protected by the caller and `level` is below its height.
pub(super) unsafe fn mark_level<K, V>(node: *mut Node<K, V>, level: usize) {
    // SAFETY: (1).
    let next = unsafe { Node::next(node, level) };
    // Relaxed: only the mark bit matters here; the CAS below re-checks it.
    let mut cur = next.load(Ordering::Relaxed);
    while !is_marked(cur) {
        // Release: keeps the upper marks ordered before the level-0 mark for
        // a thread that reads them through it. Relaxed on failure: we only
        // look at the mark bit of what we read.
        match next.compare_exchange_weak(
            cur,
            with_tag(cur, MARK),
            Ordering::Release, // pairs with the Acquire loads of links
            Ordering::Relaxed,
        ) {
            Ok(_) => return,
            Err(now) => cur = now,
        }
    }
}

/// A search's state: the guard, three shields, and where the last search
/// stopped. Reused across the searches of one operation, so an operation
/// takes its hazard pointers once.
pub(super) struct Cursor<'a, K, V, R: Reclaim> {
    pub(super) guard: Guard<'a, R>,
    /// The last node passed at the search's level (null: `head`).
    pub(super) pred: *mut Node<K, V>,
    /// `pred`'s tower, or `head`'s.
    pub(super) pred_tower: *const AtomicPtr<Node<K, V>>,
    /// The first unmarked node at the search's level that satisfied the
    /// search (null: the end).
    pub(super) curr: *mut Node<K, V>,
    pub(super) pred_shield: Shield<'a, R>,
    pub(super) curr_shield: Shield<'a, R>,
    /// Protects `curr`'s successor during the walk. Held, not read after.
    pub(super) succ_shield: Shield<'a, R>,
    /// The levels `(lowest, highest)` the last search went through, whose
    /// `pred_tower` and `curr` it left in `preds` and `succs`. Unprotected
    /// (only `pred` and `curr` of the last level are): usable only where
    /// the guard alone protects (`R::GUARD_PROTECTS_ALL`).
    /// Written only where `R::GUARD_PROTECTS_ALL`, for the levels in
    /// `recorded`.
    pub(super) recorded: (usize, usize),
    pub(super) preds: [MaybeUninit<*const AtomicPtr<Node<K, V>>>; MAX_HEIGHT],
    pub(super) succs: [MaybeUninit<*mut Node<K, V>>; MAX_HEIGHT],
}

impl<'a, K, V, R: Reclaim> Cursor<'a, K, V, R> {
    pub(super) fn new(domain: &'a Domain<R>) -> Self {
        let guard = domain.pin();
        Self {
            pred: ptr::null_mut(),
            pred_tower: ptr::null(),
            curr: ptr::null_mut(),
            pred_shield: guard.shield(),
            curr_shield: guard.shield(),
            succ_shield: guard.shield(),
            guard,
            recorded: (1, 0),
            preds: [const { MaybeUninit::uninit() }; MAX_HEIGHT],
            succs: [const { MaybeUninit::uninit() }; MAX_HEIGHT],
        }
    }

    /// `curr` as a [`Ref`], if any.
    pub(super) fn into_curr(self, list: &'a SkipList<K, V, R>) -> Option<Ref<'a, K, V, R>> {
        Some(Ref {
            list,
            node: NonNull::new(self.curr)?,
            _shield: self.curr_shield,
            _guard: self.guard,
        })
    }

    /// `pred` as a [`Ref`], if it is a node.
    pub(super) fn into_pred(self, list: &'a SkipList<K, V, R>) -> Option<Ref<'a, K, V, R>> {
        Some(Ref {
            list,
            node: NonNull::new(self.pred)?,
            _shield: self.pred_shield,
            _guard: self.guard,
        })
    }
}

/// The result of an insert attempt.
pub(super) enum Inserted<'a, K, V, R: Reclaim> {
    /// The new entry.
    New(Ref<'a, K, V, R>),
    /// The key was present (and not replaced): the entry found, and the
    /// given key and value back.
    Present(Ref<'a, K, V, R>, K, V),
}

impl<K, V, R> SkipList<K, V, R>
where
    K: Ord + Send,
    V: Send,
    R: Reclaim,
{
    /// Walks from the top level down to `level` and leaves in `c` the first
    /// unmarked node at `level` whose key satisfies `stop` (`curr`) and the
    /// node before it (`pred`), both protected, unlinking every marked node
    /// met on the way and helping a reserved head. `stop` must be monotone
    /// along increasing keys.
    pub(super) fn search(
        &self,
        c: &mut Cursor<'_, K, V, R>,
        stop: impl Fn(&K) -> bool,
        level: usize,
    ) {
        // `pred` and its tower live in locals during the walk (the cursor is
        // in memory) and go to the cursor at the end.
        'retry: loop {
            let mut pred: *mut Node<K, V> = ptr::null_mut();
            let mut pred_tower: *const AtomicPtr<Node<K, V>> = self.head.as_ptr();
            // Relaxed: a hint (see `max_height`); any start level is correct.
            let mut lvl = self.max_height.load(Ordering::Relaxed).max(level + 1) - 1;
            c.recorded = (level, lvl);
            // The node the level above stopped at, still protected by
            // `curr_shield` (null: none).
            let mut above: *mut Node<K, V> = ptr::null_mut();
            loop {
                // SAFETY: `pred_tower` is `head`'s tower or that of `pred`,
                // which `pred_shield` protects and which was reached at a
                // level `>= lvl`, so its height exceeds `lvl`.
                let mut slot = unsafe { &*pred_tower.add(lvl) };
                // Acquire (here and for every `next` load): pairs with the
                // Release CAS that linked the pointee (or the RMWs that
                // continue its release sequence), so its fields are visible.
                let mut curr = slot.load(Ordering::Acquire);
                if tag(curr) != 0 {
                    if pred.is_null() && tag(curr) == RESERVED {
                        // `head[0]` is reserved by a `pop_first`: help it.
                        if c.curr_shield.try_protect(curr, slot).is_ok() {
                            // SAFETY: protected while `head[0]` pointed to
                            // it, so linked and not retired.
                            unsafe { self.help_pop(untagged(curr)) };
                        }
                    }
                    // Otherwise `pred` was marked at this level meanwhile.
                    continue 'retry;
                }
                // The node the level above stopped at needs no new
                // protection (`curr_shield` has held it since before this
                // load) and no new comparison (`stop` is a function of the
                // key).
                let mut known_stop = !curr.is_null() && curr == above;
                if !known_stop && c.curr_shield.try_protect(curr, slot).is_err() {
                    continue 'retry;
                }
                loop {
                    if curr.is_null() {
                        break;
                    }
                    // SAFETY: `curr` is protected, and was seen in an
                    // unmarked `pred.next[lvl]` after it was: it was linked
                    // at `lvl`, so not retired, and its height exceeds `lvl`.
                    let next = unsafe { Node::next(curr, lvl) };
                    // SAFETY: as above.
                    unsafe { (*curr).liveness.check() };
                    // Acquire: as above.
                    let succ = next.load(Ordering::Acquire);
                    if is_marked(succ) {
                        // `curr` is being removed: unlink it at this level.
                        // `succ` may already be unlinked, so it is used only
                        // if our CAS shows it was still reachable after it
                        // was protected.
                        if c.succ_shield.try_protect(succ, next).is_err() {
                            continue 'retry;
                        }
                        let succ = untagged(succ);
                        // Release: a thread that reaches `succ` through
                        // `pred` must see its fields as we did. Relaxed on
                        // failure: we start again.
                        match slot.compare_exchange(
                            curr,
                            succ,
                            Ordering::Release, // pairs with the Acquire loads of links
                            Ordering::Relaxed,
                        ) {
                            Ok(_) => {
                                curr = succ;
                                mem::swap(&mut c.curr_shield, &mut c.succ_shield);
                                known_stop = false;
                                continue;
                            }
                            Err(_) => continue 'retry,
                        }
                    }
                    // SAFETY: protected; keys are immutable.
                    if known_stop || stop(unsafe { &(*curr).key }) {
                        // `succ` is not needed: no protection for it.
                        break;
                    }
                    // Validated against `curr.next[lvl]`: while it holds
                    // `succ` unmarked, `curr` is linked, so `succ` is too.
                    if c.succ_shield.try_protect(succ, next).is_err() {
                        continue 'retry;
                    }
                    pred = curr;
                    // SAFETY: protected.
                    pred_tower = unsafe { Node::tower(curr) };
                    slot = next;
                    mem::swap(&mut c.pred_shield, &mut c.curr_shield);
                    curr = succ;
                    mem::swap(&mut c.curr_shield, &mut c.succ_shield);
                }
                if R::GUARD_PROTECTS_ALL {
                    c.preds[lvl].write(pred_tower);
                    c.succs[lvl].write(curr);
                }
                if lvl == level {
                    c.pred = pred;
                    c.pred_tower = pred_tower;
                    c.curr = curr;
                    return;
                }
                above = curr;
                lvl -= 1;
            }
        }
    }

    /// Completes the `pop_first` that reserved `node` at `head[0]`: marks
    /// `node` as popped (unless a `remove` marked it first), then unlinks it
    /// from `head[0]`, ending the reservation.
    ///
    /// # Safety
    ///
    /// 1. `node` is protected by the caller and `head[0]` held
    ///    `node | RESERVED` when it was protected.
    pub(super) unsafe fn help_pop(&self, node: *mut Node<K, V>) {
        // SAFETY: (1).
        unsafe { mark_tower(node, POPPED) };
        // SAFETY: (1); level 0 exists.
        let next = unsafe { Node::next(node, 0) };
        // Acquire: we publish the successor in `head[0]` below.
        let succ = untagged(next.load(Ordering::Acquire));
        // Release: as the unlinking CAS in `search`. Relaxed on failure:
        // someone else ended the reservation.
        let _ = self.head[0].compare_exchange(
            with_tag(node, RESERVED),
            succ,
            Ordering::Release, // pairs with the Acquire loads of links
            Ordering::Relaxed,
        );
    }

    /// Releases one of the two parties of `node` (see the module docs);
    /// the last one retires it.
    ///
    /// # Safety
    ///
    /// 1. `node` is protected by the caller.
    /// 2. The caller is the inserter, done linking, or the remover, done with
    ///    its clean-up search; each releases once.
    pub(super) unsafe fn release(&self, guard: &Guard<'_, R>, node: *mut Node<K, V>) {
        // AcqRel: the Release half publishes this party's work (links or
        // unlinks) to the party that reaches zero; the Acquire half, in that
        // party, makes the other party's work visible before the retire.
        // SAFETY: (1).
        if unsafe { (*node).refs.fetch_sub(1, Ordering::AcqRel) } == 1 {
            // SAFETY: (retire 1) both parties are done: the remover's search
            // unlinked the node at every level linked before its fence, the
            // inserter's after it, and nobody links it again; (2) only the
            // party that reaches zero retires; (3) from `Node::alloc`,
            // reclaimed by `Node::reclaim`; (4) one domain per map.
            unsafe { guard.retire(node) };
        }
    }

    /// The remover's part after its mark removed `node`: count it, unlink
    /// it at every level, release it.
    ///
    /// # Safety
    ///
    /// 1. This thread's CAS marked `node`'s level 0 (or, for `pop_first`,
    ///    the reservation this thread made).
    /// 2. `node` stays protected by the caller until this returns.
    pub(super) unsafe fn finish_removal(&self, c: &mut Cursor<'_, K, V, R>, node: *mut Node<K, V>) {
        // Relaxed: a statistic (see `len`).
        self.len.0.fetch_sub(1, Ordering::Relaxed);
        // SeqCst: pairs with the fence in `link_upper`: either the inserter
        // sees our mark, or the search below sees its links.
        fence(Ordering::SeqCst);
        // SAFETY: (2) protected.
        if !(R::GUARD_PROTECTS_ALL && unsafe { self.unlink_recorded(c, node) }) {
            // SAFETY: (2) protected; keys are immutable.
            let key = unsafe { &(*node).key };
            self.search(c, |k| k >= key, 0);
        }
        // SAFETY: (2) protected; (1) we are the remover, once.
        unsafe { self.release(&c.guard, node) };
    }

    /// Unlinks the removed `node` at every level through the predecessors
    /// the cursor's last search recorded, as Herlihy and Shavit do, without
    /// a new search. Succeeds only if that search found `node` linked at
    /// every level of its tower (so its inserter had finished and links it
    /// nowhere again) and every unlinking CAS succeeds; `false` leaves the
    /// rest to a search.
    ///
    /// # Safety
    ///
    /// 1. `node` is protected and marked at every level; the caller's fence
    ///    follows the mark.
    /// 2. `R::GUARD_PROTECTS_ALL`, and the guard of `c` has been pinned
    ///    since the search that recorded the predecessors.
    pub(super) unsafe fn unlink_recorded(
        &self,
        c: &Cursor<'_, K, V, R>,
        node: *mut Node<K, V>,
    ) -> bool {
        // SAFETY: (1) protected.
        let height = unsafe { (*node).height as usize };
        if c.recorded.0 != 0 || c.recorded.1 + 1 < height {
            return false;
        }
        for level in 0..height {
            // SAFETY: the last search wrote every level in `c.recorded`.
            if unsafe { c.succs[level].assume_init() } != node {
                return false;
            }
        }
        for level in (0..height).rev() {
            // SAFETY: (1); `level < height`.
            let next = unsafe { Node::next(node, level) };
            // Acquire: we republish the successor.
            let succ = untagged(next.load(Ordering::Acquire));
            // SAFETY: recorded above; (2) the pinned guard keeps the
            // predecessor from being freed; its height exceeds `level`.
            let slot = unsafe { &*c.preds[level].assume_init().add(level) };
            // Release: as the unlinking CAS in `search`. Relaxed on failure:
            // a search finishes the job.
            if slot
                .compare_exchange(node, succ, Ordering::Release, Ordering::Relaxed) // Release pairs with the Acquire loads of links; Relaxed on failure: retried
                .is_err()
            {
                return false;
            }
        }
        true
    }

    /// [`finish_removal`](Self::finish_removal), then the removed entry as
    /// a [`Ref`] that `own` keeps protected.
    ///
    /// # Safety
    ///
    /// 1. As `finish_removal`'s 1: this thread's mark removed `node`.
    /// 2. `own` protects `node`, which is non-null.
    pub(super) unsafe fn removed_entry<'a>(
        &'a self,
        mut c: Cursor<'a, K, V, R>,
        own: Shield<'a, R>,
        node: *mut Node<K, V>,
    ) -> Ref<'a, K, V, R> {
        // SAFETY: (1); (2) protected until the `Ref` drops.
        unsafe { self.finish_removal(&mut c, node) };
        Ref {
            list: self,
            // SAFETY: (2) non-null.
            node: unsafe { NonNull::new_unchecked(node) },
            _shield: own,
            _guard: c.guard,
        }
    }

    /// Links `node` (already linked at level 0) at levels `1..height`, stops
    /// early if it is removed, unlinks it again if it was removed while we
    /// linked, and releases the inserter's part.
    ///
    /// # Safety
    ///
    /// 1. This thread inserted `node` at level 0 and protects it until this
    ///    returns.
    ///
    /// `clean_up` is false only in the seeded-bug model (`cfg(loom)`).
    pub(super) unsafe fn link_upper(
        &self,
        c: &mut Cursor<'_, K, V, R>,
        node: *mut Node<K, V>,
        clean_up: bool,
    ) {
        // SAFETY: (1) protected; immutable fields.
        let (key, height) = unsafe { (&(*node).key, (*node).height as usize) };
        if height > 1 {
            // Relaxed: a hint for where searches start (see `max_height`).
            self.max_height.fetch_max(height, Ordering::Relaxed);
        }
        'levels: for level in 1..height {
            // SAFETY: (1); `level < height`.
            let own = unsafe { Node::next(node, level) };
            // Where the guard alone protects, the first try uses what the
            // last search saw at this level (Herlihy and Shavit's `preds`
            // and `succs`); with hazard pointers, and after a failed CAS, a
            // search down to this level.
            let mut recorded =
                R::GUARD_PROTECTS_ALL && (c.recorded.0..=c.recorded.1).contains(&level);
            loop {
                let pair = if recorded {
                    recorded = false;
                    // SAFETY: the last search wrote every level in
                    // `c.recorded` (the scheme protects all, checked above).
                    Some(unsafe { (c.preds[level].assume_init(), c.succs[level].assume_init()) })
                } else {
                    None
                };
                // A recorded successor removed since the search must not get
                // our node in front of it: if it has our key (an older entry
                // removed before our level-0 link), its remover's clean-up
                // search stops at our node, the first live one of the key,
                // and would leave it linked here after its retire. A search
                // unlinks it instead.
                let pair = pair.filter(|&(_, succ)| {
                    succ.is_null() || {
                        // SAFETY: recorded at `level`, so its height exceeds
                        // `level`; the pinned guard keeps it from being freed.
                        let next = unsafe { Node::next(succ, level) };
                        // Relaxed: coherence suffices. An older entry of our
                        // key was marked at every level before our level-0
                        // search saw it marked or unlinked (through Acquire
                        // loads), so that mark happens before this load.
                        !is_marked(next.load(Ordering::Relaxed))
                    }
                });
                let (pred_tower, succ) = match pair {
                    Some(pair) => pair,
                    None => {
                        self.search(c, |k| k >= key, level);
                        (c.pred_tower, c.curr)
                    }
                };
                // Relaxed: the CAS below validates it; only we set it
                // unmarked.
                let cur = own.load(Ordering::Relaxed);
                if is_marked(cur) {
                    break 'levels;
                }
                // Release: a thread that reaches `succ` through our tower
                // sees its fields as we did. Relaxed on failure: only a mark
                // can change it, and then we stop.
                if cur != succ
                    && own
                        .compare_exchange(cur, succ, Ordering::Release, Ordering::Relaxed) // Release pairs with the Acquire loads of links; Relaxed on failure: retried
                        .is_err()
                {
                    break 'levels;
                }
                // SAFETY: `pred_tower` is `head`'s, or a node's with height
                // above `level` that `pred_shield` protects, or (recorded)
                // that the pinned guard keeps from being freed.
                let slot = unsafe { &*pred_tower.add(level) };
                // Release: publishes our tower; pairs with the Acquire loads
                // in `search`. Relaxed on failure: we search again. A
                // predecessor removed since the search is marked at this
                // level, which makes the CAS fail.
                if slot
                    .compare_exchange(succ, node, Ordering::Release, Ordering::Relaxed) // Release pairs with the Acquire loads of links; Relaxed on failure: retried
                    .is_ok()
                {
                    break;
                }
            }
        }
        // SeqCst: pairs with the fence in `finish_removal`.
        fence(Ordering::SeqCst);
        // SAFETY: (1).
        let bottom = unsafe { Node::next(node, 0) };
        // Relaxed: the fences above order it (see the module docs).
        if clean_up && is_marked(bottom.load(Ordering::Relaxed)) {
            // Removed while we linked: unlink what we linked after the
            // remover's search passed.
            self.search(c, |k| k >= key, 0);
        }
        // SAFETY: (1) protected; we are the inserter, once.
        unsafe { self.release(&c.guard, node) };
    }

    /// Inserts a node of `height` levels, replacing an entry with the same
    /// key if `replace` accepts its value. (`clean_up`: see `link_upper`.)
    pub(super) fn insert_internal(
        &self,
        key: K,
        value: V,
        height: usize,
        replace: impl Fn(&V) -> bool,
        clean_up: bool,
    ) -> Inserted<'_, K, V, R> {
        let height = height.clamp(1, MAX_HEIGHT);
        let node = Node::alloc(key, value, height);
        let mut c = Cursor::new(&self.domain);
        let mut own = c.guard.shield();
        // SAFETY: `node` is not published until the CASes below.
        unsafe { own.protect_unpublished(node) };
        // SAFETY: ours (then protected); keys are immutable.
        let key = unsafe { &(*node).key };
        // SAFETY: ours; level 0 exists.
        let bottom = unsafe { Node::next(node, 0) };
        loop {
            self.search(&mut c, |k| k >= key, 0);
            // SAFETY: a non-null `curr` is protected.
            let found = !c.curr.is_null() && unsafe { (*c.curr).key == *key };
            // SAFETY: protected, as above; values are immutable, so the
            // answer holds for as long as `curr` is the entry (which the
            // replacing CAS on `curr` checks).
            if found && !replace(unsafe { &(*c.curr).value }) {
                drop(own);
                // SAFETY: never published.
                let (key, value) = unsafe { Node::into_entry(node) };
                let existing = c.into_curr(self).expect("found");
                return Inserted::Present(existing, key, value);
            }
            if found {
                let old = c.curr;
                // SAFETY: protected by `curr_shield` until the next search.
                if unsafe { self.replace(old, node) } {
                    // Keep `old` protected for its clean-up.
                    let mut old_shield = c.guard.shield();
                    mem::swap(&mut old_shield, &mut c.curr_shield);
                    // SeqCst: as in `finish_removal` (we are `old`'s remover).
                    fence(Ordering::SeqCst);
                    self.search(&mut c, |k| k >= key, 0);
                    // SAFETY: protected by `old_shield`; we removed it.
                    unsafe { self.release(&c.guard, old) };
                    drop(old_shield);
                    break;
                }
                continue;
            }
            // Relaxed: unpublished; the CAS below publishes it.
            bottom.store(c.curr, Ordering::Relaxed);
            // SAFETY: `pred_tower` is `head`'s or a protected node's.
            let slot = unsafe { &*c.pred_tower };
            // Release: publishes the node; pairs with the Acquire loads in
            // `search`. Relaxed on failure: we search again. A marked or
            // reserved `slot` makes it fail.
            if slot
                .compare_exchange(c.curr, node, Ordering::Release, Ordering::Relaxed) // Release pairs with the Acquire loads of links; Relaxed on failure: retried
                .is_ok()
            {
                // Relaxed: a statistic (see `len`).
                self.len.0.fetch_add(1, Ordering::Relaxed);
                break;
            }
        }
        // SAFETY: we linked `node` at level 0; `own` protects it.
        unsafe { self.link_upper(&mut c, node, clean_up) };
        Inserted::New(Ref {
            list: self,
            // SAFETY: from `Node::alloc`, so non-null.
            node: unsafe { NonNull::new_unchecked(node) },
            _shield: own,
            _guard: c.guard,
        })
    }

    /// Removes `old` and links `node` in its place at level 0, in one CAS
    /// that marks `old` with `node` as its successor. Returns `false` if
    /// `old` was removed by someone else first.
    ///
    /// # Safety
    ///
    /// 1. `old` is protected; `node` is unpublished and protected.
    pub(super) unsafe fn replace(&self, old: *mut Node<K, V>, node: *mut Node<K, V>) -> bool {
        // SAFETY: (1) protected.
        let height = unsafe { (*old).height as usize };
        for level in (1..height).rev() {
            // SAFETY: (1); `level < height`.
            unsafe { mark_level(old, level) };
        }
        // SAFETY: (1); level 0 exists in both towers.
        let (next, bottom) = unsafe { (Node::next(old, 0), Node::next(node, 0)) };
        // Acquire: as any `next` load; we republish the successor.
        let mut cur = next.load(Ordering::Acquire);
        loop {
            if is_marked(cur) {
                return false;
            }
            // Relaxed: unpublished; the CAS below publishes it.
            bottom.store(cur, Ordering::Relaxed);
            // AcqRel: Release publishes `node` (a search reaches it through
            // `old`'s marked pointer once it unlinks `old`); the RMW also
            // continues `cur`'s release sequence. Acquire on failure: we
            // republish the new successor.
            match next.compare_exchange_weak(
                cur,
                with_tag(node, MARK),
                Ordering::AcqRel, // RMW: continues the release sequence; Acquire half as above
                Ordering::Acquire,
            ) {
                Ok(_) => return true,
                Err(now) => cur = now,
            }
        }
    }
}
