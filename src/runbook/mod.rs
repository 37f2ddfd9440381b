//! The runbook: a TOML description of one migration (see README, "Runbook format").

pub mod duration;
pub mod error;
pub mod model;
mod raw;
mod validate;

pub use error::{Diagnostic, RunbookError};
pub use model::*;
pub use validate::ACTIONS as ACTION_KINDS;

use std::path::Path;

/// Parses and validates runbook text; `file` is used in messages only.
pub fn parse(file: &str, text: &str) -> Result<Runbook, RunbookError> {
    validate::parse(file, text)
}

/// Reads, parses and validates a runbook file.
pub fn load(path: &Path) -> Result<Runbook, RunbookError> {
    let file = path.display().to_string();
    let fail = |message: String, hint: &str| RunbookError {
        diagnostics: vec![Diagnostic { file: file.clone(), line: 0, col: 0, message, hint: hint.to_string() }],
    };
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
        fail(
            format!("is not UTF-8 text (invalid byte at offset {})", e.utf8_error().valid_up_to()),
            "save the runbook as UTF-8",
        )
    })?;
    parse(&file, &text)
}
