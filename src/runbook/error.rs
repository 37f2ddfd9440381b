//! Runbook diagnostics: `file:line:col: what is wrong; how to fix it`, then,
//! as rustc and cargo show them, the line at fault with a caret under it.

use std::fmt;
use std::ops::Range;

use annotate_snippets::{AnnotationKind, Group, Level, Renderer, Snippet};

/// One problem found in a runbook, located in its source text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub file: String,
    /// 1-based; 0 when the problem concerns the whole file.
    pub line: usize,
    pub col: usize,
    pub message: String,
    pub hint: String,
    /// Bytes of the source at fault; None when the problem concerns the whole file.
    pub span: Option<Range<usize>>,
    /// The span holds a secret (a webhook URL written where its variable's
    /// name belongs): the excerpt shows it masked.
    pub secret: bool,
    /// Other spans holding a secret that the excerpt may show (a Redis URL's
    /// password on the line of another mistake): masked too.
    pub hidden: Vec<Range<usize>>,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (file, message, hint) = (printable(&self.file), printable(&self.message), printable(&self.hint));
        if self.line == 0 {
            write!(f, "{file}: {message}; {hint}")
        } else {
            write!(f, "{file}:{}:{}: {message}; {hint}", self.line, self.col)
        }
    }
}

/// `s` with its control characters escaped (`\u{1b}`): a runbook value
/// echoed in a message (a TOML "\u001b[2K\r… ok" in a region) must not
/// move the terminal's cursor and rewrite a refusal as "ok".
fn printable(s: &str) -> std::borrow::Cow<'_, str> {
    if !s.chars().any(char::is_control) {
        return s.into();
    }
    s.chars().map(|c| if c.is_control() { c.escape_default().to_string() } else { c.to_string() }).collect()
}

/// Every problem found in one runbook, in source order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunbookError {
    pub diagnostics: Vec<Diagnostic>,
    /// The runbook's text, to show the lines at fault; None when it could not be read.
    pub source: Option<String>,
}

impl RunbookError {
    /// A problem with the file as a whole (it cannot be read, say).
    pub fn whole_file(file: &str, message: impl Into<String>, hint: impl Into<String>) -> Self {
        Locator::new(file, "").whole_file(message, hint).into()
    }

    /// Each diagnostic's line (as Display writes it) and, below it, its line
    /// of the runbook with a caret under the span, rustc's way; a blank line
    /// between diagnostics. `color`: ANSI styles, for a terminal.
    pub fn render(&self, color: bool) -> String {
        let renderer = if color { Renderer::styled() } else { Renderer::plain() };
        let mut out = String::new();
        for (i, d) in self.diagnostics.iter().enumerate() {
            if i > 0 {
                out.push_str("\n\n");
            }
            if color {
                out.push_str(&format!("\x1b[1m{d}\x1b[0m"));
            } else {
                out.push_str(&d.to_string());
            }
            if let (Some(span), Some(text)) = (&d.span, &self.source) {
                out.push('\n');
                let masked;
                let text = if d.secret || !d.hidden.is_empty() {
                    let own = d.secret.then(|| span.clone());
                    masked = own.iter().chain(&d.hidden).fold(text.clone(), |t, s| mask(&t, s.clone()));
                    &masked
                } else {
                    text
                };
                out.push_str(&renderer.render(&snippet(text, span.clone())));
            }
        }
        out
    }
}

/// `text` with every character of `span` but its quotes shown as `*`, at the
/// same byte offsets.
fn mask(text: &str, span: Range<usize>) -> String {
    let (start, end) = (span.start.min(text.len()), span.end.min(text.len()));
    let (start, end) = (floor_char_boundary(text, start), floor_char_boundary(text, end));
    // By bytes (a multi-byte character becomes several `*`, so the offsets
    // after it hold); quotes and line breaks stay, so no line moves.
    let inner: String = text.as_bytes()[start..end]
        .iter()
        .map(|b| if matches!(b, b'"' | b'\'' | b'\n' | b'\r') { *b as char } else { '*' })
        .collect();
    format!("{}{inner}{}", &text[..start], &text[end..])
}

/// The source line(s) of `span`, numbered, with the span underlined. A span
/// running past its first line is cut there: the caret marks where, and the
/// first line says what.
fn snippet(text: &str, span: Range<usize>) -> Vec<Group<'_>> {
    let start = floor_char_boundary(text, span.start.min(text.len()));
    let line_end = text[start..].find('\n').map_or(text.len(), |i| start + i);
    let end = floor_char_boundary(text, span.end.clamp(start, line_end));
    vec![
        Group::with_level(Level::ERROR)
            .element(Snippet::source(text).line_start(1).annotation(AnnotationKind::Primary.span(start..end))),
    ]
}

impl From<Diagnostic> for RunbookError {
    fn from(d: Diagnostic) -> Self {
        RunbookError { diagnostics: vec![d], source: None }
    }
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
        // A byte-order mark at the file's start is no column an editor shows.
        let line_text = &before[line_start..];
        let line_text =
            if line_start == 0 { line_text.strip_prefix('\u{feff}').unwrap_or(line_text) } else { line_text };
        let col = line_text.chars().count() + 1;
        (line, col)
    }

    pub fn at(&self, span: Range<usize>, message: impl Into<String>, hint: impl Into<String>) -> Diagnostic {
        let (line, col) = self.line_col(span.start);
        let span = Some(span);
        Diagnostic {
            file: self.file.to_string(),
            line,
            col,
            message: message.into(),
            hint: hint.into(),
            span,
            secret: false,
            hidden: Vec::new(),
        }
    }

    pub fn whole_file(&self, message: impl Into<String>, hint: impl Into<String>) -> Diagnostic {
        let (message, hint) = (message.into(), hint.into());
        Diagnostic {
            file: self.file.to_string(),
            line: 0,
            col: 0,
            message,
            hint,
            span: None,
            secret: false,
            hidden: Vec::new(),
        }
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
        // A byte-order mark before the first line is no column.
        let bom = "\u{feff}schema = 2\n";
        let loc = Locator::new("f.toml", bom);
        assert_eq!(loc.line_col(bom.find("schema").unwrap()), (1, 1));
        assert_eq!(loc.line_col(bom.find('=').unwrap()), (1, 8));
    }

    #[test]
    fn control_characters_in_a_message_are_shown_escaped() {
        let loc = Locator::new("r.toml", "region = \"x\"\n");
        let d = loc.at(9..12, "bad region `\u{1b}[2K\rr.toml: ok`", "give a region");
        let shown = d.to_string();
        assert!(!shown.chars().any(char::is_control), "{shown:?}");
        assert!(shown.contains("bad region `\\u{1b}[2K\\rr.toml: ok`"), "{shown}");
    }

    #[test]
    fn render_shows_the_line_with_a_caret_under_the_span() {
        let text = "[dns]\nttl = \"60\"\n";
        let loc = Locator::new("r.toml", text);
        let start = text.find("\"60").unwrap();
        let e = RunbookError {
            diagnostics: vec![loc.at(start..start + 4, "bad ttl", "give seconds")],
            source: Some(text.into()),
        };
        let expected = "r.toml:2:7: bad ttl; give seconds\n  |\n2 | ttl = \"60\"\n  |       ^^^^";
        assert_eq!(e.render(false), expected);
        let styled = e.render(true);
        assert!(styled.contains("\x1b["), "styled output has ANSI styles: {styled:?}");
        let unstyled: String = strip_ansi(&styled);
        assert_eq!(unstyled, expected, "the same text under the styles");
    }

    #[test]
    fn render_separates_errors_cuts_long_spans_and_leaves_whole_file_errors_alone() {
        let text = "[rollout]\nfrom = \"a\"\nto = \"b\"";
        let loc = Locator::new("r.toml", text);
        let e = RunbookError {
            diagnostics: vec![
                loc.whole_file("no [dns]", "add one"),
                loc.at(0..text.len(), "missing soak", "add it"),
                loc.at(text.len()..text.len(), "ends early", "finish it"),
            ],
            source: Some(text.into()),
        };
        let shown = e.render(false);
        let blocks: Vec<&str> = shown.split("\n\n").collect();
        assert_eq!(blocks.len(), 3, "{shown}");
        assert_eq!(blocks[0], "r.toml: no [dns]; add one");
        // A span over the whole table is marked on its first line only.
        assert_eq!(blocks[1], "r.toml:1:1: missing soak; add it\n  |\n1 | [rollout]\n  | ^^^^^^^^^");
        assert!(blocks[2].starts_with("r.toml:3:9: ends early; finish it\n  |\n3 | to = \"b\"\n"), "{}", blocks[2]);
        assert!(blocks[2].ends_with('^'), "{}", blocks[2]);
        let unreadable = RunbookError::whole_file("r.toml", "cannot read", "check the path");
        assert_eq!(unreadable.render(false), "r.toml: cannot read; check the path");
    }

    fn strip_ansi(s: &str) -> String {
        let mut out = String::new();
        let mut chars = s.chars();
        while let Some(c) = chars.next() {
            if c == '\x1b' {
                chars.by_ref().find(|c| c.is_ascii_alphabetic());
            } else {
                out.push(c);
            }
        }
        out
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
