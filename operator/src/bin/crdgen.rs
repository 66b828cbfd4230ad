//! Writes the operator's CustomResourceDefinitions from the Rust types: one YAML file per CRD
//! into each directory given (default `crds` and `charts/gregor/crds`). With `--check` it writes
//! nothing and fails when a file differs from what the types generate (CI's drift check).

use std::path::PathBuf;

use anyhow::{bail, Context};

fn main() -> anyhow::Result<()> {
    let mut check = false;
    let mut dirs = Vec::new();
    for arg in std::env::args().skip(1) {
        match arg.as_str() {
            "--check" => check = true,
            "-h" | "--help" => {
                println!(
                    "usage: crdgen [--check] [DIR...]   (default DIRs: crds charts/gregor/crds)"
                );
                return Ok(());
            }
            a if a.starts_with('-') => bail!("unknown option {a} (try --help)"),
            a => dirs.push(PathBuf::from(a)),
        }
    }
    if dirs.is_empty() {
        dirs = vec!["crds".into(), "charts/gregor/crds".into()];
    }
    let mut stale = Vec::new();
    for dir in &dirs {
        for (file, crd) in gregor_operator::crd::all() {
            let yaml = gregor_operator::crd::to_yaml(&crd).context("rendering a CRD")?;
            let path = dir.join(file);
            if check {
                let on_disk = std::fs::read_to_string(&path).unwrap_or_default();
                if on_disk != yaml {
                    stale.push(path.display().to_string());
                }
            } else {
                std::fs::create_dir_all(dir)
                    .with_context(|| format!("creating {}", dir.display()))?;
                std::fs::write(&path, yaml)
                    .with_context(|| format!("writing {}", path.display()))?;
                println!("wrote {}", path.display());
            }
        }
    }
    if !stale.is_empty() {
        bail!(
            "CRDs out of date with the Rust types: {} (run `cargo run -p gregor-operator --bin crdgen`)",
            stale.join(", ")
        );
    }
    Ok(())
}
