//! Changes to AWS: planned from live data, shown before → after, refused under
//! --read-only or without confirmation, audited before and after.

pub mod actions;
pub mod alarm_episodes;
pub mod gates;
pub mod not_before;
pub mod rollout;
pub mod shift;

/// Why a change could not be planned or made: AWS could not be read (exit 1,
/// try again), the change is refused as it stands (exit 2, fix the input), or
/// carrying it out failed (exit 1; the message says what stands).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PlanError {
    Aws(crate::aws::AwsError),
    /// A Redis endpoint could not be read (exit 1, try again).
    Redis(String),
    Refused(String),
    /// Went wrong while carrying the change out; the message says what stands.
    Failed(String),
}

impl PlanError {
    /// What it says, ending once with "nothing was changed" (some say so
    /// themselves).
    pub fn nothing_changed(&self) -> String {
        let said = self.to_string();
        if said.ends_with("nothing was changed") { said } else { format!("{said}; nothing was changed") }
    }

    pub fn exit_status(&self) -> u8 {
        match self {
            PlanError::Aws(_) | PlanError::Redis(_) | PlanError::Failed(_) => 1,
            PlanError::Refused(_) => 2,
        }
    }
}

impl std::fmt::Display for PlanError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PlanError::Aws(e) => write!(f, "cannot read AWS: {e}"),
            PlanError::Redis(m) => write!(f, "cannot read Redis: {m}"),
            PlanError::Refused(m) => write!(f, "refused: {m}"),
            PlanError::Failed(m) => f.write_str(m),
        }
    }
}

impl From<PlanError> for String {
    fn from(e: PlanError) -> Self {
        e.to_string()
    }
}
