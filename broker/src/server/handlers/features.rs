//! Feature flags (KIP-584): the levels Gregor reports in ApiVersions, which
//! `kafka-features describe` shows, and UpdateFeatures, which can only confirm them: Gregor's
//! levels are fixed by what it implements, not chosen per cluster.

use kafka_protocol::messages::api_versions_response::{FinalizedFeatureKey, SupportedFeatureKey};
use kafka_protocol::messages::update_features_response::UpdatableFeatureResult;
use kafka_protocol::messages::*;
use kafka_protocol::ResponseError;

use crate::authz::{Operation, Resource};
use crate::server::dispatch::{sb, Ctx};

/// One feature: its supported range and the level in force (0: off, not finalized).
struct Feature {
    name: &'static str,
    min: i16,
    max: i16,
    level: i16,
}

/// What Gregor implements. `metadata.version` 25 is Kafka's `4.0-IV3`: the client protocol of
/// Kafka 4.0, which Gregor serves (from 7, `3.3-IV3`, the first KRaft level). The static
/// voter set is `kraft.version` 0; the KIP-848 consumer group protocol is `group.version` 1;
/// KIP-890 part 2 transactions (an epoch per transaction, partitions added by producing) are
/// `transaction.version` 2, which Kafka 4.x clients take up when it is finalized. Share groups
/// (KIP-932) are `share.version` 1.
const FEATURES: [Feature; 5] = [
    Feature {
        name: "metadata.version",
        min: 7,
        max: 25,
        level: 25,
    },
    Feature {
        name: "kraft.version",
        min: 0,
        max: 0,
        level: 0,
    },
    Feature {
        name: "group.version",
        min: 0,
        max: 1,
        level: 1,
    },
    Feature {
        name: "transaction.version",
        min: 0,
        max: 2,
        level: 2,
    },
    Feature {
        name: "share.version",
        min: 0,
        max: 1,
        level: 1,
    },
];

/// `response` with Gregor's supported and finalized features (ApiVersions v3+ carries them).
pub fn with_features(response: ApiVersionsResponse) -> ApiVersionsResponse {
    let supported = FEATURES
        .iter()
        .map(|f| {
            SupportedFeatureKey::default()
                .with_name(sb(f.name))
                .with_min_version(f.min)
                .with_max_version(f.max)
        })
        .collect();
    let finalized = FEATURES
        .iter()
        .filter(|f| f.level > 0)
        .map(|f| {
            FinalizedFeatureKey::default()
                .with_name(sb(f.name))
                .with_min_version_level(f.level)
                .with_max_version_level(f.level)
        })
        .collect();
    response
        .with_supported_features(supported)
        .with_finalized_features_epoch(0)
        .with_finalized_features(finalized)
}

/// Why `level` of `name` cannot be set, or `None` when it is the level in force already.
fn refusal(name: &str, level: i16) -> Option<String> {
    let Some(f) = FEATURES.iter().find(|f| f.name == name) else {
        return Some(format!("Gregor has no feature {name}"));
    };
    (level != f.level).then(|| {
        format!(
            "{name} is fixed at level {} in Gregor (supported {}..{}): what it implements, \
             not a per-cluster choice; level {level} cannot be set",
            f.level, f.min, f.max
        )
    })
}

/// UpdateFeatures (`kafka-features upgrade|downgrade`): succeeds only for the levels in
/// force; anything else is INVALID_UPDATE_VERSION, naming the fixed level. Needs ALTER on
/// the cluster.
pub async fn update_features(
    ctx: &Ctx<'_>,
    req: UpdateFeaturesRequest,
) -> Option<UpdateFeaturesResponse> {
    if !ctx.authorized(Operation::Alter, Resource::cluster()) {
        return Some(
            UpdateFeaturesResponse::default()
                .with_error_code(ResponseError::ClusterAuthorizationFailed.code()),
        );
    }
    let refusals: Vec<(String, Option<String>)> = req
        .feature_updates
        .iter()
        .map(|u| {
            (
                u.feature.to_string(),
                refusal(&u.feature, u.max_version_level),
            )
        })
        .collect();
    let results = refusals
        .iter()
        .map(|(name, refused)| {
            let result = UpdatableFeatureResult::default().with_feature(sb(name.clone()));
            match refused {
                None => result,
                Some(message) => result
                    .with_error_code(ResponseError::InvalidUpdateVersion.code())
                    .with_error_message(Some(sb(message.clone()))),
            }
        })
        .collect();
    // From v2 the response has no per-feature results: the first refusal is the answer.
    let first = refusals.iter().find_map(|(_, r)| r.clone());
    let response = UpdateFeaturesResponse::default().with_results(results);
    Some(match first {
        Some(message) if ctx.version >= 2 => response
            .with_error_code(ResponseError::InvalidUpdateVersion.code())
            .with_error_message(Some(sb(message))),
        _ => response,
    })
}
