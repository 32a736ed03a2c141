//! The read-only lower tree: every layer's entries merged once, at mount, by the OCI layer rules.
//!
//! Rules (OCI image spec, "Applying changesets"): layers apply bottom first; within one layer the
//! whiteouts (`.wh.NAME`) and opaque markers (`.wh..wh..opq`) act on the layers below only, so they
//! are applied before that layer's own entries; a later entry replaces an earlier one at the same
//! path, except that a directory over a directory only updates its metadata; a hardlink names the
//! same node as its target.

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;

/// What a lower entry is, as recorded in a layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    File,
    Dir,
    Symlink,
    /// Another name for the file at `link`.
    Hardlink,
    CharDevice,
    BlockDevice,
    Fifo,
    /// `path` is deleted from the layers below.
    Whiteout,
    /// Everything below the directory at `path` in the layers below is hidden.
    Opaque,
}

/// One entry of one layer, as the supplier of the lower tree records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LowerEntry {
    /// Relative to the image root, `/`-separated, no `.` or `..`; `""` is the root.
    pub path: String,
    pub kind: EntryKind,
    /// Permission and special bits (`0o7777`).
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub size: u64,
    pub mtime: i64,
    /// Symlink target, or the image path a hardlink names.
    pub link: Option<String>,
    pub rdev_major: u32,
    pub rdev_minor: u32,
    pub xattrs: Vec<(String, Vec<u8>)>,
    /// Content id the [`crate::Lower`] opens, for regular files.
    pub content: Option<String>,
}

/// The file type of a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    File,
    Dir,
    Symlink,
    CharDevice,
    BlockDevice,
    Fifo,
    Socket,
}

impl Kind {
    /// The `S_IFMT` bits of this type.
    pub fn ifmt(self) -> u32 {
        match self {
            Kind::File => libc::S_IFREG,
            Kind::Dir => libc::S_IFDIR,
            Kind::Symlink => libc::S_IFLNK,
            Kind::CharDevice => libc::S_IFCHR,
            Kind::BlockDevice => libc::S_IFBLK,
            Kind::Fifo => libc::S_IFIFO,
            Kind::Socket => libc::S_IFSOCK,
        }
    }

    /// The type encoded in a `st_mode`.
    pub fn from_mode(mode: u32) -> Option<Kind> {
        Some(match mode & libc::S_IFMT {
            libc::S_IFREG => Kind::File,
            libc::S_IFDIR => Kind::Dir,
            libc::S_IFLNK => Kind::Symlink,
            libc::S_IFCHR => Kind::CharDevice,
            libc::S_IFBLK => Kind::BlockDevice,
            libc::S_IFIFO => Kind::Fifo,
            libc::S_IFSOCK => Kind::Socket,
            _ => return None,
        })
    }
}

/// Extended attributes of a node, name and value.
pub type Xattrs = Box<[(Box<str>, Box<[u8]>)]>;

/// A node of the merged lower tree. Hardlinked names share one node.
#[derive(Debug, Clone)]
pub struct Node {
    pub kind: Kind,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub size: u64,
    pub mtime: i64,
    pub rdev: u64,
    pub nlink: u32,
    pub target: Option<Box<OsStr>>,
    pub content: Option<Box<str>>,
    pub xattrs: Xattrs,
    /// Directories only: children by name, sorted so listings are stable.
    pub children: Option<BTreeMap<Box<OsStr>, u32>>,
    /// Every (parent, name) that names this node; one for directories.
    pub links: Vec<(u32, Box<OsStr>)>,
}

/// The merged lower tree. Node 0 is the root; a node's index plus one is its inode number.
#[derive(Debug, Clone)]
pub struct LowerTree {
    nodes: Vec<Node>,
    skipped: usize,
}

/// Index of the root node.
pub const ROOT: u32 = 0;

impl Default for LowerTree {
    fn default() -> Self {
        LowerTree {
            nodes: vec![dir_node(0o755, 0, 0, 0)],
            skipped: 0,
        }
    }
}

fn dir_node(mode: u32, uid: u32, gid: u32, mtime: i64) -> Node {
    Node {
        kind: Kind::Dir,
        mode,
        uid,
        gid,
        size: 0,
        mtime,
        rdev: 0,
        nlink: 2,
        target: None,
        content: None,
        xattrs: Box::new([]),
        children: Some(BTreeMap::new()),
        links: Vec::new(),
    }
}

impl LowerTree {
    /// Merges layers given bottom first.
    pub fn build<L>(layers: L) -> LowerTree
    where
        L: IntoIterator,
        L::Item: AsRef<[LowerEntry]>,
    {
        let mut tree = LowerTree::default();
        for layer in layers {
            let layer = layer.as_ref();
            for e in layer {
                match e.kind {
                    EntryKind::Whiteout => {
                        if let Some((parent, name)) = tree.parent_and_name(&e.path) {
                            tree.unlink(parent, &name);
                        }
                    }
                    EntryKind::Opaque => {
                        if let Some(idx) = tree.resolve(&e.path) {
                            let names: Vec<Box<OsStr>> = tree.nodes[idx as usize]
                                .children
                                .as_ref()
                                .map(|c| c.keys().cloned().collect())
                                .unwrap_or_default();
                            for name in names {
                                tree.unlink(idx, &name);
                            }
                        }
                    }
                    _ => {}
                }
            }
            for e in layer {
                if !matches!(e.kind, EntryKind::Whiteout | EntryKind::Opaque) {
                    tree.insert(e);
                }
            }
        }
        tree.count_dir_links();
        tree
    }

    /// Number of nodes, live or not; inode numbers of lower nodes are below `len() + 1`.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// True when the tree holds only the root.
    pub fn is_empty(&self) -> bool {
        self.nodes.len() == 1
    }

    /// Entries that could not be placed (a hardlink to a missing target), logged and dropped.
    pub fn skipped(&self) -> usize {
        self.skipped
    }

    /// The node at `idx`.
    pub fn node(&self, idx: u32) -> Option<&Node> {
        self.nodes.get(idx as usize)
    }

    /// The child of directory `dir` named `name`.
    pub fn child(&self, dir: u32, name: &OsStr) -> Option<u32> {
        self.node(dir)?.children.as_ref()?.get(name).copied()
    }

    /// The node at an image path, `""` being the root.
    pub fn resolve(&self, path: &str) -> Option<u32> {
        let mut cur = ROOT;
        for part in path.split('/').filter(|p| !p.is_empty()) {
            cur = self.child(cur, OsStr::new(part))?;
        }
        Some(cur)
    }

    /// The path of one name of `idx` (its first link), relative to the root.
    pub fn path_of(&self, idx: u32) -> Option<OsString> {
        let mut parts: Vec<&OsStr> = Vec::new();
        let mut cur = idx;
        while cur != ROOT {
            let (parent, name) = self.node(cur)?.links.first()?;
            parts.push(name);
            cur = *parent;
            if parts.len() > 4096 {
                return None;
            }
        }
        let mut out = OsString::new();
        for (i, p) in parts.iter().rev().enumerate() {
            if i > 0 {
                out.push("/");
            }
            out.push(p);
        }
        Some(out)
    }

    fn parent_and_name(&self, path: &str) -> Option<(u32, Box<OsStr>)> {
        let path = path.trim_matches('/');
        let (parent, name) = match path.rfind('/') {
            Some(i) => (&path[..i], &path[i + 1..]),
            None => ("", path),
        };
        if name.is_empty() {
            return None;
        }
        Some((self.resolve(parent)?, Box::from(OsStr::new(name))))
    }

    /// The directory at `path`, creating missing ones (and replacing non-directories) on the way.
    fn ensure_dir(&mut self, path: &str) -> u32 {
        let mut cur = ROOT;
        for part in path.split('/').filter(|p| !p.is_empty()) {
            let name = OsStr::new(part);
            cur = match self.child(cur, name) {
                Some(c) if self.nodes[c as usize].kind == Kind::Dir => c,
                existing => {
                    if existing.is_some() {
                        self.unlink(cur, name);
                    }
                    let idx = self.push(dir_node(0o755, 0, 0, 0));
                    self.link(cur, name, idx);
                    idx
                }
            };
        }
        cur
    }

    fn push(&mut self, node: Node) -> u32 {
        self.nodes.push(node);
        (self.nodes.len() - 1) as u32
    }

    fn link(&mut self, dir: u32, name: &OsStr, idx: u32) {
        if let Some(children) = self.nodes[dir as usize].children.as_mut() {
            children.insert(Box::from(name), idx);
        }
        let node = &mut self.nodes[idx as usize];
        node.links.push((dir, Box::from(name)));
        if node.kind != Kind::Dir {
            node.nlink = node.links.len() as u32;
        }
    }

    /// Removes one name; a directory loses its whole subtree (without recursion: image trees
    /// can be deep).
    fn unlink(&mut self, dir: u32, name: &OsStr) {
        let mut pending = vec![(dir, Box::<OsStr>::from(name))];
        while let Some((dir, name)) = pending.pop() {
            let Some(idx) = self.nodes[dir as usize]
                .children
                .as_mut()
                .and_then(|c| c.remove(&name))
            else {
                continue;
            };
            let node = &mut self.nodes[idx as usize];
            node.links.retain(|(p, n)| !(*p == dir && *n == name));
            if node.kind != Kind::Dir {
                node.nlink = node.links.len() as u32;
                continue;
            }
            if let Some(children) = &node.children {
                pending.extend(children.keys().map(|c| (idx, c.clone())));
            }
        }
    }

    fn insert(&mut self, e: &LowerEntry) {
        if e.path.trim_matches('/').is_empty() {
            if e.kind == EntryKind::Dir {
                set_meta(&mut self.nodes[ROOT as usize], e);
            }
            return;
        }
        let path = e.path.trim_matches('/');
        let (parent_path, name) = match path.rfind('/') {
            Some(i) => (&path[..i], &path[i + 1..]),
            None => ("", path),
        };
        let parent = self.ensure_dir(parent_path);
        let name = OsStr::new(name);
        let existing = self.child(parent, name);
        if e.kind == EntryKind::Hardlink {
            let target = e.link.as_deref().and_then(|t| self.resolve(t));
            match target {
                Some(t) if self.nodes[t as usize].kind != Kind::Dir => {
                    if existing == Some(t) {
                        return;
                    }
                    if existing.is_some() {
                        self.unlink(parent, name);
                    }
                    self.link(parent, name, t);
                }
                _ => {
                    tracing::warn!(path = %e.path, target = ?e.link, "hardlink target missing; entry skipped");
                    self.skipped += 1;
                }
            }
            return;
        }
        if let Some(old) = existing {
            if e.kind == EntryKind::Dir && self.nodes[old as usize].kind == Kind::Dir {
                set_meta(&mut self.nodes[old as usize], e);
                return;
            }
            self.unlink(parent, name);
        }
        let kind = match e.kind {
            EntryKind::Dir => Kind::Dir,
            EntryKind::Symlink => Kind::Symlink,
            EntryKind::CharDevice => Kind::CharDevice,
            EntryKind::BlockDevice => Kind::BlockDevice,
            EntryKind::Fifo => Kind::Fifo,
            _ => Kind::File,
        };
        let mut node = if kind == Kind::Dir {
            dir_node(0, 0, 0, 0)
        } else {
            Node {
                kind,
                mode: 0,
                uid: 0,
                gid: 0,
                size: 0,
                mtime: 0,
                rdev: 0,
                nlink: 0,
                target: None,
                content: None,
                xattrs: Box::new([]),
                children: None,
                links: Vec::new(),
            }
        };
        set_meta(&mut node, e);
        match kind {
            Kind::Symlink => {
                node.target = Some(Box::from(OsStr::from_bytes(
                    e.link.as_deref().unwrap_or("").as_bytes(),
                )));
            }
            Kind::File => {
                node.size = e.size;
                node.content = e.content.as_deref().map(Box::from);
            }
            Kind::CharDevice | Kind::BlockDevice => {
                node.rdev = libc::makedev(e.rdev_major, e.rdev_minor);
            }
            _ => {}
        }
        let idx = self.push(node);
        self.link(parent, name, idx);
    }

    fn count_dir_links(&mut self) {
        for i in 0..self.nodes.len() {
            let subdirs = match &self.nodes[i].children {
                Some(c) => c
                    .values()
                    .filter(|&&c| self.nodes[c as usize].kind == Kind::Dir)
                    .count(),
                None => continue,
            };
            self.nodes[i].nlink = 2 + subdirs as u32;
        }
    }
}

fn set_meta(node: &mut Node, e: &LowerEntry) {
    node.mode = e.mode & 0o7777;
    node.uid = e.uid;
    node.gid = e.gid;
    node.mtime = e.mtime;
    node.xattrs = e
        .xattrs
        .iter()
        .map(|(k, v)| (Box::from(k.as_str()), Box::from(v.as_slice())))
        .collect();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(path: &str, kind: EntryKind) -> LowerEntry {
        LowerEntry {
            path: path.into(),
            kind,
            mode: if kind == EntryKind::Dir { 0o755 } else { 0o644 },
            uid: 0,
            gid: 0,
            size: 0,
            mtime: 1,
            link: None,
            rdev_major: 0,
            rdev_minor: 0,
            xattrs: vec![],
            content: None,
        }
    }

    fn file(path: &str, content: &str) -> LowerEntry {
        LowerEntry {
            content: Some(content.into()),
            size: content.len() as u64,
            ..entry(path, EntryKind::File)
        }
    }

    fn link(path: &str, kind: EntryKind, target: &str) -> LowerEntry {
        LowerEntry {
            link: Some(target.into()),
            ..entry(path, kind)
        }
    }

    fn names(t: &LowerTree, path: &str) -> Vec<String> {
        let idx = t.resolve(path).unwrap();
        t.node(idx)
            .unwrap()
            .children
            .as_ref()
            .unwrap()
            .keys()
            .map(|k| k.to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn later_layers_win_and_dirs_merge() {
        let t = LowerTree::build([
            vec![
                entry("etc", EntryKind::Dir),
                file("etc/a", "one"),
                file("etc/b", "b"),
            ],
            vec![
                LowerEntry {
                    mode: 0o700,
                    ..entry("etc", EntryKind::Dir)
                },
                file("etc/a", "two"),
            ],
        ]);
        assert_eq!(names(&t, "etc"), ["a", "b"]);
        let etc = t.node(t.resolve("etc").unwrap()).unwrap();
        assert_eq!(etc.mode, 0o700);
        let a = t.node(t.resolve("etc/a").unwrap()).unwrap();
        assert_eq!(a.content.as_deref(), Some("two"));
    }

    #[test]
    fn whiteouts_and_opaque_apply_to_lower_layers_only() {
        let t = LowerTree::build([
            vec![
                entry("d", EntryKind::Dir),
                file("d/x", "x"),
                file("d/y", "y"),
                entry("o", EntryKind::Dir),
                file("o/old", "o"),
                file("gone", "g"),
            ],
            vec![
                // New files of the same layer survive its own markers, whatever the order.
                file("o/new", "n"),
                entry("o", EntryKind::Opaque),
                entry("d/x", EntryKind::Whiteout),
                entry("gone", EntryKind::Whiteout),
                file("gone", "back"),
            ],
        ]);
        assert_eq!(names(&t, "d"), ["y"]);
        assert_eq!(names(&t, "o"), ["new"]);
        let gone = t.node(t.resolve("gone").unwrap()).unwrap();
        assert_eq!(gone.content.as_deref(), Some("back"));
    }

    #[test]
    fn hardlinks_share_a_node_and_count_links() {
        let t = LowerTree::build([
            vec![file("a", "data"), link("b", EntryKind::Hardlink, "a")],
            vec![entry("a", EntryKind::Whiteout)],
        ]);
        let b = t.resolve("b").unwrap();
        assert_eq!(t.node(b).unwrap().nlink, 1);
        assert!(t.resolve("a").is_none());
        let t = LowerTree::build([vec![
            entry("dir", EntryKind::Dir),
            file("dir/a", "data"),
            link("c", EntryKind::Hardlink, "dir/a"),
        ]]);
        assert_eq!(t.resolve("c"), t.resolve("dir/a"));
        assert_eq!(t.node(t.resolve("c").unwrap()).unwrap().nlink, 2);
        assert_eq!(t.node(ROOT).unwrap().nlink, 3);
    }

    #[test]
    fn replacing_a_directory_drops_its_subtree_and_links_into_it() {
        let t = LowerTree::build([
            vec![
                entry("d", EntryKind::Dir),
                file("d/f", "f"),
                link("outside", EntryKind::Hardlink, "d/f"),
            ],
            vec![link("d", EntryKind::Symlink, "/elsewhere")],
        ]);
        let d = t.node(t.resolve("d").unwrap()).unwrap();
        assert_eq!(d.kind, Kind::Symlink);
        assert_eq!(d.target.as_deref(), Some(OsStr::new("/elsewhere")));
        let outside = t.node(t.resolve("outside").unwrap()).unwrap();
        assert_eq!(outside.nlink, 1);
    }

    #[test]
    fn deep_trees_build_and_delete_without_recursion() {
        // On a small stack, where one frame per level would overflow.
        let run = std::thread::Builder::new()
            .stack_size(128 * 1024)
            .spawn(|| {
                let deep: Vec<String> = (1..=5_000).map(|n| vec!["d"; n].join("/")).collect();
                let mut layer: Vec<LowerEntry> =
                    deep.iter().map(|p| entry(p, EntryKind::Dir)).collect();
                layer.push(file(&format!("{}/f", deep[deep.len() - 1]), "f"));
                let t = LowerTree::build([layer, vec![entry("d", EntryKind::Whiteout)]]);
                assert!(t.resolve("d").is_none());
                t.node(ROOT).unwrap().children.as_ref().unwrap().len()
            })
            .unwrap();
        assert_eq!(run.join().unwrap(), 0);
    }

    #[test]
    fn missing_parents_are_created_and_bad_hardlinks_skipped() {
        let t = LowerTree::build([vec![
            file("a/b/c", "c"),
            link("h", EntryKind::Hardlink, "nowhere"),
        ]]);
        assert!(t.resolve("a/b/c").is_some());
        assert!(t.resolve("h").is_none());
        assert_eq!(t.skipped(), 1);
        assert_eq!(t.path_of(t.resolve("a/b/c").unwrap()).unwrap(), "a/b/c");
    }
}
