//! The JSON Schemas of `schemas/`, embedded at build time and compiled once.

use std::collections::HashMap;
use std::sync::LazyLock;

use jsonschema::{Registry, Validator};
use serde_json::Value;

mod embedded {
    include!(concat!(env!("OUT_DIR"), "/schemas.rs"));
}

/// The base that every schema's `$id` starts with.
pub const BASE_URI: &str = "https://pinflow.invalid/schemas/";

/// The compiled schemas, by message type (`pin.request`, `cloudevent`, ...).
pub struct Schemas {
    /// One validator per schema file, keyed by file name without `.json`.
    validators: HashMap<String, Validator>,
}

static SCHEMAS: LazyLock<Schemas> = LazyLock::new(|| {
    Schemas::compile(embedded::FILES).expect("the embedded schemas compile; a test checks this")
});

/// Why the embedded schemas could not be compiled.
#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    #[error("schema {name} is not valid JSON")]
    Json {
        name: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("schema {name} does not compile: {reason}")]
    Compile { name: String, reason: String },
    #[error("the schemas do not resolve together")]
    Registry(#[source] jsonschema::ReferencingError),
}

impl Schemas {
    /// The schemas embedded in this binary.
    pub fn embedded() -> &'static Schemas {
        &SCHEMAS
    }

    /// Compiles a set of (file name, contents) pairs that may `$ref` each other.
    pub fn compile(files: &[(&str, &str)]) -> Result<Schemas, SchemaError> {
        let mut documents = Vec::with_capacity(files.len());
        for (file, text) in files {
            let value: Value = serde_json::from_str(text).map_err(|source| SchemaError::Json {
                name: (*file).to_owned(),
                source,
            })?;
            documents.push((*file, value));
        }
        let mut registry = Registry::new();
        for (file, value) in &documents {
            registry = registry
                .add(format!("{BASE_URI}{file}"), value)
                .map_err(|e| SchemaError::Compile {
                    name: (*file).to_owned(),
                    reason: e.to_string(),
                })?;
        }
        let registry = registry.prepare().map_err(SchemaError::Registry)?;
        let options = jsonschema::options()
            .should_validate_formats(true)
            .with_registry(&registry);
        let mut validators = HashMap::new();
        for (file, value) in &documents {
            let validator = options.build(value).map_err(|e| SchemaError::Compile {
                name: (*file).to_owned(),
                reason: e.masked().to_string(),
            })?;
            let name = file.trim_end_matches(".json").to_owned();
            validators.insert(name, validator);
        }
        Ok(Schemas { validators })
    }

    /// The validator for a message type, if the contract has one.
    pub fn get(&self, message_type: &str) -> Option<&Validator> {
        self.validators.get(message_type)
    }

    /// Checks `value` against the schema of `message_type`; the error names the first
    /// failing place and keyword and never quotes the value (it may be a secret).
    pub fn check(&self, message_type: &str, value: &Value) -> Result<(), String> {
        let validator = self
            .get(message_type)
            .ok_or_else(|| format!("no schema for {message_type}"))?;
        match validator.iter_errors(value).next() {
            None => Ok(()),
            Some(error) => {
                let at = error.instance_path().to_string();
                let at = if at.is_empty() { "/".to_owned() } else { at };
                Err(format!("{at}: {}", error.masked()))
            }
        }
    }

    /// The message types with a schema.
    pub fn types(&self) -> impl Iterator<Item = &str> {
        self.validators.keys().map(String::as_str)
    }
}
