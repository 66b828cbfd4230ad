//! Leader/follower replication: the ISR / high-watermark rules a partition leader applies to
//! follower progress ([`isr`]), the follower's requests and truncation rule ([`fetcher`]), and
//! the per-leader fetcher tasks of this node ([`manager`]). (The leader-epoch cache lives with
//! the log, in [`crate::log::epoch_cache`].)

pub mod fetcher;
pub mod isr;
pub mod manager;
