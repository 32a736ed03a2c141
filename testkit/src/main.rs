//! `lazyrun-testkit`: builds test images and pushes them to a registry, for the demo and the
//! benchmarks. Tests use the library directly.

use anyhow::Result;
use clap::{Parser, Subcommand};
use testkit::build::{busybox_layer, Compression, Format, Image, Layer, Pusher};
use testkit::LayerBuilder;

#[derive(Parser)]
#[command(
    name = "lazyrun-testkit",
    about = "Build and push test images to a local registry"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Push two Debian bookworm images (debootstrap, cached) that share files in different
    /// layers: REGISTRY/demo/debian:12 and REGISTRY/demo/debian-app:12
    PushDebian { registry: String },
    /// Push a one-layer static busybox image: REGISTRY/demo/busybox:latest
    PushBusybox { registry: String },
    /// Push the copy-on-write check image: REGISTRY/demo/cow:latest
    PushCow { registry: String },
    /// Push benchmark images: REGISTRY/demo/bigfile:1 (one 512 MiB file, uncompressed layer)
    /// and REGISTRY/demo/many:1 (10,000 small files in 100 directories)
    PushBench { registry: String },
    /// Print the Debian rootfs directory, creating it first if needed
    DebianRootfs,
    /// Print one line per entry below DIR (kind, mode, owner, size, mtime, target, content hash)
    Walk { dir: std::path::PathBuf },
    /// Run filesystem checks on a mount of the copy-on-write test image
    Fscheck {
        #[arg(value_enum)]
        suite: Suite,
        dir: std::path::PathBuf,
        /// The caller cannot make device nodes
        #[arg(long)]
        unprivileged: bool,
    },
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum Suite {
    /// Every copy-on-write operation, checked at once
    Cow,
    /// The state `cow` leaves, after a remount
    Verify,
    /// Errno and permission behaviour
    Posix,
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    let rt = tokio::runtime::Runtime::new()?;
    match cli.command {
        Cmd::PushDebian { registry } => {
            let rootfs = testkit::debian::rootfs()?;
            let (base, app) = testkit::debian::images(&rootfs)?;
            let push = Pusher::new(&registry);
            rt.block_on(push.image("demo/debian:12", &base, Format::Oci))?;
            rt.block_on(push.image("demo/debian-app:12", &app, Format::Docker))?;
            println!("{registry}/demo/debian:12");
            println!("{registry}/demo/debian-app:12");
        }
        Cmd::PushCow { registry } => {
            let image = testkit::fscheck::cow_image();
            rt.block_on(Pusher::new(&registry).image("demo/cow:latest", &image, Format::Oci))?;
            println!("{registry}/demo/cow:latest");
        }
        Cmd::PushBench { registry } => {
            let push = Pusher::new(&registry);
            let big = testkit::fscheck::noise(512 << 20);
            let layer = LayerBuilder::new().file("big", &big, 0o644).finish();
            drop(big);
            let image = Image::new(vec![Layer::new(layer, Compression::None)]);
            rt.block_on(push.image("demo/bigfile:1", &image, Format::Oci))?;
            drop(image);
            let mut b = LayerBuilder::new();
            for d in 0..100 {
                b = b.dir(&format!("d{d:03}"), 0o755);
                for f in 0..100 {
                    let body = format!("file {d}/{f}\n").repeat(1 + (f % 7));
                    b = b.file(&format!("d{d:03}/f{f:03}"), body.as_bytes(), 0o644);
                }
            }
            let image = Image::new(vec![Layer::new(b.finish(), Compression::Gzip)]);
            rt.block_on(push.image("demo/many:1", &image, Format::Oci))?;
            println!("{registry}/demo/bigfile:1");
            println!("{registry}/demo/many:1");
        }
        Cmd::PushBusybox { registry } => {
            let image = Image::new(vec![Layer::new(busybox_layer()?, Compression::Gzip)]);
            rt.block_on(Pusher::new(&registry).image("demo/busybox:latest", &image, Format::Oci))?;
            println!("{registry}/demo/busybox:latest");
        }
        Cmd::DebianRootfs => println!("{}", testkit::debian::rootfs()?.display()),
        Cmd::Walk { dir } => {
            for line in testkit::fscheck::walk(&dir)? {
                println!("{line}");
            }
        }
        Cmd::Fscheck {
            suite,
            dir,
            unprivileged,
        } => {
            use testkit::fscheck;
            let n = match suite {
                Suite::Cow => fscheck::cow(&dir, !unprivileged)?,
                Suite::Verify => fscheck::verify(&dir, !unprivileged)?,
                Suite::Posix => fscheck::posix(&dir)?,
            };
            println!("{n} checks passed");
        }
    }
    Ok(())
}
