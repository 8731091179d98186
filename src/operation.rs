//! `last_operation`: what was last done to a binding, instance or key (create, update, delete)
//! and how far it got (in progress, succeeded, failed). The same three states are what an OSB
//! broker's `last_operation` endpoint answers.
//!
//! Stored and rendered as CC's strings (`"in progress"`, …); everywhere else these types are
//! used, so that a misspelt state cannot compile.

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OperationType {
    Create,
    Update,
    Delete,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OperationState {
    InProgress,
    Succeeded,
    Failed,
}

impl OperationType {
    pub const fn as_str(self) -> &'static str {
        match self {
            OperationType::Create => "create",
            OperationType::Update => "update",
            OperationType::Delete => "delete",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "create" => OperationType::Create,
            "update" => OperationType::Update,
            "delete" => OperationType::Delete,
            _ => return None,
        })
    }
}

impl OperationState {
    pub const fn as_str(self) -> &'static str {
        match self {
            OperationState::InProgress => "in progress",
            OperationState::Succeeded => "succeeded",
            OperationState::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "in progress" => OperationState::InProgress,
            "succeeded" => OperationState::Succeeded,
            "failed" => OperationState::Failed,
            _ => return None,
        })
    }
}

impl fmt::Display for OperationType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Display for OperationState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl serde::Serialize for OperationType {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> serde::Deserialize<'de> for OperationType {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        OperationType::parse(&s)
            .ok_or_else(|| serde::de::Error::custom(format!("unknown operation type {s:?}")))
    }
}

/// A resource's last operation. Rows created before tracking (or by a sync call that needs no
/// tracking) have none: CC shows those as `create`/`succeeded`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LastOperation {
    pub op_type: OperationType,
    pub state: OperationState,
}

impl LastOperation {
    pub const fn new(op_type: OperationType, state: OperationState) -> Self {
        LastOperation { op_type, state }
    }

    /// From the stored columns; unknown or missing values read as CC's default.
    pub fn from_stored(op_type: Option<&str>, state: Option<&str>) -> Self {
        LastOperation {
            op_type: op_type
                .and_then(OperationType::parse)
                .unwrap_or(OperationType::Create),
            state: state
                .and_then(OperationState::parse)
                .unwrap_or(OperationState::Succeeded),
        }
    }

    pub fn in_progress(self) -> bool {
        self.state == OperationState::InProgress
    }

    /// The operation of this type is running.
    pub fn is_running(self, op_type: OperationType) -> bool {
        self.op_type == op_type && self.in_progress()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_strings_round_trip() {
        for t in [
            OperationType::Create,
            OperationType::Update,
            OperationType::Delete,
        ] {
            assert_eq!(OperationType::parse(t.as_str()), Some(t));
        }
        for s in [
            OperationState::InProgress,
            OperationState::Succeeded,
            OperationState::Failed,
        ] {
            assert_eq!(OperationState::parse(s.as_str()), Some(s));
        }
        assert_eq!(
            LastOperation::from_stored(None, None),
            LastOperation::new(OperationType::Create, OperationState::Succeeded)
        );
        assert!(
            LastOperation::from_stored(Some("delete"), Some("in progress"))
                .is_running(OperationType::Delete)
        );
    }
}
