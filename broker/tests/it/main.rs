//! Integration tests: a real `gregor` process on loopback, driven over TCP.

mod bad_input;
mod checkpoint;
mod crash;
mod golden;
mod protocol;
mod retention;
mod share;
mod storage_cli;
mod support;
mod transactions;
mod versions;
