//! `nightdump cat`: a stored archive, byte for byte, to a writer (stdout), so any backup can be
//! piped straight into `mongorestore --gzip --archive`.

use tokio::io::{AsyncWrite, AsyncWriteExt};

use crate::catalog::{resolve, Selector};
use crate::error::{Error, Result};
use crate::store::Store;

pub async fn cat(
    store: &Store,
    selector: &Selector,
    mut out: impl AsyncWrite + Unpin,
) -> Result<()> {
    let (id, manifest) = resolve(store, selector).await?;
    let mut reader = store
        .open_read(&manifest.archive.key)
        .await?
        .ok_or_else(|| Error::Integrity {
            id: id.to_string(),
            detail: format!(
                "the manifest names {} but that object is missing",
                manifest.archive.key
            ),
        })?;
    let copied = tokio::io::copy(&mut reader, &mut out)
        .await
        .map_err(|e| Error::Internal(format!("copying backup {id} failed: {e}")))?;
    out.flush()
        .await
        .map_err(|e| Error::Internal(format!("flushing backup {id} failed: {e}")))?;
    if copied != manifest.archive.size {
        return Err(Error::Integrity {
            id: id.to_string(),
            detail: format!(
                "read {copied} bytes, the manifest says {}",
                manifest.archive.size
            ),
        });
    }
    Ok(())
}
