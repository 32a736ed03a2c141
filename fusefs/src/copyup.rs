//! Copy-up: giving an image entry its own upper copy, metadata first, data when written.
//!
//! A copy is made in the scratch directory and renamed into place, so a crash leaves either no
//! copy or a whole one. A file's first copy is an empty file naming its image content
//! (`user.lazyfs.meta`); its data is filled in place on the first write, and the content record
//! is dropped only once the data is there.

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};

use nix::errno::Errno;

use crate::error::{Error, Result};
use crate::fs::{mode, LazyFs, State, ROOT_INO};
use crate::lower::{self, Kind};
use crate::upper::{self, Meta, Upper};

fn errno(e: i32) -> Error {
    Error::Errno(Errno::from_raw(e))
}

impl LazyFs {
    /// Makes sure an inode has an upper entry (metadata only for files), with its parents.
    pub(crate) fn copy_up(&self, st: &mut State, ino: u64) -> Result<()> {
        // Ancestors first, top down, without recursion: image trees can be deep.
        let mut chain = Vec::new();
        let mut cur = ino;
        loop {
            let n = self.node(st, cur)?;
            if n.orphan {
                return Err(errno(libc::ENOENT));
            }
            if n.upper {
                break;
            }
            chain.push(cur);
            if cur == ROOT_INO || chain.len() > 1 << 16 {
                break;
            }
            cur = n.parent;
        }
        for &i in chain.iter().rev() {
            self.copy_up_one(st, i)?;
        }
        Ok(())
    }

    /// Copies up one inode whose parent already has an upper copy.
    fn copy_up_one(&self, st: &mut State, ino: u64) -> Result<()> {
        let n = self.node(st, ino)?.clone();
        if n.upper {
            return Ok(());
        }
        let up = self.upper()?;
        let l = n.lower.ok_or(Error::Errno(Errno::EIO))?;
        let ln = self.tree.node(l).ok_or(Error::Errno(Errno::EIO))?.clone();
        let names = if ln.kind != Kind::Dir && ln.nlink > 1 {
            self.visible_names(st, ino)?
        } else {
            vec![(n.parent, n.name.clone())]
        };
        let mut first: Option<PathBuf> = None;
        for (parent, name) in &names {
            self.copy_up(st, *parent)?;
            let rel = self.path_of(st, *parent)?.join(name);
            let dst = up.abs(&rel);
            match &first {
                None => {
                    self.create_copy(up, &dst, &ln)?;
                    first = Some(dst);
                }
                Some(src) => std::fs::hard_link(src, &dst)?,
            }
        }
        let Some(first) = first else {
            return Err(errno(libc::ENOENT));
        };
        let s = nix::sys::stat::lstat(&first)?;
        st.upper_ids.insert((s.st_dev, s.st_ino), ino);
        if let Some(node) = st.nodes.get_mut(&ino) {
            node.upper = true;
            node.upper_id = Some((s.st_dev, s.st_ino));
            for (p, name) in names {
                let known = (node.parent == p && node.name == name)
                    || node.aliases.iter().any(|(ap, an)| *ap == p && *an == name);
                if !known {
                    node.aliases.push((p, name.clone()));
                }
                st.dentries.insert((p, name), ino);
            }
        }
        Ok(())
    }

    /// Every name under which the merged view still shows a lower hardlinked inode.
    fn visible_names(&self, st: &mut State, ino: u64) -> Result<Vec<(u64, OsString)>> {
        let l = self.node(st, ino)?.lower.ok_or(Error::Errno(Errno::EIO))?;
        let links = self
            .tree
            .node(l)
            .map(|n| n.links.clone())
            .unwrap_or_default();
        let mut out = Vec::new();
        for (lp, lname) in links {
            let Some(dir_path) = self.tree.path_of(lp) else {
                continue;
            };
            let Ok(dir) = self.resolve(st, Path::new(&dir_path)) else {
                continue;
            };
            if self.node(st, dir)?.lower != Some(lp) {
                continue;
            }
            if let Ok(found) = self.lookup_child(st, dir, &lname) {
                if found == ino {
                    out.push((dir, lname.to_os_string()));
                }
            }
        }
        Ok(out)
    }

    /// Creates the upper copy of a lower node at `dst`, atomically (scratch, then rename).
    fn create_copy(&self, up: &Upper, dst: &Path, ln: &lower::Node) -> Result<()> {
        let tmp = up.scratch(self.next_scratch());
        let mut meta = Meta::default();
        // Made owner-writable; xattrs first, then the owner (a chown drops set-id bits), then
        // the mode, then the times.
        let mut special = false;
        match ln.kind {
            Kind::Dir => nix::unistd::mkdir(&tmp, mode(0o700))?,
            Kind::File => {
                File::create_new(&tmp)?;
                if ln.size > 0 {
                    meta.content = ln.content.as_deref().map(str::to_owned);
                    meta.size = Some(ln.size);
                }
            }
            Kind::Symlink => {
                std::os::unix::fs::symlink(ln.target.as_deref().unwrap_or(OsStr::new("")), &tmp)?
            }
            Kind::Fifo | Kind::Socket | Kind::CharDevice | Kind::BlockDevice => {
                let t = match ln.kind {
                    Kind::CharDevice => nix::sys::stat::SFlag::S_IFCHR,
                    Kind::BlockDevice => nix::sys::stat::SFlag::S_IFBLK,
                    Kind::Socket => nix::sys::stat::SFlag::S_IFSOCK,
                    _ => nix::sys::stat::SFlag::S_IFIFO,
                };
                let made =
                    self.privileged && nix::sys::stat::mknod(&tmp, t, mode(0o600), ln.rdev).is_ok();
                if made {
                    special = true;
                } else {
                    // No privilege (or root of a user namespace, which may not make devices).
                    File::create_new(&tmp)?;
                    meta.dev = Some((ln.kind, libc::major(ln.rdev), libc::minor(ln.rdev)));
                }
            }
        }
        // Real special files and symlinks hold no user xattrs.
        if ln.kind != Kind::Symlink && !special {
            for (k, v) in ln.xattrs.iter() {
                rustix::fs::lsetxattr(
                    &tmp,
                    upper::stored_name(OsStr::new(&**k)).as_os_str(),
                    v,
                    rustix::fs::XattrFlags::empty(),
                )?;
            }
            upper::write_meta(&tmp, &meta)?;
        }
        self.set_owner(
            &tmp,
            if special { Kind::Symlink } else { ln.kind },
            ln.uid,
            ln.gid,
        )?;
        if ln.kind != Kind::Symlink {
            nix::sys::stat::fchmodat(
                nix::fcntl::AT_FDCWD,
                &tmp,
                mode(ln.mode),
                nix::sys::stat::FchmodatFlags::FollowSymlink,
            )?;
        }
        set_times(&tmp, ln.mtime, ln.mtime)?;
        std::fs::rename(&tmp, dst)?;
        Ok(())
    }

    /// Makes sure an inode's data is in its upper file (not just a reference to lower content).
    pub(crate) fn copy_up_data(&self, st: &mut State, ino: u64) -> Result<PathBuf> {
        self.copy_up(st, ino)?;
        let up = self.upper()?;
        let path = up.abs(&self.path_of(st, ino)?);
        if self.node(st, ino)?.kind != Kind::File {
            return Ok(path);
        }
        let mut meta = upper::read_meta(&path)?;
        let Some(content) = meta.content.clone() else {
            return Ok(path);
        };
        let before = std::fs::symlink_metadata(&path)?;
        let src = self.open_content(&content)?;
        let dst = crate::files::open_upper(&path, std::fs::OpenOptions::new().write(true))?;
        copy_data(&src, &dst, meta.size.unwrap_or(0))?;
        dst.sync_data()?;
        set_times_ns(&path, &before)?;
        meta.content = None;
        meta.size = None;
        upper::write_meta(&path, &meta)?;
        Ok(path)
    }

    /// Copies up a directory and everything the merged view shows below it, then marks it opaque:
    /// after this, nothing of it depends on where its lower copy sits.
    pub(crate) fn copy_up_tree(&self, st: &mut State, ino: u64) -> Result<()> {
        let mut dirs = vec![ino];
        while let Some(dir) = dirs.pop() {
            self.copy_up(st, dir)?;
            let n = self.node(st, dir)?.clone();
            if n.kind != Kind::Dir || n.opaque || n.lower.is_none() {
                continue;
            }
            for (_, child, kind) in self.list_dir(st, dir)? {
                self.copy_up(st, child)?;
                if kind == Kind::Dir {
                    dirs.push(child);
                }
            }
            // Everything it shows is now in the upper copy (subdirectories follow from the
            // stack, through their own nodes).
            self.upper()?.set_opaque(&self.path_of(st, dir)?)?;
            if let Some(node) = st.nodes.get_mut(&dir) {
                node.opaque = true;
            }
        }
        Ok(())
    }
}

fn set_times(path: &Path, atime: i64, mtime: i64) -> Result<()> {
    use nix::sys::time::TimeSpec;
    nix::sys::stat::utimensat(
        nix::fcntl::AT_FDCWD,
        path,
        &TimeSpec::new(atime, 0),
        &TimeSpec::new(mtime, 0),
        nix::sys::stat::UtimensatFlags::NoFollowSymlink,
    )?;
    Ok(())
}

fn set_times_ns(path: &Path, m: &std::fs::Metadata) -> Result<()> {
    use nix::sys::time::TimeSpec;
    nix::sys::stat::utimensat(
        nix::fcntl::AT_FDCWD,
        path,
        &TimeSpec::new(m.atime(), m.atime_nsec()),
        &TimeSpec::new(m.mtime(), m.mtime_nsec()),
        nix::sys::stat::UtimensatFlags::NoFollowSymlink,
    )?;
    Ok(())
}

/// Copies `len` bytes: a reflink when both sides share a filesystem that can, else
/// `copy_file_range`, else plain reads and writes.
fn copy_data(src: &File, dst: &File, len: u64) -> Result<()> {
    if rustix::fs::ioctl_ficlone(dst, src).is_ok() {
        return Ok(());
    }
    let mut off: u64 = 0;
    let mut fallback = false;
    while off < len {
        let mut o_in = off;
        let mut o_out = off;
        let want = (len - off).min(1 << 30) as usize;
        match rustix::fs::copy_file_range(src, Some(&mut o_in), dst, Some(&mut o_out), want) {
            Ok(0) => break,
            Ok(n) => off += n as u64,
            Err(_) => {
                fallback = true;
                break;
            }
        }
    }
    if fallback {
        let mut buf = vec![0u8; 1 << 20];
        while off < len {
            let n = src.read_at(&mut buf, off)?;
            if n == 0 {
                break;
            }
            dst.write_all_at(&buf[..n], off)?;
            off += n as u64;
        }
    }
    Ok(())
}
