//! A node and its tower: the tagged `next` pointers, the node's layout
//! and lifetime, and the random tower height.

use core::alloc::Layout;
use core::mem;
use core::ptr;

use crate::raw::{Liveness, Retirable};
use crate::sync::{AtomicPtr, AtomicU32};

use super::MAX_HEIGHT;

/// The mark of a `next[i]` pointer.
pub(super) const MARK: usize = 1;
/// With `MARK`, on a node's `next[0]`: the node was removed by `pop_first`.
pub(super) const POPPED: usize = 2;
/// On `head[0]` only: the first node is reserved by a `pop_first`.
pub(super) const RESERVED: usize = 2;
/// Every tag bit. Nodes are at least 4-aligned (they hold an `AtomicUsize`).
pub(super) const TAGS: usize = 3;

#[inline(always)]
pub(super) fn tag<T>(p: *mut T) -> usize {
    p.addr() & TAGS
}

#[inline(always)]
pub(super) fn is_marked<T>(p: *mut T) -> bool {
    p.addr() & MARK != 0
}

#[inline(always)]
pub(super) fn with_tag<T>(p: *mut T, tag: usize) -> *mut T {
    p.map_addr(|a| a | tag)
}

#[inline(always)]
pub(super) fn untagged<T>(p: *mut T) -> *mut T {
    p.map_addr(|a| a & !TAGS)
}

/// A node's header; its tower of `height` pointers follows it in the same
/// allocation (see [`Node::layout`]). Nodes are only handled through raw
/// pointers to the whole allocation, so that reaching the tower never goes
/// through a reference that covers the header alone.
///
/// The key comes last, next to the tower: a search reads only the key and
/// one tower slot of each node it visits, so they should share a cache line.
#[repr(C)]
pub(super) struct Node<K, V> {
    pub(super) value: V,
    /// The parties that must finish before the node is retired: 2 at
    /// allocation, the inserter and the remover (see the module docs).
    pub(super) refs: AtomicU32,
    pub(super) height: u32,
    pub(super) key: K,
    pub(super) liveness: Liveness,
}

impl<K, V> Node<K, V> {
    /// The layout of a node of `height` levels, and the tower's offset.
    pub(super) fn layout(height: usize) -> (Layout, usize) {
        let (layout, offset) = Layout::new::<Self>()
            .extend(Layout::array::<AtomicPtr<Self>>(height).expect("tower layout"))
            .expect("node layout");
        (layout.pad_to_align(), offset)
    }

    /// A new, unpublished node with a tower of null pointers. Aborts through
    /// [`std::alloc::handle_alloc_error`] when memory runs out, as `Box` does.
    pub(super) fn alloc(key: K, value: V, height: usize) -> *mut Self {
        debug_assert!((1..=MAX_HEIGHT).contains(&height));
        let (layout, offset) = Self::layout(height);
        debug_assert!(layout.align() > TAGS, "nodes must leave two tag bits");
        debug_assert_eq!(offset, Self::TOWER);
        // SAFETY: the layout has a non-zero size (it holds `refs`).
        let p = unsafe { std::alloc::alloc(layout) }.cast::<Self>();
        if p.is_null() {
            std::alloc::handle_alloc_error(layout);
        }
        // SAFETY: `p` is a fresh allocation of `layout`: the header fits at
        // offset 0 and `height` pointers at `offset`.
        unsafe {
            p.write(Node {
                value,
                refs: AtomicU32::new(2),
                height: height as u32,
                key,
                liveness: Liveness::new(),
            });
            let tower = p.cast::<u8>().add(offset).cast::<AtomicPtr<Self>>();
            for i in 0..height {
                tower.add(i).write(AtomicPtr::new(ptr::null_mut()));
            }
        }
        p
    }

    /// The node's `next` pointer at `level`.
    ///
    /// # Safety
    ///
    /// 1. `node` points to a live node (protected, or owned by the caller).
    /// 2. `level < height`.
    #[inline(always)]
    pub(super) unsafe fn next<'a>(node: *mut Self, level: usize) -> &'a AtomicPtr<Self> {
        // SAFETY: (1) the node is live; (2) the tower has `height > level`
        // slots, initialized by `alloc`, at the offset `layout` gives.
        unsafe {
            debug_assert!(level < (*node).height as usize);
            &*Self::tower(node).add(level)
        }
    }

    /// The tower's offset in the allocation: the header's size rounded up
    /// to a pointer's alignment, whatever the height (`layout` agrees).
    pub(super) const TOWER: usize = {
        let align = mem::align_of::<AtomicPtr<Self>>();
        (mem::size_of::<Self>() + align - 1) & !(align - 1)
    };

    /// The first slot of the node's tower.
    ///
    /// # Safety
    ///
    /// 1. `node` points to a live node.
    #[inline(always)]
    pub(super) unsafe fn tower(node: *mut Self) -> *const AtomicPtr<Self> {
        // SAFETY: (1) within the node's allocation, which `alloc` sized for
        // the tower.
        unsafe { node.cast::<u8>().add(Self::TOWER).cast::<AtomicPtr<Self>>() }
    }

    /// Drops the node's key, value and tower and frees it.
    ///
    /// # Safety
    ///
    /// 1. `node` came from [`Node::alloc`] and no other thread can reach it.
    /// 2. It is freed once.
    pub(super) unsafe fn free(node: *mut Self) {
        // SAFETY: (1-2) exclusive and live until the `dealloc` below.
        unsafe {
            let height = (*node).height as usize;
            let tower = Self::tower(node).cast_mut();
            for i in 0..height {
                ptr::drop_in_place(tower.add(i));
            }
            ptr::drop_in_place(node);
            std::alloc::dealloc(node.cast(), Self::layout(height).0);
        }
    }

    /// Takes the key and value back out of a node no one else can reach,
    /// and frees it.
    ///
    /// # Safety
    ///
    /// 1. `node` came from [`Node::alloc`], and no other thread, `Ref` or
    ///    link can reach it: it was never published, or it was unlinked
    ///    from a map the caller owns (`IntoIter`).
    pub(super) unsafe fn into_entry(node: *mut Self) -> (K, V) {
        // SAFETY: (1) the node is ours alone; its key and value are read
        // once, then its memory is freed without dropping them.
        unsafe {
            let key = ptr::read(&(*node).key);
            let value = ptr::read(&(*node).value);
            let height = (*node).height as usize;
            let tower = Self::tower(node).cast_mut();
            for i in 0..height {
                ptr::drop_in_place(tower.add(i));
            }
            ptr::drop_in_place(&mut (*node).refs);
            ptr::drop_in_place(&mut (*node).liveness);
            std::alloc::dealloc(node.cast(), Self::layout(height).0);
            (key, value)
        }
    }
}

// SAFETY: `reclaim` drops the node's key and value and frees it; the scheme
// calls it once no thread can reach the node. `Guard::retire` requires
// `Node: Send`, which holds exactly when `K: Send` and `V: Send`.
unsafe impl<K, V> Retirable for Node<K, V> {
    unsafe fn reclaim(this: *mut Self) {
        #[cfg(loom)]
        {
            // Under loom: drop the key and value, poison the node and leak
            // it, so a late read is a loom report (see `raw::Liveness`).
            // SAFETY: the node is unreachable (condition 1) and reclaimed
            // once (2); its key and value are dropped here only.
            unsafe {
                (*this).liveness.kill();
                ptr::drop_in_place(&mut (*this).key);
                ptr::drop_in_place(&mut (*this).value);
            }
        }
        // SAFETY: nodes come from `Node::alloc`; conditions 1-2.
        #[cfg(not(loom))]
        unsafe {
            Node::free(this)
        };
    }
}

/// A tower height drawn from a per-thread xorshift generator: 1, then one
/// more level with probability 1/2 each, at most [`MAX_HEIGHT`].
///
/// Why 1/2 rather than 1/4: both visit about as many nodes per search, but
/// with 1/2 a search takes one step per level where 1/4 takes three, and
/// only the lowest levels miss the cache: on a million keys the 1/4 lists
/// measured about 35% slower.
#[cfg(not(loom))]
pub(super) fn random_height() -> usize {
    use core::cell::Cell;
    thread_local! {
        static STATE: Cell<u32> = const { Cell::new(0) };
    }
    STATE
        .try_with(|state| {
            let mut x = state.get();
            if x == 0 {
                // Seed from the slot's address, which differs per thread.
                let addr = state as *const Cell<u32> as usize as u64;
                x = (addr.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32) as u32 | 1;
            }
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            state.set(x);
            // One zero bit per extra level: probability 1/2 each.
            (1 + x.trailing_zeros() as usize).min(MAX_HEIGHT)
        })
        // During thread-local destruction: a plain level-0 node.
        .unwrap_or(1)
}

/// Under loom every node gets two levels, so that models cover the upper
/// levels without random choices loom cannot replay; models that want
/// other heights use the hidden `*_with_height` methods.
#[cfg(loom)]
pub(super) fn random_height() -> usize {
    2
}

// The public API's tests are in tests/skiplist_basics.rs.
#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn random_heights_are_geometric() {
        let n = if cfg!(miri) { 2_000 } else { 200_000 };
        let mut counts = [0usize; MAX_HEIGHT + 1];
        for _ in 0..n {
            counts[random_height()] += 1;
        }
        assert_eq!(counts[0], 0);
        // P(height >= 2) = 1/2, P(height >= 3) = 1/4.
        let at_least = |h: usize| counts[h..].iter().sum::<usize>() as f64 / n as f64;
        assert!((at_least(2) - 0.5).abs() < 0.04, "{counts:?}");
        assert!((at_least(3) - 0.25).abs() < 0.03, "{counts:?}");
    }
}
