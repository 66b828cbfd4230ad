//! Pipelined connections, through `connection::serve` over an in-memory stream: the requests
//! behind an acks=all produce waiting for its in-sync replicas are served meanwhile, and every
//! answer still goes out in request order.

use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Decodable, Encodable, Request, StrBytes};
use proptest::prelude::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
use tokio_util::sync::CancellationToken;

use super::tests::{add_replicated, broker_over, call, fetch_req, produce_req, two_brokers_image};
use super::{connection, Broker, ListenerInfo};

const PRODUCE_VERSION: i16 = 9;
const FETCH_VERSION: i16 = 11;
const METADATA_VERSION: i16 = 9;
const API_VERSIONS_VERSION: i16 = 2;

/// A request a test sends on the connection.
#[derive(Clone, Copy, Debug)]
enum Req {
    /// acks=all to `replicated-0`, whose ISR is [1, 2]: answered once follower 2 has it.
    ProduceAll,
    /// acks=1 to `here-0`, which node 1 leads alone.
    ProduceOne,
    /// acks=0 to `here-0`: never answered.
    ProduceNone,
    /// A consumer's fetch of `here-0`.
    Fetch,
    Metadata,
    ApiVersions,
}

impl Req {
    /// The request's frame (size prefix included), and the API of its answer (`None`: no
    /// answer comes).
    fn frame(self, correlation_id: i32) -> (Vec<u8>, Option<ApiKey>) {
        let produce =
            |topic, acks| frame(correlation_id, PRODUCE_VERSION, &produce_req(topic, acks));
        match self {
            Req::ProduceAll => (produce("replicated", -1), Some(ApiKey::Produce)),
            Req::ProduceOne => (produce("here", 1), Some(ApiKey::Produce)),
            Req::ProduceNone => (produce("here", 0), None),
            Req::Fetch => (
                frame(correlation_id, FETCH_VERSION, &fetch_req("here", 0, -1)),
                Some(ApiKey::Fetch),
            ),
            Req::Metadata => (
                frame(
                    correlation_id,
                    METADATA_VERSION,
                    &MetadataRequest::default(),
                ),
                Some(ApiKey::Metadata),
            ),
            Req::ApiVersions => (
                frame(
                    correlation_id,
                    API_VERSIONS_VERSION,
                    &ApiVersionsRequest::default(),
                ),
                Some(ApiKey::ApiVersions),
            ),
        }
    }
}

/// `req` as a size-prefixed request frame.
fn frame<R: Request>(correlation_id: i32, version: i16, req: &R) -> Vec<u8> {
    let key = ApiKey::try_from(R::KEY).expect("key");
    let mut body = BytesMut::new();
    RequestHeader::default()
        .with_request_api_key(R::KEY)
        .with_request_api_version(version)
        .with_correlation_id(correlation_id)
        .with_client_id(Some(StrBytes::from_static_str("pipeline")))
        .encode(&mut body, key.request_header_version(version))
        .expect("header");
    req.encode(&mut body, version).expect("body");
    let mut f = (body.len() as i32).to_be_bytes().to_vec();
    f.extend_from_slice(&body);
    f
}

/// A broker (node 1) leading `here-0` alone and `replicated-0` with follower 2 in its ISR.
fn broker(dir: &std::path::Path) -> Arc<Broker> {
    let mut image = two_brokers_image();
    add_replicated(&mut image, vec![1, 2], "2");
    broker_over(dir, &image)
}

/// A connection to `b` served by `connection::serve`: the client's end.
fn connect(b: &Arc<Broker>, shutdown: &CancellationToken) -> DuplexStream {
    let (client, server) = tokio::io::duplex(1 << 20);
    let info = ListenerInfo {
        name: "PLAINTEXT".into(),
        sasl: None,
        principal: None,
    };
    let peer = "127.0.0.1:1".parse().expect("addr");
    tokio::spawn(connection::serve(
        Arc::clone(b),
        server,
        peer,
        info,
        shutdown.clone(),
    ));
    client
}

/// The next answer on `client`: its correlation id, and its body decoded as `api`'s response
/// (checked: a produce's partitions answer no error).
async fn answer(client: &mut DuplexStream, api: ApiKey) -> i32 {
    let size = client.read_i32().await.expect("an answer's size");
    let mut body = vec![0; size as usize];
    client.read_exact(&mut body).await.expect("an answer");
    let mut body = Bytes::from(body);
    let version = match api {
        ApiKey::Produce => PRODUCE_VERSION,
        ApiKey::Fetch => FETCH_VERSION,
        ApiKey::Metadata => METADATA_VERSION,
        _ => API_VERSIONS_VERSION,
    };
    let header = ResponseHeader::decode(&mut body, api.response_header_version(version))
        .expect("response header");
    match api {
        ApiKey::Produce => {
            let r = ProduceResponse::decode(&mut body, version).expect("produce response");
            let p = &r.responses[0].partition_responses[0];
            assert_eq!(p.error_code, 0, "produce {}: {p:?}", header.correlation_id);
        }
        ApiKey::Fetch => {
            FetchResponse::decode(&mut body, version).expect("fetch response");
        }
        ApiKey::Metadata => {
            MetadataResponse::decode(&mut body, version).expect("metadata response");
        }
        _ => {
            ApiVersionsResponse::decode(&mut body, version).expect("api versions response");
        }
    }
    header.correlation_id
}

/// Follower 2 of `replicated-0`, fetching at the leader's log end every few milliseconds until
/// `stop`: the high watermark follows the log end, so acks=all produces complete.
fn follow(b: &Arc<Broker>, stop: &CancellationToken) {
    let (b, stop) = (Arc::clone(b), stop.clone());
    tokio::spawn(async move {
        let p = b.cluster.partition("replicated", 0).expect("replicated-0");
        while !stop.is_cancelled() {
            call(
                &b,
                FETCH_VERSION,
                fetch_req("replicated", p.log_end_offset(), 2),
            )
            .await;
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_acks_all_produce_waiting_for_its_isr_does_not_hold_up_the_requests_behind_it() {
    let d = tempfile::tempdir().expect("tempdir");
    let b = broker(d.path());
    let shutdown = CancellationToken::new();
    let mut client = connect(&b, &shutdown);
    for (id, r) in [
        (1, Req::ProduceAll),
        (2, Req::ProduceOne),
        (3, Req::Metadata),
    ] {
        client.write_all(&r.frame(id).0).await.expect("send");
    }
    // The acks=1 produce behind the waiting one is appended at once.
    let here = b.cluster.partition("here", 0).expect("here-0");
    // Well inside the waiting produce's 10 s timeout.
    tokio::time::timeout(Duration::from_secs(3), async {
        while here.log_end_offset() < 1 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("the request behind the acks=all produce was served while it waited");
    // But no answer overtakes the first one's.
    let mut byte = [0u8; 1];
    assert!(
        tokio::time::timeout(Duration::from_millis(300), client.read_exact(&mut byte))
            .await
            .is_err(),
        "an answer went out before the acks=all produce's"
    );
    // Follower 2 catches up: all three answers go out, in request order.
    call(&b, FETCH_VERSION, fetch_req("replicated", 1, 2)).await;
    let mut ids = Vec::new();
    for api in [ApiKey::Produce, ApiKey::Produce, ApiKey::Metadata] {
        ids.push(answer(&mut client, api).await);
    }
    assert_eq!(ids, [1, 2, 3]);
    assert_eq!(
        b.cluster
            .partition("replicated", 0)
            .unwrap()
            .high_watermark(),
        1
    );
    shutdown.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_finished_before_a_long_poll_behind_it_goes_out_at_once() {
    let d = tempfile::tempdir().expect("tempdir");
    let b = broker(d.path());
    let shutdown = CancellationToken::new();
    let mut client = connect(&b, &shutdown);
    client
        .write_all(&Req::ProduceAll.frame(1).0)
        .await
        .expect("send");
    // A consumer's fetch of the empty `here-0` that long-polls for 5 s.
    let long_poll = fetch_req("here", 0, -1)
        .with_max_wait_ms(5_000)
        .with_min_bytes(1);
    client
        .write_all(&frame(2, FETCH_VERSION, &long_poll))
        .await
        .expect("send");
    tokio::time::sleep(Duration::from_millis(200)).await;
    // Follower 2 catches up while the fetch waits: the produce's answer goes out now, not after
    // the fetch's 5 s.
    call(&b, FETCH_VERSION, fetch_req("replicated", 1, 2)).await;
    let id = tokio::time::timeout(Duration::from_secs(2), answer(&mut client, ApiKey::Produce))
        .await
        .expect("the produce's answer did not wait for the long poll behind it");
    assert_eq!(id, 1);
    let id = tokio::time::timeout(Duration::from_secs(10), answer(&mut client, ApiKey::Fetch))
        .await
        .expect("the fetch's answer");
    assert_eq!(id, 2);
    shutdown.cancel();
}

fn any_request() -> impl Strategy<Value = Req> {
    prop_oneof![
        3 => Just(Req::ProduceAll),
        2 => Just(Req::ProduceOne),
        1 => Just(Req::ProduceNone),
        2 => Just(Req::Fetch),
        1 => Just(Req::Metadata),
        1 => Just(Req::ApiVersions),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// Any mix of produces (acks=all waiting on a follower, acks=1, acks=0), fetches and
    /// metadata sent back to back on one connection: every request but the acks=0 produces is
    /// answered, strictly in request order, and every produce is appended once.
    #[test]
    fn answers_go_out_in_request_order(requests in prop::collection::vec(any_request(), 1..48)) {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async {
            let d = tempfile::tempdir().expect("tempdir");
            let b = broker(d.path());
            let shutdown = CancellationToken::new();
            follow(&b, &shutdown);
            let mut client = connect(&b, &shutdown);
            let mut sent = Vec::new();
            let mut expected = Vec::new();
            for (id, r) in (1..).zip(&requests) {
                let (frame, api) = r.frame(id);
                sent.extend(frame);
                expected.extend(api.map(|api| (id, api)));
            }
            // A last request, whose answer must come last: nothing answers an acks=0 produce.
            let last = requests.len() as i32 + 1;
            sent.extend(Req::ApiVersions.frame(last).0);
            expected.push((last, ApiKey::ApiVersions));
            client.write_all(&sent).await.expect("send");
            let mut ids = Vec::new();
            for &(_, api) in &expected {
                let id = tokio::time::timeout(Duration::from_secs(20), answer(&mut client, api))
                    .await
                    .expect("every answer within 20 s");
                ids.push(id);
            }
            let want: Vec<i32> = expected.iter().map(|&(id, _)| id).collect();
            assert_eq!(ids, want, "answers out of request order for {requests:?}");
            let count = |kind: fn(&Req) -> bool| requests.iter().filter(|r| kind(r)).count() as i64;
            let here = b.cluster.partition("here", 0).expect("here-0");
            let replicated = b.cluster.partition("replicated", 0).expect("replicated-0");
            assert_eq!(
                here.log_end_offset(),
                count(|r| matches!(r, Req::ProduceOne | Req::ProduceNone))
            );
            assert_eq!(
                replicated.log_end_offset(),
                count(|r| matches!(r, Req::ProduceAll))
            );
            shutdown.cancel();
        });
    }
}
