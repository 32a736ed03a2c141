//! The merged filesystem's state: inodes, names, attributes, and copy-up.
//!
//! Inode numbers: a lower node keeps its index plus one (so lower hardlinks share a number and the
//! root is 1); entries that exist only in the upper directory get numbers after the lower tree.
//! One mutex guards the name and inode tables; reads and writes of open files never take it.

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fuser::{FileAttr, FileType, INodeNo};
use nix::errno::Errno;
use nix::sys::stat::FileStat;

use crate::error::{Error, Result};
use crate::handles::Handles;
use crate::idmap::IdMap;
use crate::lower::{self, Kind, LowerTree};
use crate::upper::{self, Meta, Upper};
use crate::{Lower, Options};

/// One inode of the merged view.
#[derive(Debug, Clone)]
pub(crate) struct INode {
    pub kind: Kind,
    /// The lower node this presents while it has no upper copy (and, for a merged directory,
    /// whose children show through unless `opaque`).
    pub lower: Option<u32>,
    pub upper: bool,
    pub opaque: bool,
    pub parent: u64,
    pub name: OsString,
    /// Further names of a hardlinked file.
    pub aliases: Vec<(u64, OsString)>,
    /// Device and inode of the upper entry, while it has a name (the upper filesystem reuses
    /// inode numbers of deleted files).
    pub upper_id: Option<(u64, u64)>,
    /// Every name is gone (it may still be open): it has no path, and nothing copies it up.
    pub orphan: bool,
}

#[derive(Debug, Default)]
pub(crate) struct State {
    pub nodes: HashMap<u64, INode>,
    pub dentries: HashMap<(u64, OsString), u64>,
    pub upper_ids: HashMap<(u64, u64), u64>,
    pub next_ino: u64,
}

/// The filesystem: give it to [`crate::mount`] or drive it through [`fuser::Session`].
pub struct LazyFs {
    pub(crate) tree: LowerTree,
    pub(crate) lower: Arc<dyn Lower>,
    pub(crate) upper: Option<Upper>,
    pub(crate) uid_map: IdMap,
    pub(crate) gid_map: IdMap,
    pub(crate) privileged: bool,
    /// Image ids an upper entry without recorded owner belongs to (not root).
    pub(crate) default_owner: (u32, u32),
    pub(crate) state: Mutex<State>,
    pub(crate) handles: Handles,
    pub(crate) contents: Mutex<lru::LruCache<Box<str>, Arc<File>>>,
    pub(crate) want_passthrough: bool,
    pub(crate) passthrough: AtomicBool,
    /// Passthrough readers and writers per inode.
    pub(crate) io: crate::handles::IoModes,
    pub(crate) ttl: Duration,
    /// Listings of directories being read, by inode, until their last readdir.
    listings: Mutex<HashMap<u64, Listing>>,
    scratch: AtomicU64,
}

pub(crate) const ROOT_INO: u64 = 1;

/// A directory's merged listing for readdir: (cookie, name, inode, kind), by cookie.
pub(crate) type Listing = Arc<Vec<(u64, OsString, u64, Kind)>>;

fn errno(e: i32) -> Error {
    Error::Errno(Errno::from_raw(e))
}

impl LazyFs {
    /// A filesystem over `tree` (contents from `lower`) and, unless read-only, an upper directory.
    pub fn new(tree: LowerTree, lower: Arc<dyn Lower>, opts: &Options) -> io::Result<LazyFs> {
        let upper = match (&opts.upper, opts.read_only) {
            (Some(dir), false) => Some(Upper::open(dir)?),
            (None, false) => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "a writable mount needs an upper directory",
                ))
            }
            (_, true) => None,
        };
        let privileged = nix::unistd::geteuid().is_root();
        let me = (
            nix::unistd::getuid().as_raw(),
            nix::unistd::getgid().as_raw(),
        );
        let default_owner = (
            opts.uid_map.to_container(me.0).unwrap_or(0),
            opts.gid_map.to_container(me.1).unwrap_or(0),
        );
        let mut state = State {
            next_ino: tree.len() as u64 + 2,
            ..State::default()
        };
        let root_opaque = upper.as_ref().is_some_and(|u| u.is_opaque(Path::new("")));
        state.nodes.insert(
            ROOT_INO,
            INode {
                kind: Kind::Dir,
                lower: Some(lower::ROOT),
                upper: upper.is_some(),
                opaque: root_opaque,
                parent: ROOT_INO,
                name: OsString::new(),
                aliases: Vec::new(),
                upper_id: None,
                orphan: false,
            },
        );
        let cache = std::num::NonZeroUsize::new(opts.open_files.max(1)).unwrap_or(
            // A literal one is never zero.
            std::num::NonZeroUsize::MIN,
        );
        Ok(LazyFs {
            tree,
            lower,
            upper,
            uid_map: opts.uid_map.clone(),
            gid_map: opts.gid_map.clone(),
            privileged,
            default_owner,
            state: Mutex::new(state),
            handles: Handles::default(),
            contents: Mutex::new(lru::LruCache::new(cache)),
            want_passthrough: opts.passthrough && privileged,
            passthrough: AtomicBool::new(false),
            io: Default::default(),
            ttl: opts.ttl,
            listings: Mutex::default(),
            scratch: AtomicU64::new(0),
        })
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn listings(&self) -> MutexGuard<'_, HashMap<u64, Listing>> {
        self.listings.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Drops a cached listing after the directory changed.
    pub(crate) fn changed_dir(&self, ino: u64) {
        self.listings().remove(&ino);
    }

    pub(crate) fn upper(&self) -> Result<&Upper> {
        self.upper.as_ref().ok_or(Error::Errno(Errno::EROFS))
    }

    pub(crate) fn next_scratch(&self) -> u64 {
        self.scratch.fetch_add(1, Ordering::Relaxed)
    }

    pub(crate) fn node<'a>(&self, st: &'a State, ino: u64) -> Result<&'a INode> {
        st.nodes.get(&ino).ok_or(Error::Errno(Errno::ENOENT))
    }

    /// The merged path of an inode (its first name), relative to the root.
    pub(crate) fn path_of(&self, st: &State, ino: u64) -> Result<PathBuf> {
        let mut parts: Vec<&OsStr> = Vec::new();
        let mut cur = ino;
        while cur != ROOT_INO {
            let n = self.node(st, cur)?;
            if n.orphan {
                return Err(errno(libc::ENOENT));
            }
            parts.push(&n.name);
            cur = n.parent;
            if parts.len() > 4096 {
                return Err(errno(libc::ELOOP));
            }
        }
        Ok(parts.iter().rev().collect())
    }

    /// Finds (and remembers) the child `name` of directory `parent`.
    pub(crate) fn lookup_child(&self, st: &mut State, parent: u64, name: &OsStr) -> Result<u64> {
        if name.len() > 255 {
            return Err(errno(libc::ENAMETOOLONG));
        }
        if let Some(&ino) = st.dentries.get(&(parent, name.to_owned())) {
            return Ok(ino);
        }
        if name == "." || name == ".." || name.is_empty() {
            return Err(errno(libc::EINVAL));
        }
        let p = self.node(st, parent)?.clone();
        if p.kind != Kind::Dir {
            return Err(errno(libc::ENOTDIR));
        }
        if upper::reserved(name) {
            return Err(errno(libc::ENOENT));
        }
        let lower_cand = if p.opaque {
            None
        } else {
            p.lower.and_then(|l| self.tree.child(l, name))
        };
        let mut found: Option<INode> = None;
        let mut upper_id = None;
        if let (true, Some(up)) = (p.upper, &self.upper) {
            let rel = self.path_of(st, parent)?.join(name);
            match up.lstat(&rel)? {
                Some(s) => {
                    let kind = upper_kind(&s, &rel, up)?;
                    // An opaque directory owes nothing to the lower one at its path; it does
                    // not take that inode number either (a renamed directory may hold it).
                    let opaque = kind == Kind::Dir && up.is_opaque(&rel);
                    let lower = match lower_cand {
                        Some(l)
                            if kind == Kind::Dir
                                && !opaque
                                && self.tree_kind(l) == Some(Kind::Dir) =>
                        {
                            Some(l)
                        }
                        _ => None,
                    };
                    upper_id = Some((s.st_dev, s.st_ino));
                    found = Some(INode {
                        kind,
                        lower,
                        upper: true,
                        opaque,
                        parent,
                        name: name.to_owned(),
                        aliases: Vec::new(),
                        upper_id: Some((s.st_dev, s.st_ino)),
                        orphan: false,
                    });
                }
                None if up.has_whiteout(&self.path_of(st, parent)?, name) => {
                    return Err(errno(libc::ENOENT));
                }
                None => {}
            }
        }
        let fresh = match found {
            Some(n) => n,
            None => {
                let l = lower_cand.ok_or(Error::Errno(Errno::ENOENT))?;
                INode {
                    kind: self.tree_kind(l).ok_or(Error::Errno(Errno::ENOENT))?,
                    lower: Some(l),
                    upper: false,
                    opaque: false,
                    parent,
                    name: name.to_owned(),
                    aliases: Vec::new(),
                    upper_id: None,
                    orphan: false,
                }
            }
        };
        let known = upper_id.and_then(|id| st.upper_ids.get(&id).copied());
        let ino = match (known, fresh.lower, fresh.upper) {
            (Some(i), _, _) => i,
            (None, Some(l), _) => l as u64 + 1,
            (None, None, _) => {
                let i = st.next_ino;
                st.next_ino += 1;
                i
            }
        };
        match st.nodes.get_mut(&ino) {
            Some(existing) if existing.orphan => {
                // The name came back (an image entry whose deletion was undone).
                existing.parent = parent;
                existing.name = name.to_owned();
                existing.aliases.clear();
                existing.orphan = false;
            }
            Some(existing) => {
                let same = existing.parent == parent && existing.name == name;
                let listed = existing
                    .aliases
                    .iter()
                    .any(|(p, n)| *p == parent && n == name);
                if !same && !listed {
                    existing.aliases.push((parent, name.to_owned()));
                }
            }
            None => {
                st.nodes.insert(ino, fresh);
            }
        }
        if let Some(id) = upper_id {
            st.upper_ids.insert(id, ino);
            if let Some(n) = st.nodes.get_mut(&ino) {
                n.upper_id = Some(id);
            }
        }
        st.dentries.insert((parent, name.to_owned()), ino);
        Ok(ino)
    }

    fn tree_kind(&self, l: u32) -> Option<Kind> {
        self.tree.node(l).map(|n| n.kind)
    }

    /// The attributes the kernel sees for an inode.
    pub(crate) fn attr(&self, st: &State, ino: u64) -> Result<FileAttr> {
        let n = self.node(st, ino)?;
        if n.upper {
            let up = self.upper()?;
            let rel = self.path_of(st, ino)?;
            let path = up.abs(&rel);
            let s = nix::sys::stat::lstat(&path)?;
            let meta = if n.kind == Kind::Symlink {
                Meta::default()
            } else {
                upper::read_meta(&path)?
            };
            let mut a = self.upper_attr(ino, &s, &meta);
            if n.kind == Kind::Dir {
                if let Some(l) = n.lower.filter(|_| !n.opaque) {
                    a.nlink = a.nlink.max(self.tree.node(l).map_or(2, |l| l.nlink));
                }
            }
            return Ok(a);
        }
        let l = n.lower.ok_or(Error::Errno(Errno::ENOENT))?;
        let ln = self.tree.node(l).ok_or(Error::Errno(Errno::ENOENT))?;
        let t = time(ln.mtime, 0);
        Ok(FileAttr {
            ino: INodeNo(ino),
            size: if ln.kind == Kind::Symlink {
                ln.target.as_ref().map_or(0, |t| t.len() as u64)
            } else {
                ln.size
            },
            blocks: ln.size.div_ceil(512),
            atime: t,
            mtime: t,
            ctime: t,
            crtime: t,
            kind: file_type(ln.kind),
            perm: (ln.mode & 0o7777) as u16,
            nlink: ln.nlink,
            uid: self.uid_map.to_host(ln.uid),
            gid: self.gid_map.to_host(ln.gid),
            rdev: ln.rdev as u32,
            blksize: 4096,
            flags: 0,
        })
    }

    /// Attributes from an upper inode and its recorded metadata.
    pub(crate) fn upper_attr(&self, ino: u64, s: &FileStat, meta: &Meta) -> FileAttr {
        let mut kind = Kind::from_mode(s.st_mode).unwrap_or(Kind::File);
        let mut rdev = s.st_rdev;
        if let (Kind::File, Some((k, ma, mi))) = (kind, meta.dev) {
            kind = k;
            rdev = libc::makedev(ma, mi);
        }
        let (uid, gid) = self.owner_of(s, meta);
        let size = meta.size.filter(|_| meta.content.is_some());
        FileAttr {
            ino: INodeNo(ino),
            size: size.unwrap_or(s.st_size as u64),
            blocks: size.map_or(s.st_blocks as u64, |s| s.div_ceil(512)),
            atime: time(s.st_atime, s.st_atime_nsec),
            mtime: time(s.st_mtime, s.st_mtime_nsec),
            ctime: time(s.st_ctime, s.st_ctime_nsec),
            crtime: time(s.st_ctime, s.st_ctime_nsec),
            kind: file_type(kind),
            perm: (s.st_mode & 0o7777) as u16,
            nlink: s.st_nlink as u32,
            uid: self.uid_map.to_host(uid),
            gid: self.gid_map.to_host(gid),
            rdev: rdev as u32,
            blksize: 4096,
            flags: 0,
        }
    }

    /// Image ids owning an upper entry.
    pub(crate) fn owner_of(&self, s: &FileStat, meta: &Meta) -> (u32, u32) {
        let (du, dg) = if self.privileged {
            (s.st_uid, s.st_gid)
        } else {
            self.default_owner
        };
        (meta.uid.unwrap_or(du), meta.gid.unwrap_or(dg))
    }

    /// Records image owner ids on an upper path.
    pub(crate) fn set_owner(&self, path: &Path, kind: Kind, uid: u32, gid: u32) -> Result<()> {
        if self.privileged {
            let real = nix::unistd::fchownat(
                nix::fcntl::AT_FDCWD,
                path,
                Some(uid.into()),
                Some(gid.into()),
                nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
            );
            match real {
                Ok(()) => {
                    if kind != Kind::Symlink {
                        // A recorded owner would take precedence over the real one.
                        let mut meta = upper::read_meta(path)?;
                        if meta.uid.take().is_some() | meta.gid.take().is_some() {
                            upper::write_meta(path, &meta)?;
                        }
                    }
                    return Ok(());
                }
                // Root of a user namespace cannot give ids outside its map: record them.
                Err(Errno::EINVAL) | Err(Errno::EPERM) => {}
                Err(e) => return Err(e.into()),
            }
        }
        // Symlinks (and real special files) cannot hold the record.
        if kind == Kind::Symlink {
            return Ok(());
        }
        let mut meta = upper::read_meta(path)?;
        meta.uid = Some(uid);
        meta.gid = Some(gid);
        upper::write_meta(path, &meta)?;
        Ok(())
    }

    /// Opens lower content through the descriptor cache.
    pub(crate) fn open_content(&self, id: &str) -> Result<Arc<File>> {
        let mut cache = self.contents.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(f) = cache.get(id) {
            return Ok(f.clone());
        }
        drop(cache);
        let f = Arc::new(self.lower.open(id)?);
        let mut cache = self.contents.lock().unwrap_or_else(|p| p.into_inner());
        cache.put(Box::from(id), f.clone());
        Ok(f)
    }

    /// The inode at a merged path.
    pub(crate) fn resolve(&self, st: &mut State, path: &Path) -> Result<u64> {
        let mut cur = ROOT_INO;
        for part in path.iter() {
            cur = self.lookup_child(st, cur, part)?;
        }
        Ok(cur)
    }

    /// The merged listing of a directory: (name, inode, kind), sorted by name.
    pub(crate) fn list_dir(&self, st: &mut State, ino: u64) -> Result<Vec<(OsString, u64, Kind)>> {
        let n = self.node(st, ino)?.clone();
        if n.kind != Kind::Dir {
            return Err(errno(libc::ENOTDIR));
        }
        let mut names: Vec<OsString> = Vec::new();
        let mut listing = upper::Listing::default();
        if n.upper {
            listing = self.upper()?.list(&self.path_of(st, ino)?)?;
            names.extend(listing.names.iter().cloned());
        }
        if let Some(l) = n.lower.filter(|_| !n.opaque && !listing.opaque) {
            if let Some(children) = self.tree.node(l).and_then(|n| n.children.as_ref()) {
                for name in children.keys() {
                    let name: &OsStr = name;
                    if !listing.whiteouts.contains(name) && !listing.names.iter().any(|n| n == name)
                    {
                        names.push(name.to_owned());
                    }
                }
            }
        }
        names.sort();
        let mut out = Vec::with_capacity(names.len());
        for name in names {
            match self.lookup_child(st, ino, &name) {
                Ok(child) => {
                    let kind = self.node(st, child)?.kind;
                    out.push((name, child, kind));
                }
                Err(e) => {
                    tracing::debug!(ino, name = ?name, error = %e, "entry vanished while listing");
                }
            }
        }
        Ok(out)
    }

    /// Forgets one name of an inode after it was removed or renamed away.
    pub(crate) fn drop_name(&self, st: &mut State, parent: u64, name: &OsStr) {
        let Some(ino) = st.dentries.remove(&(parent, name.to_owned())) else {
            return;
        };
        let mut gone = None;
        if let Some(n) = st.nodes.get_mut(&ino) {
            if n.parent == parent && n.name == name {
                if n.aliases.is_empty() {
                    gone = n.upper_id.take();
                    n.orphan = true;
                } else {
                    let (p, nm) = n.aliases.remove(0);
                    n.parent = p;
                    n.name = nm;
                }
            } else {
                n.aliases.retain(|(p, nm)| !(*p == parent && nm == name));
            }
        }
        if let Some(id) = gone {
            if st.upper_ids.get(&id) == Some(&ino) {
                st.upper_ids.remove(&id);
            }
        }
    }

    /// True when the lower tree shows something at `name` under `parent` (so removing it from the
    /// upper directory needs a whiteout).
    pub(crate) fn lower_has(&self, st: &State, parent: u64, name: &OsStr) -> bool {
        st.nodes
            .get(&parent)
            .filter(|p| !p.opaque)
            .and_then(|p| p.lower)
            .and_then(|l| self.tree.child(l, name))
            .is_some()
    }

    /// The data of a symlink.
    pub(crate) fn readlink(&self, st: &State, ino: u64) -> Result<Vec<u8>> {
        let n = self.node(st, ino)?;
        if n.kind != Kind::Symlink {
            return Err(errno(libc::EINVAL));
        }
        if n.upper {
            let path = self.upper()?.abs(&self.path_of(st, ino)?);
            return Ok(std::fs::read_link(path)?.into_os_string().into_vec());
        }
        let l = n.lower.and_then(|l| self.tree.node(l));
        Ok(l.and_then(|l| l.target.as_ref())
            .map(|t| t.as_bytes().to_vec())
            .unwrap_or_default())
    }
}

use std::os::unix::ffi::OsStringExt;

fn upper_kind(s: &FileStat, rel: &Path, up: &Upper) -> Result<Kind> {
    let kind = Kind::from_mode(s.st_mode).ok_or(Error::Errno(Errno::EIO))?;
    if kind == Kind::File && s.st_size == 0 {
        if let Some((k, _, _)) = upper::read_meta(&up.abs(rel))?.dev {
            return Ok(k);
        }
    }
    Ok(kind)
}

pub(crate) fn mode(bits: u32) -> nix::sys::stat::Mode {
    nix::sys::stat::Mode::from_bits_truncate(bits & 0o7777)
}

pub(crate) fn time(sec: i64, nsec: i64) -> SystemTime {
    if sec >= 0 {
        UNIX_EPOCH + Duration::new(sec as u64, nsec.clamp(0, 999_999_999) as u32)
    } else {
        UNIX_EPOCH - Duration::from_secs(sec.unsigned_abs())
    }
}

pub(crate) fn file_type(k: Kind) -> FileType {
    match k {
        Kind::File => FileType::RegularFile,
        Kind::Dir => FileType::Directory,
        Kind::Symlink => FileType::Symlink,
        Kind::CharDevice => FileType::CharDevice,
        Kind::BlockDevice => FileType::BlockDevice,
        Kind::Fifo => FileType::NamedPipe,
        Kind::Socket => FileType::Socket,
    }
}
