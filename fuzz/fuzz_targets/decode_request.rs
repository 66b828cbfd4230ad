//! Fuzzes request decoding exactly as the server does it: `server::dispatch` runs
//! `protocol::decode_header` then `protocol::decode_body` on every frame, and
//! `decode_request` is those two in a row.
//! Run: `cargo fuzz run decode_request` (see README; `--sanitizer none` works on stable).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = gregor::protocol::decode_request(bytes::Bytes::copy_from_slice(data));
});
