//! One recorded filesystem entry of a layer, and the rules that turn tar paths into index paths.

use base64::Engine;

/// What an entry is. Whiteouts and opaque markers are the OCI layer's deletion records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    Regular,
    Directory,
    Symlink,
    Hardlink,
    CharDevice,
    BlockDevice,
    Fifo,
    /// `.wh.NAME`: NAME is deleted from the layers below. `path` is NAME's path.
    Whiteout,
    /// `.wh..wh..opq`: everything below this directory in lower layers is hidden.
    /// `path` is the directory's path.
    Opaque,
}

impl EntryKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EntryKind::Regular => "reg",
            EntryKind::Directory => "dir",
            EntryKind::Symlink => "symlink",
            EntryKind::Hardlink => "hardlink",
            EntryKind::CharDevice => "char",
            EntryKind::BlockDevice => "block",
            EntryKind::Fifo => "fifo",
            EntryKind::Whiteout => "whiteout",
            EntryKind::Opaque => "opaque",
        }
    }

    pub fn parse(s: &str) -> Option<EntryKind> {
        Some(match s {
            "reg" => EntryKind::Regular,
            "dir" => EntryKind::Directory,
            "symlink" => EntryKind::Symlink,
            "hardlink" => EntryKind::Hardlink,
            "char" => EntryKind::CharDevice,
            "block" => EntryKind::BlockDevice,
            "fifo" => EntryKind::Fifo,
            "whiteout" => EntryKind::Whiteout,
            "opaque" => EntryKind::Opaque,
            _ => return None,
        })
    }
}

/// A layer entry: everything needed to present it without reading the layer again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Relative to the image root, no leading `/`, no `.` or `..` components; `""` is the root.
    pub path: String,
    pub kind: EntryKind,
    /// Permission and special bits (`0o7777`), without the file type.
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    /// Content length of regular files (and hardlinks to them); 0 otherwise.
    pub size: u64,
    pub mtime: i64,
    /// Symlink target as written, or hardlink target as a sanitised image path.
    pub link: Option<String>,
    pub dev_major: u32,
    pub dev_minor: u32,
    /// Extended attributes from PAX `SCHILY.xattr.*` records, in archive order.
    pub xattrs: Vec<(String, Vec<u8>)>,
    /// `sha256:<hex>` of the content, for regular files (and hardlinks to them).
    pub digest: Option<String>,
    /// Offset of the content in the uncompressed layer tar.
    pub tar_offset: u64,
}

/// Why a tar path was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PathError {
    #[error("path {0:?} has a '..' component that would escape the image root")]
    Escapes(String),
    #[error("path {0:?} is not valid UTF-8")]
    NotUtf8(String),
    #[error("path {0:?} contains a NUL byte")]
    Nul(String),
}

/// Turns a tar member name into an index path: strips `./` and leading `/`, folds `//` and
/// `.` components, and refuses `..` so no entry can name anything outside the image root.
pub fn sanitize_path(raw: &[u8]) -> Result<String, PathError> {
    let s = std::str::from_utf8(raw)
        .map_err(|_| PathError::NotUtf8(String::from_utf8_lossy(raw).into_owned()))?;
    if s.contains('\0') {
        return Err(PathError::Nul(s.to_owned()));
    }
    let mut parts: Vec<&str> = Vec::new();
    for part in s.split('/') {
        match part {
            "" | "." => {}
            ".." => return Err(PathError::Escapes(s.to_owned())),
            p => parts.push(p),
        }
    }
    Ok(parts.join("/"))
}

/// Splits an index path into (parent, name); the root has no parent.
pub fn split_parent(path: &str) -> Option<(&str, &str)> {
    if path.is_empty() {
        return None;
    }
    Some(match path.rfind('/') {
        Some(i) => (&path[..i], &path[i + 1..]),
        None => ("", path),
    })
}

/// Xattrs are stored as JSON `[[name, base64(value)], ...]`: values may be binary.
pub fn encode_xattrs(xattrs: &[(String, Vec<u8>)]) -> Vec<u8> {
    let b64 = base64::engine::general_purpose::STANDARD;
    let list: Vec<(&str, String)> = xattrs
        .iter()
        .map(|(k, v)| (k.as_str(), b64.encode(v)))
        .collect();
    serde_json::to_vec(&list).unwrap_or_default()
}

/// Inverse of [`encode_xattrs`]; an unreadable record yields no xattrs.
pub fn decode_xattrs(raw: &[u8]) -> Vec<(String, Vec<u8>)> {
    let b64 = base64::engine::general_purpose::STANDARD;
    let list: Vec<(String, String)> = serde_json::from_slice(raw).unwrap_or_default();
    list.into_iter()
        .filter_map(|(k, v)| b64.decode(v).ok().map(|v| (k, v)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sanitize_strips_prefixes_and_folds() {
        assert_eq!(sanitize_path(b"./usr/bin/ls").unwrap(), "usr/bin/ls");
        assert_eq!(sanitize_path(b"/etc//passwd").unwrap(), "etc/passwd");
        assert_eq!(sanitize_path(b"./").unwrap(), "");
        assert_eq!(sanitize_path(b"a/./b/").unwrap(), "a/b");
    }

    #[test]
    fn sanitize_refuses_escapes() {
        assert!(matches!(
            sanitize_path(b"../etc/passwd"),
            Err(PathError::Escapes(_))
        ));
        assert!(matches!(
            sanitize_path(b"a/../../b"),
            Err(PathError::Escapes(_))
        ));
        assert!(matches!(sanitize_path(b"\xff"), Err(PathError::NotUtf8(_))));
    }

    #[test]
    fn split_parent_works() {
        assert_eq!(split_parent(""), None);
        assert_eq!(split_parent("etc"), Some(("", "etc")));
        assert_eq!(split_parent("etc/passwd"), Some(("etc", "passwd")));
    }

    #[test]
    fn xattrs_round_trip_binary() {
        let x = vec![
            ("security.capability".to_owned(), vec![0u8, 1, 255]),
            ("user.a".to_owned(), b"v".to_vec()),
        ];
        assert_eq!(decode_xattrs(&encode_xattrs(&x)), x);
    }
}
