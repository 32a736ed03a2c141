//! A real Debian userland (debootstrap minbase, cached) and images built from it.

use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::build::{Compression, Image, Layer, LayerBuilder};

/// Where the debootstrapped rootfs is kept between runs (`$LAZYRUN_TEST_CACHE` overrides).
pub fn cache_dir() -> PathBuf {
    std::env::var_os("LAZYRUN_TEST_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/cache/lazyrun-testkit"))
}

/// A Debian bookworm minbase rootfs, made once with debootstrap (needs root and the Debian
/// mirror apt uses).
pub fn rootfs() -> Result<PathBuf> {
    let dest = cache_dir().join("bookworm-minbase");
    if dest.join("etc/debian_version").exists() {
        return Ok(dest);
    }
    std::fs::create_dir_all(cache_dir())?;
    let tmp = cache_dir().join(format!("bookworm-minbase.tmp{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    let mirror =
        std::env::var("DEBIAN_MIRROR").unwrap_or_else(|_| "http://deb.debian.org/debian".into());
    let status = Command::new(
        crate::registry::which("debootstrap").context("debootstrap is not installed")?,
    )
    .args(["--variant=minbase", "bookworm"])
    .arg(&tmp)
    .arg(&mirror)
    .stdout(std::process::Stdio::null())
    .status()
    .context("running debootstrap")?;
    if !status.success() {
        bail!("debootstrap failed ({status})");
    }
    std::fs::rename(&tmp, &dest)?;
    Ok(dest)
}

/// Two Debian-based images that hold the same files in different layers:
/// `base` is the rootfs in one layer; `app` splits it (everything but /usr/share, then
/// /usr/share with an app file and a whiteout on top).
pub fn images(rootfs: &Path) -> Result<(Image, Image)> {
    let whole = LayerBuilder::new()
        .tree_filtered(rootfs, &|_| true)?
        .finish();
    let base = Image::new(vec![Layer::new(whole, Compression::Gzip)])
        .with_config(serde_json::json!({"Cmd": ["bash"], "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]}));
    let share = Path::new("usr/share");
    let lower = LayerBuilder::new()
        .tree_filtered(rootfs, &|p| !p.starts_with(share))?
        .finish();
    let upper = LayerBuilder::new()
        .tree_filtered(rootfs, &|p| p.starts_with(share) || p == Path::new("usr"))?
        .dir("srv/app", 0o755)
        .file(
            "srv/app/hello.sh",
            b"#!/bin/sh\necho hello from the app\n",
            0o755,
        )
        .whiteout("etc/motd")
        .finish();
    let app = Image::new(vec![
        Layer::new(lower, Compression::Gzip),
        Layer::new(upper, Compression::Gzip),
    ])
    .with_config(serde_json::json!({
        "Entrypoint": ["/srv/app/hello.sh"], "WorkingDir": "/srv/app",
        "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "APP=demo"],
        "ExposedPorts": {"8080/tcp": {}}
    }));
    Ok((base, app))
}
