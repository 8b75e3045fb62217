//! Shared helpers of the integration tests: the linearizability checker,
//! and (from `vvmalloc_tools::ledger`, shared with the soak test) the
//! values that count their drops and the map stress tests' logs and check.
#![allow(dead_code)]

pub(crate) use vvmalloc_tools::bench::xorshift;
// Each test file uses a part of these.
#[allow(unused_imports)]
pub(crate) use vvmalloc_tools::ledger::{check_net_effect, DropLedger, Log, Run, Tracked};

pub(crate) mod lincheck;
