//! The committed ACLs on this node: creating and deleting them through the metadata log
//! (Kafka's `AclControlManager`), and the copy every request is authorized from.

use super::*;
use crate::authz::{Acl, AclFilter, Acls};

impl Cluster {
    /// The committed ACLs.
    pub fn acls(&self) -> Arc<Acls> {
        Arc::clone(&self.acls.read())
    }

    /// Creates `acls` (blocking): each one not already present is committed with a fresh id;
    /// one that exists already is a success that adds nothing, as in Kafka.
    pub fn create_acls(&self, acls: &[Acl]) -> Result<(), AdminError> {
        let mut meta = self.meta.lock();
        let current = self.acls();
        let mut records = Vec::new();
        let mut seen: Vec<&Acl> = Vec::new();
        for acl in acls {
            if current.values().any(|a| a == acl) || seen.contains(&acl) {
                continue;
            }
            seen.push(acl);
            records.push(MetadataRecord::Acl {
                id: uuid::Uuid::new_v4(),
                acl: acl.clone(),
            });
        }
        self.commit_security_records(&mut meta, &records)
    }

    /// Deletes every ACL matching each filter (blocking), in one commit; returns what each
    /// filter matched, as Kafka's DeleteAcls answers.
    pub fn delete_acls(&self, filters: &[AclFilter]) -> Result<Vec<Vec<Acl>>, AdminError> {
        let mut meta = self.meta.lock();
        let current = self.acls();
        let mut removed = std::collections::BTreeSet::new();
        let matched = filters
            .iter()
            .map(|f| {
                current
                    .iter()
                    .filter(|(_, acl)| f.matches(acl))
                    .map(|(id, acl)| {
                        removed.insert(*id);
                        acl.clone()
                    })
                    .collect()
            })
            .collect();
        let records: Vec<MetadataRecord> = removed
            .into_iter()
            .map(|id| MetadataRecord::RemoveAcl { id })
            .collect();
        self.commit_security_records(&mut meta, &records)?;
        Ok(matched)
    }

    /// Takes `acls` as the committed ACLs (called under the metadata lock). Returns whether
    /// they changed.
    pub(super) fn apply_acls(&self, acls: &Acls) -> bool {
        if **self.acls.read() == *acls {
            return false;
        }
        *self.acls.write() = Arc::new(acls.clone());
        tracing::info!(acls = acls.len(), "ACLs applied");
        true
    }
}
