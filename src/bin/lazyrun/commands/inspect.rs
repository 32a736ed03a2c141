use crate::format;

#[derive(clap::Args)]
pub struct Args {
    /// Output format: text or json
    #[arg(long, short, default_value = "text")]
    format: String,
    #[arg(required = true, value_name = "IMAGE")]
    images: Vec<String>,
}

pub fn run(g: &crate::Global, a: Args) -> anyhow::Result<()> {
    if !matches!(a.format.as_str(), "text" | "json") {
        anyhow::bail!("unknown --format {:?}: use text or json", a.format);
    }
    let store = g.store()?;
    let all = a
        .images
        .iter()
        .map(|i| lazyrun::images::inspect(&store, i))
        .collect::<Result<Vec<_>, _>>()?;
    if a.format == "json" {
        println!("{}", serde_json::to_string_pretty(&all)?);
        return Ok(());
    }
    for (n, i) in all.iter().enumerate() {
        if n > 0 {
            println!();
        }
        print_text(i);
    }
    Ok(())
}

fn print_text(i: &lazyrun::images::Inspect) {
    let list = |v: &Option<Vec<String>>| v.as_ref().map(|v| format!("{v:?}")).unwrap_or_default();
    let keys = |m: &Option<std::collections::BTreeMap<String, serde_json::Value>>| {
        m.as_ref()
            .map(|m| m.keys().cloned().collect::<Vec<_>>().join(" "))
            .unwrap_or_default()
    };
    println!("Id:           {}", i.id);
    println!("Names:        {}", i.repo_tags.join(" "));
    println!("Digest:       {}", i.manifest_digest);
    println!("Platform:     {}", i.platform);
    println!("Created:      {}", i.created.as_deref().unwrap_or(""));
    println!("Size:         {}", format::size(i.size));
    println!("Entrypoint:   {}", list(&i.config.entrypoint));
    println!("Cmd:          {}", list(&i.config.cmd));
    println!(
        "WorkingDir:   {}",
        i.config.working_dir.as_deref().unwrap_or("")
    );
    println!("User:         {}", i.config.user.as_deref().unwrap_or(""));
    println!("ExposedPorts: {}", keys(&i.config.exposed_ports));
    println!("Volumes:      {}", keys(&i.config.volumes));
    println!("Env:");
    for e in i.config.env.iter().flatten() {
        println!("  {e}");
    }
    println!("Layers:");
    for l in &i.layers {
        println!("  {l}");
    }
    println!("History:");
    for h in &i.history {
        let by = h.created_by.as_deref().unwrap_or("");
        let empty = if h.empty_layer { " (empty layer)" } else { "" };
        println!("  {} {by}{empty}", h.created.as_deref().unwrap_or(""));
    }
}
