use crate::format;
use lazyrun::images::Removed;

#[derive(clap::Args)]
pub struct Args {
    /// Remove an image given by id even when it has several names
    #[arg(short, long)]
    force: bool,
    #[arg(required = true, value_name = "IMAGE")]
    images: Vec<String>,
}

pub fn run(g: &crate::Global, a: Args) -> anyhow::Result<()> {
    let (removed, collected) = lazyrun::images::remove(&g.store()?, &a.images, a.force)?;
    for r in removed {
        match r {
            Removed::Untagged(n) => println!("Untagged: {n}"),
            Removed::Deleted(d) => println!("Deleted: {d}"),
        }
    }
    if collected.objects > 0 {
        eprintln!(
            "Freed {} in {} file contents",
            format::size(collected.bytes),
            collected.objects
        );
    }
    Ok(())
}
