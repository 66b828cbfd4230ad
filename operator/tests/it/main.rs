//! The operator against a real kube-apiserver and etcd (see [`apiserver`]): CRDs, a
//! KafkaCluster's children, owner references, status, the cluster id, no-op reconciles,
//! broker scale steps, rack awareness, orphaned children deleted.

mod apiserver;
mod binary;
mod broker_configs;
mod certificates;
mod cluster;
mod orphans;
mod rack;
mod scale;
mod topic;
mod user;

use std::time::Duration;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::wait::{await_condition, conditions};

/// Installs the operator's CRDs (server-side apply, as `kubectl apply --server-side` would)
/// and waits until the API server serves them.
pub async fn install_crds(client: &kube::Client) {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    for (_, crd) in gregor_operator::crd::all() {
        let name = crd.metadata.name.clone().expect("named");
        api.patch(
            &name,
            &PatchParams::apply("gregor-operator-tests").force(),
            &Patch::Apply(&crd),
        )
        .await
        .unwrap_or_else(|e| panic!("applying CRD {name}: {e}"));
        tokio::time::timeout(
            Duration::from_secs(30),
            await_condition(api.clone(), &name, conditions::is_crd_established()),
        )
        .await
        .unwrap_or_else(|_| panic!("CRD {name} not established"))
        .expect("watching the CRD");
    }
}

/// Skips (returns) when no API server is available outside CI.
#[macro_export]
macro_rules! api_server_or_skip {
    () => {
        match $crate::apiserver::shared() {
            Some(s) => s,
            None => {
                eprintln!("skipped: GREGOR_KUBE_BIN is not set (scripts/kube-dist.sh)");
                return;
            }
        }
    };
}
