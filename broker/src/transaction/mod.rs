//! Transactions (KIP-98): the coordinator of transactional ids, its records in
//! `__transaction_state`, and the markers it sends to partition leaders.

pub mod coordinator;
pub mod log;
mod markers;

pub use coordinator::{TransactionCoordinator, TxnMetadata};
