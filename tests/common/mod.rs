//! Shared helpers for integration tests: a store in a temp dir and the `lazyrun` binary.

#![allow(dead_code, unused_imports)]

pub mod fuse;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub use testkit::build::{sha256, Layer, Pusher};
pub use testkit::{Compression, Format, Image, LayerBuilder, TestRegistry};

/// A private store plus the environment `lazyrun` runs with.
pub struct Env {
    pub root: tempfile::TempDir,
    pub envs: Vec<(String, String)>,
}

impl Env {
    pub fn new() -> Env {
        Env {
            root: tempfile::tempdir().expect("tempdir"),
            envs: vec![("REGISTRY_AUTH_FILE".into(), "/nonexistent".into())],
        }
    }

    pub fn root(&self) -> &Path {
        self.root.path()
    }

    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_lazyrun"));
        c.arg("--root").arg(self.root.path()).args(args);
        c.env_remove("LAZYRUN_ROOT").env("HOME", self.root.path());
        for (k, v) in &self.envs {
            c.env(k, v);
        }
        c
    }

    /// Runs lazyrun; returns the output whatever the exit status.
    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().expect("run lazyrun")
    }

    /// Runs lazyrun and insists it succeeds; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "lazyrun {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs lazyrun and insists it fails with a one-line error; returns that line.
    pub fn fails(&self, args: &[&str]) -> String {
        let out = self.run(args);
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(!out.status.success(), "lazyrun {args:?} should fail");
        assert!(!err.contains("panicked"), "panic: {err}");
        assert_eq!(
            err.trim_end().lines().count(),
            1,
            "error should be one line: {err}"
        );
        err
    }

    pub fn json(&self, args: &[&str]) -> serde_json::Value {
        serde_json::from_str(&self.ok(args)).expect("json output")
    }

    pub fn store(&self) -> lazyrun::store::Store {
        lazyrun::store::Store::open(self.root.path()).expect("open store")
    }
}

/// A tokio runtime for pushing images.
pub fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Runtime::new().expect("runtime")
}

/// Every object file's content must hash to its name.
pub fn assert_objects_intact(root: &Path) {
    let store = lazyrun::store::ObjectStore::open(root).expect("objects");
    for (digest, path) in store.list().expect("list") {
        let data = std::fs::read(&path).expect("read object");
        assert_eq!(
            sha256(&data),
            digest,
            "object {} is corrupt",
            path.display()
        );
    }
}

/// Number of rows in a table of the index.
pub fn count(root: &Path, table: &str) -> i64 {
    let conn = rusqlite::Connection::open(root.join("index.db")).expect("db");
    conn.query_row(&format!("SELECT COUNT(*) FROM {table}"), [], |r| r.get(0))
        .expect("count")
}

pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

pub fn tmp_files(root: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(root.join("tmp"))
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default()
}
