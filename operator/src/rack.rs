//! What `gregor-operator rack` does in a broker pod's `rack` init container (see
//! [`crate::build::rack`]): reads the pod's Node through the API, as the pod's ServiceAccount,
//! and writes the value of the rack label to the file the broker's `broker.rack` names.

use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::Node;
use kube::api::Api;

/// Why the rack could not be written; the pod then does not start.
#[derive(Debug, thiserror::Error)]
pub enum RackError {
    /// The API server refused or could not be reached (forbidden: the broker pods' RBAC).
    #[error("cannot read node {node}: {source}")]
    ReadNode {
        /// The node.
        node: String,
        /// The API error.
        #[source]
        source: kube::Error,
    },
    /// The node lacks the label; a broker without its rack would be placed wrongly.
    #[error(
        "node {node} has no label {label}: the broker cannot tell its rack (spec.rack.topologyKey)"
    )]
    NoLabel {
        /// The node.
        node: String,
        /// The label.
        label: String,
    },
    /// The file could not be written.
    #[error("cannot write the rack to {path}")]
    Write {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

/// The value of `label` on node `node`.
pub async fn read(client: &kube::Client, node: &str, label: &str) -> Result<String, RackError> {
    let nodes: Api<Node> = Api::all(client.clone());
    let found = nodes
        .get(node)
        .await
        .map_err(|source| RackError::ReadNode {
            node: node.into(),
            source,
        })?;
    found
        .metadata
        .labels
        .and_then(|mut l| l.remove(label))
        .ok_or_else(|| RackError::NoLabel {
            node: node.into(),
            label: label.into(),
        })
}

/// Writes `rack` to `path` as it is, without a newline: Kafka's `DirectoryConfigProvider`
/// takes a file's whole content as the value.
pub fn write(path: &Path, rack: &str) -> Result<(), RackError> {
    std::fs::write(path, rack).map_err(|source| RackError::Write {
        path: path.into(),
        source,
    })
}
