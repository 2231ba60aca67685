//! The register declares which of its row families a storage driver may pack; the sled
//! driver must really pack rows written through the register's own key builders (if a
//! key layout changed without its declaration, packing would silently stop).

use std::collections::BTreeMap;

use veritrail::register::projections::keys::decision_key;
use veritrail::register::projections::keys::expiry_key;
use veritrail::register::projections::keys::packing;
use veritrail::register::projections::keys::subject_key;
use veritrail::register::projections::keys::trail_key;
use veritrail::storage::sled::SledStore;
use veritrail::storage::{CommitBatch, RowStore as _, Store as _, VaultStore as _};

#[test]
fn the_sled_driver_packs_rows_written_through_the_register_keys() {
    let dir = tempfile::tempdir().unwrap();
    let store = SledStore::open(&dir.path().join("ledger"), &packing()).unwrap();
    let (mut projections, mut vault) = (BTreeMap::new(), BTreeMap::new());
    for i in 0..200u64 {
        let at = 1_000 + i;
        projections.insert(trail_key("sys", at, i), Some(vec![1; 40]));
        vault.insert(decision_key(i), Some(vec![2; 60]));
        vault.insert(expiry_key(9_000 + i, i), Some(Vec::new()));
        vault.insert(
            subject_key(&format!("subject-{}", i % 7), at, i),
            Some(b"sys".to_vec()),
        );
    }
    store
        .commit(CommitBatch {
            projections: projections.clone(),
            vault: vault.clone(),
            ..Default::default()
        })
        .unwrap();

    let (trail_chunks, trail_own) = store.grouped_layout();
    assert!(trail_chunks >= 1, "trail rows were not packed");
    assert_eq!(trail_own, 0, "trail rows stayed keys of their own");
    let v = store.vault_layout().unwrap();
    assert!(
        v.chunks >= 2,
        "decision and expiry rows were not packed: {v:?}"
    );
    assert_eq!(v.runs, 1, "subject rows were not one run: {v:?}");
    assert_eq!(v.own_rows, 0, "vault rows stayed keys of their own: {v:?}");

    // Packed or not, every row reads back as written.
    for (k, val) in &projections {
        assert_eq!(store.get(k).unwrap(), val.clone());
    }
    for (k, val) in &vault {
        assert_eq!(store.vault_get(k).unwrap(), val.clone());
    }
}
