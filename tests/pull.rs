//! Pull, images, inspect, rmi, prune and df against a real local registry.

#![allow(clippy::unwrap_used)]

mod common;
use common::*;
use serde_json::json;

fn two_layer_image(compression: Compression) -> Image {
    let base = LayerBuilder::new()
        .dir("etc", 0o755)
        .file("etc/os-release", b"ID=testkit\n", 0o644)
        .dir("usr/bin", 0o755)
        .file("usr/bin/tool", &vec![0x5a; 300_000], 0o755)
        .finish();
    let top = LayerBuilder::new()
        .file("etc/os-release", b"ID=testkit\nVERSION=2\n", 0o644)
        .dir("app", 0o755)
        .file("app/run.sh", b"#!/bin/sh\necho hi\n", 0o755)
        .finish();
    Image::new(vec![
        Layer::new(base, compression),
        Layer::new(top, compression),
    ])
    .with_config(json!({
        "Entrypoint": ["/app/run.sh"], "Cmd": ["--verbose"], "Env": ["A=1", "PATH=/usr/bin"],
        "WorkingDir": "/app", "User": "1000:1000",
        "ExposedPorts": {"8080/tcp": {}}, "Volumes": {"/data": {}}
    }))
}

#[test]
fn pulls_oci_docker_gzip_zstd_and_plain_layers() {
    let reg = TestRegistry::start().unwrap();
    let push = Pusher::new(&reg.addr);
    let rt = rt();
    let cases = [
        ("oci-gzip", Compression::Gzip, Format::Oci),
        ("oci-zstd", Compression::Zstd, Format::Oci),
        ("oci-tar", Compression::None, Format::Oci),
        ("docker", Compression::Gzip, Format::Docker),
    ];
    let env = Env::new();
    for (tag, c, f) in cases {
        rt.block_on(push.image(&format!("demo/app:{tag}"), &two_layer_image(c), f))
            .unwrap();
        let name = format!("{}/demo/app:{tag}", reg.addr);
        let out = env.ok(&["pull", &name]);
        assert_eq!(out.trim(), name);
    }
    // The gzip OCI and Docker images have identical layers: stored once.
    assert_eq!(count(env.root(), "images"), 4);
    assert_eq!(count(env.root(), "layers"), 6);
    let images = env.json(&["images", "--format", "json"]);
    assert_eq!(images.as_array().unwrap().len(), 4);

    let i = &env.json(&[
        "inspect",
        "--format",
        "json",
        &format!("{}/demo/app:docker", reg.addr),
    ])[0];
    assert_eq!(i["Config"]["Entrypoint"], json!(["/app/run.sh"]));
    assert_eq!(i["Config"]["Cmd"], json!(["--verbose"]));
    assert_eq!(i["Config"]["Env"], json!(["A=1", "PATH=/usr/bin"]));
    assert_eq!(i["Config"]["WorkingDir"], json!("/app"));
    assert_eq!(i["Config"]["User"], json!("1000:1000"));
    assert!(i["Config"]["ExposedPorts"].get("8080/tcp").is_some());
    assert!(i["Config"]["Volumes"].get("/data").is_some());
    assert_eq!(i["History"].as_array().unwrap().len(), 2);
    assert_eq!(i["Layers"].as_array().unwrap().len(), 2);
    let text = env.ok(&["inspect", &format!("{}/demo/app:oci-zstd", reg.addr)]);
    assert!(text.contains("Entrypoint:   [\"/app/run.sh\"]"), "{text}");

    // Contents: each distinct file once; the later layer's os-release is a new object.
    let objects = lazyrun::store::ObjectStore::open(env.root()).unwrap();
    assert!(objects.has(&sha256(b"ID=testkit\nVERSION=2\n"), 21));
    assert!(objects.has(&sha256(&vec![0x5a; 300_000]), 300_000));
    assert_eq!(count(env.root(), "objects"), 4);
    assert_objects_intact(env.root());

    // A second pull of the same image fetches nothing.
    let out = env
        .cmd(&["pull", &format!("{}/demo/app:oci-gzip", reg.addr)])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("up to date"));
}

#[test]
fn index_selects_platform() {
    let reg = TestRegistry::start().unwrap();
    let push = Pusher::new(&reg.addr);
    let mk = |arch: &str| {
        Image::new(vec![Layer::new(
            LayerBuilder::new()
                .file("arch", arch.as_bytes(), 0o644)
                .finish(),
            Compression::Gzip,
        )])
        .with_arch(arch)
    };
    let (amd, arm) = (mk("amd64"), mk("arm64"));
    let rt = rt();
    for (tag, f) in [("oci", Format::Oci), ("docker", Format::Docker)] {
        rt.block_on(push.index(
            &format!("multi/arch:{tag}"),
            &[("linux/arm64/v8", &arm), ("linux/amd64", &amd)],
            f,
        ))
        .unwrap();
    }
    let env = Env::new();
    let name = format!("{}/multi/arch:oci", reg.addr);
    env.ok(&["pull", &name]);
    let i = &env.json(&["inspect", "--format", "json", &name])[0];
    assert_eq!(i["Platform"], json!("linux/amd64"));

    let other = Env::new();
    let name = format!("{}/multi/arch:docker", reg.addr);
    other.ok(&["pull", "--platform", "linux/arm64", &name]);
    let i = &other.json(&["inspect", "--format", "json", &name])[0];
    assert_eq!(i["Platform"], json!("linux/arm64"));

    let err = other.fails(&["pull", "--platform", "linux/s390x", &name]);
    assert!(
        err.contains("no image for platform linux/s390x") && err.contains("linux/amd64"),
        "{err}"
    );
    let err = other.fails(&["pull", "--platform", "linux", &name]);
    assert!(err.contains("invalid platform"), "{err}");
}

#[test]
fn dedup_across_images_rmi_and_prune() {
    let reg = TestRegistry::start().unwrap();
    let push = Pusher::new(&reg.addr);
    let shared: Vec<u8> = (0..2_000_000u32).map(|i| (i % 251) as u8).collect();
    // The same file sits in the first layer of one image and the second layer of another.
    let a = Image::new(vec![
        Layer::new(
            LayerBuilder::new()
                .file("lib/big.so", &shared, 0o644)
                .finish(),
            Compression::Gzip,
        ),
        Layer::new(
            LayerBuilder::new().file("a.txt", b"a", 0o644).finish(),
            Compression::Gzip,
        ),
    ]);
    let b = Image::new(vec![
        Layer::new(
            LayerBuilder::new().file("b.txt", b"b", 0o644).finish(),
            Compression::Gzip,
        ),
        Layer::new(
            LayerBuilder::new()
                .file("opt/big.so", &shared, 0o644)
                .finish(),
            Compression::Gzip,
        ),
    ]);
    let rt = rt();
    rt.block_on(push.image("dedup/a:1", &a, Format::Oci))
        .unwrap();
    rt.block_on(push.image("dedup/b:1", &b, Format::Oci))
        .unwrap();
    let env = Env::new();
    let (na, nb) = (
        format!("{}/dedup/a:1", reg.addr),
        format!("{}/dedup/b:1", reg.addr),
    );
    env.ok(&["pull", &na, &nb]);

    let df = env.json(&["df", "--format", "json"]);
    assert_eq!(df["LogicalBytes"], json!(2 * shared.len() as u64 + 2));
    assert_eq!(df["StoredBytes"], json!(shared.len() as u64 + 2));
    assert!(df["DedupRatio"].as_f64().unwrap() > 1.9);
    let images = env.json(&["images", "--format", "json"]);
    for i in images.as_array().unwrap() {
        assert_eq!(i["Size"], json!(shared.len() as u64 + 1));
        assert_eq!(i["SharedSize"], json!(shared.len() as u64));
    }
    let table = env.ok(&["images"]);
    assert!(
        table.contains("REPOSITORY") && table.contains("dedup/a"),
        "{table}"
    );

    // Removing one image keeps the shared content; removing both frees everything.
    let out = env.ok(&["rmi", &na]);
    assert!(
        out.contains(&format!("Untagged: {na}")) && out.contains("Deleted: sha256:"),
        "{out}"
    );
    assert_eq!(count(env.root(), "objects"), 2);
    assert!(env
        .store()
        .objects()
        .has(&sha256(&shared), shared.len() as u64));
    let err = env.fails(&["rmi", &na]);
    assert!(err.contains("no such image"), "{err}");

    // A tag moved to other content leaves a dangling image for prune.
    rt.block_on(push.image("dedup/b:1", &a, Format::Oci))
        .unwrap();
    env.ok(&["pull", &nb]);
    let listed = env.ok(&["images"]);
    assert!(listed.contains("<none>"), "{listed}");
    let out = env.ok(&["prune"]);
    assert!(out.contains("Deleted: sha256:"), "{out}");
    assert_eq!(count(env.root(), "images"), 1);
    let id = env.ok(&["images", "-q"]).trim().to_owned();
    assert_eq!(id.len(), 12);
    env.ok(&["rmi", &id]);
    assert_eq!(count(env.root(), "objects"), 0);
    assert_eq!(count(env.root(), "entries"), 0);
    assert!(env.store().objects().list().unwrap().is_empty());
    let df = env.json(&["df", "--format", "json"]);
    assert_eq!(df["StoredBytes"], json!(0));
}

#[test]
fn tar_edge_cases_are_indexed() {
    let reg = TestRegistry::start().unwrap();
    let push = Pusher::new(&reg.addr);
    let long = format!("deep/{}/file", "d".repeat(150));
    let pax_path = format!("pax/{}", "p".repeat(120));
    let base = LayerBuilder::new()
        .dir("./etc", 0o755)
        .file("./etc/shadow", b"secret", 0o640)
        .raw_name(b"/abs/file", tar::EntryType::Regular, b"", b"abs")
        .file(&long, b"long", 0o644)
        .file_with_pax(
            "x",
            b"pax",
            0o644,
            &[
                ("path", pax_path.as_bytes()),
                ("SCHILY.xattr.user.k", b"v\x00\x01"),
            ],
        )
        .hardlink("etc/shadow.lnk", "etc/shadow")
        .symlink("escape", "/etc/passwd")
        .fifo("run/fifo")
        .char_device("dev/null", 1, 3)
        .dir("gone", 0o755)
        .file("gone/a", b"a", 0o644)
        .dir("opq", 0o755)
        .file("opq/old", b"old", 0o644)
        .owner(1000, 1001)
        .file("home/u/f", b"u", 0o600)
        .finish();
    let top = LayerBuilder::new()
        .whiteout("gone")
        .opaque("opq")
        .file("opq/new", b"new", 0o644)
        .finish();
    let image = Image::new(vec![
        Layer::new(base, Compression::Gzip),
        Layer::new(top, Compression::Gzip),
    ]);
    rt().block_on(push.image("edge/case:1", &image, Format::Oci))
        .unwrap();
    let env = Env::new();
    env.ok(&["pull", &format!("{}/edge/case:1", reg.addr)]);

    let conn = env.store().connect().unwrap();
    let layer = |pos: i64| -> Vec<lazyrun::entry::Entry> {
        let id: i64 = conn
            .query_row(
                "SELECT layer_id FROM image_layers WHERE position = ?1",
                [pos],
                |r| r.get(0),
            )
            .unwrap();
        lazyrun::store::db::layer_entries(&conn, id).unwrap()
    };
    use lazyrun::entry::EntryKind as K;
    let base = layer(0);
    let get = |path: &str| {
        base.iter()
            .find(|e| e.path == path)
            .unwrap_or_else(|| panic!("{path} missing: {base:#?}"))
            .clone()
    };
    assert_eq!(get("etc").kind, K::Directory);
    assert_eq!(get("etc/shadow").mode, 0o640);
    assert_eq!(
        get("abs/file").digest.as_deref(),
        Some(sha256(b"abs").as_str())
    );
    assert_eq!(get(&long).size, 4);
    let pax = get(&pax_path);
    assert_eq!(
        pax.xattrs,
        vec![("user.k".to_owned(), b"v\x00\x01".to_vec())]
    );
    let hl = get("etc/shadow.lnk");
    assert_eq!(
        (hl.kind, hl.link.as_deref()),
        (K::Hardlink, Some("etc/shadow"))
    );
    assert_eq!(hl.digest, get("etc/shadow").digest);
    let sl = get("escape");
    assert_eq!(
        (sl.kind, sl.link.as_deref()),
        (K::Symlink, Some("/etc/passwd"))
    );
    assert_eq!(get("run/fifo").kind, K::Fifo);
    let dev = get("dev/null");
    assert_eq!(
        (dev.kind, dev.dev_major, dev.dev_minor),
        (K::CharDevice, 1, 3)
    );
    let owned = get("home/u/f");
    assert_eq!(
        (owned.uid, owned.gid, owned.mtime),
        (1000, 1001, testkit::build::MTIME as i64)
    );

    let top = layer(1);
    assert!(
        top.iter()
            .any(|e| e.path == "gone" && e.kind == K::Whiteout),
        "{top:#?}"
    );
    assert!(
        top.iter().any(|e| e.path == "opq" && e.kind == K::Opaque),
        "{top:#?}"
    );
    assert!(top
        .iter()
        .any(|e| e.path == "opq/new" && e.kind == K::Regular));
    assert!(!top.iter().any(|e| e.path.contains(".wh.")));
}

#[test]
fn hostile_layers_are_refused_and_leave_nothing() {
    let reg = TestRegistry::start().unwrap();
    let push = Pusher::new(&reg.addr);
    let rt = rt();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "dotdot",
            LayerBuilder::new()
                .raw_name(b"../../evil", tar::EntryType::Regular, b"", b"x")
                .finish(),
        ),
        (
            "inner",
            LayerBuilder::new()
                .raw_name(b"a/../../evil", tar::EntryType::Regular, b"", b"x")
                .finish(),
        ),
        (
            "hardlink",
            LayerBuilder::new()
                .raw_name(b"link", tar::EntryType::Link, b"../../etc/passwd", b"")
                .finish(),
        ),
    ];
    let env = Env::new();
    for (tag, tar) in cases {
        let good = Layer::new(
            LayerBuilder::new().file("ok", b"fine", 0o644).finish(),
            Compression::Gzip,
        );
        let bad = Layer::new(tar, Compression::Gzip);
        let bad_digest = sha256(&bad.blob);
        let image = Image::new(vec![good, bad]);
        rt.block_on(push.image(&format!("hostile/img:{tag}"), &image, Format::Oci))
            .unwrap();
        let err = env.fails(&["pull", &format!("{}/hostile/img:{tag}", reg.addr)]);
        assert!(
            err.contains("hostile entry refused") && err.contains(".."),
            "{tag}: {err}"
        );
        assert_eq!(count(env.root(), "images"), 0);
        let conn = env.store().connect().unwrap();
        assert!(lazyrun::store::db::layer_id(&conn, &bad_digest)
            .unwrap()
            .is_none());
    }
    // At most the one good layer made it into the index; nothing was written outside the store.
    assert!(count(env.root(), "layers") <= 1);
    assert!(
        !env.root().join("../evil").exists() && !env.root().parent().unwrap().join("evil").exists()
    );
    assert!(tmp_files(env.root()).is_empty());
}

#[test]
fn unsupported_media_types_and_bad_references_get_clear_errors() {
    let reg = TestRegistry::start().unwrap();
    let push = Pusher::new(&reg.addr);
    let rt = rt();
    let layer = Layer::new(
        LayerBuilder::new().file("f", b"f", 0o644).finish(),
        Compression::Gzip,
    );
    let image = Image::new(vec![layer.clone()]);
    let config = image.config_json();
    rt.block_on(push.blob("odd/img:x", &config, &sha256(&config)))
        .unwrap();
    rt.block_on(push.blob("odd/img:x", &layer.blob, &sha256(&layer.blob)))
        .unwrap();
    let manifest = |mt: &str| {
        serde_json::to_vec(&json!({
            "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": sha256(&config), "size": config.len()},
            "layers": [{"mediaType": mt, "digest": sha256(&layer.blob), "size": layer.blob.len()}]
        }))
        .unwrap()
    };
    let env = Env::new();
    for (tag, mt, want) in [
        (
            "foreign",
            "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
            "foreign",
        ),
        ("weird", "application/x-weird", "application/x-weird"),
    ] {
        rt.block_on(push.manifest(
            &format!("odd/img:{tag}"),
            &manifest(mt),
            "application/vnd.oci.image.manifest.v1+json",
        ))
        .unwrap();
        let err = env.fails(&["pull", &format!("{}/odd/img:{tag}", reg.addr)]);
        assert!(
            err.contains(want) && err.contains("not supported") || err.contains("cannot be pulled"),
            "{err}"
        );
    }
    let err = env.fails(&["pull", "Bad/Name"]);
    assert!(err.contains("invalid image reference"), "{err}");
    let err = env.fails(&["pull", &format!("{}/odd/missing:1", reg.addr)]);
    assert!(err.contains("not found"), "{err}");
    let err = env.fails(&["inspect", "nothing-here"]);
    assert!(err.contains("no such image"), "{err}");
    let err = env.fails(&["pull", "127.0.0.1:1/nothing:1"]);
    assert!(err.contains("cannot reach registry 127.0.0.1:1"), "{err}");
}
