//! Client quota configs through the request path: AlterClientQuotas commits through the
//! metadata log (or only validates), DescribeClientQuotas filters what was committed.

use kafka_protocol::messages::alter_client_quotas_request::{EntityData, EntryData, OpData};
use kafka_protocol::messages::describe_client_quotas_request::ComponentData;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use super::tests::{broker, call};

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

fn entry(entity: &[(&str, Option<&str>)], ops: &[(&str, f64, bool)]) -> EntryData {
    EntryData::default()
        .with_entity(
            entity
                .iter()
                .map(|(t, n)| {
                    EntityData::default()
                        .with_entity_type(s(t))
                        .with_entity_name(n.map(s))
                })
                .collect(),
        )
        .with_ops(
            ops.iter()
                .map(|(k, v, remove)| {
                    OpData::default()
                        .with_key(s(k))
                        .with_value(*v)
                        .with_remove(*remove)
                })
                .collect(),
        )
}

fn users(match_type: i8, name: Option<&str>, strict: bool) -> DescribeClientQuotasRequest {
    DescribeClientQuotasRequest::default()
        .with_components(vec![ComponentData::default()
            .with_entity_type(s("user"))
            .with_match_type(match_type)
            .with_match(name.map(s))])
        .with_strict(strict)
}

/// The described entries as `(entity, values)` strings, sorted.
fn described(r: &DescribeClientQuotasResponse) -> Vec<String> {
    let mut out: Vec<String> = r
        .entries
        .as_ref()
        .expect("entries")
        .iter()
        .map(|e| {
            let entity: Vec<String> = e
                .entity
                .iter()
                .map(|c| {
                    format!(
                        "{}={}",
                        &*c.entity_type,
                        c.entity_name.as_deref().unwrap_or("<default>")
                    )
                })
                .collect();
            let values: Vec<String> = e
                .values
                .iter()
                .map(|v| format!("{}={}", &*v.key, v.value))
                .collect();
            format!("{} {}", entity.join(","), values.join(","))
        })
        .collect();
    out.sort();
    out
}

#[tokio::test]
async fn quotas_commit_per_entry_and_describe_by_filter() {
    let d = tempfile::tempdir().expect("tempdir");
    let b = broker(d.path());
    let r = call(
        &b,
        1,
        AlterClientQuotasRequest::default().with_entries(vec![
            entry(
                &[("user", Some("alice"))],
                &[("producer_byte_rate", 1024.0, false)],
            ),
            entry(&[("user", None)], &[("consumer_byte_rate", 2048.0, false)]),
            entry(
                &[("user", Some("alice")), ("client-id", Some("app"))],
                &[("request_percentage", 12.5, false)],
            ),
            entry(&[("user", Some("bob"))], &[("foo_rate", 1.0, false)]),
            entry(
                &[("user", Some("bob"))],
                &[("producer_byte_rate", 10.5, false)],
            ),
            entry(
                &[("ip", Some("127.0.0.1"))],
                &[("connection_creation_rate", 10.0, false)],
            ),
        ]),
    )
    .await;
    let codes: Vec<i16> = r.entries.iter().map(|e| e.error_code).collect();
    let invalid = ResponseError::InvalidRequest.code();
    assert_eq!(codes, [0, 0, 0, invalid, invalid, 0]);
    assert_eq!(
        r.entries[3].error_message.as_deref(),
        Some("Invalid configuration key foo_rate")
    );

    let exact = call(&b, 1, users(0, Some("alice"), false)).await;
    assert_eq!(
        described(&exact),
        [
            "user=alice producer_byte_rate=1024",
            "user=alice,client-id=app request_percentage=12.5"
        ]
    );
    let strict = call(&b, 1, users(0, Some("alice"), true)).await;
    assert_eq!(described(&strict), ["user=alice producer_byte_rate=1024"]);
    let default = call(&b, 1, users(1, None, false)).await;
    assert_eq!(
        described(&default),
        ["user=<default> consumer_byte_rate=2048"]
    );
    let any = call(&b, 1, users(2, None, true)).await;
    assert_eq!(any.entries.as_ref().map(Vec::len), Some(2));
    let all = call(&b, 1, DescribeClientQuotasRequest::default()).await;
    assert_eq!(all.entries.as_ref().map(Vec::len), Some(4));

    // validate_only changes nothing; a removal does.
    let validate = AlterClientQuotasRequest::default()
        .with_entries(vec![entry(
            &[("user", Some("alice"))],
            &[("producer_byte_rate", 1.0, true)],
        )])
        .with_validate_only(true);
    assert_eq!(call(&b, 1, validate.clone()).await.entries[0].error_code, 0);
    assert_eq!(
        described(&call(&b, 1, users(0, Some("alice"), true)).await).len(),
        1
    );
    call(&b, 1, validate.with_validate_only(false)).await;
    assert!(described(&call(&b, 1, users(0, Some("alice"), true)).await).is_empty());

    let bad = call(
        &b,
        1,
        users(0, Some("a"), false).with_components(vec![
            ComponentData::default()
                .with_entity_type(s("user"))
                .with_match_type(2),
            ComponentData::default()
                .with_entity_type(s("user"))
                .with_match_type(2),
        ]),
    )
    .await;
    assert_eq!(bad.error_code, invalid);
    assert!(bad.entries.is_none());
}
