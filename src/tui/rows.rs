//! The selectable rows of each pane, after the filter. Shared by `update`
//! (selection bounds) and `render` (what is drawn).

use super::app::App;
use super::layout::Content;
use super::pane::Pane;
use crate::live::NodePing;
use crate::status::{InstanceView, TargetView};

fn matches(filter: &str, hay: &[&str]) -> bool {
    let f = filter.to_ascii_lowercase();
    f.is_empty() || hay.iter().any(|h| h.to_ascii_lowercase().contains(&f))
}

pub struct TargetRow<'a> {
    pub environment: &'a str,
    pub group: &'a str,
    pub target: &'a TargetView,
    pub name: Option<&'a str>,
}

pub fn targets(app: &App) -> Vec<TargetRow<'_>> {
    let mut out = Vec::new();
    for env in &app.snap.environments {
        let Some(aws) = &env.aws.value else { continue };
        for tg in &aws.target_groups {
            for t in &tg.targets {
                let name = aws
                    .instances
                    .iter()
                    .find(|i| i.instance.id == t.target.id)
                    .and_then(|i| i.instance.name.as_deref());
                let hay = [
                    env.name.as_str(),
                    tg.name.as_str(),
                    t.target.id.as_str(),
                    t.target.state.as_str(),
                    name.unwrap_or(""),
                ];
                if matches(&app.filter, &hay) {
                    out.push(TargetRow { environment: &env.name, group: &tg.name, target: t, name });
                }
            }
        }
    }
    out
}

pub struct RedisRow<'a> {
    pub environment: &'a str,
    pub instance: &'a InstanceView,
    pub endpoint: &'a str,
    /// One node of a cluster endpoint (None: a single server, or a cluster not read yet).
    pub node: Option<&'a NodePing>,
}

/// The instance × endpoint matrix, one row per pair; a cluster endpoint
/// gets one row per node (primaries and replicas).
pub fn redis(app: &App) -> Vec<RedisRow<'_>> {
    let mut out = Vec::new();
    for env in &app.snap.environments {
        let Some(aws) = &env.aws.value else { continue };
        for i in &aws.instances {
            for ep in i.sg_paths.keys() {
                let nodes: Vec<Option<&NodePing>> = match app
                    .snap
                    .redis
                    .iter()
                    .find(|r| &r.name == ep)
                    .and_then(|r| r.view.value.as_ref())
                    .map(|v| v.nodes.as_slice())
                {
                    Some(nodes) if !nodes.is_empty() => nodes.iter().map(Some).collect(),
                    _ => vec![None],
                };
                for node in nodes {
                    let hay = [
                        env.name.as_str(),
                        i.instance.id.as_str(),
                        i.instance.name.as_deref().unwrap_or(""),
                        ep.as_str(),
                        node.map_or("", |n| n.node.addr.as_str()),
                    ];
                    if matches(&app.filter, &hay) {
                        out.push(RedisRow { environment: &env.name, instance: i, endpoint: ep, node });
                    }
                }
            }
        }
    }
    out
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChecklistRow {
    Phase { phase: String },
    Item { phase: String, item: String },
}

pub fn checklist(app: &App) -> Vec<ChecklistRow> {
    let mut out = Vec::new();
    for p in &app.rb.phases {
        let items: Vec<_> = p
            .items
            .iter()
            .filter(|i| matches(&app.filter, &[p.id.as_str(), p.title.as_str(), i.id.as_str(), i.title.as_str()]))
            .collect();
        if items.is_empty() && !app.filter.is_empty() {
            continue;
        }
        out.push(ChecklistRow::Phase { phase: p.id.clone() });
        out.extend(items.into_iter().map(|i| ChecklistRow::Item { phase: p.id.clone(), item: i.id.clone() }));
    }
    out
}

/// One row of the Parity pane: a difference, or what could not be compared.
pub enum ParityRow<'a> {
    Difference(&'a crate::analysis::parity::Difference),
    NotCompared(&'a str),
}

/// The snapshot's comparison (`Snapshot::parity`): drift first, then the
/// allowed differences, then what was not compared.
pub fn parity(app: &App) -> Vec<ParityRow<'_>> {
    let Some(p) = app.snap.parity.as_ref().and_then(|v| v.value.as_ref()) else { return Vec::new() };
    let shown = |d: &&crate::analysis::parity::Difference| {
        let within = d.within.as_deref().unwrap_or("");
        matches(&app.filter, &[d.what.as_str(), d.subject.as_str(), d.from_value.as_str(), d.to_value.as_str(), within])
    };
    let (drift, allowed): (Vec<_>, Vec<_>) = p.differences.iter().filter(shown).partition(|d| d.is_drift());
    let mut out: Vec<ParityRow<'_>> = drift.into_iter().chain(allowed).map(ParityRow::Difference).collect();
    out.extend(
        p.not_compared.iter().filter(|n| matches(&app.filter, &[n.as_str()])).map(|n| ParityRow::NotCompared(n)),
    );
    out
}

impl App {
    /// Rows a pane can select, after the filter.
    pub fn row_count(&self, pane: Pane) -> usize {
        match pane {
            Pane::Traffic => self.snap.traffic.value.as_ref().map_or(0, Vec::len),
            Pane::Targets => targets(self).len(),
            Pane::Redis => redis(self).len(),
            Pane::Alarms => self.snap.alarms.value.as_ref().map_or(0, Vec::len),
            Pane::Checklist => checklist(self).len(),
            Pane::Log => self.log.len(),
            Pane::Parity => parity(self).len(),
        }
    }

    /// The checklist item under the cursor: (phase id, item id).
    pub fn selected_item(&self) -> Option<(String, String)> {
        let rows = checklist(self);
        match rows.get(self.selected(Pane::Checklist))? {
            ChecklistRow::Item { phase, item } => Some((phase.clone(), item.clone())),
            ChecklistRow::Phase { .. } => None,
        }
    }
}

/// What each pane holds, for `layout::panes` to size them by.
pub fn content(app: &App) -> Content {
    let n = |len: usize| u16::try_from(len).unwrap_or(u16::MAX);
    let mut lines = [0u16; 7];
    let sides = app.snap.traffic.value.as_ref().map_or(2, Vec::len);
    // The red lines above the rows: records not listed, types split otherwise.
    let warnings =
        usize::from(app.snap.traffic.value.as_deref().and_then(crate::live::fetch::unlisted_records).is_some())
            + usize::from(app.snap.traffic_types_differ.is_some())
            + usize::from(app.snap.traffic_unlisted_other_types.is_some());
    // Each side, the warnings, the rollout's line and a spare.
    lines[Pane::Traffic.index()] = n(sides + warnings + 2);
    // The rows and the selected target's explanation.
    lines[Pane::Targets.index()] = n(targets(app).len() + 2);
    let metrics = app.snap.metrics.value.as_ref().map_or(0, Vec::len);
    lines[Pane::Alarms.index()] = n(app.snap.alarms.value.as_ref().map_or(0, Vec::len) + metrics);
    // The rows and the two lines of the selected item's detail.
    lines[Pane::Checklist.index()] = n(checklist(app).len() + 2);
    // "  " + an 18-wide mark + " " before an item's title; " ✎" after a note.
    let widest = app
        .rb
        .phases
        .iter()
        .flat_map(|p| {
            let phase = p.title.chars().count() + 16;
            p.items.iter().map(|i| i.title.chars().count() + 21 + 2).chain(std::iter::once(phase))
        })
        .max()
        .unwrap_or(0);
    // The sides, then two lines a difference: what and which, then both values.
    lines[Pane::Parity.index()] = n(parity(app).len() * 2 + 1);
    Content { lines, checklist_width: n(widest), parity_open: app.parity_open }
}
