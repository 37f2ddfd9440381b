//! Keys: one table drives dispatch, the help overlay, the key bar and the
//! palette, so they cannot disagree. Remappable from `keys.toml` in the XDG
//! config dir (partial overrides: `quit = "x"` or `down = ["j", "down"]`).

use std::collections::BTreeMap;
use std::fmt;

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use serde::Deserialize;

use super::pane::Pane;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyAction {
    NextPane,
    PrevPane,
    FocusTraffic,
    FocusTargets,
    FocusRedis,
    FocusAlarms,
    FocusChecklist,
    FocusLog,
    FocusParity,
    Down,
    Up,
    Zoom,
    Filter,
    Help,
    Palette,
    Pause,
    Refresh,
    ShowErrors,
    Quit,
    RunCheck,
    Rollback,
    Tick,
    Note,
    ShiftWeights,
    StartRollout,
    PauseRollout,
    PromoteRollout,
    AbortRollout,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Key {
    pub code: KeyCode,
    pub mods: KeyModifiers,
}

impl Key {
    pub fn parse(s: &str) -> Result<Key, String> {
        let lower = s.trim().to_ascii_lowercase();
        let (mods, name) = match lower.strip_prefix("ctrl-") {
            Some(rest) => (KeyModifiers::CONTROL, rest.to_string()),
            None => (KeyModifiers::NONE, lower.clone()),
        };
        let code = match name.as_str() {
            "tab" => KeyCode::Tab,
            "shift-tab" | "backtab" => KeyCode::BackTab,
            "enter" => KeyCode::Enter,
            "space" => KeyCode::Char(' '),
            "esc" => KeyCode::Esc,
            "up" => KeyCode::Up,
            "down" => KeyCode::Down,
            "left" => KeyCode::Left,
            "right" => KeyCode::Right,
            "pageup" => KeyCode::PageUp,
            "pagedown" => KeyCode::PageDown,
            _ => {
                // Keep the case of a plain character: `G` differs from `g`.
                let src = if mods == KeyModifiers::NONE { s.trim() } else { name.as_str() };
                let mut chars = src.chars();
                match (chars.next(), chars.next()) {
                    (Some(c), None) => KeyCode::Char(c),
                    _ => {
                        return Err(format!(
                            "`{s}` is not a key; use a character, ctrl-x, tab, shift-tab, enter, space, esc, up, down, left, right, pageup or pagedown"
                        ));
                    }
                }
            }
        };
        Ok(Key { code, mods })
    }

    pub fn matches(&self, ev: &KeyEvent) -> bool {
        let mods = ev.modifiers - KeyModifiers::SHIFT;
        match (self.code, ev.code) {
            (KeyCode::BackTab, KeyCode::BackTab) => true,
            (KeyCode::Char(a), KeyCode::Char(b)) => a == b && mods == self.mods,
            (a, b) => a == b && mods == self.mods,
        }
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.mods.contains(KeyModifiers::CONTROL) {
            write!(f, "ctrl-")?;
        }
        match self.code {
            KeyCode::Tab => write!(f, "tab"),
            KeyCode::BackTab => write!(f, "shift-tab"),
            KeyCode::Enter => write!(f, "enter"),
            KeyCode::Char(' ') => write!(f, "space"),
            KeyCode::Esc => write!(f, "esc"),
            KeyCode::Up => write!(f, "↑"),
            KeyCode::Down => write!(f, "↓"),
            KeyCode::Left => write!(f, "←"),
            KeyCode::Right => write!(f, "→"),
            KeyCode::PageUp => write!(f, "pgup"),
            KeyCode::PageDown => write!(f, "pgdn"),
            KeyCode::Char(c) => write!(f, "{c}"),
            other => write!(f, "{other:?}"),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Binding {
    pub action: KeyAction,
    pub keys: Vec<Key>,
    /// None: every pane.
    pub pane: Option<Pane>,
    pub help: &'static str,
}

#[derive(Debug, Clone)]
pub struct Keymap {
    pub bindings: Vec<Binding>,
}

fn keys(list: &[&str]) -> Vec<Key> {
    list.iter().map(|k| Key::parse(k).expect("default keys parse")).collect()
}

impl Default for Keymap {
    fn default() -> Self {
        use KeyAction::*;
        let b = |action, k: &[&str], pane, help| Binding { action, keys: keys(k), pane, help };
        Keymap {
            bindings: vec![
                b(NextPane, &["tab"], None, "next pane"),
                b(PrevPane, &["shift-tab"], None, "previous pane"),
                b(FocusTraffic, &["1"], None, "traffic pane"),
                b(FocusTargets, &["2"], None, "targets pane"),
                b(FocusRedis, &["3"], None, "Redis pane"),
                b(FocusAlarms, &["4"], None, "alarms & metrics pane"),
                b(FocusChecklist, &["5"], None, "checklist pane"),
                b(FocusLog, &["6"], None, "log pane"),
                b(FocusParity, &["7"], None, "parity pane: the two sides compared"),
                b(Down, &["j", "down"], None, "move down"),
                b(Up, &["k", "up"], None, "move up"),
                b(Zoom, &["z"], None, "zoom the pane full screen"),
                b(Filter, &["/"], None, "filter rows"),
                b(ShowErrors, &["e"], None, "errors behind stale values"),
                b(Pause, &["p"], None, "pause / resume refresh"),
                b(Refresh, &["r"], None, "refresh now"),
                b(Palette, &[":"], None, "command palette"),
                b(Help, &["?"], None, "help for this pane"),
                b(Quit, &["q"], None, "quit"),
                b(AbortRollout, &["X"], None, "abort the rollout and roll back (confirmed)"),
                b(PauseRollout, &["P"], None, "pause the running rollout"),
                b(StartRollout, &["R"], None, "start / resume the gated rollout (confirmed)"),
                b(PromoteRollout, &["+"], None, "promote: skip the rest of the soak (confirmed)"),
                b(ShiftWeights, &["w"], None, "shift weights to N% (confirmed, audited)"),
                b(RunCheck, &["enter"], Some(Pane::Checklist), "run the selected check, or plan the action"),
                b(Rollback, &["b"], Some(Pane::Checklist), "plan the selected item's rollback"),
                b(Tick, &["space"], Some(Pane::Checklist), "tick / untick a manual item"),
                b(Note, &["n"], Some(Pane::Checklist), "attach a note"),
            ],
        }
    }
}

#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl Keymap {
    /// Applies `keys.toml` overrides; `file` names it in errors.
    pub fn with_overrides(mut self, file: &str, text: &str) -> Result<Keymap, String> {
        let table: BTreeMap<String, OneOrMany> = toml::from_str(text).map_err(|e| {
            format!("{file}: {}; write lines like quit = \"q\" or down = [\"j\", \"down\"]", e.message().trim())
        })?;
        let mut overridden = Vec::new();
        for (name, value) in table {
            let action: KeyAction = serde::Deserialize::deserialize(serde::de::value::StrDeserializer::<
                serde::de::value::Error,
            >::new(&name))
            .map_err(|_| {
                let names: Vec<String> = self.bindings.iter().map(|b| action_name(b.action)).collect();
                format!("{file}: unknown action `{name}`; use one of {}", names.join(", "))
            })?;
            let list = match value {
                OneOrMany::One(k) => vec![k],
                OneOrMany::Many(v) => v,
            };
            let parsed = list
                .iter()
                .map(|k| Key::parse(k).map_err(|e| format!("{file}: {name}: {e}")))
                .collect::<Result<Vec<_>, _>>()?;
            if parsed.is_empty() {
                return Err(format!("{file}: {name} = [] leaves it no key; give it at least one"));
            }
            if let Some(b) = self.bindings.iter_mut().find(|b| b.action == action) {
                b.keys = parsed;
                overridden.push(action);
            }
        }
        // A key the file gives that another action has in the same place (two
        // globals, or one pane's), or a pane's binding given a global key it
        // would take from it there unseen (`tick = "down"` ticked on every
        // Down in the checklist). A global given a pane's key is fine: the
        // pane keeps it, as by default.
        for b in self.bindings.iter().filter(|b| overridden.contains(&b.action)) {
            let shared =
                |o: &&Binding| o.action != b.action && (b.pane == o.pane || (b.pane.is_some() && o.pane.is_none()));
            for o in self.bindings.iter().filter(shared) {
                if let Some(k) = b.keys.iter().find(|k| o.keys.contains(k)) {
                    let (name, other) = (action_name(b.action), action_name(o.action));
                    return Err(format!(
                        "{file}: {name} is given {k}, which is {other}'s key too; give one of them another key"
                    ));
                }
            }
        }
        Ok(self)
    }

    /// Loads `$XDG_CONFIG_HOME/cutover/keys.toml` over the defaults, if it exists.
    pub fn load() -> Result<Keymap, String> {
        let path = crate::paths::config_dir().join("keys.toml");
        match std::fs::read_to_string(&path) {
            Ok(text) => Keymap::default().with_overrides(&path.display().to_string(), &text),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Keymap::default()),
            // Unreadable (permissions, not UTF-8, a directory): never the defaults unsaid.
            Err(e) => Err(format!("{}: cannot read it ({e}); fix it or move it away", path.display())),
        }
    }

    /// The action a key performs in a pane; pane bindings win over global ones.
    pub fn action_for(&self, ev: &KeyEvent, pane: Pane) -> Option<KeyAction> {
        let hit = |b: &&Binding| b.keys.iter().any(|k| k.matches(ev));
        self.bindings
            .iter()
            .filter(|b| b.pane == Some(pane))
            .find(hit)
            .or_else(|| self.bindings.iter().filter(|b| b.pane.is_none()).find(hit))
            .map(|b| b.action)
    }

    /// The bindings that work in a pane: its own first, then the global ones.
    pub fn for_pane(&self, pane: Pane) -> Vec<&Binding> {
        let own = self.bindings.iter().filter(|b| b.pane == Some(pane));
        own.chain(self.bindings.iter().filter(|b| b.pane.is_none())).collect()
    }

    /// As `for_pane`, most urgent first (where space is short, the rest is
    /// cut): the pane's own keys, the traffic controls, help and quit, then
    /// the rest.
    pub fn by_priority(&self, pane: Pane) -> Vec<&Binding> {
        use KeyAction::*;
        let rank = |b: &Binding| match b.action {
            _ if b.pane.is_some() => 0,
            AbortRollout | PauseRollout | StartRollout | PromoteRollout | ShiftWeights => 1,
            Help | Quit => 2,
            _ => 3,
        };
        let mut out = self.for_pane(pane);
        out.sort_by_key(|b| rank(b));
        out
    }

    pub fn keys_of(&self, action: KeyAction) -> String {
        self.bindings
            .iter()
            .find(|b| b.action == action)
            .map(|b| b.keys.iter().map(ToString::to_string).collect::<Vec<_>>().join("/"))
            .unwrap_or_default()
    }
}

pub fn action_name(a: KeyAction) -> String {
    let s = format!("{a:?}");
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if c.is_uppercase() && i > 0 {
            out.push('_');
        }
        out.push(c.to_ascii_lowercase());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(code: KeyCode, mods: KeyModifiers) -> KeyEvent {
        KeyEvent::new(code, mods)
    }

    #[test]
    fn pane_bindings_win_and_globals_apply_everywhere() {
        let k = Keymap::default();
        let enter = ev(KeyCode::Enter, KeyModifiers::NONE);
        assert_eq!(k.action_for(&enter, Pane::Checklist), Some(KeyAction::RunCheck));
        assert_eq!(k.action_for(&enter, Pane::Targets), None);
        assert_eq!(k.action_for(&ev(KeyCode::Char('q'), KeyModifiers::NONE), Pane::Redis), Some(KeyAction::Quit));
        assert_eq!(k.action_for(&ev(KeyCode::BackTab, KeyModifiers::SHIFT), Pane::Log), Some(KeyAction::PrevPane));
        assert_eq!(k.action_for(&ev(KeyCode::Char('?'), KeyModifiers::SHIFT), Pane::Log), Some(KeyAction::Help));
    }

    #[test]
    fn overrides_replace_only_what_they_name() {
        let k = Keymap::default().with_overrides("keys.toml", "quit = \"x\"\ndown = [\"n\", \"down\"]\n").unwrap();
        assert_eq!(k.action_for(&ev(KeyCode::Char('x'), KeyModifiers::NONE), Pane::Traffic), Some(KeyAction::Quit));
        assert_eq!(k.action_for(&ev(KeyCode::Char('q'), KeyModifiers::NONE), Pane::Traffic), None);
        assert_eq!(k.action_for(&ev(KeyCode::Char('n'), KeyModifiers::NONE), Pane::Traffic), Some(KeyAction::Down));
        // In the checklist, `n` is still its own binding (note).
        assert_eq!(k.action_for(&ev(KeyCode::Char('n'), KeyModifiers::NONE), Pane::Checklist), Some(KeyAction::Note));
        assert_eq!(k.keys_of(KeyAction::Down), "n/↓");
    }

    #[test]
    fn bad_overrides_are_clear_errors() {
        let e = Keymap::default().with_overrides("k.toml", "qiut = \"x\"").unwrap_err();
        assert!(e.starts_with("k.toml: unknown action `qiut`; use one of next_pane,"), "{e}");
        let e = Keymap::default().with_overrides("k.toml", "quit = \"xyz\"").unwrap_err();
        assert!(e.starts_with("k.toml: quit: `xyz` is not a key"), "{e}");
        let e = Keymap::default().with_overrides("k.toml", "quit = 5").unwrap_err();
        assert!(e.starts_with("k.toml: "), "{e}");
        // No key at all, or a key another action has where both work: the
        // tick would have taken Down in the checklist, Down abort's X.
        let e = Keymap::default().with_overrides("k.toml", "quit = []").unwrap_err();
        assert_eq!(e, "k.toml: quit = [] leaves it no key; give it at least one");
        let e = Keymap::default().with_overrides("k.toml", "tick = \"down\"").unwrap_err();
        assert_eq!(e, "k.toml: tick is given ↓, which is down's key too; give one of them another key");
        let e = Keymap::default().with_overrides("k.toml", "down = \"X\"").unwrap_err();
        assert!(e.starts_with("k.toml: down is given X, which is abort_rollout's key too"), "{e}");
    }

    #[test]
    fn keys_parse_and_display() {
        assert_eq!(Key::parse("ctrl-r").unwrap().to_string(), "ctrl-r");
        assert_eq!(Key::parse("G").unwrap().to_string(), "G");
        assert_eq!(Key::parse("space").unwrap().to_string(), "space");
        assert!(Key::parse("").is_err());
    }
}
