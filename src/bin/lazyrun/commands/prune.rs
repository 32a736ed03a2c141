use crate::format;

#[derive(clap::Args)]
pub struct Args {
    /// Accepted for docker compatibility: prune never asks
    #[arg(short, long)]
    force: bool,
}

pub fn run(g: &crate::Global, a: Args) -> anyhow::Result<()> {
    let _ = a.force;
    let pruned = lazyrun::images::prune(&g.store()?)?;
    for d in &pruned.images {
        println!("Deleted: {d}");
    }
    println!(
        "Reclaimed {} in {} file contents",
        format::size(pruned.collected.bytes),
        pruned.collected.objects
    );
    Ok(())
}
