//! What a store lists, as keys.

use nightdump::store::Store;

/// The keys the store lists under `prefix`, in its order.
pub async fn keys(store: &Store, prefix: &str) -> Vec<String> {
    store
        .list(prefix)
        .await
        .unwrap()
        .into_iter()
        .map(|o| o.key)
        .collect()
}
