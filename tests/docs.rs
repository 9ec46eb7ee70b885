//! The documentation a clone carries: `docs/contract.md` names every message type that
//! has a schema, and the README points only at files inside the repository, each of
//! which exists (as do those the other documents point at). Reads
//! files only; needs no broker and no database.

use std::path::{Path, PathBuf};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn read(relative: &str) -> String {
    let path = root().join(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The message types that have a schema: every `schemas/*.json` except the shared
/// shapes and the envelope.
fn schema_types() -> Vec<String> {
    let dir = root().join("schemas");
    let mut types: Vec<String> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.expect("a readable directory entry").path())
        .filter(|path| path.is_file())
        .filter_map(|path: PathBuf| {
            let name = path.file_name()?.to_str()?.to_owned();
            name.strip_suffix(".json").map(str::to_owned)
        })
        .filter(|name| name != "common" && name != "cloudevent")
        .collect();
    types.sort();
    types
}

#[test]
fn the_contract_document_names_every_message_type_that_has_a_schema() {
    let types = schema_types();
    assert!(
        types.len() >= 40,
        "expected the contract's schemas in schemas/, found {}",
        types.len()
    );
    let contract = read("docs/contract.md");
    let missing: Vec<&String> = types
        .iter()
        .filter(|name| !contract.contains(&format!("`{name}`")))
        .collect();
    assert!(
        missing.is_empty(),
        "docs/contract.md does not mention these schema types as code spans: {missing:?}"
    );
}

const DOCUMENTS: [&str; 4] = [
    "README.md",
    "schemas/README.md",
    "docs/contract.md",
    "docs/performance.md",
];

#[test]
fn the_readme_links_nothing_outside_the_repository() {
    for file in DOCUMENTS {
        assert!(
            !read(file).contains("../shared"),
            "{file} points at ../shared, which a clone does not have; link docs/contract.md"
        );
    }
}

/// The targets of a document's Markdown links, `[text](target)`.
fn link_targets(text: &str) -> Vec<&str> {
    text.match_indices("](")
        .filter_map(|(at, _)| {
            let rest = &text[at + 2..];
            rest.find(')').map(|end| &rest[..end])
        })
        .collect()
}

#[test]
fn every_relative_link_of_the_documents_leads_to_a_file_of_the_clone() {
    for file in DOCUMENTS {
        let dir = root().join(file);
        let dir = dir.parent().expect("a document's folder");
        let text = read(file);
        let relative: Vec<&str> = link_targets(&text)
            .into_iter()
            .filter(|t| !t.contains("://") && !t.starts_with('#') && !t.starts_with("mailto:"))
            .map(|t| t.split('#').next().unwrap_or(t))
            .collect();
        let broken: Vec<&&str> = relative.iter().filter(|t| !dir.join(t).exists()).collect();
        assert!(
            broken.is_empty(),
            "{file} links to missing files: {broken:?}"
        );
    }
    let readme = read("README.md");
    assert!(
        link_targets(&readme).contains(&"docs/performance.md"),
        "the README leads to the performance log"
    );
}
