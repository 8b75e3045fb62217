//! Lock-free data structures over pluggable memory reclamation, model-checked
//! with loom, with a size-class allocator built on top of them.
//!
//! # Structures
//!
//! - [`TreiberStack`]: Treiber's lock-free LIFO stack.
//! - [`TakeAllStack`]: many threads push, a consumer takes everything at
//!   once with one swap (mimalloc's thread-free lists, Linux's `llist`); no
//!   reclamation scheme needed.
//! - [`List`] and [`ListSet`]: Harris's lock-free ordered list in Michael's
//!   form, an ordered map and set (and the allocator's address-ordered free
//!   index).
//! - [`SkipList`] and [`SkipSet`]: a lock-free skip list (Herlihy–Shavit /
//!   Fraser), the fast ordered map and the allocator's best-fit free index.
//!
//! Each is generic over a reclamation scheme `R` ([`reclaim::Epoch`] by
//! default, [`reclaim::Hazard`], or the [`reclaim::Leak`] baseline), chosen by
//! type parameter:
//!
//! ```
//! # if vvmalloc::LOOM_BUILD { return; }
//! use vvmalloc::reclaim::Hazard;
//! use vvmalloc::TreiberStack;
//!
//! let fast: TreiberStack<u64> = TreiberStack::new(); // epoch-based
//! let bounded: TreiberStack<u64, Hazard> = TreiberStack::new(); // hazard pointers
//! fast.push(1);
//! bounded.push(2);
//! assert_eq!(fast.pop().unwrap() + bounded.pop().unwrap(), 3);
//! ```
//!
//! # The allocator
//!
//! With the `heap` feature (on by default; `default-features = false`
//! leaves the crate with the structures and the reclamation schemes only,
//! and without the `libc` and `allocator-api2` dependencies):
//!
#![cfg_attr(
    feature = "heap",
    doc = "- [`heap`]: size-class heaps built from these structures: [`Heap`]
  instances and the [`VvMalloc`] global allocator."
)]
#![cfg_attr(
    not(feature = "heap"),
    doc = "- `heap`: size-class heaps built from these structures: `Heap`
  instances and the `VvMalloc` global allocator."
)]
//!
//! And always [`intrusive`]: the ABA-safe intrusive stack of the
//! allocator's central heaps.
//!
//! # Reclamation
//!
//! A node unlinked by one thread may still be read by another, so it can only
//! be freed later. [`reclaim`] explains the schemes, when to pick which, and
//! what a structure's own [`Domain`](reclaim::Domain) changes compared with
//! the process-wide one.
//!
//! # Checking
//!
//! Every atomic and cell of the crate comes through one shim, so that the
//! loom models in `loom_tests/` (run with `RUSTFLAGS="--cfg loom" cargo test`)
//! see all of them. Each model suite also runs a deliberately broken variant
//! and expects loom to catch it. The unit and stress tests run under Miri too.

#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs, unreachable_pub)]

#[cfg(feature = "heap")]
pub mod heap;
pub mod intrusive;
pub mod list;
pub mod raw;
pub mod reclaim;
pub mod skiplist;
pub mod stack;
mod stat;
mod sync;
pub mod take_all;

#[cfg(feature = "heap")]
pub use heap::{Heap, VvMalloc};
pub use intrusive::IntrusiveStack;
pub use list::{List, ListSet};
pub use skiplist::{SkipList, SkipSet};
pub use stack::TreiberStack;
pub use take_all::TakeAllStack;

/// Whether this build of the crate was made with `--cfg loom`.
///
/// Under `RUSTFLAGS="--cfg loom" cargo test`, rustdoc compiles the doctests
/// without that flag but links them against the loom build of the crate,
/// whose atomics work only inside `loom::model`. Each doctest returns early
/// when this is `true`, so both test commands pass.
#[doc(hidden)]
pub const LOOM_BUILD: bool = cfg!(loom);

/// The README's usage example, compiled and run as a doctest.
#[cfg(all(doctest, feature = "heap"))]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
