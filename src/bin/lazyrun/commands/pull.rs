use std::sync::Arc;

use lazyrun::pull::{PullOptions, Pulled};

#[derive(clap::Args)]
pub struct Args {
    /// Platform to select from a multi-platform image [default: the host's]
    #[arg(long, value_name = "OS/ARCH[/VARIANT]")]
    platform: Option<String>,
    /// Print only the image name at the end
    #[arg(short, long)]
    quiet: bool,
    /// Images to pull, e.g. debian:bookworm or 127.0.0.1:5000/demo/app:1
    #[arg(required = true, value_name = "IMAGE")]
    images: Vec<String>,
}

pub fn run(g: &crate::Global, a: Args) -> anyhow::Result<()> {
    let store = g.store()?;
    let opts = PullOptions::from_args(a.platform.as_deref(), &g.insecure)?;
    let rt = tokio::runtime::Runtime::new()?;
    for image in &a.images {
        let bars = Arc::new(crate::progress::Bars::new(a.quiet));
        let pulled = rt.block_on(lazyrun::pull::pull(&store, image, &opts, bars))?;
        report(&pulled, a.quiet);
    }
    Ok(())
}

fn report(p: &Pulled, quiet: bool) {
    if !quiet {
        let status = if p.new_image {
            format!(
                "Downloaded newer image ({} of {} layers fetched)",
                p.layers_fetched, p.layers_total
            )
        } else {
            "Image is up to date".to_owned()
        };
        eprintln!("{status}: {} ({})", p.name, p.manifest_digest);
    }
    println!("{}", p.name);
}
