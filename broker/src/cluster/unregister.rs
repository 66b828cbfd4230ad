//! Removing a broker's registration for good (UnregisterBroker): only a fenced broker goes,
//! through a conditional [`MetadataRecord::UnregisterBroker`], so a broker that came back
//! between the check and the commit stays registered.

use super::*;

impl Cluster {
    /// Whether broker `id` may be unregistered now, by the committed metadata (blocking):
    /// registered, and fenced.
    pub fn unregistrable(&self, id: i32) -> Result<(), AdminError> {
        let meta = self.meta.lock();
        let registered = match meta.log.image() {
            Some(image) => image.brokers.get(&id).map(|b| b.fenced),
            None => self.brokers.read().get(&id).map(|b| b.fenced),
        };
        match registered {
            None => Err(AdminError::BrokerIdNotRegistered(id)),
            Some(false) => Err(AdminError::BrokerNotFenced(id)),
            Some(true) => Ok(()),
        }
    }

    /// Removes fenced broker `id`'s registration from the metadata (blocking). Partitions
    /// naming it as a replica keep doing so, as in Kafka: reassigning them is the caller's.
    pub fn unregister_broker(&self, id: i32) -> Result<(), AdminError> {
        let mut meta = self.meta.lock();
        let committed_image = meta.log.image();
        let before = match &committed_image {
            Some(image) => image.brokers.clone(),
            None => self.brokers.read().clone(),
        };
        match before.get(&id) {
            None => return Err(AdminError::BrokerIdNotRegistered(id)),
            Some(b) if !b.fenced => return Err(AdminError::BrokerNotFenced(id)),
            Some(_) => {}
        }
        let committed = meta
            .log
            .append(&[MetadataRecord::UnregisterBroker { id }])?;
        // The quorum says whether the record applied; the local file store (a single writer)
        // applies what the check above saw.
        let removed = meta.log.image().map_or(committed.applied == 1, |after| {
            !after.brokers.contains_key(&id)
        });
        if !removed {
            // Registered again (unfenced) between the check and the commit.
            return Err(AdminError::BrokerNotFenced(id));
        }
        self.brokers.write().remove(&id);
        tracing::info!(broker = id, "broker unregistered");
        Ok(())
    }
}
