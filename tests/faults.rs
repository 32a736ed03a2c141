//! Malformed and hostile registries, auth, interrupted and concurrent pulls.

#![allow(clippy::unwrap_used)]

mod common;
use common::*;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Deterministic incompressible bytes.
fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = (seed << 1) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn blob_path(reg: &TestRegistry, digest: &str) -> PathBuf {
    let hex = digest.trim_start_matches("sha256:");
    reg.data_dir()
        .join("docker/registry/v2/blobs/sha256")
        .join(&hex[..2])
        .join(hex)
        .join("data")
}

fn one_layer(data: &[u8]) -> (Image, Layer) {
    let layer = Layer::new(
        LayerBuilder::new().file("payload", data, 0o644).finish(),
        Compression::Gzip,
    );
    (Image::new(vec![layer.clone()]), layer)
}

#[test]
fn corrupt_truncated_and_missing_blobs_fail_cleanly() {
    let reg = TestRegistry::start().unwrap();
    let push = Pusher::new(&reg.addr);
    let rt = rt();
    let env = Env::new();
    for (tag, damage) in [("corrupt", 0), ("truncated", 1), ("missing", 2)] {
        let (image, layer) = one_layer(&noise(200_000, tag.len() as u64));
        rt.block_on(push.image(&format!("bad/blob:{tag}"), &image, Format::Oci))
            .unwrap();
        let digest = sha256(&layer.blob);
        let path = blob_path(&reg, &digest);
        let mut data = std::fs::read(&path).unwrap();
        match damage {
            0 => {
                let mid = data.len() / 2;
                data[mid] ^= 0xff;
                std::fs::write(&path, &data).unwrap();
            }
            1 => std::fs::write(&path, &data[..data.len() / 2]).unwrap(),
            _ => std::fs::remove_file(&path).unwrap(),
        }
        let err = env.fails(&["pull", &format!("{}/bad/blob:{tag}", reg.addr)]);
        assert!(
            err.contains(&digest) || err.contains("not found"),
            "{tag}: {err}"
        );
        match damage {
            0 => assert!(err.contains("digest mismatch"), "{err}"),
            1 => assert!(
                err.contains("mismatch") || err.contains("reading layer"),
                "{err}"
            ),
            _ => assert!(err.contains("not found") || err.contains("HTTP"), "{err}"),
        }
        assert_eq!(count(env.root(), "images"), 0, "{tag}");
        assert_eq!(count(env.root(), "layers"), 0, "{tag}");
    }
    assert_objects_intact(env.root());
    assert!(tmp_files(env.root()).is_empty());
}

#[test]
fn wrong_config_digest_is_refused() {
    let reg = TestRegistry::start().unwrap();
    let push = Pusher::new(&reg.addr);
    let (image, _) = one_layer(b"x");
    let rt = rt();
    rt.block_on(push.image("bad/config:1", &image, Format::Oci))
        .unwrap();
    let config = image.config_json();
    let path = blob_path(&reg, &sha256(&config));
    let mut data = std::fs::read(&path).unwrap();
    data[0] = b' ';
    std::fs::write(&path, &data).unwrap();
    let env = Env::new();
    let err = env.fails(&["pull", &format!("{}/bad/config:1", reg.addr)]);
    assert!(
        err.contains("image config") && err.contains("digest"),
        "{err}"
    );
    assert_eq!(count(env.root(), "images"), 0);
}

#[test]
fn basic_auth_from_auth_files() {
    let reg = TestRegistry::start_with(testkit::registry::Auth::Htpasswd {
        user: "alice".into(),
        password: "s3cret:pw".into(),
    })
    .unwrap();
    let push = Pusher::with_auth(
        &reg.addr,
        oci_client::secrets::RegistryAuth::Basic("alice".into(), "s3cret:pw".into()),
    );
    let (image, _) = one_layer(b"private");
    rt().block_on(push.image("priv/app:1", &image, Format::Docker))
        .unwrap();
    let name = format!("{}/priv/app:1", reg.addr);

    let env = Env::new();
    let err = env.fails(&["pull", &name]);
    assert!(err.contains("not authorized"), "{err}");
    assert!(!err.contains("s3cret"));

    use base64::Engine;
    let auth = base64::engine::general_purpose::STANDARD.encode("alice:s3cret:pw");
    let wrong = base64::engine::general_purpose::STANDARD.encode("alice:nope");
    let file = env.root().join("auth.json");
    std::fs::write(
        &file,
        format!(r#"{{"auths":{{"{}":{{"auth":"{wrong}"}}}}}}"#, reg.addr),
    )
    .unwrap();
    let mut bad = Env::new();
    bad.envs = vec![("REGISTRY_AUTH_FILE".into(), file.display().to_string())];
    let err = bad.fails(&["pull", &name]);
    assert!(err.contains("not authorized"), "{err}");

    std::fs::write(
        &file,
        format!(r#"{{"auths":{{"{}":{{"auth":"{auth}"}}}}}}"#, reg.addr),
    )
    .unwrap();
    let mut good = Env::new();
    good.envs = vec![("REGISTRY_AUTH_FILE".into(), file.display().to_string())];
    good.ok(&["pull", &name]);

    // ~/.docker/config.json is read too (the test sets HOME to the store directory).
    let docker = Env::new();
    std::fs::create_dir_all(docker.root().join(".docker")).unwrap();
    std::fs::write(
        docker.root().join(".docker/config.json"),
        format!(
            r#"{{"auths":{{"http://{}":{{"auth":"{auth}"}}}}}}"#,
            reg.addr
        ),
    )
    .unwrap();
    let mut docker = docker;
    docker.envs.clear();
    docker.ok(&["pull", &name]);
    assert_eq!(count(docker.root(), "images"), 1);
}

#[test]
fn killed_pull_leaves_no_partial_object_and_retry_succeeds() {
    let reg = TestRegistry::start().unwrap();
    let push = Pusher::new(&reg.addr);
    let big = noise(96 << 20, 7);
    let small = Layer::new(
        LayerBuilder::new().file("small", b"s", 0o644).finish(),
        Compression::Gzip,
    );
    let large = Layer::new(
        LayerBuilder::new().file("big.bin", &big, 0o644).finish(),
        Compression::Gzip,
    );
    let image = Image::new(vec![small, large]);
    rt().block_on(push.image("big/img:1", &image, Format::Oci))
        .unwrap();
    let name = format!("{}/big/img:1", reg.addr);

    let env = Env::new();
    let mut child = env.cmd(&["pull", &name]).spawn().unwrap();
    // Kill it while the big file is being written to tmp/.
    let start = Instant::now();
    let mut killed_mid_write = false;
    while start.elapsed() < Duration::from_secs(60) {
        if !tmp_files(env.root()).is_empty() {
            child.kill().unwrap();
            killed_mid_write = true;
            break;
        }
        if child.try_wait().unwrap().is_some() {
            break;
        }
        std::thread::sleep(Duration::from_micros(200));
    }
    let _ = child.wait();
    assert!(
        killed_mid_write,
        "the pull finished before it could be interrupted"
    );
    assert_eq!(count(env.root(), "images"), 0);
    // The big layer was not recorded, and no object holds a partial file.
    let big_digest = sha256(&image.layers[1].blob);
    let conn = env.store().connect().unwrap();
    assert!(lazyrun::store::db::layer_id(&conn, &big_digest)
        .unwrap()
        .is_none());
    assert!(!env.store().objects().has(&sha256(&big), big.len() as u64));
    assert_objects_intact(env.root());

    env.ok(&["pull", &name]);
    assert!(env.store().objects().has(&sha256(&big), big.len() as u64));
    assert!(
        tmp_files(env.root()).is_empty(),
        "stale tmp files were not cleaned"
    );
    assert_objects_intact(env.root());
}

#[test]
fn dropped_connection_fails_cleanly_and_retry_succeeds() {
    let mut reg = TestRegistry::start().unwrap();
    let push = Pusher::new(&reg.addr);
    let big = noise(96 << 20, 11);
    let layer = Layer::new(
        LayerBuilder::new().file("big.bin", &big, 0o644).finish(),
        Compression::Gzip,
    );
    rt().block_on(push.image("drop/img:1", &Image::new(vec![layer]), Format::Oci))
        .unwrap();
    let name = format!("{}/drop/img:1", reg.addr);
    let env = Env::new();
    let child = env
        .cmd(&["pull", &name])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while tmp_files(env.root()).is_empty() && start.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_micros(200));
    }
    assert!(
        !tmp_files(env.root()).is_empty(),
        "the pull never started writing"
    );
    reg.restart().unwrap();
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "the pull should fail when the connection drops"
    );
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(count(env.root(), "layers"), 0);
    assert!(
        tmp_files(env.root()).is_empty(),
        "the failed pull left tmp files"
    );
    assert_objects_intact(env.root());

    env.ok(&["pull", &name]);
    assert!(env.store().objects().has(&sha256(&big), big.len() as u64));
}

#[test]
fn concurrent_pulls_leave_one_consistent_copy() {
    let reg = TestRegistry::start().unwrap();
    let push = Pusher::new(&reg.addr);
    let layers: Vec<Layer> = (0..4)
        .map(|i| {
            let mut b = LayerBuilder::new();
            for f in 0..50 {
                b = b.file(
                    &format!("l{i}/f{f}"),
                    &noise(20_000, (i * 100 + f) as u64),
                    0o644,
                );
            }
            // Every layer also has one file all layers share.
            Layer::new(
                b.file(&format!("l{i}/common"), b"common", 0o644).finish(),
                Compression::Gzip,
            )
        })
        .collect();
    rt().block_on(push.image("conc/img:1", &Image::new(layers), Format::Oci))
        .unwrap();
    let name = format!("{}/conc/img:1", reg.addr);
    let env = Env::new();
    let children: Vec<_> = (0..3)
        .map(|_| {
            env.cmd(&["pull", &name])
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for c in children {
        let out = c.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert_eq!(count(env.root(), "images"), 1);
    assert_eq!(count(env.root(), "layers"), 4);
    assert_eq!(count(env.root(), "entries"), 4 * 51);
    assert_eq!(count(env.root(), "objects"), 4 * 50 + 1);
    assert_eq!(env.store().objects().list().unwrap().len(), 4 * 50 + 1);
    assert_objects_intact(env.root());
}
