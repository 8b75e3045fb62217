//! A node of the list, its tagged `next` pointer and its lifetime.

use crate::raw::{Liveness, Retirable};
use crate::sync::AtomicPtr;

pub(super) struct Node<K, V> {
    pub(super) key: K,
    pub(super) value: V,
    /// The successor, with the node's mark in bit 0.
    pub(super) next: AtomicPtr<Node<K, V>>,
    pub(super) liveness: Liveness,
}

/// The mark bit of a `next` pointer. Nodes are at least pointer-aligned, so
/// bits 0 and 1 of a node's address are always zero.
pub(super) const MARK: usize = 1;
/// With `MARK`, on a node's `next`: the node was removed by `pop_first`.
pub(super) const POPPED: usize = 2;
/// On `head` only: the first node is reserved by a `pop_first`.
pub(super) const RESERVED: usize = 2;
/// Every tag bit.
pub(super) const TAGS: usize = 3;

#[inline(always)]
pub(super) fn is_marked<T>(p: *mut T) -> bool {
    p.addr() & MARK != 0
}

#[inline(always)]
pub(super) fn marked<T>(p: *mut T) -> *mut T {
    p.map_addr(|a| a | MARK)
}

#[inline(always)]
pub(super) fn unmarked<T>(p: *mut T) -> *mut T {
    p.map_addr(|a| a & !TAGS)
}

// SAFETY: `reclaim` drops the node's key and value and frees its memory; the
// scheme calls it once no thread can reach the node. `Guard::retire` requires
// `Node: Send`, which holds exactly when `K: Send` and `V: Send`, the bounds
// under which dropping them on another thread is allowed.
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
                core::ptr::drop_in_place(&mut (*this).key);
                core::ptr::drop_in_place(&mut (*this).value);
            }
        }
        #[cfg(not(loom))]
        // SAFETY: nodes come from `Box::into_raw` in `insert`; conditions 1-2.
        drop(unsafe { Box::from_raw(this) });
    }
}
