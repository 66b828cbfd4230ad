//! The wire: size-prefixed frames, the table of APIs Gregor serves, and the one request
//! decoder the server, the fuzz target and the golden tests share. The codec for headers and
//! bodies is kafka-protocol (patched, see `vendor/kafka-protocol.patch`).
//!
//! - [`frame`]: "is a whole frame buffered?", with no I/O.
//! - [`SUPPORTED_APIS`] and [`ApiRequest`]: expanded from one table (`apis.rs`).
//! - [`decode_header`] then [`decode_body`]: what `server::dispatch` runs on every frame;
//!   [`decode_request`] is the two in a row.

mod apis;
mod decode;
pub mod fields;
pub mod frame;

pub(crate) use apis::served_apis;
pub use apis::{serves, supported, ApiRange, ApiRequest, SUPPORTED_APIS};
pub use decode::{
    decode_body, decode_header, decode_request, reencode_request, DecodeError, Header,
};
