//! The Log pane.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;

use super::{hhmmss, pane_block};
use crate::tui::app::App;
use crate::tui::pane::Pane;

pub(super) fn log(f: &mut Frame, app: &App, area: Rect) {
    let th = &app.theme;
    let block = pane_block(app, Pane::Log, Vec::new());
    let inner = block.inner(area);
    f.render_widget(block, area);
    let h = inner.height as usize;
    let lines: Vec<Line> = app
        .log
        .iter()
        .skip(app.log.len().saturating_sub(h))
        .map(|l| {
            Line::from(vec![Span::styled(format!("{} ", hhmmss(l.at)), th.dim_style()), Span::raw(l.text.clone())])
        })
        .collect();
    f.render_widget(Paragraph::new(lines), inner);
}
