//! How the operator reaches a cluster's brokers: where, and with what security. A cluster
//! with a secured listener is reached on its replication listener over mutual TLS, as the
//! operator's own identity (`<cluster>-operator-certs`, from the cluster CA, a super user);
//! any other on its client listener in plaintext.

use std::collections::BTreeMap;

use gregor_client::admin::{Admin, AdminError};
use gregor_client::{ClientError, ClientSecurity, Cluster};

use crate::pki::KeyAndCert;

/// Where and how the brokers of one cluster are reached.
#[derive(Clone)]
pub struct Access {
    /// `host:port` of one or more brokers, comma-separated.
    pub bootstrap: String,
    security: ClientSecurity,
}

impl std::fmt::Debug for Access {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Access")
            .field("bootstrap", &self.bootstrap)
            .field("protocol", &self.security.protocol())
            .finish()
    }
}

impl Access {
    /// The brokers at `bootstrap`, in plaintext.
    pub fn plaintext(bootstrap: impl Into<String>) -> Access {
        Access {
            bootstrap: bootstrap.into(),
            security: ClientSecurity::plaintext(),
        }
    }

    /// The brokers at `bootstrap` over mutual TLS: `identity` is the operator's key and
    /// certificate, `ca_pem` the CA their certificates chain to. Host names are verified
    /// unless `verify_hostname` is false (a bootstrap override reaches them at an address
    /// their certificates do not name; the chain is still checked against the CA).
    pub fn mutual_tls(
        bootstrap: impl Into<String>,
        identity: &KeyAndCert,
        ca_pem: &str,
        verify_hostname: bool,
    ) -> Result<Access, String> {
        let mut p = BTreeMap::from([
            ("security.protocol".to_string(), "SSL".to_string()),
            ("ssl.keystore.type".to_string(), "PEM".to_string()),
            (
                "ssl.keystore.certificate.chain".to_string(),
                identity.cert_pem.clone(),
            ),
            ("ssl.keystore.key".to_string(), identity.key_pem.clone()),
            ("ssl.truststore.type".to_string(), "PEM".to_string()),
            (
                "ssl.truststore.certificates".to_string(),
                ca_pem.to_string(),
            ),
        ]);
        if !verify_hostname {
            p.insert(
                "ssl.endpoint.identification.algorithm".to_string(),
                String::new(),
            );
        }
        let security = ClientSecurity::from_properties(&p)
            .map_err(|e| format!("the operator's TLS identity: {e}"))?;
        Ok(Access {
            bootstrap: bootstrap.into(),
            security,
        })
    }

    /// An admin client connected to the brokers.
    pub async fn admin(&self) -> Result<Admin, AdminError> {
        Admin::connect_with(&self.bootstrap, &self.security).await
    }

    /// A cluster view connected to the brokers.
    pub async fn cluster(&self) -> Result<Cluster, ClientError> {
        Cluster::connect_with(&self.bootstrap, &self.security).await
    }
}
