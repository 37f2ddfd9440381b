//! The runbook: a TOML description of one migration (see README, "Runbook format").

pub mod duration;
pub mod error;
pub mod kinds;
pub mod model;
mod raw;
mod validate;

pub use error::{Diagnostic, RunbookError};
pub use kinds::ACTIONS as ACTION_KINDS;
pub use model::*;
pub use validate::{is_region, parse_state_url};

use std::path::Path;

/// The JSON Schema of the runbook format, generated from the types the parser
/// deserialises into; `cutover schema` prints it. Draft 7: taplo (and so the
/// Even Better TOML extension) validates with draft 4 to 7, not 2020-12.
pub fn json_schema() -> serde_json::Value {
    // First, so that draft 7's own transforms (a `$ref` takes no siblings) see its result.
    let settings = schemars::generate::SchemaSettings::draft07()
        .with(|s| s.transforms.insert(0, Box::new(schemars::transform::RecursiveTransform(without_null))));
    settings.into_generator().into_root_schema_for::<raw::RawRunbook>().to_value()
}

/// TOML has no null: an optional key is one left out, so `Option<T>` is `T`.
fn without_null(schema: &mut schemars::Schema) {
    use serde_json::Value;
    if let Some(Value::Array(types)) = schema.get_mut("type") {
        types.retain(|t| t != "null");
        if let [only] = types.as_slice() {
            let only = only.clone();
            schema.insert("type".into(), only);
        }
    }
    if let Some(Value::Array(alternatives)) = schema.get_mut("anyOf") {
        alternatives.retain(|a| a.get("type").is_none_or(|t| t != "null"));
        if let [Value::Object(only)] = alternatives.as_slice() {
            let only = only.clone();
            schema.remove("anyOf");
            for (key, value) in only {
                schema.insert(key, value);
            }
        }
    }
}

/// Parses and validates runbook text; `file` is used in messages only.
pub fn parse(file: &str, text: &str) -> Result<Runbook, RunbookError> {
    validate::parse(file, text)
}

/// Reads, parses and validates a runbook file.
pub fn load(path: &Path) -> Result<Runbook, RunbookError> {
    let file = path.display().to_string();
    let fail = |message: String, hint: &str| RunbookError::whole_file(&file, message, hint);
    if path.is_dir() {
        return Err(fail("is a directory, not a runbook".into(), "give the path of a .toml runbook file"));
    }
    let bytes = std::fs::read(path).map_err(|e| {
        let hint = if e.kind() == std::io::ErrorKind::NotFound {
            "check the path; shipped runbooks are under runbooks/"
        } else {
            "check the file's permissions"
        };
        fail(format!("cannot read: {e}"), hint)
    })?;
    let text = String::from_utf8(bytes).map_err(|e| {
        // Located by the valid text before the first invalid byte.
        let valid = e.utf8_error().valid_up_to();
        let before = String::from_utf8_lossy(&e.as_bytes()[..valid]).into_owned();
        let at = error::Locator::new(&file, &before).at(
            valid..valid,
            format!("is not UTF-8 text (an invalid byte, at offset {valid})"),
            "save the runbook as UTF-8",
        );
        RunbookError::from(at)
    })?;
    parse(&file, &text)
}

/// What Redis would read in a SCAN MATCH glob otherwise than meant, and how
/// to fix it: an empty one matches only a key named "" (a copy of nothing
/// that ends "done"), a lone trailing backslash or an unclosed `[` matches
/// by rules of Redis's own.
pub fn key_pattern_problem(p: &str) -> Option<(String, &'static str)> {
    if p.is_empty() {
        return Some(("is empty".into(), "give a glob such as 'user:*', or leave it out for every key"));
    }
    let b = p.as_bytes();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'\\' if i + 1 == b.len() => {
                return Some((format!("`{p}` ends with a lone backslash"), "escape it as \\\\ or remove it"));
            }
            b'\\' => i += 1,
            b'[' if !b[i + 1..].contains(&b']') => {
                return Some((format!("`{p}` has an unclosed '['"), "close it or escape it as \\["));
            }
            b'[' => i += b[i + 1..].iter().position(|c| *c == b']').map_or(0, |c| c + 1),
            _ => {}
        }
        i += 1;
    }
    None
}
