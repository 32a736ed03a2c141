//! Registry credentials from the files docker and podman write. Credentials are never logged.
//!
//! Searched in podman's order: `$REGISTRY_AUTH_FILE`, `$XDG_RUNTIME_DIR/containers/auth.json`,
//! `~/.docker/config.json`. Within a file the most specific key wins (`host/ns/repo` before
//! `host`); `https://` prefixes and `/v1/` suffixes are ignored, and Docker Hub's legacy key
//! `https://index.docker.io/v1/` stands for `docker.io`.

use base64::Engine;
use serde::Deserialize;
use std::collections::HashMap;
use std::path::PathBuf;

/// A username and password (or token) for one registry.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Credentials({}, <redacted>)", self.username)
    }
}

#[derive(Deserialize, Default)]
struct AuthFile {
    #[serde(default)]
    auths: HashMap<String, AuthEntry>,
}

#[derive(Deserialize, Default)]
struct AuthEntry {
    #[serde(default)]
    auth: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
}

/// The auth files to consult, in order.
pub fn auth_files() -> Vec<PathBuf> {
    let mut files = Vec::new();
    if let Some(f) = std::env::var_os("REGISTRY_AUTH_FILE").filter(|f| !f.is_empty()) {
        files.push(PathBuf::from(f));
    }
    if let Some(d) = std::env::var_os("XDG_RUNTIME_DIR").filter(|d| !d.is_empty()) {
        files.push(PathBuf::from(d).join("containers/auth.json"));
    }
    if let Some(h) = std::env::var_os("HOME").filter(|h| !h.is_empty()) {
        files.push(PathBuf::from(h).join(".docker/config.json"));
    }
    files
}

fn normalise_key(key: &str) -> String {
    let k = key
        .trim_start_matches("https://")
        .trim_start_matches("http://");
    let k = k
        .strip_suffix("/v1/")
        .or(k.strip_suffix("/v1"))
        .unwrap_or(k);
    let k = k.trim_end_matches('/');
    match k {
        "index.docker.io" | "registry-1.docker.io" => "docker.io".to_owned(),
        _ => k
            .strip_prefix("index.docker.io/")
            .map(|rest| format!("docker.io/{rest}"))
            .unwrap_or_else(|| k.to_owned()),
    }
}

fn decode(entry: &AuthEntry) -> Option<Credentials> {
    if let Some(a) = entry.auth.as_deref().filter(|a| !a.is_empty()) {
        let raw = base64::engine::general_purpose::STANDARD
            .decode(a.trim())
            .ok()?;
        let s = String::from_utf8(raw).ok()?;
        let (u, p) = s.split_once(':')?;
        return Some(Credentials {
            username: u.to_owned(),
            password: p.to_owned(),
        });
    }
    Some(Credentials {
        username: entry.username.clone()?,
        password: entry.password.clone()?,
    })
}

/// Finds credentials for `registry/repository` in the given files' contents.
pub fn lookup_in(files: &[String], registry: &str, repository: &str) -> Option<Credentials> {
    let mut wanted = Vec::new();
    let mut scope = format!("{registry}/{repository}");
    loop {
        wanted.push(scope.clone());
        match scope.rfind('/') {
            Some(i) => scope.truncate(i),
            None => break,
        }
    }
    for text in files {
        let Ok(parsed) = serde_json::from_str::<AuthFile>(text) else {
            continue;
        };
        let by_key: HashMap<String, &AuthEntry> = parsed
            .auths
            .iter()
            .map(|(k, v)| (normalise_key(k), v))
            .collect();
        for w in &wanted {
            if let Some(c) = by_key.get(w).and_then(|e| decode(e)) {
                return Some(c);
            }
        }
    }
    None
}

/// Finds credentials for `registry/repository` in the standard auth files.
pub fn lookup(registry: &str, repository: &str) -> Option<Credentials> {
    let texts: Vec<String> = auth_files()
        .iter()
        .filter_map(|f| std::fs::read_to_string(f).ok())
        .collect();
    lookup_in(&texts, registry, repository)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_most_specific_and_legacy_keys() {
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        let f = format!(
            r#"{{"auths": {{
                "https://index.docker.io/v1/": {{"auth": "{}"}},
                "reg.example:5000": {{"auth": "{}"}},
                "reg.example:5000/team/app": {{"username": "app", "password": "p:w"}}
            }}}}"#,
            b64("hub:secret"),
            b64("any:pw")
        );
        let files = vec![f];
        let hub = lookup_in(&files, "docker.io", "library/busybox").unwrap();
        assert_eq!(
            (hub.username.as_str(), hub.password.as_str()),
            ("hub", "secret")
        );
        let app = lookup_in(&files, "reg.example:5000", "team/app").unwrap();
        assert_eq!(
            (app.username.as_str(), app.password.as_str()),
            ("app", "p:w")
        );
        let other = lookup_in(&files, "reg.example:5000", "team/other").unwrap();
        assert_eq!(other.username, "any");
        assert!(lookup_in(&files, "elsewhere.io", "x").is_none());
        assert!(!format!("{hub:?}").contains("secret"));
    }

    #[test]
    fn earlier_file_wins_and_bad_files_are_skipped() {
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        let files = vec![
            "not json".to_owned(),
            format!(
                r#"{{"auths": {{"r:1": {{"auth": "{}"}}}}}}"#,
                b64("first:1")
            ),
            format!(
                r#"{{"auths": {{"r:1": {{"auth": "{}"}}}}}}"#,
                b64("second:2")
            ),
        ];
        assert_eq!(lookup_in(&files, "r:1", "a").unwrap().username, "first");
    }
}
