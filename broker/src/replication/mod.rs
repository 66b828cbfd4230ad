//! Leader/follower replication: the ISR / high-watermark rules a partition leader applies to
//! follower progress, and the follower's fetcher. (The leader-epoch cache lives with the log, in
//! [`crate::log::epoch_cache`].) The controller wiring builds on these.

pub mod fetcher;
pub mod isr;
