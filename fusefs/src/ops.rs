//! Request logic: each operation as a method returning `Result`, called by the thin FUSE layer.

use std::ffi::OsStr;
use std::fs::{File, OpenOptions};

use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use fuser::{FileAttr, TimeOrNow};
use nix::errno::Errno;

use crate::error::{Error, Result};
use crate::files::{open_upper, READERS_CLOSING};
use crate::fs::{mode, LazyFs, State};
use crate::lower::Kind;
use crate::upper::{self, Meta};

fn errno(e: i32) -> Error {
    Error::Errno(Errno::from_raw(e))
}

/// What a new entry is made as.
pub(crate) enum NewKind<'a> {
    Dir,
    File { flags: i32 },
    Symlink(&'a Path),
    Node { ifmt: u32, rdev: u64 },
}

/// The caller of a request, in host ids.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Caller {
    pub uid: u32,
    pub gid: u32,
}

impl LazyFs {
    pub(crate) fn do_lookup(&self, parent: u64, name: &OsStr) -> Result<FileAttr> {
        let mut st = self.lock();
        let ino = self.lookup_child(&mut st, parent, name)?;
        self.attr(&st, ino)
    }

    pub(crate) fn do_getattr(&self, ino: u64, fh: Option<u64>) -> Result<FileAttr> {
        let st = self.lock();
        match self.attr(&st, ino) {
            Err(e) if e.errno() == libc::ENOENT => {
                // Unlinked but still open: the handle's descriptor still knows.
                let f = fh
                    .and_then(|fh| self.handles.get(fh))
                    .or_else(|| self.handles.of_inode(ino, true))
                    .ok_or(e)?;
                let s = nix::sys::stat::fstat(&*f.file)?;
                Ok(self.upper_attr(ino, &s, &Meta::default()))
            }
            other => other,
        }
    }

    pub(crate) fn do_readlink(&self, ino: u64) -> Result<Vec<u8>> {
        let st = self.lock();
        self.readlink(&st, ino)
    }

    /// Image ids and permission bits of an inode.
    fn image_owner(&self, st: &State, ino: u64) -> Result<(u32, u32, u32)> {
        let a = self.attr(st, ino)?;
        Ok((
            self.uid_map
                .to_container(a.uid)
                .unwrap_or(crate::idmap::OVERFLOW),
            self.gid_map
                .to_container(a.gid)
                .unwrap_or(crate::idmap::OVERFLOW),
            a.perm as u32,
        ))
    }

    /// Checks a new name, copies the parent up and clears a whiteout. Returns the new entry's
    /// merged path, whether it now covers a deleted lower entry, and whether a whiteout was
    /// cleared (to put back with [`LazyFs::restore_whiteout`] if making the entry fails).
    fn prepare_new(
        &self,
        st: &mut State,
        parent: u64,
        name: &OsStr,
    ) -> Result<(PathBuf, bool, bool)> {
        if name.len() > 255 {
            return Err(errno(libc::ENAMETOOLONG));
        }
        match self.lookup_child(st, parent, name) {
            Ok(_) => return Err(errno(libc::EEXIST)),
            Err(e) if e.errno() == libc::ENOENT => {}
            Err(e) => return Err(e),
        }
        if upper::reserved(name) {
            return Err(errno(libc::EINVAL));
        }
        let up = self.upper()?;
        self.copy_up(st, parent)?;
        let prel = self.path_of(st, parent)?;
        let had_whiteout = up.remove_whiteout(&prel, name)?;
        let covers = had_whiteout && self.lower_has(st, parent, name);
        Ok((prel.join(name), covers, had_whiteout))
    }

    /// Puts back a whiteout a failed operation cleared, so the deleted entry stays deleted.
    fn restore_whiteout(&self, rel: &Path, cleared: bool) {
        let (Some(dir), Some(name), Ok(up)) = (rel.parent(), rel.file_name(), self.upper()) else {
            return;
        };
        if cleared {
            if let Err(e) = up.add_whiteout(dir, name) {
                tracing::warn!(path = %rel.display(), error = %e, "could not restore a whiteout");
            }
        }
    }

    /// Makes a new entry; returns its attributes and, for files, the open descriptor.
    pub(crate) fn do_create(
        &self,
        who: Caller,
        parent: u64,
        name: &OsStr,
        perm: u32,
        kind: NewKind<'_>,
    ) -> Result<(FileAttr, Option<File>)> {
        self.changed_dir(parent);
        let mut st = self.lock();
        let (rel, covers, cleared) = self.prepare_new(&mut st, parent, name)?;
        let made = self.make_entry(&mut st, who, parent, name, perm, kind, &rel, covers);
        if made.is_err() {
            self.restore_whiteout(&rel, cleared);
        }
        made
    }

    #[allow(clippy::too_many_arguments)]
    fn make_entry(
        &self,
        st: &mut State,
        who: Caller,
        parent: u64,
        name: &OsStr,
        perm: u32,
        kind: NewKind<'_>,
        rel: &Path,
        covers: bool,
    ) -> Result<(FileAttr, Option<File>)> {
        let up = self.upper()?;
        let path = up.abs(rel);
        let (_, pgid, pperm) = self.image_owner(st, parent)?;
        let uid = self
            .uid_map
            .to_container(who.uid)
            .unwrap_or(crate::idmap::OVERFLOW);
        let mut gid = self
            .gid_map
            .to_container(who.gid)
            .unwrap_or(crate::idmap::OVERFLOW);
        let mut perm = perm & 0o7777;
        if pperm & libc::S_ISGID != 0 {
            gid = pgid;
            if matches!(kind, NewKind::Dir) {
                perm |= libc::S_ISGID;
            }
        }
        let mut file = None;
        let made = match kind {
            NewKind::Dir => nix::unistd::mkdir(&path, mode(0o700)).map(|_| Kind::Dir),
            NewKind::File { flags } => {
                let acc = flags & libc::O_ACCMODE;
                let f = OpenOptions::new()
                    .read(true)
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .custom_flags(flags & (libc::O_SYNC | libc::O_DSYNC))
                    .open(&path)?;
                let _ = acc;
                file = Some(f);
                Ok(Kind::File)
            }
            NewKind::Symlink(target) => {
                std::os::unix::fs::symlink(target, &path)?;
                Ok(Kind::Symlink)
            }
            NewKind::Node { ifmt, rdev } => self.make_node(&path, ifmt, perm, rdev),
        };
        let made = made?;
        let done = self.finish_new(&path, rel, made, perm, uid, gid, covers);
        if let Err(e) = done {
            let _ = if made == Kind::Dir {
                std::fs::remove_dir_all(&path)
            } else {
                std::fs::remove_file(&path)
            };
            return Err(e);
        }
        let ino = self.lookup_child(st, parent, name)?;
        Ok((self.attr(st, ino)?, file))
    }

    fn make_node(&self, path: &Path, ifmt: u32, perm: u32, rdev: u64) -> nix::Result<Kind> {
        use nix::sys::stat::SFlag;
        let (flag, kind) = match ifmt {
            0 | libc::S_IFREG => (SFlag::S_IFREG, Kind::File),
            libc::S_IFIFO => (SFlag::S_IFIFO, Kind::Fifo),
            libc::S_IFSOCK => (SFlag::S_IFSOCK, Kind::Socket),
            libc::S_IFCHR => (SFlag::S_IFCHR, Kind::CharDevice),
            libc::S_IFBLK => (SFlag::S_IFBLK, Kind::BlockDevice),
            _ => return Err(Errno::EINVAL),
        };
        if !self.privileged {
            match kind {
                Kind::CharDevice | Kind::BlockDevice => return Err(Errno::EPERM),
                Kind::Fifo | Kind::Socket => {
                    // Kept as a placeholder that can carry the owner (see `Meta::dev`).
                    File::create_new(path)
                        .map_err(|e| Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)))?;
                    let meta = Meta {
                        dev: Some((kind, 0, 0)),
                        ..Meta::default()
                    };
                    upper::write_meta(path, &meta)
                        .map_err(|e| Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)))?;
                    return Ok(kind);
                }
                _ => {}
            }
        }
        nix::sys::stat::mknod(path, flag, mode(perm & 0o777), rdev)?;
        Ok(kind)
    }

    #[allow(clippy::too_many_arguments)]
    fn finish_new(
        &self,
        path: &Path,
        rel: &Path,
        kind: Kind,
        perm: u32,
        uid: u32,
        gid: u32,
        covers: bool,
    ) -> Result<()> {
        // Owner first: a chown drops set-id bits the mode then sets.
        self.set_owner(path, kind, uid, gid)?;
        if kind != Kind::Symlink {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(perm))?;
        }
        if kind == Kind::Dir && covers {
            self.upper()?.set_opaque(rel)?;
        }
        Ok(())
    }

    pub(crate) fn do_link(&self, ino: u64, newparent: u64, newname: &OsStr) -> Result<FileAttr> {
        self.changed_dir(newparent);
        let mut st = self.lock();
        if self.node(&st, ino)?.kind == Kind::Dir {
            return Err(errno(libc::EPERM));
        }
        let (rel, _, cleared) = self.prepare_new(&mut st, newparent, newname)?;
        let linked = self.copy_up(&mut st, ino).and_then(|()| {
            let up = self.upper()?;
            let src = up.abs(&self.path_of(&st, ino)?);
            Ok(std::fs::hard_link(src, up.abs(&rel))?)
        });
        if linked.is_err() {
            self.restore_whiteout(&rel, cleared);
        }
        linked?;
        let got = self.lookup_child(&mut st, newparent, newname)?;
        self.attr(&st, got)
    }

    pub(crate) fn do_unlink(&self, parent: u64, name: &OsStr, dir: bool) -> Result<()> {
        self.changed_dir(parent);
        let mut st = self.lock();
        let ino = self.lookup_child(&mut st, parent, name)?;
        let kind = self.node(&st, ino)?.kind;
        match (dir, kind == Kind::Dir) {
            (false, true) => return Err(errno(libc::EISDIR)),
            (true, false) => return Err(errno(libc::ENOTDIR)),
            (true, true) if !self.list_dir(&mut st, ino)?.is_empty() => {
                return Err(errno(libc::ENOTEMPTY))
            }
            _ => {}
        }
        let up = self.upper()?;
        self.copy_up(&mut st, parent)?;
        let n = self.node(&st, ino)?.clone();
        let shared_lower = !n.upper
            && !dir
            && n.lower
                .and_then(|l| self.tree.node(l))
                .is_some_and(|l| l.nlink > 1);
        if shared_lower {
            // The other names keep the file: give them their own upper copy first.
            self.copy_up(&mut st, ino)?;
        }
        let prel = self.path_of(&st, parent)?;
        let rel = prel.join(name);
        let lower_has = self.lower_has(&st, parent, name);
        if lower_has && !upper::Upper::can_whiteout(name) {
            // Checked before anything is removed: the image entry could not be marked deleted.
            return Err(errno(libc::ENAMETOOLONG));
        }
        if self.node(&st, ino)?.upper {
            if dir {
                up.clear_markers(&rel)?;
                std::fs::remove_dir(up.abs(&rel))?;
            } else {
                std::fs::remove_file(up.abs(&rel))?;
            }
        }
        if lower_has {
            up.add_whiteout(&prel, name)?;
        }
        self.drop_name(&mut st, parent, name);
        Ok(())
    }

    pub(crate) fn do_rename(
        &self,
        parent: u64,
        name: &OsStr,
        newparent: u64,
        newname: &OsStr,
        flags: u32,
    ) -> Result<()> {
        if flags & libc::RENAME_EXCHANGE != 0 || flags & libc::RENAME_WHITEOUT != 0 {
            return Err(errno(libc::EINVAL));
        }
        if newname.len() > 255 {
            return Err(errno(libc::ENAMETOOLONG));
        }
        self.changed_dir(parent);
        self.changed_dir(newparent);
        let mut st = self.lock();
        let src = self.lookup_child(&mut st, parent, name)?;
        let dst = match self.lookup_child(&mut st, newparent, newname) {
            Ok(d) => Some(d),
            Err(e) if e.errno() == libc::ENOENT => None,
            Err(e) => return Err(e),
        };
        if upper::reserved(newname) {
            return Err(errno(libc::EINVAL));
        }
        if self.lower_has(&st, parent, name) && !upper::Upper::can_whiteout(name) {
            return Err(errno(libc::ENAMETOOLONG));
        }
        if dst.is_some() && flags & libc::RENAME_NOREPLACE != 0 {
            return Err(errno(libc::EEXIST));
        }
        if dst == Some(src) {
            return Ok(());
        }
        let up = self.upper()?;
        let src_kind = self.node(&st, src)?.kind;
        if src_kind == Kind::Dir {
            let mut cur = newparent;
            loop {
                if cur == src {
                    return Err(errno(libc::EINVAL));
                }
                if cur == crate::fs::ROOT_INO {
                    break;
                }
                cur = self.node(&st, cur)?.parent;
            }
        }
        if let Some(d) = dst {
            let dk = self.node(&st, d)?.kind;
            match (src_kind == Kind::Dir, dk == Kind::Dir) {
                (true, false) => return Err(errno(libc::ENOTDIR)),
                (false, true) => return Err(errno(libc::EISDIR)),
                (true, true) if !self.list_dir(&mut st, d)?.is_empty() => {
                    return Err(errno(libc::ENOTEMPTY))
                }
                _ => {}
            }
        }
        if src_kind == Kind::Dir {
            self.copy_up_tree(&mut st, src)?;
        } else {
            self.copy_up(&mut st, src)?;
        }
        self.copy_up(&mut st, parent)?;
        self.copy_up(&mut st, newparent)?;
        let prel = self.path_of(&st, parent)?;
        let nprel = self.path_of(&st, newparent)?;
        let dst_rel = nprel.join(newname);
        if let Some(d) = dst {
            let dn = self.node(&st, d)?;
            if dn.kind == Kind::Dir && dn.upper {
                up.clear_markers(&dst_rel)?;
            }
        }
        let cleared = up.remove_whiteout(&nprel, newname)?;
        if let Err(e) = std::fs::rename(up.abs(&prel.join(name)), up.abs(&dst_rel)) {
            self.restore_whiteout(&dst_rel, cleared);
            return Err(e.into());
        }
        if src_kind == Kind::Dir && self.lower_has(&st, newparent, newname) {
            up.set_opaque(&dst_rel)?;
            if let Some(n) = st.nodes.get_mut(&src) {
                n.opaque = true;
            }
        }
        if self.lower_has(&st, parent, name) {
            up.add_whiteout(&prel, name)?;
        }
        if dst.is_some() {
            self.drop_name(&mut st, newparent, newname);
        }
        st.dentries.remove(&(parent, name.to_owned()));
        if let Some(n) = st.nodes.get_mut(&src) {
            if n.parent == parent && n.name == name {
                n.parent = newparent;
                n.name = newname.to_owned();
            } else if let Some(a) = n
                .aliases
                .iter_mut()
                .find(|(p, nm)| *p == parent && nm == name)
            {
                *a = (newparent, newname.to_owned());
            }
        }
        st.dentries.insert((newparent, newname.to_owned()), src);
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    pub(crate) fn do_setattr(
        &self,
        ino: u64,
        perm: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        fh: Option<u64>,
    ) -> Result<FileAttr> {
        if size.is_some() {
            self.io.wait_for_readers(ino, READERS_CLOSING);
        }
        let mut st = self.lock();
        let node = self.node(&st, ino)?;
        let kind = node.kind;
        if node.orphan {
            drop(st);
            return self.setattr_orphan(ino, perm, size, atime, mtime, fh);
        }
        if let Some(size) = size {
            if kind == Kind::Dir {
                return Err(errno(libc::EISDIR));
            }
            self.truncate(&mut st, ino, size, fh)?;
        }
        if perm.is_none() && uid.is_none() && gid.is_none() && atime.is_none() && mtime.is_none() {
            return self.attr(&st, ino);
        }
        self.copy_up(&mut st, ino)?;
        let path = self.upper()?.abs(&self.path_of(&st, ino)?);
        let (cur_uid, cur_gid, cur_perm) = self.image_owner(&st, ino)?;
        let mut perm = perm.map(|p| p & 0o7777);
        if uid.is_some() || gid.is_some() {
            let new_uid = match uid {
                Some(u) => self.uid_map.to_container(u).ok_or(errno(libc::EINVAL))?,
                None => cur_uid,
            };
            let new_gid = match gid {
                Some(g) => self.gid_map.to_container(g).ok_or(errno(libc::EINVAL))?,
                None => cur_gid,
            };
            self.set_owner(&path, kind, new_uid, new_gid)?;
            let setid = libc::S_ISUID | libc::S_ISGID;
            if perm.is_none() && kind != Kind::Dir && cur_perm & setid != 0 {
                // Like a local filesystem: a change of owner drops set-user-ID, and
                // set-group-ID when it means something (group execute set).
                let mut p = cur_perm & !libc::S_ISUID;
                if p & libc::S_IXGRP != 0 {
                    p &= !libc::S_ISGID;
                }
                perm = Some(p);
            }
        }
        if let Some(p) = perm {
            if kind != Kind::Symlink {
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(p))?;
            }
        }
        if atime.is_some() || mtime.is_some() {
            nix::sys::stat::utimensat(
                nix::fcntl::AT_FDCWD,
                &path,
                &timespec(atime),
                &timespec(mtime),
                nix::sys::stat::UtimensatFlags::NoFollowSymlink,
            )?;
        }
        self.attr(&st, ino)
    }

    /// setattr of a file with no name left: only through an open writable descriptor (its
    /// upper file), as fchmod, ftruncate and futimens on an unlinked file do.
    fn setattr_orphan(
        &self,
        ino: u64,
        perm: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        fh: Option<u64>,
    ) -> Result<FileAttr> {
        let f = fh
            .and_then(|fh| self.handles.get(fh))
            .filter(|f| f.writable)
            .or_else(|| self.handles.of_inode(ino, true))
            .ok_or(errno(libc::ENOENT))?;
        if let Some(size) = size {
            f.file.set_len(size)?;
        }
        if let Some(p) = perm {
            f.file
                .set_permissions(std::fs::Permissions::from_mode(p & 0o7777))?;
        }
        if atime.is_some() || mtime.is_some() {
            nix::sys::stat::futimens(&*f.file, &timespec(atime), &timespec(mtime))?;
        }
        let s = nix::sys::stat::fstat(&*f.file)?;
        Ok(self.upper_attr(ino, &s, &Meta::default()))
    }

    pub(crate) fn truncate(
        &self,
        st: &mut State,
        ino: u64,
        size: u64,
        fh: Option<u64>,
    ) -> Result<()> {
        if let Some(f) = fh.and_then(|fh| self.handles.get(fh)).as_deref() {
            if f.writable {
                f.file.set_len(size)?;
                return Ok(());
            }
        }
        if self.io.passthrough_live(ino) {
            return Err(errno(libc::ETXTBSY));
        }
        let path = if size == 0 {
            self.copy_up(st, ino)?;
            let path = self.upper()?.abs(&self.path_of(st, ino)?);
            let mut meta = upper::read_meta(&path)?;
            if meta.content.take().is_some() {
                meta.size = None;
                upper::write_meta(&path, &meta)?;
            }
            path
        } else {
            self.copy_up_data(st, ino)?
        };
        open_upper(&path, OpenOptions::new().write(true))?.set_len(size)?;
        Ok(())
    }

    /// The listing of a directory for a readdir at `offset`, ordered by cookie: taken afresh
    /// at offset 0 and kept for the rest of the pass. Cookies come from names, not positions,
    /// so a pass that resumes after the directory changed skips nothing that stayed.
    pub(crate) fn listing(&self, ino: u64, offset: u64) -> Result<crate::fs::Listing> {
        if offset > 0 {
            if let Some(l) = self.listings().get(&ino) {
                return Ok(l.clone());
            }
        }
        let mut entries: Vec<_> = {
            let mut st = self.lock();
            self.list_dir(&mut st, ino)?
                .into_iter()
                .map(|(name, child, kind)| (cookie(&name), name, child, kind))
                .collect()
        };
        entries.sort_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
        let entries = Arc::new(entries);
        self.listings().insert(ino, entries.clone());
        Ok(entries)
    }

    pub(crate) fn attr_of(&self, ino: u64) -> Result<FileAttr> {
        let st = self.lock();
        self.attr(&st, ino)
    }

    pub(crate) fn parent_of(&self, ino: u64) -> u64 {
        let st = self.lock();
        st.nodes.get(&ino).map_or(crate::fs::ROOT_INO, |n| n.parent)
    }

    pub(crate) fn do_getxattr(&self, ino: u64, name: &OsStr) -> Result<Vec<u8>> {
        let st = self.lock();
        let n = self.node(&st, ino)?;
        if n.upper {
            if n.kind == Kind::Symlink {
                return Err(errno(libc::ENODATA));
            }
            let path = self.upper()?.abs(&self.path_of(&st, ino)?);
            return upper::get_xattr(&path, &upper::stored_name(name).to_string_lossy())?
                .ok_or(errno(libc::ENODATA));
        }
        let l = n.lower.and_then(|l| self.tree.node(l));
        l.and_then(|l| {
            l.xattrs
                .iter()
                .find(|(k, _)| k.as_bytes() == name.as_bytes())
                .map(|(_, v)| v.to_vec())
        })
        .ok_or(errno(libc::ENODATA))
    }

    pub(crate) fn do_listxattr(&self, ino: u64) -> Result<Vec<u8>> {
        let st = self.lock();
        let n = self.node(&st, ino)?;
        let names: Vec<Vec<u8>> = if n.upper {
            if n.kind == Kind::Symlink {
                Vec::new()
            } else {
                upper::list_shown_xattrs(&self.upper()?.abs(&self.path_of(&st, ino)?))?
            }
        } else {
            n.lower
                .and_then(|l| self.tree.node(l))
                .map(|l| {
                    l.xattrs
                        .iter()
                        .map(|(k, _)| k.as_bytes().to_vec())
                        .collect()
                })
                .unwrap_or_default()
        };
        let mut out = Vec::new();
        for name in names {
            out.extend_from_slice(&name);
            out.push(0);
        }
        Ok(out)
    }

    pub(crate) fn do_setxattr(
        &self,
        ino: u64,
        name: &OsStr,
        value: Option<&[u8]>,
        flags: i32,
    ) -> Result<()> {
        let mut st = self.lock();
        if value.is_none() {
            // Removing a name that is not there must not copy anything up.
            let has = match self.node(&st, ino)?.upper {
                true => true,
                false => self.do_getxattr_locked(&st, ino, name).is_ok(),
            };
            if !has {
                return Err(errno(libc::ENODATA));
            }
        }
        self.copy_up(&mut st, ino)?;
        if self.node(&st, ino)?.kind == Kind::Symlink {
            return Err(errno(libc::EPERM));
        }
        let path = self.upper()?.abs(&self.path_of(&st, ino)?);
        let stored = upper::stored_name(name);
        upper::with_owner_write(&path, || {
            match value {
                Some(v) => rustix::fs::lsetxattr(
                    &path,
                    stored.as_os_str(),
                    v,
                    rustix::fs::XattrFlags::from_bits_truncate(flags as u32),
                ),
                None => rustix::fs::lremovexattr(&path, stored.as_os_str()),
            }
            .map_err(Into::into)
        })?;
        Ok(())
    }

    fn do_getxattr_locked(&self, st: &State, ino: u64, name: &OsStr) -> Result<()> {
        let n = self.node(st, ino)?;
        let l = n.lower.and_then(|l| self.tree.node(l));
        l.and_then(|l| {
            l.xattrs
                .iter()
                .find(|(k, _)| k.as_bytes() == name.as_bytes())
        })
        .map(|_| ())
        .ok_or(errno(libc::ENODATA))
    }

    pub(crate) fn do_statfs(&self) -> Result<nix::sys::statvfs::Statvfs> {
        let path = match &self.upper {
            Some(u) => u.root().to_owned(),
            None => PathBuf::from("/"),
        };
        Ok(nix::sys::statvfs::statvfs(&path)?)
    }

    /// A name for logs: the inode's merged path.
    pub(crate) fn describe(&self, ino: u64) -> String {
        let st = self.lock();
        self.path_of(&st, ino)
            .map(|p| format!("/{}", p.display()))
            .unwrap_or_else(|_| format!("inode {ino}"))
    }
}

/// A setattr time as utimensat takes it.
fn timespec(t: Option<TimeOrNow>) -> nix::sys::time::TimeSpec {
    use nix::sys::time::TimeSpec;
    match t {
        None => TimeSpec::UTIME_OMIT,
        Some(TimeOrNow::Now) => TimeSpec::UTIME_NOW,
        Some(TimeOrNow::SpecificTime(t)) => {
            let d = t.duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
            TimeSpec::new(d.as_secs() as i64, d.subsec_nanos() as i64)
        }
    }
}

/// The readdir offset of a name: a hash, above the 1 and 2 of "." and "..", below `i64::MAX`.
fn cookie(name: &OsStr) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::hash::DefaultHasher::new();
    name.hash(&mut h);
    (h.finish() >> 1).max(3)
}
