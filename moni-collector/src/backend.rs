//! Where stored parts go: the local filesystem (default, nothing to
//! install) or any S3-compatible object store (`object_store`), selected in
//! `[storage]`. The layout is the same Hive layout in both; a collector
//! keeps no state outside it (uploads stream through a local scratch
//! directory only), so several collectors can write one bucket behind a
//! load balancer. An S3 PUT is atomic, so readers never see a partial
//! object; an existing key (a retried upload) is not written again.

use std::path::PathBuf;
use std::sync::Arc;

use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};

use crate::config::StorageSettings;
use crate::store::{self, IngestError, PutResult, Staged};

pub enum Backend {
    Local(PathBuf),
    S3 {
        store: Arc<dyn ObjectStore>,
        prefix: String,
    },
}

impl Backend {
    pub fn from_settings(data_dir: PathBuf, s: &StorageSettings) -> anyhow::Result<Backend> {
        Ok(match s {
            StorageSettings::Local => Backend::Local(data_dir),
            StorageSettings::S3 {
                bucket,
                prefix,
                endpoint,
                region,
                allow_http,
                access_key_id,
                secret_access_key,
            } => {
                let mut b = object_store::aws::AmazonS3Builder::from_env()
                    .with_bucket_name(bucket)
                    .with_region(region)
                    .with_allow_http(*allow_http);
                if let Some(e) = endpoint {
                    b = b.with_endpoint(e);
                }
                if let (Some(k), Some(sec)) = (access_key_id, secret_access_key) {
                    b = b.with_access_key_id(k).with_secret_access_key(sec);
                }
                let store = b
                    .build()
                    .map_err(|e| anyhow::anyhow!("storage: cannot use bucket {bucket}: {e}"))?;
                Backend::S3 {
                    store: Arc::new(store),
                    prefix: prefix.clone(),
                }
            }
        })
    }

    pub fn describe(&self) -> String {
        match self {
            Backend::Local(p) => p.display().to_string(),
            Backend::S3 { prefix, .. } => format!("s3 (prefix {prefix:?})"),
        }
    }

    /// Stores every part of a staged upload, skipping those already
    /// there. Local storage commits all or none ([`store::commit_local`]);
    /// on S3 each PUT is atomic but the parts of one upload appear one by
    /// one (a failed upload may leave some; its retry completes them).
    pub async fn put(&self, staged: Staged) -> Result<PutResult, IngestError> {
        match self {
            Backend::Local(data) => {
                let data = data.clone();
                tokio::task::spawn_blocking(move || store::commit_local(&data, &staged))
                    .await
                    .map_err(|e| IngestError::Io(e.to_string()))?
            }
            Backend::S3 { store, prefix } => {
                let mut r = (0, 0, 0);
                for p in &staged.parts {
                    r.0 += 1;
                    let path = ObjectPath::from(format!("{prefix}{}", p.key));
                    match store.head(&path).await {
                        Ok(_) => {
                            r.1 += 1;
                            continue;
                        }
                        Err(object_store::Error::NotFound { .. }) => {}
                        Err(e) => return Err(IngestError::Io(format!("object store: {e}"))),
                    }
                    let bytes = tokio::fs::read(&p.tmp)
                        .await
                        .map_err(|e| IngestError::storage(&e))?;
                    let n = bytes.len() as u64;
                    store
                        .put(&path, PutPayload::from(bytes))
                        .await
                        .map_err(|e| IngestError::Io(format!("object store: {e}")))?;
                    r.2 += n;
                }
                Ok(r)
            }
        }
    }
}
