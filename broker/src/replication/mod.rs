//! Leader/follower replication at run time: the follower's requests and truncation rule
//! ([`fetcher`]) and the per-leader fetcher tasks of this node ([`manager`]). It sits above
//! [`crate::cluster`]: the ISR and high-watermark rules a partition leader applies to follower
//! progress are pure functions in [`crate::cluster::isr`], and the leader-epoch cache lives with
//! the log, in [`crate::log::epoch_cache`].

pub mod fetcher;
pub mod manager;
