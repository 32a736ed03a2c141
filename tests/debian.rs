//! The done-when scenario on a real Debian userland: two multi-layer Debian-based images
//! sharing files in different layers, through pull, images, inspect, df, rmi and prune.

#![allow(clippy::unwrap_used)]

mod common;
use common::*;
use serde_json::json;

#[test]
fn debian_images_end_to_end() {
    if !is_root() {
        eprintln!("skipped: building the Debian rootfs needs root (debootstrap)");
        return;
    }
    let rootfs = testkit::debian::rootfs().expect("debootstrap rootfs");
    let (base, app) = testkit::debian::images(&rootfs).unwrap();
    let reg = TestRegistry::start().unwrap();
    let push = Pusher::new(&reg.addr);
    let rt = rt();
    rt.block_on(push.image("demo/debian:12", &base, Format::Oci))
        .unwrap();
    rt.block_on(push.image("demo/debian-app:12", &app, Format::Docker))
        .unwrap();
    let (nb, na) = (
        format!("{}/demo/debian:12", reg.addr),
        format!("{}/demo/debian-app:12", reg.addr),
    );

    let env = Env::new();
    env.ok(&["pull", &nb, &na]);
    let images = env.json(&["images", "--format", "json"]);
    assert_eq!(images.as_array().unwrap().len(), 2);

    let i = &env.json(&["inspect", "--format", "json", &na])[0];
    assert_eq!(i["Layers"].as_array().unwrap().len(), 2);
    assert_eq!(i["Config"]["Entrypoint"], json!(["/srv/app/hello.sh"]));
    assert_eq!(i["Platform"], json!("linux/amd64"));

    // Every regular file of the rootfs is in the store, byte for byte.
    let objects = env.store().objects().clone();
    let mut files = 0;
    let mut stack = vec![rootfs.clone()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let m = e.metadata().unwrap();
            if m.is_dir() && !m.file_type().is_symlink() {
                stack.push(e.path());
            } else if m.is_file() {
                let data = std::fs::read(e.path()).unwrap();
                assert!(
                    objects.has(&sha256(&data), data.len() as u64),
                    "{} missing",
                    e.path().display()
                );
                files += 1;
            }
        }
    }
    assert!(files > 3000, "only {files} files in the rootfs");

    // The two images hold the same files in different layers: stored once.
    let df = env.json(&["df", "--format", "json"]);
    let (logical, stored) = (
        df["LogicalBytes"].as_u64().unwrap(),
        df["StoredBytes"].as_u64().unwrap(),
    );
    assert!(stored < logical, "stored {stored} !< logical {logical}");
    assert!(
        stored * 10 < logical * 6,
        "dedup too weak: stored {stored}, logical {logical}"
    );
    let text = env.ok(&["df"]);
    assert!(text.contains("Dedup ratio"), "{text}");

    env.ok(&["rmi", &na]);
    let after = env.json(&["df", "--format", "json"]);
    // Only the app's own script goes; base still uses every shared file.
    let app_only = b"#!/bin/sh\necho hello from the app\n".len() as u64;
    assert_eq!(after["StoredBytes"].as_u64().unwrap(), stored - app_only);
    let out = env.ok(&["prune"]);
    assert!(out.contains("Reclaimed"), "{out}");
    env.ok(&["rmi", &nb]);
    assert_eq!(
        env.json(&["df", "--format", "json"])["StoredBytes"],
        json!(0)
    );
    assert!(env.store().objects().list().unwrap().is_empty());
}

/// The done-when scenario of lazyfs: a Debian-based multi-layer image mounted by an
/// unprivileged user shows the tree umoci unpacks, is writable, and keeps changes across
/// a remount.
#[test]
fn lazyfs_serves_debian_to_a_user_like_umoci_unpacks_it() {
    use common::fuse::{self, Mounted, TestUser};
    if !is_root() {
        eprintln!("skipped: building the Debian rootfs needs root (debootstrap)");
        return;
    }
    let rootfs = testkit::debian::rootfs().expect("debootstrap rootfs");
    let (_, app) = testkit::debian::images(&rootfs).unwrap();
    let reg = TestRegistry::start().unwrap();
    rt().block_on(Pusher::new(&reg.addr).image("demo/debian-app:12", &app, Format::Docker))
        .unwrap();
    let name = format!("{}/demo/debian-app:12", reg.addr);
    let work = tempfile::tempdir().unwrap();
    let reference = fuse::walk(
        None,
        &fuse::umoci_unpack(&reg.addr, "demo/debian-app:12", work.path()),
    );
    assert!(
        reference.len() > 3000,
        "umoci gave {} entries",
        reference.len()
    );

    // As root, through passthrough: identical, every file read.
    let env = Env::new();
    env.ok(&["pull", &name]);
    let mnt = work.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let m = Mounted::new(None, env.root(), &name, &mnt, &["--read-only"]);
    let ours = fuse::walk(None, &mnt);
    assert!(ours == reference, "{}", fuse::diff(&ours, &reference));
    m.unmount();

    // As a user (who pulls it through the mount): identical as far as the user may look.
    let user = TestUser::get().unwrap();
    let (home, root, mnt) = user.workdir();
    let m = Mounted::new(Some(&user), &root, &name, &mnt, &["--read-only"]);
    let theirs = fuse::walk(Some(&user), &mnt);
    let expected = fuse::as_seen_by_other(&reference);
    assert!(theirs == expected, "{}", fuse::diff(&theirs, &expected));
    m.unmount();

    // Writable and persistent: image root shown as the user, so the user may change anything.
    let upper = home.path().join("upper");
    let (uid_map, gid_map) = (format!("0:{}:1", user.uid), format!("0:{}:1", user.gid));
    let args = [
        "--upper",
        upper.to_str().unwrap(),
        "--uid-map",
        &uid_map,
        "--gid-map",
        &gid_map,
    ];
    let script = "set -e; cd \"$1\"; echo lazyhost > etc/hostname; mkdir -p opt/new; \
                  echo x > opt/new/file; rm -r usr/share/man; mv usr/share/doc usr/share/doc2; \
                  chmod 700 srv/app/hello.sh; ln -s opt/new/file link";
    let m = Mounted::new(Some(&user), &root, &name, &mnt, &args);
    let mut c = std::process::Command::new("runuser");
    c.args(["-u", &user.name, "--", "sh", "-c", script, "sh"])
        .arg(&mnt);
    fuse::ok(c);
    m.unmount();
    let _m = Mounted::new(Some(&user), &root, &name, &mnt, &args);
    let check = "set -e; cd \"$1\"; test \"$(cat etc/hostname)\" = lazyhost; \
                 test \"$(cat link)\" = x; test ! -e usr/share/man; test ! -e usr/share/doc; \
                 test -f usr/share/doc2/bash/copyright; test \"$(stat -c %a srv/app/hello.sh)\" = 700; \
                 test \"$(stat -c %u etc/passwd)\" = \"$(id -u)\"; echo persisted";
    let mut c = std::process::Command::new("runuser");
    c.args(["-u", &user.name, "--", "sh", "-c", check, "sh"])
        .arg(&mnt);
    assert!(fuse::ok(c).contains("persisted"));
    drop(_m);
    assert_objects_intact(&root);
}
