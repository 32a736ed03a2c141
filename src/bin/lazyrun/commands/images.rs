use crate::format;
use lazyrun::images::short_id;

#[derive(clap::Args)]
pub struct Args {
    /// Print only image ids
    #[arg(short, long)]
    quiet: bool,
    /// Print full ids
    #[arg(long)]
    no_trunc: bool,
    /// Output format: table or json
    #[arg(long, default_value = "table")]
    format: String,
}

pub fn run(g: &crate::Global, a: Args) -> anyhow::Result<()> {
    let listed = lazyrun::images::list(&g.store()?)?;
    let id = |d: &str| {
        if a.no_trunc {
            d.to_owned()
        } else {
            short_id(d)
        }
    };
    match a.format.as_str() {
        "json" => {
            let v: Vec<serde_json::Value> = listed
                .iter()
                .map(|l| {
                    serde_json::json!({
                        "Id": l.row.config_digest,
                        "Names": l.row.names,
                        "Digest": l.row.manifest_digest,
                        "Platform": l.row.platform,
                        "Created": l.created,
                        "Size": l.size.size,
                        "SharedSize": l.size.shared,
                    })
                })
                .collect();
            println!("{}", serde_json::to_string_pretty(&v)?);
        }
        "table" if a.quiet => {
            for l in &listed {
                println!("{}", id(&l.row.config_digest));
            }
        }
        "table" => {
            println!(
                "{:<48} {:<16} {:<14} {:<16} {:>10} {:>12}",
                "REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE", "SHARED SIZE"
            );
            for l in &listed {
                let created = l.created.as_deref().map(format::ago).unwrap_or_default();
                let names = if l.row.names.is_empty() {
                    vec!["<none>:<none>".to_owned()]
                } else {
                    l.row.names.clone()
                };
                for n in names {
                    let (repo, tag) = split_name(&n);
                    println!(
                        "{:<48} {:<16} {:<14} {:<16} {:>10} {:>12}",
                        repo,
                        tag,
                        id(&l.row.config_digest),
                        created,
                        format::size(l.size.size),
                        format::size(l.size.shared)
                    );
                }
            }
        }
        other => anyhow::bail!("unknown --format {other:?}: use table or json"),
    }
    Ok(())
}

/// `registry/repo:tag` → (`registry/repo`, `tag`); a digest name has tag `<none>`.
fn split_name(name: &str) -> (&str, &str) {
    if let Some((repo, _)) = name.split_once('@') {
        return (repo, "<none>");
    }
    match name.rfind(':') {
        Some(i) if !name[i..].contains('/') => (&name[..i], &name[i + 1..]),
        _ => (name, "<none>"),
    }
}
