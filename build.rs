//! Embeds every schema in `schemas/` (and every example in `schemas/examples/`) into
//! the binary, so the worker validates against exactly the files in the repository and
//! needs nothing on disk at run time. Also tells cargo to rebuild when a migration is
//! added: `sqlx::migrate!` embeds `migrations/` but does not watch it.

use std::fmt::Write as _;
use std::path::Path;

fn main() {
    println!("cargo:rerun-if-changed=migrations");
    // Read when the script runs, not when it was built: a build script compiled for
    // one checkout is reused for another that shares the target directory.
    let root = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    let dir = Path::new(&root).join("schemas");
    let mut out = String::new();
    embed(&dir, "FILES", "Every schema file", &mut out);
    embed(
        &dir.join("examples"),
        "EXAMPLES",
        "Every example command",
        &mut out,
    );
    let target =
        Path::new(&std::env::var("OUT_DIR").expect("cargo sets OUT_DIR")).join("schemas.rs");
    std::fs::write(target, out).expect("OUT_DIR is writable");
}

/// Appends `pub static NAME: &[(file name, contents)]` for the `.json` files of `dir`.
fn embed(dir: &Path, name: &str, doc: &str, out: &mut String) {
    println!("cargo:rerun-if-changed={}", dir.display());
    let entries =
        std::fs::read_dir(dir).unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()));
    let mut names: Vec<String> = entries
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".json"))
        .collect();
    names.sort();
    writeln!(
        out,
        "/// {doc}: (file name, contents).\npub static {name}: &[(&str, &str)] = &["
    )
    .expect("writing to a String cannot fail");
    for file in &names {
        let path = dir.join(file);
        println!("cargo:rerun-if-changed={}", path.display());
        writeln!(
            out,
            "    ({file:?}, include_str!({:?})),",
            path.display().to_string()
        )
        .expect("writing to a String cannot fail");
    }
    out.push_str("];\n");
}
