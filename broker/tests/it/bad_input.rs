//! Hostile and malformed input: the broker answers or closes that one connection, never
//! crashes, never balloons memory, and ordinary clients keep working.

use std::io::Write;
use std::net::TcpStream;
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::Decodable;

use crate::support::{raw_header, Broker, Conn};

fn still_serves(b: &mut Broker) {
    assert!(b.alive(), "broker process died");
    let mut c = Conn::connect(b.addr);
    let r = c.call(1, &MetadataRequest::default().with_topics(Some(vec![])));
    assert_eq!(r.brokers.len(), 1);
}

/// The 8 bytes from kafka-protocol-rs PR #152 (api key 3, version 0, then a Metadata v0 body
/// claiming 54 million topics) and the same body with an i32::MAX count: decoding must fail
/// cleanly. Unpatched 0.18 pre-allocates count * 72 bytes and aborts on the second.
#[test]
fn killer_array_counts_fail_to_decode_instead_of_aborting() {
    let killer: [u8; 8] = [0x03, 0x00, 0x00, 0x03, 0x3c, 0x0c, 0x00, 0xb6];
    let mut body = Bytes::copy_from_slice(&killer[3..]);
    assert!(MetadataRequest::decode(&mut body, 0).is_err());
    let mut huge = Bytes::from_static(&[0x7f, 0xff, 0xff, 0xff, 0x00]);
    assert!(MetadataRequest::decode(&mut huge, 0).is_err());
    let mut compact = Bytes::from_static(&[0xff, 0xff, 0xff, 0xff, 0x0f, 0x00]);
    assert!(MetadataRequest::decode(&mut compact, 9).is_err());
}

#[test]
fn killer_request_on_the_wire_closes_only_that_connection() {
    let mut b = Broker::start();
    let mut c = Conn::connect(b.addr);
    let mut frame = raw_header(3, 0, 1);
    frame.extend_from_slice(&[0x03, 0x3c, 0x0c, 0x00, 0xb6]);
    c.send_raw(&frame);
    assert!(c.closed_by_peer());
    let mut frame = raw_header(3, 0, 2);
    frame.extend_from_slice(&[0x7f, 0xff, 0xff, 0xff]);
    let mut c = Conn::connect(b.addr);
    c.send_raw(&frame);
    assert!(c.closed_by_peer());
    still_serves(&mut b);
}

#[test]
fn garbage_truncated_and_oversized_frames_close_the_connection() {
    let mut b = Broker::start();
    // Garbage: an unknown API key.
    let mut c = Conn::connect(b.addr);
    c.send_raw(&[0x7f, 0x7f, 0, 0, 0, 0, 0, 1, 0xde, 0xad]);
    assert!(c.closed_by_peer());
    // Oversized: a 2 GiB size prefix is refused before anything is allocated for it.
    let mut c2 = Conn::connect(b.addr);
    c2.stream
        .write_all(&[0x7f, 0xff, 0xff, 0xff, 1, 2, 3])
        .expect("write");
    assert!(c2.closed_by_peer());
    // Negative size.
    let mut c3 = Conn::connect(b.addr);
    c3.stream
        .write_all(&[0xff, 0xff, 0xff, 0xfe])
        .expect("write");
    assert!(c3.closed_by_peer());
    // Truncated: a header shorter than 8 bytes.
    let mut c4 = Conn::connect(b.addr);
    c4.send_raw(&[0, 3, 0]);
    assert!(c4.closed_by_peer());
    // Truncated body: a frame that declares more than is ever sent, then the peer hangs up.
    let mut s = TcpStream::connect(b.addr).expect("connect");
    s.write_all(&[0, 0, 0, 100, 0, 3, 0, 1]).expect("write");
    drop(s);
    // A valid header with an undecodable body.
    let mut c5 = Conn::connect(b.addr);
    let mut frame = raw_header(19, 2, 1);
    frame.extend_from_slice(&[0xff]);
    c5.send_raw(&frame);
    assert!(c5.closed_by_peer());
    // Unsupported version of a served API (Produce v2, refused like Kafka 4 does).
    let mut c6 = Conn::connect(b.addr);
    c6.send_raw(&raw_header(0, 2, 1));
    assert!(c6.closed_by_peer());
    still_serves(&mut b);
}

#[test]
fn random_frames_never_crash_the_broker() {
    let mut b = Broker::start();
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for i in 0..300 {
        let mut c = Conn::connect(b.addr);
        c.stream
            .set_read_timeout(Some(Duration::from_millis(500)))
            .expect("timeout");
        let len = (next() % 64) as usize;
        let key = (next() % 70) as i16;
        let version = (next() % 14) as i16;
        let mut frame = raw_header(key, version, i);
        frame.extend((0..len).map(|_| next() as u8));
        c.send_raw(&frame);
        // Either a response or a close; both are fine, a crash is not.
        let _ = c.read_frame();
    }
    still_serves(&mut b);
}

#[test]
fn a_thousand_idle_connections_neither_crash_nor_balloon_memory() {
    let mut b = Broker::start();
    let before = b.rss_kib();
    let conns: Vec<TcpStream> = (0..1000)
        .map(|_| TcpStream::connect(b.addr).expect("connect"))
        .collect();
    still_serves(&mut b);
    let after = b.rss_kib();
    assert!(
        after < before + 64 * 1024,
        "1000 idle connections grew RSS from {before} KiB to {after} KiB"
    );
    drop(conns);
    still_serves(&mut b);
}
