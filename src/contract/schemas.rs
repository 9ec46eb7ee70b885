//! The JSON Schemas of `schemas/`, embedded at build time and compiled once.

use std::collections::HashMap;
use std::sync::LazyLock;

use jsonschema::{Registry, Validator};
use serde_json::Value;

use crate::domain::Email;

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
        // One definition of an e-mail address (PEC addresses use the same format): the
        // schemas' `email` format is the parse the workers use, not the library's own.
        let options = jsonschema::options()
            .should_validate_formats(true)
            .with_format("email", |text: &str| Email::parse(text).is_ok())
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
        // Most messages are valid: `is_valid` stops at the first failure and collects
        // nothing, where `iter_errors` walks the whole value gathering errors.
        if validator.is_valid(value) {
            return Ok(());
        }
        match validator.iter_errors(value).next() {
            None => Err("/: does not match its schema".to_owned()),
            Some(error) => {
                let at = error.instance_path().to_string();
                let at = if at.is_empty() { "/".to_owned() } else { at };
                Err(format!("{at}: {}", error.masked()))
            }
        }
    }

    /// The example of a message type (`schemas/examples/<type>.json`), if there is one.
    pub fn example(message_type: &str) -> Option<serde_json::Value> {
        let file = format!("{message_type}.json");
        embedded::EXAMPLES
            .iter()
            .find(|(name, _)| *name == file)
            .and_then(|(_, text)| serde_json::from_str(text).ok())
    }

    /// Every example command: (file name, contents).
    pub fn examples() -> &'static [(&'static str, &'static str)] {
        embedded::EXAMPLES
    }

    /// The message types with a schema.
    pub fn types(&self) -> impl Iterator<Item = &str> {
        self.validators.keys().map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// Addresses on which jsonschema's own `email` format and `Email::parse` gave
    /// different answers (a domain without a dot, quoted local parts, a local part with
    /// a leading, trailing or doubled dot, a label starting with a hyphen), and some on
    /// which they always agreed, either way.
    const ADDRESSES: &[&str] = &[
        "mario.rossi@example.org",
        "user+tag@example.org",
        "a@b",
        "mario@localhost",
        "\"john doe\"@example.org",
        "\"a@b\"@example.org",
        "a..b@example.org",
        ".a@example.org",
        "a.@example.org",
        "a@example.org.",
        "a@-example.org",
        "mário@example.org",
        "a@[127.0.0.1]",
        "mario",
        "ma rio@example.org",
    ];

    #[test]
    fn the_schemas_email_format_and_email_parse_agree() {
        let schemas = Schemas::embedded();
        let (mut accepted, mut refused) = (0, 0);
        for address in ADDRESSES {
            let data = json!({ "tax_code": "RSSMRA85T10A562S", "channel": "online",
                               "email": address, "pec": address });
            let by_schema = schemas.check("contacts.update", &data).is_ok();
            let by_parse = Email::parse(address).is_ok();
            assert_eq!(
                by_schema, by_parse,
                "{address}: schema {by_schema}, parse {by_parse}"
            );
            if by_parse {
                accepted += 1
            } else {
                refused += 1
            }
        }
        assert!(accepted >= 3 && refused >= 3, "both answers are exercised");
    }
}
