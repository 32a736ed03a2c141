use crate::format;

#[derive(clap::Args)]
pub struct Args {
    /// Output format: text or json
    #[arg(long, default_value = "text")]
    format: String,
}

pub fn run(g: &crate::Global, a: Args) -> anyhow::Result<()> {
    let u = lazyrun::images::usage(&g.store()?)?;
    let ratio = if u.stored == 0 {
        1.0
    } else {
        u.logical as f64 / u.stored as f64
    };
    match a.format.as_str() {
        "json" => println!(
            "{}",
            serde_json::json!({
                "Images": u.images, "Layers": u.layers, "Entries": u.entries,
                "LogicalBytes": u.logical, "Objects": u.objects, "StoredBytes": u.stored,
                "DedupRatio": ratio,
            })
        ),
        "text" => {
            println!("Images:         {}", u.images);
            println!("Layers:         {}", u.layers);
            println!("Entries:        {}", u.entries);
            println!(
                "Logical bytes:  {} ({})  sum of every layer's file contents",
                u.logical,
                format::size(u.logical)
            );
            println!(
                "Stored bytes:   {} ({})  in {} distinct file contents",
                u.stored,
                format::size(u.stored),
                u.objects
            );
            println!("Dedup ratio:    {ratio:.2}");
        }
        other => anyhow::bail!("unknown --format {other:?}: use text or json"),
    }
    Ok(())
}
