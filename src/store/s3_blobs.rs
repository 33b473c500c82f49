//! DICOM blobs in an S3-compatible object store (the `object_store` crate), content-addressed
//! by SHA-256: `blobs/ab/cd/<sha256>`, and `conflicts/<name>` for instances that conflicted
//! with a stored one. (An object store has no folders to create, so the one-level layout that
//! spares the folder store its folder creations would change nothing here.)
//!
//! `put` returns once the object store has confirmed the PUT (an S3 PUT is atomic: an object is
//! whole or absent), and only then does the catalogue row commit, so an acknowledged instance is
//! in the bucket. The [`BlobStore`] calls block: this store keeps its own small tokio runtime and
//! blocks on it, from the service's blocking threads and the workers' threads alike.
//! Credentials come from the environment (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`), never
//! from the configuration file, and are never logged.

use super::blobs::BlobStore;
use crate::config::BlobsConfig;
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use std::io;
use std::path::PathBuf;

pub struct S3BlobStore {
    bucket: AmazonS3,
    /// Where the calls run (the `BlobStore` interface is blocking); taken only when the store
    /// is dropped.
    runtime: Option<tokio::runtime::Runtime>,
    /// For messages: the bucket and endpoint (no credentials).
    place: String,
}

impl Drop for S3BlobStore {
    /// The store may go with the service's last reference to it, on one of the service's own
    /// async threads at shutdown, where dropping a runtime (which waits for its threads)
    /// panics: its threads are left to end by themselves instead.
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

fn blob_key(sha256: &str) -> io::Result<ObjectPath> {
    if sha256.len() != 64 || !sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{sha256:?} is not a SHA-256 in hex"),
        ));
    }
    Ok(ObjectPath::from(format!(
        "blobs/{}/{}/{sha256}",
        &sha256[..2],
        &sha256[2..4]
    )))
}

impl S3BlobStore {
    fn runtime(&self) -> &tokio::runtime::Runtime {
        self.runtime
            .as_ref()
            .expect("the runtime is taken only when the store is dropped")
    }

    /// Connects to the bucket. With `check` (a server's start), also checks that it can be
    /// listed, written and read (a small object named `radassist-check`), so that a wrong
    /// endpoint, bucket or credential stops the start with what to fix; an administrator's
    /// command that reads only the catalogue (`radassist users`) needs no credentials.
    pub fn open(config: &BlobsConfig, check: bool) -> Result<S3BlobStore, String> {
        if config.bucket.is_empty() {
            return Err("blobs.backend is s3 but blobs.bucket is empty: name the bucket".into());
        }
        // The HTTP client's TLS uses the process's rustls provider: ring, as everywhere in
        // radassist (an error means one is installed already).
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut builder = AmazonS3Builder::from_env()
            .with_bucket_name(&config.bucket)
            .with_region(&config.region)
            .with_allow_http(config.allow_http);
        if !config.endpoint.is_empty() {
            builder = builder.with_endpoint(&config.endpoint);
        }
        let place = format!(
            "bucket {:?} at {}",
            config.bucket,
            if config.endpoint.is_empty() {
                "AWS"
            } else {
                &config.endpoint
            }
        );
        let bucket = builder
            .build()
            .map_err(|e| format!("blobs: cannot use the S3 {place}: {e}"))?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("s3-blobs")
            .enable_all()
            .build()
            .map_err(|e| format!("blobs: cannot start the S3 client's runtime: {e}"))?;
        let store = S3BlobStore {
            bucket,
            runtime: Some(runtime),
            place,
        };
        if !check {
            return Ok(store);
        }
        store.check_bucket().map_err(|e| {
            format!(
                "blobs: cannot write and read the S3 {}: {e}. Check blobs.endpoint, that the bucket exists, and AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY",
                store.place
            )
        })?;
        Ok(store)
    }

    /// Lists the bucket (a missing bucket is an error here, where some servers would make
    /// it on a PUT), then writes and reads back a small object: what start-up and health check.
    fn check_bucket(&self) -> io::Result<()> {
        let key = ObjectPath::from("radassist-check");
        self.runtime()
            .block_on(async {
                self.bucket.list_with_delimiter(Some(&key)).await?;
                self.bucket
                    .put(&key, PutPayload::from_static(b"radassist"))
                    .await?;
                self.bucket.get(&key).await?.bytes().await?;
                Ok::<_, object_store::Error>(())
            })
            .map_err(io::Error::other)
    }

    fn put_key(&self, key: ObjectPath, bytes: &[u8]) -> io::Result<()> {
        let payload = PutPayload::from(bytes::Bytes::copy_from_slice(bytes));
        self.runtime()
            .block_on(self.bucket.put(&key, payload))
            .map(|_| ())
            .map_err(|e| io::Error::other(format!("{}: PUT {key}: {e}", self.place)))
    }
}

impl BlobStore for S3BlobStore {
    fn put(&self, sha256: &str, bytes: &[u8]) -> io::Result<()> {
        // Content-addressed: writing over an object already there writes the same bytes (the
        // catalogue has already turned duplicates away, so no HEAD first: one round trip less).
        self.put_key(blob_key(sha256)?, bytes)
    }

    fn put_conflict(&self, name: &str, bytes: &[u8]) -> io::Result<()> {
        if name.is_empty()
            || !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-')
        {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{name:?} is not a conflict's name"),
            ));
        }
        self.put_key(ObjectPath::from(format!("conflicts/{name}")), bytes)
    }

    fn exists(&self, sha256: &str) -> io::Result<bool> {
        let key = blob_key(sha256)?;
        match self.runtime().block_on(self.bucket.head(&key)) {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(io::Error::other(format!("{}: HEAD {key}: {e}", self.place))),
        }
    }

    fn get(&self, sha256: &str) -> io::Result<Vec<u8>> {
        let key = blob_key(sha256)?;
        self.runtime()
            .block_on(async { self.bucket.get(&key).await?.bytes().await })
            .map(|b| b.to_vec())
            .map_err(|e| match e {
                object_store::Error::NotFound { .. } => io::Error::new(
                    io::ErrorKind::NotFound,
                    format!("{}: no blob {sha256}", self.place),
                ),
                e => io::Error::other(format!("{}: GET {key}: {e}", self.place)),
            })
    }

    fn local_path(&self, _sha256: &str) -> Option<PathBuf> {
        None
    }

    fn check(&self) -> io::Result<()> {
        self.check_bucket()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// At shutdown the service's last reference to the store can go on one of its own async
    /// threads; dropping the store there must not panic (it did: a runtime dropped in an
    /// asynchronous context).
    #[test]
    fn the_store_can_be_dropped_on_an_async_thread() {
        let config = BlobsConfig {
            backend: crate::config::BlobBackend::S3,
            bucket: "radassist".into(),
            endpoint: "http://127.0.0.1:9".into(),
            allow_http: true,
            ..BlobsConfig::default()
        };
        let store = S3BlobStore::open(&config, false).unwrap();
        let service = tokio::runtime::Runtime::new().unwrap();
        service.block_on(async move { drop(store) });
    }
}
