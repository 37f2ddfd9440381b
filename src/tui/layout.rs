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

/// What the panes hold, for sizing them: each pane's lines of content and
/// the width of the checklist's longest line (borders not counted).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Content {
    /// Lines per pane, in `Pane::ALL` order.
    pub lines: [u16; 7],
    pub checklist_width: u16,
    /// The Parity pane is open: it takes the Log's place until the Log is
    /// focused again.
    pub parity_open: bool,
}

/// The left column keeps at least this much (the traffic bars and the Redis
/// matrix need it).
const LEFT_MIN: u16 = 64;

/// Each pane's rectangle inside the whole screen `area`, sized by what the
/// panes hold.
pub fn panes(area: Rect, focus: Pane, zoomed: bool, content: &Content) -> Vec<(Pane, Rect)> {
    let (_, body, _) = frame(area);
    if zoomed {
        return vec![(focus, body)];
    }
    let mut out = grid(body, content);
    if content.parity_open {
        for (pane, _) in out.iter_mut().filter(|(p, _)| *p == Pane::Log) {
            *pane = Pane::Parity;
        }
    }
    out
}

/// The six places: Traffic, Targets, Redis, Alarms, Checklist, and the Log's
/// (which the Parity pane takes when open).
fn grid(body: Rect, content: &Content) -> Vec<(Pane, Rect)> {
    if body.width >= 120 {
        // Two columns: live data left, runbook right, as wide as the
        // checklist's titles need (between 42% and 60% of the screen).
        let want = content.checklist_width.saturating_add(2);
        // In u32: width * 60 overflows u16 from 1093 columns.
        let percent = |p: u32| u16::try_from(u32::from(body.width) * p / 100).unwrap_or(u16::MAX);
        let right_w = want.clamp(percent(42), percent(60).min(body.width - LEFT_MIN));
        let [left, right] = Layout::horizontal([Constraint::Min(0), Constraint::Length(right_w)]).areas(body);
        let lines = |p: Pane| content.lines[p.index()].saturating_add(2);
        // Traffic and Targets as tall as their rows; Redis takes the rest.
        let left_h = column(left.height, &[(lines(Pane::Traffic), 5), (lines(Pane::Targets), 4), (0, 8)], 2);
        // Alarms and Checklist as tall as their rows; the Log takes the rest.
        let right_h = column(right.height, &[(lines(Pane::Alarms), 4), (lines(Pane::Checklist), 8), (0, 5)], 2);
        let [traffic, targets, redis] = Layout::vertical(left_h.map(Constraint::Length)).areas(left);
        let [alarms, checklist, log] = Layout::vertical(right_h.map(Constraint::Length)).areas(right);
        in_pane_order([traffic, targets, redis, alarms, checklist, log])
    } else {
        // Narrow (80×24): a 2×3 grid, traffic small on top: its rows and the
        // rollout's line (no spare), taller only for a warning or a third record.
        let traffic_h = content.lines[Pane::Traffic.index()].saturating_add(1).clamp(5, 9);
        let [top, mid, bottom] =
            Layout::vertical([Constraint::Length(traffic_h), Constraint::Percentage(50), Constraint::Percentage(50)])
                .areas(body);
        let [traffic, alarms] = Layout::horizontal([Constraint::Percentage(50), Constraint::Percentage(50)]).areas(top);
        let [targets, redis] = Layout::horizontal([Constraint::Percentage(50), Constraint::Percentage(50)]).areas(mid);
        let [checklist, log] =
            Layout::horizontal([Constraint::Percentage(60), Constraint::Percentage(40)]).areas(bottom);
        in_pane_order([traffic, targets, redis, alarms, checklist, log])
    }
}

/// Heights for three panes stacked in `height`: each `(wanted, least)`; the
/// pane at `rest` also gets what is left. When the wants do not fit, each is
/// cut toward its least in proportion.
fn column(height: u16, panes: &[(u16, u16); 3], rest: usize) -> [u16; 3] {
    let want = |i: usize| panes[i].0.max(panes[i].1);
    let total: u32 = (0..3).map(|i| u32::from(want(i))).sum();
    let mut out = [want(0), want(1), want(2)];
    if total <= u32::from(height) {
        out[rest] += height - total as u16;
        return out;
    }
    let least: u32 = panes.iter().map(|p| u32::from(p.1)).sum();
    let room = u32::from(height).saturating_sub(least);
    let above = total - least;
    for (i, h) in out.iter_mut().enumerate() {
        let extra = u32::from(want(i) - panes[i].1);
        *h = panes[i].1 + (extra * room).checked_div(above).map_or(0, |v| v as u16);
    }
    let used: u16 = out.iter().sum();
    out[rest] += height.saturating_sub(used);
    out
}

fn in_pane_order(rects: [Rect; 6]) -> Vec<(Pane, Rect)> {
    Pane::ALL.into_iter().zip(rects).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_pane_has_room_at_80x24_and_160x48() {
        let crowded = Content { lines: [40; 7], checklist_width: 300, parity_open: false };
        for ((w, h), content) in [(80, 24), (160, 48)].into_iter().flat_map(|s| [(s, Content::default()), (s, crowded)])
        {
            let rects = panes(Rect::new(0, 0, w, h), Pane::Traffic, false, &content);
            assert_eq!(rects.len(), 6);
            for (p, r) in &rects {
                assert!(r.width >= 20 && r.height >= 3, "{p:?} at {w}x{h}: {r:?}");
            }
        }
    }

    #[test]
    fn a_terminal_of_any_width_is_laid_out() {
        // body.width * 60 overflowed u16 from 1093 columns (a small font on a wide screen).
        for w in [1092, 1093, 4000, u16::MAX] {
            let content = Content { lines: [40; 7], checklist_width: 300, parity_open: false };
            let rects = panes(Rect::new(0, 0, w, 50), Pane::Traffic, false, &content);
            let r = |p: Pane| rects.iter().find(|(q, _)| *q == p).unwrap().1;
            assert!(r(Pane::Checklist).width >= w / 100 * 42, "{w}: {rects:?}");
            assert!(r(Pane::Traffic).width >= LEFT_MIN, "{w}: {rects:?}");
        }
    }

    #[test]
    fn the_parity_pane_once_open_takes_the_logs_place() {
        for (w, h) in [(80, 24), (160, 48)] {
            let area = Rect::new(0, 0, w, h);
            let closed = panes(area, Pane::Traffic, false, &Content::default());
            let open = panes(area, Pane::Traffic, false, &Content { parity_open: true, ..Content::default() });
            let log = closed.iter().find(|(p, _)| *p == Pane::Log).unwrap().1;
            assert_eq!(open.iter().find(|(p, _)| *p == Pane::Parity).map(|x| x.1), Some(log), "{w}x{h}");
            assert!(!open.iter().any(|(p, _)| *p == Pane::Log), "{w}x{h}");
            assert!(!closed.iter().any(|(p, _)| *p == Pane::Parity), "{w}x{h}");
        }
    }

    #[test]
    fn zoom_gives_the_focused_pane_the_body() {
        let rects = panes(Rect::new(0, 0, 80, 24), Pane::Redis, true, &Content::default());
        assert_eq!(rects, vec![(Pane::Redis, Rect::new(0, 1, 80, 22))]);
    }

    #[test]
    fn panes_are_as_tall_as_their_rows_and_the_checklist_as_wide_as_its_titles() {
        let content = Content { lines: [3, 4, 6, 6, 20, 2, 0], checklist_width: 88, parity_open: false };
        let rects = panes(Rect::new(0, 0, 160, 48), Pane::Traffic, false, &content);
        let r = |p: Pane| rects.iter().find(|(q, _)| *q == p).unwrap().1;
        assert_eq!((r(Pane::Traffic).height, r(Pane::Targets).height), (5, 6));
        assert_eq!(r(Pane::Redis).height, 46 - 5 - 6);
        assert_eq!((r(Pane::Alarms).height, r(Pane::Checklist).height), (8, 22));
        assert_eq!(r(Pane::Log).height, 46 - 8 - 22);
        assert_eq!(r(Pane::Checklist).width, 90);
        assert_eq!(r(Pane::Targets).width, 70);
    }

    #[test]
    fn a_column_that_cannot_hold_every_pane_cuts_each_toward_its_least() {
        assert_eq!(column(20, &[(30, 4), (30, 8), (0, 5)], 2), [5, 9, 6]);
        assert_eq!(column(17, &[(30, 4), (30, 8), (0, 5)], 2), [4, 8, 5]);
        assert_eq!(column(30, &[(6, 4), (10, 8), (0, 5)], 2), [6, 10, 14]);
    }
}
