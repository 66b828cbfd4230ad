//! Golden bytes: request frames captured from real clients (kafka-python 3.0.12, librdkafka
//! 2.16.1 via confluent-kafka, librdkafka via kcat, Apache Kafka 4.3.1's Java client and CLI
//! tools) by `scripts/capture-frames.py`. Each must decode at its key and version, through the
//! decoder the server runs (`gregor::protocol::decode_header` then `decode_body`), and encode
//! back to the same bytes.

use std::path::Path;

use bytes::Bytes;
use gregor::protocol::{decode_request, reencode_request};

#[test]
fn captured_client_requests_decode_and_round_trip_byte_for_byte() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden");
    let mut checked = 0;
    let mut clients = std::collections::BTreeSet::new();
    for entry in std::fs::read_dir(&dir).expect("golden dir") {
        let path = entry.expect("entry").path();
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_string();
        let Some(stem) = name.strip_suffix(".bin") else {
            continue;
        };
        // <client>-k<key>-v<version>
        let mut parts = stem.rsplitn(3, '-');
        let version: i16 = parts
            .next()
            .and_then(|v| v.strip_prefix('v'))
            .and_then(|v| v.parse().ok())
            .expect("version in name");
        let key: i16 = parts
            .next()
            .and_then(|k| k.strip_prefix('k'))
            .and_then(|k| k.parse().ok())
            .expect("key in name");
        clients.insert(parts.next().unwrap_or_default().to_string());
        let frame = Bytes::from(std::fs::read(&path).expect("read golden"));
        if !gregor::protocol::serves(
            kafka_protocol::messages::ApiKey::try_from(key).expect("key"),
            version,
        ) {
            // e.g. ApiVersions v4: answered with the v0 downgrade, not decoded.
            assert!(decode_request(frame).is_err(), "{name}");
            continue;
        }
        let (header, request) =
            decode_request(frame.clone()).unwrap_or_else(|e| panic!("{name}: {e}"));
        let (k, v) = (header.api.key, header.version);
        assert_eq!((k as i16, v), (key, version), "{name}");
        assert_eq!(request.key(), k, "{name}");
        let again = reencode_request(frame.clone()).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(again, frame, "{name} does not round-trip");
        checked += 1;
    }
    assert!(checked >= 40, "only {checked} golden frames");
    for c in ["java", "kafka-python", "librdkafka", "kcat"] {
        assert!(clients.contains(c), "no golden frames from {c}");
    }
}
