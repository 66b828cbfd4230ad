//! The committed SCRAM credentials on this node (Kafka's `ScramControlManager`), and the one
//! commit path of the security records (ACLs and credentials) through the metadata log.

use super::*;
use crate::sasl::scram::{ScramCredential, ScramMechanism};

/// One change of AlterUserScramCredentials, validated.
#[derive(Debug, Clone)]
pub enum ScramChange {
    /// Set `user`'s credential for `mechanism`.
    Upsert(String, ScramMechanism, ScramCredential),
    /// Delete `user`'s credential for `mechanism`.
    Delete(String, ScramMechanism),
}

impl Cluster {
    /// The committed SCRAM credentials.
    pub fn scram_credentials(&self) -> Arc<ScramCredentials> {
        Arc::clone(&self.scram.read())
    }

    /// `user`'s committed credential for `mechanism`.
    pub fn scram_credential(
        &self,
        user: &str,
        mechanism: ScramMechanism,
    ) -> Option<ScramCredential> {
        self.scram.read().get(user)?.get(&mechanism).cloned()
    }

    /// Commits `changes` (blocking) in one batch, so they apply together.
    pub fn alter_scram_credentials(&self, changes: &[ScramChange]) -> Result<(), AdminError> {
        let mut meta = self.meta.lock();
        let records: Vec<MetadataRecord> = changes
            .iter()
            .map(|c| match c {
                ScramChange::Upsert(user, mechanism, credential) => {
                    MetadataRecord::ScramCredential {
                        user: user.clone(),
                        mechanism: *mechanism,
                        credential: credential.clone(),
                    }
                }
                ScramChange::Delete(user, mechanism) => MetadataRecord::RemoveScramCredential {
                    user: user.clone(),
                    mechanism: *mechanism,
                },
            })
            .collect();
        self.commit_security_records(&mut meta, &records)
    }

    /// Takes `scram` as the committed credentials (called under the metadata lock). Returns
    /// whether they changed.
    pub(super) fn apply_scram(&self, scram: &ScramCredentials) -> bool {
        if **self.scram.read() == *scram {
            return false;
        }
        *self.scram.write() = Arc::new(scram.clone());
        tracing::info!(users = scram.len(), "SCRAM credentials applied");
        true
    }

    /// Commits ACL or credential records and takes the result as this node's: the quorum's
    /// committed image where there is one (it holds every node's changes), else the records
    /// applied to the current ones (the local log has no other writer).
    pub(super) fn commit_security_records(
        &self,
        meta: &mut MetaState,
        records: &[MetadataRecord],
    ) -> Result<(), AdminError> {
        if records.is_empty() {
            return Ok(());
        }
        meta.log.append(records)?;
        let image = match meta.log.image() {
            Some(image) => image,
            None => {
                let mut image = MetadataImage {
                    acls: (*self.acls()).clone(),
                    scram: (*self.scram_credentials()).clone(),
                    ..MetadataImage::default()
                };
                for r in records {
                    image.apply(r);
                }
                image
            }
        };
        self.apply_acls(&image.acls);
        self.apply_scram(&image.scram);
        Ok(())
    }
}
