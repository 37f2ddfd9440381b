//! The report's plots as SVG, drawn by plotters' SVG backend. Text stays SVG
//! `<text>` in the reader's sans-serif (plotters' ttf feature, which reads
//! system fonts, is off), and the `xmlns` attribute is dropped: inline SVG in
//! HTML needs none, and the page then names no address at all.

use plotters::prelude::*;

use super::{Curve, Plot};
use crate::store::audit::{AuditLine, Stage};

/// Series colours, by [`Curve::colour`]: the rollout's sides first (a side
/// keeps its colour in every plot), then lighter ones for second series.
pub const PALETTE: [RGBColor; 8] = [
    RGBColor(0x1F, 0x77, 0xB4),
    RGBColor(0xFF, 0x7F, 0x0E),
    RGBColor(0x2C, 0xA0, 0x2C),
    RGBColor(0x94, 0x67, 0xBD),
    RGBColor(0x8C, 0x56, 0x4B),
    RGBColor(0xE3, 0x77, 0xC2),
    RGBColor(0x7F, 0x7F, 0x7F),
    RGBColor(0x17, 0xBE, 0xCF),
];

/// The colour index of limits (red, never a series').
pub const THRESHOLD_COLOUR: usize = usize::MAX;

const WIDTH: u32 = 960;
const HEIGHT: u32 = 300;
const FONT: &str = "sans-serif";

fn colour(i: usize) -> RGBColor {
    if i == THRESHOLD_COLOUR { RGBColor(0xD6, 0x27, 0x28) } else { PALETTE[i % PALETTE.len()] }
}

/// `#RRGGBB` as the SVG names colour `i` (for readers of the file).
pub fn colour_hex(i: usize) -> String {
    let RGBColor(r, g, b) = colour(i);
    format!("#{r:02X}{g:02X}{b:02X}")
}

/// `HH:MM:SS` (UTC) of seconds since the epoch: the time axis' labels.
fn clock(t: f64) -> String {
    let at = std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(t.max(0.0) as u64);
    crate::time::rfc3339(at).get(11..19).unwrap_or_default().to_string()
}

fn failed<E: std::fmt::Display>(e: E) -> String {
    format!("cannot draw the report's plots: {e}")
}

/// plotters' SVG, without the namespace attribute (see the module's note).
fn inline(svg: String) -> String {
    svg.replacen(" xmlns=\"http://www.w3.org/2000/svg\"", "", 1) + "\n"
}

/// A plot's curves over `[x0, x1]` (seconds since the epoch), a legend naming each.
pub fn svg_curves(p: &Plot, (x0, x1): (i64, i64)) -> Result<String, String> {
    let values = p.curves.iter().flat_map(|c| c.points.iter().map(|pt| pt.1));
    let (lo, hi) = values.fold((0.0_f64, 0.0_f64), |(lo, hi), v| (lo.min(v), hi.max(v)));
    let hi = if hi > lo { hi + (hi - lo) * 0.1 } else { lo + 1.0 };
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, HEIGHT)).into_drawing_area();
        root.fill(&WHITE).map_err(failed)?;
        let mut chart = ChartBuilder::on(&root)
            .margin(12)
            .x_label_area_size(30)
            .y_label_area_size(70)
            .build_cartesian_2d(x0 as f64..x1 as f64, lo..hi)
            .map_err(failed)?;
        chart
            .configure_mesh()
            .x_labels(8)
            .y_labels(6)
            .x_label_formatter(&|x| clock(*x))
            .x_desc("time (UTC)")
            .y_desc(p.unit.as_str())
            .label_style((FONT, 12))
            .draw()
            .map_err(failed)?;
        for c in &p.curves {
            let rgb = colour(c.colour);
            let style = rgb.stroke_width(if c.threshold { 1 } else { 2 });
            chart
                .draw_series(LineSeries::new(points(c), style))
                .map_err(failed)?
                .label(c.label.as_str())
                .legend(move |(x, y)| Rectangle::new([(x, y - 4), (x + 14, y + 4)], rgb.filled()));
            // A reading of one period is a point: marked, so one alone shows.
            if !c.threshold && !c.step {
                chart.draw_series(points(c).map(|p| Circle::new(p, 3, rgb.filled()))).map_err(failed)?;
            }
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .label_font((FONT, 12))
            .draw()
            .map_err(failed)?;
        root.present().map_err(failed)?;
    }
    Ok(inline(svg))
}

fn points(c: &Curve) -> impl Iterator<Item = (f64, f64)> + '_ {
    c.points.iter().map(|(t, v)| (*t as f64, *v))
}

/// The timeline's lanes, top to bottom.
const LANES: [Stage; 8] = [
    Stage::Intent,
    Stage::Applied,
    Stage::InSync,
    Stage::Done,
    Stage::Paused,
    Stage::Failed,
    Stage::Refused,
    Stage::Interrupted,
];

fn lane(stage: Stage) -> f64 {
    (LANES.len() - 1 - LANES.iter().position(|s| *s == stage).unwrap_or(0)) as f64
}

fn stage_colour(stage: Stage) -> RGBColor {
    match stage {
        Stage::Intent => RGBColor(0x7F, 0x7F, 0x7F),
        Stage::Applied => RGBColor(0x1F, 0x77, 0xB4),
        Stage::InSync => RGBColor(0x2C, 0xA0, 0x2C),
        Stage::Done => RGBColor(0x94, 0x67, 0xBD),
        Stage::Paused => RGBColor(0xFF, 0x7F, 0x0E),
        Stage::Failed | Stage::Refused | Stage::Interrupted => RGBColor(0xD6, 0x27, 0x28),
    }
}

/// One circle per audit line (and no other circle), on its stage's lane,
/// numbered as the timeline's table.
pub fn svg_timeline(lines: &[AuditLine], (x0, x1): (i64, i64)) -> Result<String, String> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, HEIGHT)).into_drawing_area();
        root.fill(&WHITE).map_err(failed)?;
        let mut chart = ChartBuilder::on(&root)
            .margin(12)
            .x_label_area_size(30)
            .y_label_area_size(90)
            .build_cartesian_2d(x0 as f64..x1 as f64, -0.5..(LANES.len() as f64 - 0.5))
            .map_err(failed)?;
        chart
            .configure_mesh()
            .x_labels(8)
            .y_labels(LANES.len() * 2)
            .x_label_formatter(&|x| clock(*x))
            .y_label_formatter(&|y| {
                let i = y.round();
                if (y - i).abs() > 1e-6 || i < 0.0 || i as usize >= LANES.len() {
                    return String::new();
                }
                LANES[LANES.len() - 1 - i as usize].name().to_string()
            })
            .x_desc("time (UTC)")
            .label_style((FONT, 12))
            .draw()
            .map_err(failed)?;
        let markers = lines.iter().enumerate().filter_map(|(i, l)| {
            let t = crate::time::parse_rfc3339(&l.time)?;
            let x = t.duration_since(std::time::SystemTime::UNIX_EPOCH).ok()?.as_secs_f64();
            // Numbers alternate above and below so close markers stay readable.
            let dy = if i % 2 == 0 { -16 } else { 6 };
            Some(
                EmptyElement::at((x, lane(l.stage)))
                    + Circle::new((0, 0), 5, stage_colour(l.stage).filled())
                    + Text::new((i + 1).to_string(), (4, dy), (FONT, 11).into_font()),
            )
        });
        chart.draw_series(markers).map_err(failed)?;
        root.present().map_err(failed)?;
    }
    Ok(inline(svg))
}
