//! openraft's storage conformance suite run against [`LogStore`] and [`StateMachine`], each
//! case on a fresh temporary directory that lives as long as the case.

use openraft::testing::{StoreBuilder, Suite};
use tempfile::TempDir;

use crate::quorum::log_store::LogStore;
use crate::quorum::state_machine::StateMachine;
use crate::quorum::types::{StorageError, TypeConfig};

/// Builds a store pair on a new temporary directory; the directory is the suite's guard.
struct TempDirStores;

impl StoreBuilder<TypeConfig, LogStore, StateMachine, TempDir> for TempDirStores {
    async fn build(&self) -> Result<(TempDir, LogStore, StateMachine), StorageError> {
        let dir = match tempfile::tempdir() {
            Ok(dir) => dir,
            Err(e) => panic!("cannot create a temporary directory: {e}"),
        };
        let raft = crate::quorum::raft_dir(dir.path());
        // Small segments, so the suite's purges and truncations cross segment files.
        let log = match LogStore::open_with_segment_bytes(&raft, 256).await {
            Ok(log) => log,
            Err(e) => panic!("cannot open the log store: {e}"),
        };
        let sm = match StateMachine::open(&raft).await {
            Ok(sm) => sm,
            Err(e) => panic!("cannot open the state machine: {e}"),
        };
        Ok((dir, log, sm))
    }
}

#[test]
fn the_log_store_and_state_machine_pass_openraft_storage_suite() {
    if let Err(e) = Suite::test_all(TempDirStores) {
        panic!("storage suite failed: {e}");
    }
}
