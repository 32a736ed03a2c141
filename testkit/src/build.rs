//! Images built in memory: tar layers written entry by entry, compressed, described by an
//! OCI or Docker manifest, and pushed with oci-client.

use anyhow::{Context, Result};
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};
use serde_json::json;
use sha2::{Digest, Sha256};
use std::io::Write;
use std::path::{Path, PathBuf};

/// Fixed mtime for reproducible layers.
pub const MTIME: u64 = 1_700_000_000;

pub fn sha256(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(data)))
}

/// Writes a layer tar one entry at a time.
pub struct LayerBuilder {
    tar: tar::Builder<Vec<u8>>,
    uid: u64,
    gid: u64,
}

impl Default for LayerBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl LayerBuilder {
    pub fn new() -> Self {
        let mut tar = tar::Builder::new(Vec::new());
        tar.mode(tar::HeaderMode::Complete);
        LayerBuilder {
            tar,
            uid: 0,
            gid: 0,
        }
    }

    /// Owner for the entries that follow.
    pub fn owner(mut self, uid: u64, gid: u64) -> Self {
        self.uid = uid;
        self.gid = gid;
        self
    }

    fn header(&self, kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_uid(self.uid);
        h.set_gid(self.gid);
        h.set_mtime(MTIME);
        h.set_size(size);
        h
    }

    pub fn dir(mut self, path: &str, mode: u32) -> Self {
        let mut h = self.header(tar::EntryType::Directory, mode, 0);
        self.tar
            .append_data(&mut h, path, std::io::empty())
            .expect("tar dir");
        self
    }

    pub fn file(mut self, path: &str, data: &[u8], mode: u32) -> Self {
        let mut h = self.header(tar::EntryType::Regular, mode, data.len() as u64);
        self.tar.append_data(&mut h, path, data).expect("tar file");
        self
    }

    /// A file carrying PAX records (xattrs as `SCHILY.xattr.NAME`, or a long `path`).
    pub fn file_with_pax(
        mut self,
        path: &str,
        data: &[u8],
        mode: u32,
        pax: &[(&str, &[u8])],
    ) -> Self {
        self.tar
            .append_pax_extensions(pax.iter().copied())
            .expect("pax");
        let mut h = self.header(tar::EntryType::Regular, mode, data.len() as u64);
        self.tar.append_data(&mut h, path, data).expect("tar file");
        self
    }

    pub fn symlink(mut self, path: &str, target: &str) -> Self {
        let mut h = self.header(tar::EntryType::Symlink, 0o777, 0);
        self.tar
            .append_link(&mut h, path, target)
            .expect("tar symlink");
        self
    }

    pub fn hardlink(mut self, path: &str, target: &str) -> Self {
        let mut h = self.header(tar::EntryType::Link, 0o644, 0);
        self.tar
            .append_link(&mut h, path, target)
            .expect("tar hardlink");
        self
    }

    pub fn fifo(mut self, path: &str) -> Self {
        let mut h = self.header(tar::EntryType::Fifo, 0o644, 0);
        self.tar
            .append_data(&mut h, path, std::io::empty())
            .expect("tar fifo");
        self
    }

    pub fn char_device(mut self, path: &str, major: u32, minor: u32) -> Self {
        let mut h = self.header(tar::EntryType::Char, 0o666, 0);
        h.set_device_major(major).expect("major");
        h.set_device_minor(minor).expect("minor");
        self.tar
            .append_data(&mut h, path, std::io::empty())
            .expect("tar char");
        self
    }

    /// Deletes `path` from the layers below.
    pub fn whiteout(self, path: &str) -> Self {
        let (dir, name) = path.rsplit_once('/').unwrap_or(("", path));
        let wh = if dir.is_empty() {
            format!(".wh.{name}")
        } else {
            format!("{dir}/.wh.{name}")
        };
        self.file(&wh, b"", 0o644)
    }

    /// Hides everything the layers below have under `dir`.
    pub fn opaque(self, dir: &str) -> Self {
        self.file(&format!("{dir}/.wh..wh..opq"), b"", 0o644)
    }

    /// A member whose name is written verbatim, bypassing the tar crate's path checks
    /// (for hostile-input tests).
    pub fn raw_name(mut self, name: &[u8], kind: tar::EntryType, link: &[u8], data: &[u8]) -> Self {
        let mut h = self.header(kind, 0o644, data.len() as u64);
        let old = h.as_old_mut();
        old.name.fill(0);
        old.name[..name.len()].copy_from_slice(name);
        old.linkname.fill(0);
        old.linkname[..link.len()].copy_from_slice(link);
        h.set_cksum();
        self.tar.append(&h, data).expect("tar raw");
        self
    }

    /// Every file below `dir` (a real rootfs), keeping modes, owners and symlinks.
    pub fn tree(mut self, dir: &Path) -> Result<Self> {
        self.tar.follow_symlinks(false);
        self.tar
            .append_dir_all(".", dir)
            .with_context(|| format!("archiving {}", dir.display()))?;
        Ok(self)
    }

    /// Entries below `dir` whose relative path passes `keep` (directories are walked even when
    /// they are not kept), in sorted order, keeping modes, owners, symlinks and devices.
    pub fn tree_filtered(mut self, dir: &Path, keep: &dyn Fn(&Path) -> bool) -> Result<Self> {
        self.tar.follow_symlinks(false);
        let mut stack = vec![PathBuf::new()];
        while let Some(rel) = stack.pop() {
            let full = dir.join(&rel);
            let meta = std::fs::symlink_metadata(&full)?;
            if !rel.as_os_str().is_empty() && keep(&rel) {
                self.append_path(&full, &rel, &meta)?;
            }
            if meta.is_dir() {
                let mut names: Vec<_> = std::fs::read_dir(&full)?
                    .map(|e| e.map(|e| rel.join(e.file_name())))
                    .collect::<std::io::Result<_>>()?;
                names.sort();
                names.reverse();
                stack.extend(names);
            }
        }
        Ok(self)
    }

    fn append_path(&mut self, full: &Path, rel: &Path, meta: &std::fs::Metadata) -> Result<()> {
        use std::os::unix::fs::{FileTypeExt, MetadataExt};
        let ft = meta.file_type();
        let kind = if ft.is_char_device() {
            tar::EntryType::Char
        } else if ft.is_block_device() {
            tar::EntryType::Block
        } else if ft.is_fifo() {
            tar::EntryType::Fifo
        } else {
            return self
                .tar
                .append_path_with_name(full, rel)
                .with_context(|| format!("archiving {}", full.display()));
        };
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(meta.mode() & 0o7777);
        h.set_uid(meta.uid() as u64);
        h.set_gid(meta.gid() as u64);
        h.set_mtime(meta.mtime().max(0) as u64);
        h.set_size(0);
        let rdev = meta.rdev();
        let major = ((rdev >> 8) & 0xfff) | ((rdev >> 32) & !0xfff);
        let minor = (rdev & 0xff) | ((rdev >> 12) & !0xff);
        h.set_device_major(major as u32)?;
        h.set_device_minor(minor as u32)?;
        self.tar.append_data(&mut h, rel, std::io::empty())?;
        Ok(())
    }

    pub fn finish(self) -> Vec<u8> {
        self.tar.into_inner().expect("tar finish")
    }
}

/// Layer compression.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

/// Manifest flavour.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Oci,
    Docker,
}

/// A built layer: the blob, its media type and the digest of the uncompressed tar.
#[derive(Clone)]
pub struct Layer {
    pub blob: Vec<u8>,
    pub compression: Compression,
    pub diff_id: String,
}

impl Layer {
    pub fn new(tar: Vec<u8>, compression: Compression) -> Layer {
        let diff_id = sha256(&tar);
        let blob = match compression {
            Compression::None => tar,
            Compression::Gzip => {
                let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
                e.write_all(&tar).expect("gzip");
                e.finish().expect("gzip")
            }
            Compression::Zstd => zstd::encode_all(&tar[..], 3).expect("zstd"),
        };
        Layer {
            blob,
            compression,
            diff_id,
        }
    }

    fn media_type(&self, format: Format) -> &'static str {
        match (format, self.compression) {
            (Format::Oci, Compression::None) => "application/vnd.oci.image.layer.v1.tar",
            (Format::Oci, Compression::Gzip) => "application/vnd.oci.image.layer.v1.tar+gzip",
            (Format::Oci, Compression::Zstd) => "application/vnd.oci.image.layer.v1.tar+zstd",
            (Format::Docker, Compression::Gzip) => {
                "application/vnd.docker.image.rootfs.diff.tar.gzip"
            }
            (Format::Docker, _) => "application/vnd.docker.image.rootfs.diff.tar",
        }
    }
}

/// An image: layers bottom first, plus the run configuration.
#[derive(Clone)]
pub struct Image {
    pub layers: Vec<Layer>,
    pub architecture: String,
    pub run_config: serde_json::Value,
}

impl Image {
    pub fn new(layers: Vec<Layer>) -> Image {
        Image {
            layers,
            architecture: "amd64".into(),
            run_config: json!({"Cmd": ["/bin/sh"], "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]}),
        }
    }

    pub fn with_config(mut self, run_config: serde_json::Value) -> Image {
        self.run_config = run_config;
        self
    }

    pub fn with_arch(mut self, arch: &str) -> Image {
        self.architecture = arch.into();
        self
    }

    pub fn config_json(&self) -> Vec<u8> {
        let diff_ids: Vec<&str> = self.layers.iter().map(|l| l.diff_id.as_str()).collect();
        let history: Vec<serde_json::Value> = (0..self.layers.len())
            .map(|i| json!({"created": "2024-01-01T00:00:00Z", "created_by": format!("testkit layer {i}")}))
            .collect();
        serde_json::to_vec(&json!({
            "architecture": self.architecture,
            "os": "linux",
            "created": "2024-01-01T00:00:00Z",
            "config": self.run_config,
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
            "history": history,
        }))
        .expect("config json")
    }

    /// The manifest bytes for this image in `format`.
    pub fn manifest_json(&self, format: Format) -> Vec<u8> {
        let config = self.config_json();
        let mt = manifest_media_type(format);
        let cfg_mt = match format {
            Format::Oci => "application/vnd.oci.image.config.v1+json",
            Format::Docker => "application/vnd.docker.container.image.v1+json",
        };
        let layers: Vec<serde_json::Value> = self
            .layers
            .iter()
            .map(|l| json!({"mediaType": l.media_type(format), "digest": sha256(&l.blob), "size": l.blob.len()}))
            .collect();
        serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": mt,
            "config": {"mediaType": cfg_mt, "digest": sha256(&config), "size": config.len()},
            "layers": layers,
        }))
        .expect("manifest json")
    }
}

fn manifest_media_type(format: Format) -> &'static str {
    match format {
        Format::Oci => "application/vnd.oci.image.manifest.v1+json",
        Format::Docker => "application/vnd.docker.distribution.manifest.v2+json",
    }
}

/// A push client for a loopback registry.
pub struct Pusher {
    client: Client,
    auth: RegistryAuth,
    pub registry: String,
}

impl Pusher {
    pub fn new(registry: &str) -> Pusher {
        Self::with_auth(registry, RegistryAuth::Anonymous)
    }

    pub fn with_auth(registry: &str, auth: RegistryAuth) -> Pusher {
        let client = Client::new(ClientConfig {
            protocol: ClientProtocol::HttpsExcept(vec![registry.to_owned()]),
            use_monolithic_push: true,
            ..Default::default()
        });
        Pusher {
            client,
            auth,
            registry: registry.to_owned(),
        }
    }

    fn reference(&self, repo_tag: &str) -> Result<Reference> {
        Ok(format!("{}/{}", self.registry, repo_tag).parse()?)
    }

    /// Pushes a blob exactly as given (the digest may be deliberately wrong).
    pub async fn blob(&self, repo_tag: &str, data: &[u8], digest: &str) -> Result<()> {
        let r = self.reference(repo_tag)?;
        self.client
            .auth(&r, &self.auth, oci_client::RegistryOperation::Push)
            .await?;
        self.client.push_blob(&r, data.to_vec(), digest).await?;
        Ok(())
    }

    /// Pushes manifest bytes under `repo:tag`; returns the manifest digest.
    pub async fn manifest(&self, repo_tag: &str, body: &[u8], media_type: &str) -> Result<String> {
        let r = self.reference(repo_tag)?;
        self.client
            .auth(&r, &self.auth, oci_client::RegistryOperation::Push)
            .await?;
        self.client
            .push_manifest_raw(&r, body.to_vec(), media_type.parse()?)
            .await?;
        Ok(sha256(body))
    }

    /// Pushes config, layers and manifest; returns the manifest digest.
    pub async fn image(&self, repo_tag: &str, image: &Image, format: Format) -> Result<String> {
        let config = image.config_json();
        self.blob(repo_tag, &config, &sha256(&config)).await?;
        for l in &image.layers {
            self.blob(repo_tag, &l.blob, &sha256(&l.blob)).await?;
        }
        let m = image.manifest_json(format);
        self.manifest(repo_tag, &m, manifest_media_type(format))
            .await
    }

    /// Pushes one image per platform and an index over them under `repo:tag`.
    pub async fn index(
        &self,
        repo_tag: &str,
        images: &[(&str, &Image)],
        format: Format,
    ) -> Result<String> {
        let repo = repo_tag.split(':').next().unwrap_or(repo_tag);
        let mut entries = Vec::new();
        for (i, (platform, image)) in images.iter().enumerate() {
            let digest = self
                .image(&format!("{repo}:platform-{i}"), image, format)
                .await?;
            let m = image.manifest_json(format);
            let mut parts = platform.split('/');
            let os = parts.next().unwrap_or("linux");
            let arch = parts.next().unwrap_or("amd64");
            let mut p = json!({"os": os, "architecture": arch});
            if let Some(v) = parts.next() {
                p["variant"] = json!(v);
            }
            let mt = manifest_media_type(format);
            entries
                .push(json!({"mediaType": mt, "digest": digest, "size": m.len(), "platform": p}));
        }
        let mt = match format {
            Format::Oci => "application/vnd.oci.image.index.v1+json",
            Format::Docker => "application/vnd.docker.distribution.manifest.list.v2+json",
        };
        let body = serde_json::to_vec(
            &json!({"schemaVersion": 2, "mediaType": mt, "manifests": entries}),
        )?;
        self.manifest(repo_tag, &body, mt).await
    }
}

/// A layer with a static busybox at /bin/busybox and the applet links a shell needs.
pub fn busybox_layer() -> Result<Vec<u8>> {
    let bb = std::fs::read("/bin/busybox")
        .context("static busybox not found at /bin/busybox (apt-get install busybox-static)")?;
    let mut l = LayerBuilder::new()
        .dir("bin", 0o755)
        .dir("etc", 0o755)
        .dir("tmp", 0o1777)
        .dir("root", 0o700)
        .file("bin/busybox", &bb, 0o755);
    for applet in [
        "sh",
        "ls",
        "cat",
        "echo",
        "env",
        "id",
        "pwd",
        "sleep",
        "true",
        "false",
        "mkdir",
        "rm",
        "touch",
        "stat",
        "sha256sum",
        "find",
        "wc",
    ] {
        l = l.symlink(&format!("bin/{applet}"), "busybox");
    }
    Ok(l.file(
        "etc/passwd",
        b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n",
        0o644,
    )
    .file("etc/group", b"root:x:0:\nnogroup:x:65534:\n", 0o644)
    .finish())
}
