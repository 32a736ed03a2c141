//! The registry behind a small trait, so the pull logic does not care where bytes come from.
//!
//! [`Registry`] speaks the OCI distribution API through `oci-client`: anonymous, basic and
//! bearer-token auth (credentials from [`crate::auth`]), TLS verified, plain HTTP only for
//! loopback registries and ones named as insecure.

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::errors::{DigestError, OciDistributionError};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};
use std::future::Future;
use std::io;
use std::pin::Pin;

use crate::manifest::{Descriptor, ACCEPTED};

/// Errors talking to a registry, each naming the registry and saying what to do.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("registry {registry}: not authorized for {repository} (log in first: credentials are read from $REGISTRY_AUTH_FILE, $XDG_RUNTIME_DIR/containers/auth.json or ~/.docker/config.json)")]
    Unauthorized {
        registry: String,
        repository: String,
    },
    #[error("registry {registry}: {what} not found")]
    NotFound { registry: String, what: String },
    #[error("cannot reach registry {registry}: {message}")]
    Unreachable { registry: String, message: String },
    #[error("registry {registry}: {message}")]
    Other { registry: String, message: String },
}

pub type Result<T> = std::result::Result<T, RegistryError>;

/// A stream of blob bytes, unverified: the consumer hashes what it reads and checks digest
/// and size itself, so every source is held to the same check with the same error.
pub type BlobStream = Pin<Box<dyn Stream<Item = io::Result<Bytes>> + Send>>;

/// Where manifests and blobs come from.
pub trait BlobSource: Send + Sync {
    /// Fetches a manifest by tag or digest; returns its bytes and digest.
    fn manifest(
        &self,
        reference: &Reference,
    ) -> impl Future<Output = Result<(Vec<u8>, String)>> + Send;
    /// Streams a whole blob.
    fn blob(
        &self,
        reference: &Reference,
        desc: &Descriptor,
    ) -> impl Future<Output = Result<BlobStream>> + Send;
}

/// How to reach registries.
#[derive(Debug, Clone, Default)]
pub struct RegistryOptions {
    /// Registries (`host[:port]`) reached over plain HTTP even though not on loopback.
    pub insecure: Vec<String>,
}

/// A registry client for one registry.
pub struct Registry {
    client: Client,
    auth: RegistryAuth,
    registry: String,
}

impl Registry {
    /// A client for the registry of `reference`, with credentials from the auth files.
    pub fn new(reference: &Reference, opts: &RegistryOptions) -> Registry {
        let registry = reference.resolve_registry().to_owned();
        let plain = crate::reference::is_loopback(&registry)
            || opts
                .insecure
                .iter()
                .any(|r| r == &registry || r == reference.registry());
        let config = ClientConfig {
            protocol: if plain {
                ClientProtocol::HttpsExcept(vec![registry.clone()])
            } else {
                ClientProtocol::Https
            },
            platform_resolver: None,
            max_concurrent_download: 8,
            connect_timeout: Some(std::time::Duration::from_secs(30)),
            read_timeout: Some(std::time::Duration::from_secs(120)),
            ..Default::default()
        };
        let auth = match crate::auth::lookup(reference.registry(), reference.repository()) {
            Some(c) => RegistryAuth::Basic(c.username, c.password),
            None => RegistryAuth::Anonymous,
        };
        Registry {
            client: Client::new(config),
            auth,
            registry,
        }
    }

    fn error(&self, reference: &Reference, what: &str, e: OciDistributionError) -> RegistryError {
        let registry = self.registry.clone();
        match e {
            OciDistributionError::UnauthorizedError { .. }
            | OciDistributionError::AuthenticationFailure(_) => RegistryError::Unauthorized {
                registry,
                repository: reference.repository().to_owned(),
            },
            OciDistributionError::ImageManifestNotFoundError(_) => RegistryError::NotFound {
                registry,
                what: what.to_owned(),
            },
            OciDistributionError::RegistryError { envelope, .. } => {
                use oci_client::errors::OciErrorCode as C;
                let codes: Vec<&C> = envelope.errors.iter().map(|e| &e.code).collect();
                if codes
                    .iter()
                    .any(|c| matches!(c, C::Unauthorized | C::Denied))
                {
                    RegistryError::Unauthorized {
                        registry,
                        repository: reference.repository().to_owned(),
                    }
                } else if codes.iter().any(|c| {
                    matches!(
                        c,
                        C::ManifestUnknown | C::BlobUnknown | C::NameUnknown | C::NotFound
                    )
                }) {
                    RegistryError::NotFound {
                        registry,
                        what: what.to_owned(),
                    }
                } else {
                    let msgs: Vec<String> = envelope
                        .errors
                        .iter()
                        .map(|e| format!("{:?}: {}", e.code, e.message))
                        .collect();
                    RegistryError::Other {
                        registry,
                        message: msgs.join("; "),
                    }
                }
            }
            OciDistributionError::ServerError { code: 404, .. } => RegistryError::NotFound {
                registry,
                what: what.to_owned(),
            },
            OciDistributionError::ServerError { code, message, .. } => RegistryError::Other {
                registry,
                message: format!("HTTP {code}: {}", one_line(&message)),
            },
            OciDistributionError::RequestError(e) => RegistryError::Unreachable {
                registry,
                message: error_chain(&e),
            },
            other => RegistryError::Other {
                registry,
                message: one_line(&other.to_string()),
            },
        }
    }
}

/// The innermost causes joined on one line ("connection refused", "certificate …").
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut parts = vec![e.to_string()];
    let mut cur = e.source();
    while let Some(s) = cur {
        let t = s.to_string();
        if !parts.iter().any(|p| p.contains(&t)) {
            parts.push(t);
        }
        cur = s.source();
    }
    one_line(&parts.join(": "))
}

fn one_line(s: &str) -> String {
    let s = s.split_whitespace().collect::<Vec<_>>().join(" ");
    if s.len() > 300 {
        format!("{}…", &s[..s.floor_char_boundary(300)])
    } else {
        s
    }
}

fn is_digest_failure(e: &io::Error) -> bool {
    e.get_ref()
        .and_then(|inner| inner.downcast_ref::<DigestError>())
        .is_some_and(|d| matches!(d, DigestError::VerificationError { .. }))
}

impl BlobSource for Registry {
    async fn manifest(&self, reference: &Reference) -> Result<(Vec<u8>, String)> {
        let what = format!("manifest {}", crate::reference::display(reference));
        let (bytes, digest) = self
            .client
            .pull_manifest_raw(reference, &self.auth, ACCEPTED)
            .await
            .map_err(|e| self.error(reference, &what, e))?;
        Ok((bytes.to_vec(), digest))
    }

    async fn blob(&self, reference: &Reference, desc: &Descriptor) -> Result<BlobStream> {
        let what = format!("blob {}", desc.digest);
        let d = oci_client::manifest::OciDescriptor {
            media_type: desc.media_type.clone(),
            digest: desc.digest.clone(),
            size: desc.size as i64,
            ..Default::default()
        };
        // The manifest fetch authenticated this client; make sure even a bare blob fetch does.
        self.client
            .store_auth_if_needed(reference.resolve_registry(), &self.auth)
            .await;
        let s = self
            .client
            .pull_blob_stream(reference, &d)
            .await
            .map_err(|e| self.error(reference, &what, e))?;
        // oci-client also checks the digest and reports a mismatch as a final stream error;
        // the consumer's own check names expected and found, so end the stream there instead.
        let stream = s
            .stream
            .take_while(|chunk| std::future::ready(!chunk.as_ref().is_err_and(is_digest_failure)));
        Ok(stream.boxed())
    }
}
