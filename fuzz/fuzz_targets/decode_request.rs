//! Fuzzes request decoding exactly as the server does it (header, version check, body).
//! Run: `cargo fuzz run decode_request` (see README; `--sanitizer none` works on stable).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = gregor::protocol::decode_request(bytes::Bytes::copy_from_slice(data));
});
