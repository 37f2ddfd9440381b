//! The cockpit's panes.

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Pane {
    Traffic,
    Targets,
    Redis,
    Alarms,
    Checklist,
    Log,
    /// The rollout's two sides compared; shown in the Log's place once opened.
    Parity,
}

impl Pane {
    pub const ALL: [Pane; 7] =
        [Pane::Traffic, Pane::Targets, Pane::Redis, Pane::Alarms, Pane::Checklist, Pane::Log, Pane::Parity];

    pub fn title(self) -> &'static str {
        match self {
            Pane::Traffic => "Traffic",
            Pane::Targets => "Targets",
            Pane::Redis => "Redis",
            Pane::Alarms => "Alarms & metrics",
            Pane::Checklist => "Checklist",
            Pane::Log => "Log",
            Pane::Parity => "Parity",
        }
    }

    pub fn index(self) -> usize {
        Pane::ALL.iter().position(|p| *p == self).unwrap_or(0)
    }
}
