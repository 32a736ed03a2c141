use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

#[derive(clap::Args)]
pub struct Args {
    /// Where the image is mounted
    #[arg(value_name = "MOUNTPOINT")]
    mountpoint: PathBuf,
}

pub fn run(_g: &crate::Global, a: Args) -> anyhow::Result<()> {
    let target = std::path::absolute(&a.mountpoint)
        .with_context(|| format!("bad mountpoint {}", a.mountpoint.display()))?;
    let Some(pid) = mounted(&target)? else {
        bail!(
            "{} is not a lazyfs mount (see /proc/self/mountinfo)",
            target.display()
        );
    };
    let out = if nix::unistd::geteuid().is_root() {
        Command::new("umount").arg(&target).output()
    } else {
        Command::new("fusermount3").arg("-u").arg(&target).output()
    }
    .context("running umount (is fuse3 installed?)")?;
    if !out.status.success() {
        bail!(
            "unmounting {}: {} (is a process still using it? `fuser -vm {}` shows which)",
            target.display(),
            String::from_utf8_lossy(&out.stderr).trim(),
            target.display()
        );
    }
    // The server ends once the kernel lets go; wait for it so the upper directory is settled.
    if let Some(pid) = pid {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Path::new(&format!("/proc/{pid}")).exists() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    Ok(())
}

/// Whether `target` is a lazyfs mount, and the pid of its server when known.
fn mounted(target: &Path) -> anyhow::Result<Option<Option<i32>>> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").context("reading mountinfo")?;
    let want = target.to_string_lossy();
    for line in info.lines() {
        let fields: Vec<&str> = line.split(' ').collect();
        let Some(sep) = fields.iter().position(|f| *f == "-") else {
            continue;
        };
        let (Some(point), Some(fstype), Some(source)) =
            (fields.get(4), fields.get(sep + 1), fields.get(sep + 2))
        else {
            continue;
        };
        let ours = fstype.ends_with("lazyfs") || source.starts_with("lazyfs");
        if unescape(point) == want && fstype.starts_with("fuse") && ours {
            let pid = source
                .strip_prefix("lazyfs:")
                .and_then(|p| p.parse::<i32>().ok());
            return Ok(Some(pid));
        }
    }
    Ok(None)
}

/// Undoes mountinfo's octal escapes (`\040` for a space).
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && b.get(i + 1..i + 4)
                .is_some_and(|d| d.iter().all(u8::is_ascii_digit))
        {
            let v = (b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0');
            out.push(v);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}
