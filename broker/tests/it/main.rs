//! Integration tests: a real `gregor` process on loopback, driven over TCP.

mod bad_input;
mod golden;
mod protocol;
mod storage_cli;
mod support;
mod versions;
