//! The committed SCRAM credentials (Kafka's `ScramControlManager`), client quota configs
//! (`ClientQuotaControlManager`) and group configs on this node, and the one commit path of
//! these records (ACLs, credentials, quotas, group configs) through the metadata log.

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

    /// The committed client quota configs.
    pub fn client_quotas(&self) -> Arc<crate::quotas::ClientQuotas> {
        Arc::clone(&self.quotas.read())
    }

    /// Commits quota changes `(entity, key, value or None to remove)` (blocking) in one batch.
    pub fn alter_client_quotas(
        &self,
        changes: Vec<(crate::quotas::QuotaEntity, String, Option<f64>)>,
    ) -> Result<(), AdminError> {
        let mut meta = self.meta.lock();
        let records: Vec<MetadataRecord> = changes
            .into_iter()
            .map(|(entity, key, value)| MetadataRecord::ClientQuota { entity, key, value })
            .collect();
        self.commit_security_records(&mut meta, &records)
    }

    /// Takes `quotas` as the committed quota configs (called under the metadata lock).
    /// Returns whether they changed.
    pub(super) fn apply_quotas(&self, quotas: &crate::quotas::ClientQuotas) -> bool {
        if **self.quotas.read() == *quotas {
            return false;
        }
        *self.quotas.write() = Arc::new(quotas.clone());
        tracing::info!(entities = quotas.len(), "client quotas applied");
        true
    }

    /// Commits ACL, credential or quota records and takes the result as this node's: the quorum's
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
                    quotas: (*self.client_quotas()).clone(),
                    group_configs: (*self.all_group_configs()).clone(),
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
        self.apply_quotas(&image.quotas);
        self.apply_group_configs(&image.group_configs);
        Ok(())
    }

    /// Every group's committed configs.
    pub fn all_group_configs(&self) -> Arc<GroupConfigs> {
        Arc::clone(&self.group_configs.read())
    }

    /// The committed configs of group `group` (empty if it sets none).
    pub fn group_configs(&self, group: &str) -> BTreeMap<String, String> {
        self.group_configs
            .read()
            .get(group)
            .cloned()
            .unwrap_or_default()
    }

    /// Replaces group `group`'s configs (blocking): checked by
    /// [`crate::share::check_group_configs`], then committed through the metadata log.
    pub fn set_group_configs(
        &self,
        group: &str,
        configs: BTreeMap<String, String>,
        validate_only: bool,
    ) -> Result<(), AdminError> {
        crate::share::check_group_configs(&self.config, &configs)
            .map_err(AdminError::InvalidConfig)?;
        if validate_only || self.group_configs(group) == configs {
            return Ok(());
        }
        let mut meta = self.meta.lock();
        let record = MetadataRecord::GroupConfigs {
            group: group.to_string(),
            configs,
        };
        self.commit_security_records(&mut meta, &[record])
    }

    /// Takes `configs` as the committed group configs (called under the metadata lock).
    /// Returns whether they changed.
    pub(super) fn apply_group_configs(&self, configs: &GroupConfigs) -> bool {
        if **self.group_configs.read() == *configs {
            return false;
        }
        *self.group_configs.write() = Arc::new(configs.clone());
        tracing::info!(groups = configs.len(), "group configs applied");
        true
    }
}

/// Group configs by group id.
pub type GroupConfigs = BTreeMap<String, BTreeMap<String, String>>;
