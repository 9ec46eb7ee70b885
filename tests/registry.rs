//! The registry is the one list of workers, and everything reads it: `src/` names no
//! worker, compose runs, health-checks and scrapes each, every example of the contract
//! goes through the parser of the worker that takes it, and the descriptions agree
//! with the schemas.

use std::path::{Path, PathBuf};

use pinflow::contract::Envelope;
use pinflow::contract::schemas::Schemas;
use pinflow::manifest::Description;
use pinflow::runtime::descriptions;
use pinflow::workers::REGISTRY;

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("readable") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The places in `text` that name a worker: `workers::` (its code) or a worker's name
/// as a string of its own, `"NAME"` (its queue, `--worker NAME`, its description).
/// Words of the contract that a worker is named after (`conversion.submit`, "an
/// expiry date", `mod conversion` of the typed commands) name no worker.
fn names_a_worker(text: &str, workers: &[Description]) -> Vec<String> {
    let mut found = Vec::new();
    if text.contains("workers::") {
        found.push("workers::".to_owned());
    }
    for worker in workers {
        if text.contains(&format!("\"{}\"", worker.name)) {
            found.push(worker.name.to_owned());
        }
    }
    found
}

#[test]
fn the_check_finds_a_worker_named_in_code() {
    let all = descriptions(REGISTRY);
    let name = all[0].name;
    assert!(!names_a_worker(&format!("let q = names.work_queue(\"{name}\");"), &all).is_empty());
    assert!(!names_a_worker("use crate::workers::REGISTRY;", &all).is_empty());
    assert!(names_a_worker("let q = names.work_queue(worker.name);", &all).is_empty());
    for worker in &all {
        let name = worker.name;
        assert!(
            !names_a_worker(&format!("let q = names.work_queue(\"{name}\");"), &all).is_empty()
        );
        let contract =
            format!("/// a {name} of\nCommandType::X => \"{name}.submit\",\nmod {name};");
        assert!(names_a_worker(&contract, &all).is_empty(), "{contract}");
    }
}

#[test]
fn src_names_no_worker() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let all = descriptions(REGISTRY);
    let mut files = Vec::new();
    rust_files(&root.join("src"), &mut files);
    assert!(files.len() > 10, "found the sources");
    let mut offenders = Vec::new();
    for file in files {
        // lib.rs joins the two trees; main.rs hands the registry to the runtime.
        if file.ends_with("src/lib.rs") || file.ends_with("src/main.rs") {
            continue;
        }
        let text = std::fs::read_to_string(&file).expect("readable");
        let found = names_a_worker(&text, &all);
        if !found.is_empty() {
            offenders.push(format!("{}: {}", file.display(), found.join(", ")));
        }
    }
    assert!(
        offenders.is_empty(),
        "src/ names a worker:\n{}",
        offenders.join("\n")
    );
}

#[test]
fn compose_runs_checks_and_scrapes_every_registered_worker_and_no_other() {
    let read = |file: &str| {
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(file))
            .unwrap_or_else(|e| panic!("{file}: {e}"))
    };
    let compose = read("docker-compose.yml");
    let prometheus = read("ops/prometheus.yml");
    for worker in descriptions(REGISTRY) {
        let run = format!(
            "<<: *worker\n    command: [\"run\", \"--worker\", \"{}\"]",
            worker.name
        );
        assert!(
            compose.contains(&run),
            "compose has no service running {} from the worker template",
            worker.name
        );
        let target = format!("- {}:9464\n", worker.name);
        assert!(
            prometheus.contains(&target),
            "Prometheus does not scrape {}",
            worker.name
        );
    }
    let running = compose.matches("command: [\"run\", \"--worker\"").count();
    assert_eq!(running, REGISTRY.len(), "one service per registered worker");
    let template = compose
        .split("\nservices:")
        .next()
        .expect("the worker template comes first");
    for line in [
        "PINFLOW_METRICS_ADDR: 0.0.0.0:9464",
        "test: [\"CMD\", \"pinflow\", \"ready\"]",
    ] {
        assert!(template.contains(line), "the worker template has {line}");
    }
    assert_eq!(
        compose.matches("healthcheck:").count(),
        3,
        "the template's readiness check is the workers' only one (besides the broker's and the database's)"
    );
}

#[test]
fn descriptions_agree_with_the_schemas() {
    let schemas = Schemas::embedded();
    let all = descriptions(REGISTRY);
    let mut names: Vec<&str> = all.iter().map(|d| d.name).collect();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), all.len(), "worker names are unique");
    for worker in &all {
        assert!(
            worker
                .name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b == b'_'),
            "{} is a plain name",
            worker.name
        );
        for binding in worker.bindings {
            let t = binding.message_type;
            assert!(schemas.get(t).is_some(), "{t} has a schema");
            if binding.rpc {
                assert!(
                    schemas.get(&format!("{t}.reply")).is_some(),
                    "{t}.reply has a schema"
                );
            }
            if let Some(command) = pinflow::contract::CommandType::parse(t) {
                assert_eq!(
                    binding.rpc,
                    command.is_rpc(),
                    "{t}: RPC here and in the contract"
                );
            }
            for cause in binding.causes {
                let known = *cause == "reply" && binding.rpc || schemas.get(cause).is_some();
                assert!(
                    known,
                    "{}: {t} causes {cause}, which has no schema",
                    worker.name
                );
            }
        }
    }
}

#[test]
fn every_example_goes_through_the_parser_of_the_worker_that_takes_it() {
    let schemas = Schemas::embedded();
    let mut parsed = 0;
    for (file, text) in Schemas::examples() {
        let value: serde_json::Value = serde_json::from_str(text).expect("json");
        let message_type = value["type"].as_str().expect("a type");
        let Some(registration) = REGISTRY
            .iter()
            .find(|r| r.description.accepts(message_type))
        else {
            continue;
        };
        let envelope = Envelope::parse(text.as_bytes(), None, schemas, |_| true)
            .unwrap_or_else(|e| panic!("{file}: {e}"));
        (registration.parse)(&envelope).unwrap_or_else(|e| panic!("{file}: {e}"));
        parsed += 1;
    }
    let accepted: usize = REGISTRY.iter().map(|r| r.description.bindings.len()).sum();
    assert!(
        parsed >= accepted,
        "every bound type has at least one example: {parsed} < {accepted}"
    );
}
