//! The FUSE entry points: each calls the matching `do_*` method and replies, or logs the failure
//! at debug with inode and path and replies its errno. Nothing here can panic.

use std::ffi::{OsStr, OsString};
use std::io;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::SystemTime;

use fuser::{
    AccessFlags, BsdFileFlags, Errno, FileHandle, Filesystem, FopenFlags, Generation, INodeNo,
    InitFlags, KernelConfig, LockOwner, OpenFlags, RenameFlags, ReplyAttr, ReplyCreate, ReplyData,
    ReplyDirectory, ReplyDirectoryPlus, ReplyEmpty, ReplyEntry, ReplyOpen, ReplyStatfs, ReplyWrite,
    ReplyXattr, Request, TimeOrNow, WriteFlags,
};

use crate::error::Error;
use crate::fs::{file_type, LazyFs};
use crate::lower::Kind;
use crate::ops::{Caller, NewKind};

const GEN: Generation = Generation(0);

/// What a lookup of an absent name answers: inode 0 makes it a negative entry.
const NEGATIVE: fuser::FileAttr = fuser::FileAttr {
    ino: INodeNo(0),
    size: 0,
    blocks: 0,
    atime: SystemTime::UNIX_EPOCH,
    mtime: SystemTime::UNIX_EPOCH,
    ctime: SystemTime::UNIX_EPOCH,
    crtime: SystemTime::UNIX_EPOCH,
    kind: fuser::FileType::RegularFile,
    perm: 0,
    nlink: 0,
    uid: 0,
    gid: 0,
    rdev: 0,
    blksize: 0,
    flags: 0,
};

impl LazyFs {
    fn fail(&self, op: &str, ino: u64, name: Option<&OsStr>, e: &Error) -> Errno {
        if tracing::enabled!(tracing::Level::DEBUG) {
            let path = self.describe(ino);
            tracing::debug!(op, ino, path, name = ?name, error = %e, "request failed");
        }
        Errno::from_i32(e.errno())
    }

    fn reply_xattr(&self, data: std::result::Result<Vec<u8>, Error>, size: u32, reply: ReplyXattr) {
        match data {
            Ok(v) if size == 0 => reply.size(v.len() as u32),
            Ok(v) if v.len() > size as usize => reply.error(Errno::ERANGE),
            Ok(v) => reply.data(&v),
            Err(e) => reply.error(Errno::from_i32(e.errno())),
        }
    }

    fn new_entry(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        perm: u32,
        kind: NewKind<'_>,
        reply: ReplyEntry,
    ) {
        let who = Caller {
            uid: req.uid(),
            gid: req.gid(),
        };
        match self.do_create(who, parent.0, name, perm, kind) {
            Ok((attr, _)) => reply.entry(&self.ttl, &attr, GEN),
            Err(e) => reply.error(self.fail("create", parent.0, Some(name), &e)),
        }
    }

    /// Entries of a directory after `offset`, "." and ".." first: (cookie, inode, kind, name);
    /// a reply's entries carry their cookie, which the kernel hands back to resume after it.
    fn dir_page(&self, ino: u64, offset: u64) -> Result<Vec<(u64, u64, Kind, OsString)>, Error> {
        let entries = self.listing(ino, offset)?;
        let parent = self.parent_of(ino);
        let dots = [
            (1, OsString::from("."), ino, Kind::Dir),
            (2, OsString::from(".."), parent, Kind::Dir),
        ];
        let start = entries.partition_point(|e| e.0 <= offset);
        Ok(dots
            .into_iter()
            .filter(|d| d.0 > offset)
            .chain(entries[start..].iter().cloned())
            .map(|(cookie, name, child, kind)| (cookie, child, kind, name))
            .collect())
    }

    /// After a readdir: a pass that reached the end no longer needs its listing kept.
    fn dir_page_done(&self, ino: u64, full: bool) {
        if !full {
            self.changed_dir(ino);
        }
    }

    /// Passthrough for a read-only handle when the kernel may use it (see [`IoModes::attach`]).
    fn attach_passthrough(
        &self,
        fh: u64,
        image_content: bool,
        reply: &ReplyOpen,
    ) -> Option<Arc<fuser::BackingId>> {
        if !self.passthrough.load(Ordering::Relaxed) {
            return None;
        }
        let h = self.handles.get(fh)?;
        if h.writable {
            return None;
        }
        let id = self
            .io
            .attach(h.ino, image_content, || reply.open_backing(&*h.file))?;
        let mut slot = h.backing.lock().unwrap_or_else(|p| p.into_inner());
        *slot = Some(id.clone());
        Some(id)
    }
}

impl Filesystem for LazyFs {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> io::Result<()> {
        for flag in [
            // Plus for every readdir: a walk then needs no lookup per entry.
            InitFlags::FUSE_DO_READDIRPLUS,
            InitFlags::FUSE_PARALLEL_DIROPS,
            InitFlags::FUSE_CACHE_SYMLINKS,
            InitFlags::FUSE_MAX_PAGES,
        ] {
            let _ = config.add_capabilities(flag);
        }
        let _ = config.set_max_readahead(1 << 20);
        if self.want_passthrough
            && config.add_capabilities(InitFlags::FUSE_PASSTHROUGH).is_ok()
            && config.set_max_stack_depth(1).is_ok()
        {
            self.passthrough.store(true, Ordering::Relaxed);
        }
        Ok(())
    }

    fn destroy(&mut self) {
        if let Some(up) = &self.upper {
            let _ = std::fs::remove_dir_all(up.root().join(crate::upper::WORK));
        }
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        match self.do_lookup(parent.0, name) {
            Ok(attr) => reply.entry(&self.ttl, &attr, GEN),
            // A negative entry: the kernel remembers the name is absent (for as long as any
            // entry) until it is created through the mount; searches along PATH or a library
            // path then cost one request per directory, once.
            Err(e) if e.errno() == libc::ENOENT => reply.entry(&self.ttl, &NEGATIVE, GEN),
            Err(e) => reply.error(self.fail("lookup", parent.0, Some(name), &e)),
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, fh: Option<FileHandle>, reply: ReplyAttr) {
        match self.do_getattr(ino.0, fh.map(|f| f.0)) {
            Ok(attr) => reply.attr(&self.ttl, &attr),
            Err(e) => reply.error(self.fail("getattr", ino.0, None, &e)),
        }
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        match self.do_setattr(ino.0, mode, uid, gid, size, atime, mtime, fh.map(|f| f.0)) {
            Ok(attr) => reply.attr(&self.ttl, &attr),
            Err(e) => reply.error(self.fail("setattr", ino.0, None, &e)),
        }
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        match self.do_readlink(ino.0) {
            Ok(t) => reply.data(&t),
            Err(e) => reply.error(self.fail("readlink", ino.0, None, &e)),
        }
    }

    fn mknod(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        rdev: u32,
        reply: ReplyEntry,
    ) {
        let kind = NewKind::Node {
            ifmt: mode & libc::S_IFMT,
            rdev: rdev as u64,
        };
        self.new_entry(req, parent, name, mode & !umask, kind, reply);
    }

    fn mkdir(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        reply: ReplyEntry,
    ) {
        self.new_entry(
            req,
            parent,
            name,
            mode & !umask & 0o7777,
            NewKind::Dir,
            reply,
        );
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        match self.do_unlink(parent.0, name, false) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(self.fail("unlink", parent.0, Some(name), &e)),
        }
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        match self.do_unlink(parent.0, name, true) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(self.fail("rmdir", parent.0, Some(name), &e)),
        }
    }

    fn symlink(
        &self,
        req: &Request,
        parent: INodeNo,
        link_name: &OsStr,
        target: &Path,
        reply: ReplyEntry,
    ) {
        self.new_entry(
            req,
            parent,
            link_name,
            0o777,
            NewKind::Symlink(target),
            reply,
        );
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        match self.do_rename(parent.0, name, newparent.0, newname, flags.bits()) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(self.fail("rename", parent.0, Some(name), &e)),
        }
    }

    fn link(
        &self,
        _req: &Request,
        ino: INodeNo,
        newparent: INodeNo,
        newname: &OsStr,
        reply: ReplyEntry,
    ) {
        match self.do_link(ino.0, newparent.0, newname) {
            Ok(attr) => reply.entry(&self.ttl, &attr, GEN),
            Err(e) => reply.error(self.fail("link", ino.0, Some(newname), &e)),
        }
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        match self.do_open(ino.0, flags.0) {
            Ok((fh, keep, lower)) => {
                // The kernel refuses KEEP_CACHE together with passthrough (EIO on read).
                let flags = if keep {
                    FopenFlags::FOPEN_KEEP_CACHE
                } else {
                    FopenFlags::empty()
                };
                // An inode read through passthrough keeps that for every open while one lasts:
                // the kernel refuses to mix it with reads through the server.
                let backing = self.attach_passthrough(fh, lower.is_some(), &reply);
                match backing {
                    Some(id) => reply.opened_passthrough(FileHandle(fh), FopenFlags::empty(), &id),
                    None => reply.opened(FileHandle(fh), flags),
                }
            }
            Err(e) => reply.error(self.fail("open", ino.0, None, &e)),
        }
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        match self.do_read(fh.0, offset, size) {
            Ok(data) => reply.data(&data),
            Err(e) => reply.error(self.fail("read", ino.0, None, &e)),
        }
    }

    fn write(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        match self.do_write(fh.0, offset, data) {
            Ok(n) => reply.written(n),
            Err(e) => reply.error(self.fail("write", ino.0, None, &e)),
        }
    }

    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        reply.ok();
    }

    fn release(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        self.do_release(fh.0);
        reply.ok();
    }

    fn fsync(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        datasync: bool,
        reply: ReplyEmpty,
    ) {
        match self.do_fsync(fh.0, datasync) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(self.fail("fsync", ino.0, None, &e)),
        }
    }

    fn opendir(&self, _req: &Request, _ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        // No directory handles: the kernel then skips opendir and releasedir altogether and
        // keeps listings itself, dropping them when an entry changes through the mount.
        reply.error(Errno::ENOSYS);
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let page = match self.dir_page(ino.0, offset) {
            Ok(p) => p,
            Err(e) => return reply.error(self.fail("readdir", ino.0, None, &e)),
        };
        // `add` says when the reply is full; `any` stops there.
        let full = page.iter().any(|(next, child, kind, name)| {
            reply.add(INodeNo(*child), *next, file_type(*kind), name)
        });
        self.dir_page_done(ino.0, full);
        reply.ok();
    }

    fn readdirplus(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectoryPlus,
    ) {
        let page = match self.dir_page(ino.0, offset) {
            Ok(p) => p,
            Err(e) => return reply.error(self.fail("readdirplus", ino.0, None, &e)),
        };
        let full = page.iter().any(|(next, child, _, name)| match self.attr_of(*child) {
            Ok(attr) => reply.add(INodeNo(*child), *next, name, &self.ttl, &attr, GEN),
            Err(e) => {
                tracing::debug!(ino = child, name = ?name, error = %e, "entry vanished while listing");
                false
            }
        });
        self.dir_page_done(ino.0, full);
        reply.ok();
    }

    fn fsyncdir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        reply.ok();
    }

    fn statfs(&self, _req: &Request, ino: INodeNo, reply: ReplyStatfs) {
        match self.do_statfs() {
            Ok(s) => reply.statfs(
                s.blocks(),
                s.blocks_free(),
                s.blocks_available(),
                s.files(),
                s.files_free(),
                s.block_size() as u32,
                255,
                s.fragment_size() as u32,
            ),
            Err(e) => reply.error(self.fail("statfs", ino.0, None, &e)),
        }
    }

    fn setxattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        name: &OsStr,
        value: &[u8],
        flags: i32,
        _position: u32,
        reply: ReplyEmpty,
    ) {
        match self.do_setxattr(ino.0, name, Some(value), flags) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(self.fail("setxattr", ino.0, Some(name), &e)),
        }
    }

    fn getxattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, size: u32, reply: ReplyXattr) {
        self.reply_xattr(self.do_getxattr(ino.0, name), size, reply);
    }

    fn listxattr(&self, _req: &Request, ino: INodeNo, size: u32, reply: ReplyXattr) {
        self.reply_xattr(self.do_listxattr(ino.0), size, reply);
    }

    fn removexattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        match self.do_setxattr(ino.0, name, None, 0) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(self.fail("removexattr", ino.0, Some(name), &e)),
        }
    }

    fn access(&self, _req: &Request, _ino: INodeNo, _mask: AccessFlags, reply: ReplyEmpty) {
        // Permission checks are the kernel's (default_permissions), from the attributes shown.
        reply.ok();
    }

    fn create(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        flags: i32,
        reply: ReplyCreate,
    ) {
        let who = Caller {
            uid: req.uid(),
            gid: req.gid(),
        };
        let kind = NewKind::File { flags };
        match self.do_create(who, parent.0, name, mode & !umask & 0o7777, kind) {
            Ok((attr, Some(file))) => {
                // A new file has no image content, so no reader can be in passthrough.
                self.io.start_write(attr.ino.0);
                let fh = self.handles.insert(crate::handles::FileHandle {
                    ino: attr.ino.0,
                    file: Arc::new(file),
                    writable: true,
                    backing: Default::default(),
                });
                reply.created(&self.ttl, &attr, GEN, FileHandle(fh), FopenFlags::empty());
            }
            Ok((_, None)) => reply.error(Errno::EIO),
            Err(e) => reply.error(self.fail("create", parent.0, Some(name), &e)),
        }
    }

    fn fallocate(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        length: u64,
        mode: i32,
        reply: ReplyEmpty,
    ) {
        match self.do_fallocate(fh.0, offset, length, mode) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(self.fail("fallocate", ino.0, None, &e)),
        }
    }
}
