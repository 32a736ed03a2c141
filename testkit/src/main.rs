//! `lazyrun-testkit`: builds test images and pushes them to a registry, for the demo and the
//! benchmarks. Tests use the library directly.

use anyhow::Result;
use clap::{Parser, Subcommand};
use testkit::build::{busybox_layer, Compression, Format, Image, Layer, Pusher};

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
    /// Print the Debian rootfs directory, creating it first if needed
    DebianRootfs,
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
        Cmd::PushBusybox { registry } => {
            let image = Image::new(vec![Layer::new(busybox_layer()?, Compression::Gzip)]);
            rt.block_on(Pusher::new(&registry).image("demo/busybox:latest", &image, Format::Oci))?;
            println!("{registry}/demo/busybox:latest");
        }
        Cmd::DebianRootfs => println!("{}", testkit::debian::rootfs()?.display()),
    }
    Ok(())
}
