//! Message schemas: the JSON Schema a namespace's `schema_file` names,
//! compiled once at startup, and the publish rules the one route applies
//! ([`crate::shard::Shard::route`]) before any back end sees a publish.
//!
//! **Invariants:**
//!
//! * A schema is read and compiled once, when the broker starts; a file that
//!   cannot be read, is not JSON, or is not a valid JSON Schema stops the
//!   start with a [`SchemaError`] naming the file and the error. A running
//!   broker never reads a schema file again.
//! * A publish into a room of a namespace with a schema is checked on the
//!   publisher's shard (so the cost is spread over the shards, and neither
//!   a home shard nor the cluster backplane pays it), before any back end:
//!   `data` that does not match is refused with `invalid_data` and never
//!   sequenced, stored or delivered.
//! * A publish into a room without a schema costs one namespace lookup
//!   (none at all without namespaces): `data` is not parsed.
//! * The refusal's message is bounded ([`MAX_RULE_BYTES`]) whatever the
//!   data or the schema hold.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

use jsonschema::Validator;
use serde_json::Value;

use crate::error::Refusal;
use crate::op::Publish;
use crate::room::namespaces::{Namespaces, NsId};

/// Longest rule text in an `invalid_data` message, in bytes (the schema's
/// own words can quote client data, such as unexpected property names).
pub(crate) const MAX_RULE_BYTES: usize = 200;

/// Why a namespace's schema could not be loaded (the broker does not
/// start).
#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    /// The file could not be read.
    #[error("cannot read schema_file {file:?} of namespace {prefix:?}: {source}")]
    Read {
        /// The namespace's prefix.
        prefix: String,
        /// The file, as configured.
        file: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not JSON.
    #[error("schema_file {file:?} of namespace {prefix:?} is not JSON: {reason}")]
    Json {
        /// The namespace's prefix.
        prefix: String,
        /// The file, as configured.
        file: String,
        /// The parser's error.
        reason: String,
    },
    /// The file is JSON but not a schema this validator can compile.
    #[error("schema_file {file:?} of namespace {prefix:?} is not a valid JSON Schema: {reason}")]
    Invalid {
        /// The namespace's prefix.
        prefix: String,
        /// The file, as configured.
        file: String,
        /// The compiler's error.
        reason: String,
    },
}

/// One compiled schema.
pub(crate) struct Schema {
    validator: Validator,
    /// The schema as canonical JSON (object keys sorted), for the cluster's
    /// namespace fingerprint.
    canonical: String,
}

impl std::fmt::Debug for Schema {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Schema")
            .field("canonical", &self.canonical)
            .finish()
    }
}

impl Schema {
    /// Compile `text`, the schema of namespace `prefix` read from `file`
    /// (draft 2020-12 unless its `$schema` names another draft). A schema
    /// may not refer to other files or URLs: nothing is fetched.
    pub(crate) fn compile(prefix: &str, file: &str, text: &[u8]) -> Result<Schema, SchemaError> {
        let json: Value = serde_json::from_slice(text).map_err(|e| SchemaError::Json {
            prefix: prefix.to_string(),
            file: file.to_string(),
            reason: e.to_string(),
        })?;
        let validator = jsonschema::validator_for(&json).map_err(|e| SchemaError::Invalid {
            prefix: prefix.to_string(),
            file: file.to_string(),
            reason: bounded(&e.to_string(), 4 * MAX_RULE_BYTES),
        })?;
        Ok(Schema {
            validator,
            canonical: json.to_string(),
        })
    }

    /// Check `data` (one JSON value, as the client wrote it) against the
    /// schema of namespace `prefix`: `invalid_data` naming the first
    /// failing JSON pointer and rule.
    pub(crate) fn check(&self, prefix: &str, data: &[u8]) -> Result<(), Refusal> {
        let value: Value = match serde_json::from_slice(data) {
            Ok(value) => value,
            // The frame's decoder read it already: only nesting deeper than
            // serde_json reads (128 levels) gets here.
            Err(e) => {
                let rule = format!("cannot be checked: {e}");
                return Err(Refusal::invalid_data(
                    prefix,
                    "(root)",
                    &bounded(&rule, MAX_RULE_BYTES),
                ));
            }
        };
        // The fast check first; the first error only when it fails.
        if self.validator.is_valid(&value) {
            return Ok(());
        }
        match self.validator.validate(&value) {
            Ok(()) => Ok(()),
            Err(error) => {
                let at = error.instance_path().as_str();
                let at = if at.is_empty() { "(root)" } else { at };
                let at = bounded(at, MAX_RULE_BYTES);
                Err(Refusal::invalid_data(prefix, &at, &rule_of(&error)))
            }
        }
    }
}

/// What `error` says `data` fails, without the failing value itself:
/// `longer than 2000 characters`, `"text" is a required property`.
fn rule_of(error: &jsonschema::ValidationError<'_>) -> String {
    let text = error.masked_with("\u{0}").to_string();
    let text = text
        .strip_prefix("\u{0} is ")
        .or_else(|| text.strip_prefix("\u{0} "))
        .unwrap_or(&text)
        .replace('\u{0}', "the value");
    bounded(&text, MAX_RULE_BYTES)
}

/// `text` cut to at most `max` bytes at a character boundary, marked with
/// `...` when cut.
fn bounded(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut end = max.saturating_sub(3);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &text[..end])
}

/// The schema of each namespace (by [`NsId`]), and the count of
/// `invalid_data` refusals per namespace.
#[derive(Debug, Default)]
pub(crate) struct Schemas {
    by_namespace: Vec<Option<Schema>>,
    refused: Vec<AtomicU64>,
}

impl Schemas {
    /// Read and compile the schema of every namespace that names one.
    pub(crate) fn load(namespaces: &Namespaces) -> Result<Schemas, SchemaError> {
        let mut by_namespace = Vec::with_capacity(namespaces.len());
        for (prefix, rules) in namespaces.iter() {
            let schema = match rules.schema.as_deref() {
                Some(file) => {
                    let text =
                        std::fs::read(PathBuf::from(file)).map_err(|source| SchemaError::Read {
                            prefix: prefix.to_string(),
                            file: file.to_string(),
                            source,
                        })?;
                    Some(Schema::compile(prefix, file, &text)?)
                }
                None => None,
            };
            by_namespace.push(schema);
        }
        let refused = (0..namespaces.len()).map(|_| AtomicU64::new(0)).collect();
        Ok(Schemas {
            by_namespace,
            refused,
        })
    }

    /// The schema of namespace `ns`, if it has one.
    pub(crate) fn of(&self, ns: NsId) -> Option<&Schema> {
        ns.and_then(|i| self.by_namespace.get(i))
            .and_then(Option::as_ref)
    }

    /// `invalid_data` refusals so far in namespace `ns` (0 without one).
    pub(crate) fn refused(&self, ns: NsId) -> u64 {
        ns.and_then(|i| self.refused.get(i))
            .map_or(0, |c| c.load(Ordering::Relaxed))
    }

    /// Count one `invalid_data` refusal in namespace `ns`.
    fn count_refusal(&self, ns: NsId) {
        if let Some(counter) = ns.and_then(|i| self.refused.get(i)) {
            counter.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// A short digest of the namespaces' rules and schemas (the schemas'
/// content, not their paths): nodes of one cluster must have the same one.
/// 16 hex digits of a SHA-256.
pub(crate) fn fingerprint(namespaces: &Namespaces, schemas: &Schemas) -> String {
    use sha2::{Digest, Sha256};
    let described: Vec<Value> = namespaces
        .iter()
        .enumerate()
        .map(|(i, (prefix, rules))| {
            let mut rules = rules.clone();
            rules.schema = None;
            let schema = schemas.of(Some(i)).map(|s| s.canonical.as_str());
            serde_json::json!({ "prefix": &**prefix, "rules": rules, "schema": schema })
        })
        .collect();
    let digest = Sha256::digest(Value::Array(described).to_string().as_bytes());
    digest.iter().take(8).map(|b| format!("{b:02x}")).collect()
}

/// `invalid_data` refusals so far by namespace prefix, for every namespace
/// with a schema (`shardcast_invalid_data_total`).
pub(crate) fn invalid_data_counts(
    namespaces: &Namespaces,
    schemas: &Schemas,
) -> Vec<(std::sync::Arc<str>, u64)> {
    namespaces
        .iter()
        .enumerate()
        .filter(|(i, _)| schemas.of(Some(*i)).is_some())
        .map(|(i, (prefix, _))| (prefix.clone(), schemas.refused(Some(i))))
        .collect()
}

/// The namespace rules of a publish that the one route applies before any
/// back end: `client_publish` (`forbidden`), then the schema
/// (`invalid_data`).
pub(crate) fn admit_publish(
    namespaces: &Namespaces,
    schemas: &Schemas,
    publish: &Publish,
) -> Result<(), Refusal> {
    let ns = namespaces.find(&publish.room);
    if ns.is_none() {
        return Ok(());
    }
    namespaces.may_publish(ns, &publish.room, publish.privileged)?;
    let Some(schema) = schemas.of(ns) else {
        return Ok(());
    };
    let prefix = namespaces.prefix(ns).map_or("", |p| &**p);
    schema.check(prefix, &publish.data).inspect_err(|_| {
        schemas.count_refusal(ns);
    })
}

#[cfg(test)]
#[path = "schema_tests.rs"]
mod tests;
