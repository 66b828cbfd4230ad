//! Request decoding, exactly as the server does it: the fixed header fields, the served-API
//! and version check, the rest of the header, then the body. Every failure is a
//! [`DecodeError`] value; nothing from the network can panic here.

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader};
use kafka_protocol::protocol::{Decodable, Encodable};

use super::apis::{supported, ApiRange, ApiRequest};

/// Why a request frame does not decode. The `Display` text is the reason the server logs when
/// it closes the connection.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    /// Fewer than the 8 fixed header bytes (key, version, correlation id).
    #[error("request of {0} bytes has no header")]
    Short(usize),
    /// An API key Kafka does not define.
    #[error("unknown API key {0}")]
    UnknownApi(i16),
    /// A known API that Gregor does not serve, or a version of it Gregor does not serve.
    #[error("unsupported version {version} of {key:?} (client id {client_id:?})")]
    UnsupportedVersion {
        /// The API asked for.
        key: ApiKey,
        /// The version asked for.
        version: i16,
        /// From the fixed header fields: ApiVersions answers an unsupported version anyway,
        /// so the client can retry with one Gregor lists.
        correlation_id: i32,
        /// The client id that follows them (empty when absent or unreadable), so the log line
        /// about the refusal names the client.
        client_id: String,
    },
    /// Header bytes after the fixed fields (client id, tagged fields) the codec rejects.
    #[error("undecodable request header: {0}")]
    Header(String),
    /// Body bytes the codec rejects.
    #[error("undecodable request body: {0}")]
    Body(String),
    /// A decoded request the codec cannot encode again (only from [`reencode_request`]).
    #[error("re-encoding request: {0}")]
    Reencode(String),
}

/// The decoded header of a request for an API and version Gregor serves.
#[derive(Debug, Clone, PartialEq)]
pub struct Header {
    /// The API's row of the table: key, metric label and served versions.
    pub api: ApiRange,
    /// The request version, one `api` serves.
    pub version: i16,
    /// The header as the client sent it (correlation id, client id, tagged fields), kept
    /// whole so a request re-encodes byte for byte.
    pub fields: RequestHeader,
}

impl Header {
    /// The correlation id, echoed in the response header.
    pub fn correlation_id(&self) -> i32 {
        self.fields.correlation_id
    }

    /// The client id, empty when the client sent none.
    pub fn client_id(&self) -> String {
        self.fields
            .client_id
            .as_ref()
            .map(|s| s.to_string())
            .unwrap_or_default()
    }

    fn header_version(&self) -> i16 {
        self.api.key.request_header_version(self.version)
    }
}

/// Decodes the request header at the front of `frame` (a frame body, without its size
/// prefix) and leaves `frame` at the request body.
///
/// The key, version and correlation id sit at fixed offsets, so they are checked before the
/// rest of the header, whose layout depends on them.
pub fn decode_header(frame: &mut Bytes) -> Result<Header, DecodeError> {
    let &[k0, k1, v0, v1, c0, c1, c2, c3, ..] = &frame[..] else {
        return Err(DecodeError::Short(frame.len()));
    };
    let raw_key = i16::from_be_bytes([k0, k1]);
    let version = i16::from_be_bytes([v0, v1]);
    let key = ApiKey::try_from(raw_key).map_err(|()| DecodeError::UnknownApi(raw_key))?;
    let Some(api) = supported(key).filter(|a| a.serves(version)) else {
        return Err(DecodeError::UnsupportedVersion {
            key,
            version,
            correlation_id: i32::from_be_bytes([c0, c1, c2, c3]),
            client_id: raw_client_id(&frame[8..]),
        });
    };
    let fields = RequestHeader::decode(frame, key.request_header_version(version))
        .map_err(|e| DecodeError::Header(e.to_string()))?;
    Ok(Header {
        api,
        version,
        fields,
    })
}

/// The client id at the start of `rest` (every request header from v1 has it there, as an
/// int16-length string), or "" when it is null or cut short.
fn raw_client_id(rest: &[u8]) -> String {
    let &[l0, l1, ref text @ ..] = rest else {
        return String::new();
    };
    usize::try_from(i16::from_be_bytes([l0, l1]))
        .ok()
        .and_then(|len| text.get(..len))
        .map(|bytes| String::from_utf8_lossy(bytes).into_owned())
        .unwrap_or_default()
}

/// Decodes the request body that follows `header`.
pub fn decode_body(header: &Header, mut body: Bytes) -> Result<ApiRequest, DecodeError> {
    ApiRequest::decode(header.api.key, header.version, &mut body)
}

/// Decodes a whole frame body: [`decode_header`] then [`decode_body`], the two steps the
/// server runs (it times and labels the request between them). The fuzz target and the
/// golden tests drive this.
pub fn decode_request(mut frame: Bytes) -> Result<(Header, ApiRequest), DecodeError> {
    let header = decode_header(&mut frame)?;
    let request = decode_body(&header, frame)?;
    Ok((header, request))
}

/// Decodes a frame body and encodes it again at the same version: golden bytes from real
/// clients must survive this unchanged.
pub fn reencode_request(frame: Bytes) -> Result<Bytes, DecodeError> {
    let (header, request) = decode_request(frame)?;
    let mut out = BytesMut::new();
    header
        .fields
        .encode(&mut out, header.header_version())
        .map_err(|e| DecodeError::Reencode(e.to_string()))?;
    request.encode(&mut out, header.version)?;
    Ok(out.freeze())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::SUPPORTED_APIS;
    use kafka_protocol::messages::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn arbitrary_bytes_after_a_valid_key_and_version_never_panic(
            api in 0usize..SUPPORTED_APIS.len(),
            version_pick in 0i16..20,
            tail in proptest::collection::vec(any::<u8>(), 0..256),
        ) {
            let a = SUPPORTED_APIS[api];
            let version = a.min_served + version_pick % (a.max - a.min_served + 1);
            let mut frame = Vec::new();
            frame.extend_from_slice(&(a.key as i16).to_be_bytes());
            frame.extend_from_slice(&version.to_be_bytes());
            frame.extend_from_slice(&[0, 0, 0, 1]);
            frame.extend_from_slice(&tail);
            let _ = decode_request(Bytes::from(frame));
        }

        #[test]
        fn arbitrary_frames_never_panic(frame in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = decode_request(Bytes::from(frame));
        }
    }

    fn frame_of<R: kafka_protocol::protocol::Request>(version: i16, req: &R) -> Bytes {
        let key = ApiKey::try_from(R::KEY).expect("key");
        let mut b = bytes::BytesMut::new();
        RequestHeader::default()
            .with_request_api_key(R::KEY)
            .with_request_api_version(version)
            .with_correlation_id(7)
            .with_client_id(Some(kafka_protocol::protocol::StrBytes::from_static_str(
                "prop",
            )))
            .encode(&mut b, key.request_header_version(version))
            .expect("header");
        req.encode(&mut b, version).expect("body");
        b.freeze()
    }

    proptest! {
        #[test]
        fn produce_requests_round_trip_through_the_server_decoder(
            version in 3i16..=9,
            acks in -1i16..=1,
            topics in proptest::collection::vec(
                ("[a-z._-]{1,40}", proptest::collection::vec((0i32..1000, proptest::collection::vec(any::<u8>(), 0..128)), 0..4)),
                0..4,
            ),
        ) {
            let req = ProduceRequest::default()
                .with_acks(acks)
                .with_timeout_ms(30_000)
                .with_topic_data(topics.into_iter().map(|(name, parts)| {
                    produce_request::TopicProduceData::default()
                        .with_name(TopicName(kafka_protocol::protocol::StrBytes::from_string(name)))
                        .with_partition_data(parts.into_iter().map(|(i, rec)| {
                            produce_request::PartitionProduceData::default()
                                .with_index(i)
                                .with_records(Some(Bytes::from(rec)))
                        }).collect())
                }).collect());
            let frame = frame_of(version, &req);
            prop_assert_eq!(
                decode_request(frame.clone()).map(|(h, _)| (h.api.key, h.version)),
                Ok((ApiKey::Produce, version))
            );
            prop_assert_eq!(reencode_request(frame.clone()), Ok(frame));
        }

        #[test]
        fn metadata_requests_round_trip_through_the_server_decoder(
            version in 0i16..=12,
            names in proptest::collection::vec("[a-zA-Z0-9._-]{1,60}", 0..8),
            auto_create in any::<bool>(),
        ) {
            let topics = names.into_iter().map(|n| {
                metadata_request::MetadataRequestTopic::default()
                    .with_name(Some(TopicName(kafka_protocol::protocol::StrBytes::from_string(n))))
            }).collect();
            let req = MetadataRequest::default()
                .with_topics(Some(topics))
                .with_allow_auto_topic_creation(auto_create || version < 4);
            let frame = frame_of(version, &req);
            prop_assert_eq!(reencode_request(frame.clone()), Ok(frame));
        }
    }

    #[test]
    fn the_eight_byte_killer_frame_is_an_error() {
        // api key 3, version 0, correlation id, null client id, then 0x033c0c00 topics.
        let frame = Bytes::from_static(&[
            0, 3, 0, 0, 0, 0, 0, 1, 0xff, 0xff, 0x03, 0x3c, 0x0c, 0x00, 0xb6,
        ]);
        assert!(matches!(decode_request(frame), Err(DecodeError::Body(_))));
    }
}
