//! Where each pane goes. Pure, so `update` can hit-test mouse clicks with the
//! same rectangles `render` draws.

use ratatui::layout::{Constraint, Direction, Layout, Rect};

use super::pane::Pane;

/// Header (1 line) and key bar (1 line) around the body.
pub fn frame(area: Rect) -> (Rect, Rect, Rect) {
    let [header, body, footer] = Layout::default()
        .direction(Direction::Vertical)
        .constraints([Constraint::Length(1), Constraint::Min(0), Constraint::Length(1)])
        .areas(area);
    (header, body, footer)
}

/// Each pane's rectangle inside the whole screen `area`.
pub fn panes(area: Rect, focus: Pane, zoomed: bool) -> Vec<(Pane, Rect)> {
    let (_, body, _) = frame(area);
    if zoomed {
        return vec![(focus, body)];
    }
    if body.width >= 120 {
        // Two columns: live data left, runbook right.
        let [left, right] = Layout::horizontal([Constraint::Percentage(58), Constraint::Percentage(42)]).areas(body);
        let [traffic, targets, redis] =
            Layout::vertical([Constraint::Length(6), Constraint::Percentage(50), Constraint::Percentage(50)])
                .areas(left);
        let [alarms, checklist, log] =
            Layout::vertical([Constraint::Percentage(30), Constraint::Percentage(45), Constraint::Percentage(25)])
                .areas(right);
        in_pane_order([traffic, targets, redis, alarms, checklist, log])
    } else {
        // Narrow (80×24): a 2×3 grid, traffic small on top.
        let [top, mid, bottom] =
            Layout::vertical([Constraint::Length(5), Constraint::Percentage(50), Constraint::Percentage(50)])
                .areas(body);
        let [traffic, alarms] = Layout::horizontal([Constraint::Percentage(50), Constraint::Percentage(50)]).areas(top);
        let [targets, redis] = Layout::horizontal([Constraint::Percentage(50), Constraint::Percentage(50)]).areas(mid);
        let [checklist, log] =
            Layout::horizontal([Constraint::Percentage(60), Constraint::Percentage(40)]).areas(bottom);
        in_pane_order([traffic, targets, redis, alarms, checklist, log])
    }
}

fn in_pane_order(rects: [Rect; 6]) -> Vec<(Pane, Rect)> {
    Pane::ALL.into_iter().zip(rects).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_pane_has_room_at_80x24_and_160x48() {
        for (w, h) in [(80, 24), (160, 48)] {
            let rects = panes(Rect::new(0, 0, w, h), Pane::Traffic, false);
            assert_eq!(rects.len(), 6);
            for (p, r) in &rects {
                assert!(r.width >= 20 && r.height >= 3, "{p:?} at {w}x{h}: {r:?}");
            }
        }
    }

    #[test]
    fn zoom_gives_the_focused_pane_the_body() {
        let rects = panes(Rect::new(0, 0, 80, 24), Pane::Redis, true);
        assert_eq!(rects, vec![(Pane::Redis, Rect::new(0, 1, 80, 22))]);
    }
}
