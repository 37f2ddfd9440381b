//! Runbook diagnostics: `file:line:col: what is wrong; how to fix it`.

use std::fmt;
use std::ops::Range;

/// One problem found in a runbook, located in its source text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub file: String,
    /// 1-based; 0 when the problem concerns the whole file.
    pub line: usize,
    pub col: usize,
    pub message: String,
    pub hint: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}: {}; {}", self.file, self.message, self.hint)
        } else {
            write!(f, "{}:{}:{}: {}; {}", self.file, self.line, self.col, self.message, self.hint)
        }
    }
}

/// Every problem found in one runbook, in source order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunbookError {
    pub diagnostics: Vec<Diagnostic>,
}

impl fmt::Display for RunbookError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.diagnostics.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{d}")?;
        }
        Ok(())
    }
}

impl std::error::Error for RunbookError {}

/// Turns byte spans into 1-based line and column (columns count characters).
pub struct Locator<'a> {
    file: &'a str,
    text: &'a str,
}

impl<'a> Locator<'a> {
    pub fn new(file: &'a str, text: &'a str) -> Self {
        Self { file, text }
    }

    pub fn line_col(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.text.len());
        let before = &self.text[..floor_char_boundary(self.text, offset)];
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let col = before[line_start..].chars().count() + 1;
        (line, col)
    }

    pub fn at(&self, span: Range<usize>, message: impl Into<String>, hint: impl Into<String>) -> Diagnostic {
        let (line, col) = self.line_col(span.start);
        Diagnostic { file: self.file.to_string(), line, col, message: message.into(), hint: hint.into() }
    }

    pub fn whole_file(&self, message: impl Into<String>, hint: impl Into<String>) -> Diagnostic {
        Diagnostic { file: self.file.to_string(), line: 0, col: 0, message: message.into(), hint: hint.into() }
    }
}

fn floor_char_boundary(s: &str, mut i: usize) -> usize {
    while i > 0 && !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_and_column_are_one_based_and_count_characters() {
        let text = "a = 1\nbé = \"x\"\n";
        let loc = Locator::new("f.toml", text);
        assert_eq!(loc.line_col(0), (1, 1));
        assert_eq!(loc.line_col(6), (2, 1));
        // 'é' is two bytes; the '=' after it is column 4.
        let eq = text.find("= \"").unwrap();
        assert_eq!(loc.line_col(eq), (2, 4));
        assert_eq!(loc.line_col(10_000), (3, 1));
    }

    #[test]
    fn display_has_location_message_and_hint() {
        let loc = Locator::new("r.toml", "x\ny");
        let d = loc.at(2..3, "bad thing", "do this");
        assert_eq!(d.to_string(), "r.toml:2:1: bad thing; do this");
        let whole = loc.whole_file("cannot read", "check the path");
        assert_eq!(whole.to_string(), "r.toml: cannot read; check the path");
    }
}
