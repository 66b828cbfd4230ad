//! Leader/follower replication building blocks: the ISR / high-watermark rules a partition
//! leader applies to follower progress. (The leader-epoch cache lives with the log, in
//! [`crate::log::epoch_cache`].) The follower fetchers and the controller wiring build on these.

pub mod isr;
