//! The tools around [`vvmalloc`]: what measures and exercises the library,
//! kept out of the library itself.
//!
//! - `trace` (feature `trace`): malloc-lab style allocation traces, a
//!   seeded generator of workload traces and a validating replayer against
//!   any allocator; the binary records of the preloadable library's
//!   recorder.
//! - `workloads` (feature `peers`, on by default): the classic allocator
//!   stress tests re-implemented, and the registry of the allocators they
//!   drive: vvmalloc's heaps and the peers (glibc, jemalloc, mimalloc,
//!   snmalloc).
//! - [`bench`](mod@bench): what the structure benchmarks drive (the project's
//!   structures under each reclamation scheme and the peers a user would
//!   otherwise reach for, behind two small traits) and how they time
//!   threads.
//! - [`ledger`]: values that count their drops, for the stress tests.
//!
//! The programs are this crate's examples, run from the workspace root:
//! `cargo run --release --example alloc_demo` (the allocator against glibc),
//! `--example mdriver` (the trace driver), `--example report` (the benchmark
//! report, `docs/results/`), `--example soak` (a long mixed run); the
//! criterion benches are its benches (`cargo bench -p vvmalloc-tools`).
//!
//! The loom, Miri and sanitizer builds have neither the peers nor the
//! modules that need them.

#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs, unreachable_pub)]

pub mod bench;
pub mod ledger;
#[cfg(feature = "trace")]
pub mod trace;
#[cfg(all(feature = "peers", not(any(loom, miri, vvmalloc_sanitize))))]
pub mod workloads;
