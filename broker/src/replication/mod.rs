//! Leader/follower replication building blocks: the leader-epoch cache that makes truncation
//! after a leader change safe, and the ISR / high-watermark rules a partition leader applies
//! to follower progress. The follower fetchers and the controller wiring build on these.

pub mod epoch_cache;
pub mod isr;
