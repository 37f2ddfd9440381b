//! Colours, overridable in `$XDG_CONFIG_HOME/cutover/theme.toml`
//! (`ok = "green"`, `bad = "#ff5f5f"`, …; partial overrides).

use std::collections::BTreeMap;

use ratatui::style::{Color, Style};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Theme {
    /// Healthy, OK, passed.
    pub ok: Color,
    /// Initial, pending, stale.
    pub warn: Color,
    /// Unhealthy, ALARM, blocked, failed.
    pub bad: Color,
    /// Focus, sparklines, help keys.
    pub accent: Color,
    /// Actions, the filter badge.
    pub info: Color,
    /// Unused, stopped.
    pub idle: Color,
    /// Ages, details, secondary text.
    pub dim: Color,
}

impl Default for Theme {
    fn default() -> Self {
        Theme {
            ok: Color::Green,
            warn: Color::Yellow,
            bad: Color::Red,
            accent: Color::Cyan,
            info: Color::Blue,
            idle: Color::Magenta,
            dim: Color::DarkGray,
        }
    }
}

impl Theme {
    pub fn dim_style(&self) -> Style {
        Style::new().fg(self.dim)
    }

    /// Applies `theme.toml` overrides; `file` names it in errors.
    pub fn with_overrides(mut self, file: &str, text: &str) -> Result<Theme, String> {
        let table: BTreeMap<String, String> = toml::from_str(text).map_err(|e| {
            format!("{file}: {}; write lines like ok = \"green\" or bad = \"#ff5f5f\"", e.message().trim())
        })?;
        for (name, value) in table {
            let color: Color = value.parse().map_err(|_| format!("{file}: {name}: `{value}` is not a colour; use a name (green, light-red, gray…), an index (0–255) or #rrggbb"))?;
            let slot = match name.as_str() {
                "ok" => &mut self.ok,
                "warn" => &mut self.warn,
                "bad" => &mut self.bad,
                "accent" => &mut self.accent,
                "info" => &mut self.info,
                "idle" => &mut self.idle,
                "dim" => &mut self.dim,
                other => {
                    return Err(format!(
                        "{file}: unknown colour `{other}`; use ok, warn, bad, accent, info, idle or dim"
                    ));
                }
            };
            *slot = color;
        }
        Ok(self)
    }

    pub fn load() -> Result<Theme, String> {
        let path = crate::paths::config_dir().join("theme.toml");
        match std::fs::read_to_string(&path) {
            Ok(text) => Theme::default().with_overrides(&path.display().to_string(), &text),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Theme::default()),
            Err(e) => Err(format!("{}: cannot read it ({e}); fix it or move it away", path.display())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overrides_replace_only_what_they_name() {
        let t = Theme::default().with_overrides("theme.toml", "ok = \"light-green\"\nbad = \"#ff0000\"\n").unwrap();
        assert_eq!(t.ok, Color::LightGreen);
        assert_eq!(t.bad, Color::Rgb(255, 0, 0));
        assert_eq!(t.warn, Color::Yellow);
    }

    #[test]
    fn bad_overrides_are_clear_errors() {
        let e = Theme::default().with_overrides("t.toml", "okay = \"green\"").unwrap_err();
        assert_eq!(e, "t.toml: unknown colour `okay`; use ok, warn, bad, accent, info, idle or dim");
        let e = Theme::default().with_overrides("t.toml", "ok = \"grean\"").unwrap_err();
        assert!(e.starts_with("t.toml: ok: `grean` is not a colour"), "{e}");
        assert!(Theme::default().with_overrides("t.toml", "ok = 3").unwrap_err().starts_with("t.toml: "));
    }
}
