//! Changes to AWS: planned from live data, shown before → after, refused under
//! --read-only or without confirmation, audited before and after.

pub mod actions;
pub mod gates;
pub mod rollout;
pub mod shift;

/// Who makes a change, for the audit log.
#[derive(Debug, Clone)]
pub struct Actor {
    pub account: String,
    pub region: String,
    pub operator: String,
}

impl Actor {
    /// An audit line of this actor's, stamped now.
    pub fn audit_line(
        &self,
        runbook: &str,
        action: String,
        stage: &str,
        (before, after): (serde_json::Value, serde_json::Value),
        detail: String,
    ) -> crate::audit::AuditLine {
        crate::audit::AuditLine {
            time: crate::status::rfc3339(std::time::SystemTime::now()),
            operator: self.operator.clone(),
            account: Some(self.account.clone()),
            region: self.region.clone(),
            runbook: runbook.to_string(),
            action,
            stage: stage.into(),
            before,
            after,
            detail,
        }
    }
}

/// Why a change could not be planned or made: AWS could not be read (exit 1,
/// try again), the change is refused as it stands (exit 2, fix the input), or
/// carrying it out failed (exit 1; the message says what stands).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PlanError {
    Aws(String),
    Refused(String),
    /// Went wrong while carrying the change out; the message says what stands.
    Failed(String),
}

impl PlanError {
    pub fn exit_status(&self) -> u8 {
        match self {
            PlanError::Aws(_) | PlanError::Failed(_) => 1,
            PlanError::Refused(_) => 2,
        }
    }
}

impl std::fmt::Display for PlanError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PlanError::Aws(m) => write!(f, "cannot read AWS: {m}"),
            PlanError::Refused(m) => write!(f, "refused: {m}"),
            PlanError::Failed(m) => f.write_str(m),
        }
    }
}

impl From<&str> for PlanError {
    fn from(m: &str) -> Self {
        PlanError::Refused(m.to_string())
    }
}

impl From<String> for PlanError {
    fn from(m: String) -> Self {
        PlanError::Refused(m)
    }
}

impl From<PlanError> for String {
    fn from(e: PlanError) -> Self {
        e.to_string()
    }
}
