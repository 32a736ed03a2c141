//! Manifests and indexes: parsing, media-type checks, and platform selection.

use serde::{Deserialize, Serialize};

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
const DOCKER_SCHEMA1: &str = "application/vnd.docker.distribution.manifest.v1+json";
const DOCKER_SCHEMA1_SIGNED: &str = "application/vnd.docker.distribution.manifest.v1+prettyjws";

/// Every manifest type asked for in the Accept header.
pub const ACCEPTED: &[&str] = &[
    OCI_MANIFEST,
    OCI_INDEX,
    DOCKER_MANIFEST,
    DOCKER_LIST,
    DOCKER_SCHEMA1_SIGNED,
    DOCKER_SCHEMA1,
];

/// Errors reading a manifest.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("manifest is not valid JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("Docker schema 1 manifests are not supported (deprecated since 2017); push the image again with a current tool")]
    Schema1,
    #[error("manifest media type {0:?} is not an image manifest or index")]
    MediaType(String),
    #[error("manifest has no {0}")]
    Missing(&'static str),
    #[error("invalid platform {0:?}: expected OS/ARCH[/VARIANT], e.g. linux/amd64")]
    BadPlatform(String),
    #[error("no image for platform {wanted} in the index (available: {available})")]
    NoPlatform { wanted: String, available: String },
}

pub type Result<T> = std::result::Result<T, ManifestError>;

/// A content descriptor (config, layer, or index entry).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    #[serde(default)]
    pub media_type: String,
    pub digest: String,
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<std::collections::BTreeMap<String, String>>,
}

/// An OS/architecture pair as indexes and configs state it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Platform {
    pub os: String,
    pub architecture: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

impl std::fmt::Display for Platform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

impl Platform {
    /// Parses `os/arch[/variant]`.
    pub fn parse(s: &str) -> Result<Platform> {
        let parts: Vec<&str> = s.split('/').collect();
        if parts.iter().any(|p| p.is_empty()) || !(2..=3).contains(&parts.len()) {
            return Err(ManifestError::BadPlatform(s.to_owned()));
        }
        Ok(Platform {
            os: parts[0].to_owned(),
            architecture: parts[1].to_owned(),
            variant: parts.get(2).map(|v| (*v).to_owned()),
        })
    }

    /// The platform this binary runs on, in OCI names.
    pub fn host() -> Platform {
        let (architecture, variant) = match std::env::consts::ARCH {
            "x86_64" => ("amd64", None),
            "aarch64" => ("arm64", Some("v8")),
            "x86" => ("386", None),
            "arm" => ("arm", Some("v7")),
            "powerpc64" => ("ppc64le", None),
            other => (other, None),
        };
        Platform {
            os: std::env::consts::OS.to_owned(),
            architecture: architecture.to_owned(),
            variant: variant.map(str::to_owned),
        }
    }

    fn variant_or_default(&self) -> Option<&str> {
        match (self.architecture.as_str(), self.variant.as_deref()) {
            ("arm64", None) => Some("v8"),
            (_, v) => v,
        }
    }

    /// True when an index entry for `other` can run where `self` is wanted.
    fn accepts(&self, other: &Platform, strict_variant: bool) -> bool {
        self.os == other.os
            && self.architecture == other.architecture
            && (!strict_variant || self.variant_or_default() == other.variant_or_default())
    }
}

/// A parsed image manifest.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageManifest {
    pub schema_version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    pub config: Descriptor,
    pub layers: Vec<Descriptor>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<std::collections::BTreeMap<String, String>>,
}

/// What a manifest fetch returned.
#[derive(Debug, Clone)]
pub enum Manifest {
    Image(Box<ImageManifest>),
    Index(Vec<Descriptor>),
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Probe {
    #[serde(default)]
    schema_version: Option<u32>,
    #[serde(default)]
    media_type: Option<String>,
    #[serde(default)]
    manifests: Option<Vec<Descriptor>>,
    #[serde(default)]
    layers: Option<serde_json::Value>,
}

/// Parses manifest bytes into an image manifest or an index.
pub fn parse(bytes: &[u8]) -> Result<Manifest> {
    let probe: Probe = serde_json::from_slice(bytes)?;
    if probe.schema_version == Some(1) {
        return Err(ManifestError::Schema1);
    }
    match probe.media_type.as_deref() {
        Some(DOCKER_SCHEMA1 | DOCKER_SCHEMA1_SIGNED) => Err(ManifestError::Schema1),
        Some(OCI_INDEX | DOCKER_LIST) => Ok(Manifest::Index(
            probe.manifests.ok_or(ManifestError::Missing("manifests"))?,
        )),
        Some(OCI_MANIFEST | DOCKER_MANIFEST) => {
            Ok(Manifest::Image(Box::new(serde_json::from_slice(bytes)?)))
        }
        Some(other) => Err(ManifestError::MediaType(other.to_owned())),
        // Some writers omit mediaType: the shape decides.
        None => match (probe.manifests, probe.layers) {
            (Some(m), _) => Ok(Manifest::Index(m)),
            (None, Some(_)) => Ok(Manifest::Image(Box::new(serde_json::from_slice(bytes)?))),
            (None, None) => Err(ManifestError::Missing("layers or manifests")),
        },
    }
}

/// Chooses the index entry for `wanted`: an exact variant match first, then (unless a
/// variant was asked for) any variant of the same OS and architecture.
pub fn select_platform<'a>(entries: &'a [Descriptor], wanted: &Platform) -> Result<&'a Descriptor> {
    let images = || {
        entries
            .iter()
            .filter(|d| d.media_type != OCI_INDEX && d.media_type != DOCKER_LIST)
    };
    let with = |strict: bool| {
        images().find(|d| {
            d.platform
                .as_ref()
                .is_some_and(|p| wanted.accepts(p, strict))
        })
    };
    if let Some(d) = with(true) {
        return Ok(d);
    }
    if wanted.variant.is_none() {
        if let Some(d) = with(false) {
            return Ok(d);
        }
    }
    let available: Vec<String> = images()
        .filter_map(|d| d.platform.as_ref())
        .filter(|p| p.os != "unknown")
        .map(|p| p.to_string())
        .collect();
    Err(ManifestError::NoPlatform {
        wanted: wanted.to_string(),
        available: if available.is_empty() {
            "none".into()
        } else {
            available.join(", ")
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(p: &str, digest: &str) -> Descriptor {
        Descriptor {
            media_type: OCI_MANIFEST.into(),
            digest: digest.into(),
            size: 1,
            platform: Some(Platform::parse(p).unwrap()),
            annotations: None,
        }
    }

    #[test]
    fn selects_platforms() {
        let idx = vec![
            entry("linux/arm/v7", "a"),
            entry("linux/arm64", "b"),
            entry("linux/amd64", "c"),
        ];
        let pick =
            |p: &str| select_platform(&idx, &Platform::parse(p).unwrap()).map(|d| d.digest.clone());
        assert_eq!(pick("linux/amd64").unwrap(), "c");
        assert_eq!(pick("linux/arm64/v8").unwrap(), "b");
        assert_eq!(pick("linux/arm").unwrap(), "a");
        let e = pick("linux/s390x").unwrap_err().to_string();
        assert!(
            e.contains("linux/amd64") && e.contains("linux/s390x"),
            "{e}"
        );
        assert!(pick("linux/arm/v6").is_err());
    }

    #[test]
    fn parses_kinds_and_refuses_schema1() {
        let m = br#"{"schemaVersion":2,"config":{"mediaType":"x","digest":"sha256:1","size":2},"layers":[]}"#;
        assert!(matches!(parse(m).unwrap(), Manifest::Image(_)));
        let i = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[]}"#;
        assert!(matches!(parse(i).unwrap(), Manifest::Index(_)));
        let s1 = br#"{"schemaVersion":1,"name":"x","fsLayers":[]}"#;
        assert!(matches!(parse(s1), Err(ManifestError::Schema1)));
        assert!(parse(b"{").is_err());
        assert!(Platform::parse("linux").is_err());
        assert!(Platform::parse("linux//x").is_err());
    }
}
