//! Row types. `New*` types are owned so they can move into a blocking closure.

use chrono::NaiveDateTime;

use crate::operation::{LastOperation, OperationState, OperationType};
use diesel::prelude::*;

use super::schema::*;

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = organizations)]
pub struct Organization {
    #[diesel(skip_insertion)]
    pub id: i64,
    pub guid: String,
    pub name: String,
    pub status: String,
    #[diesel(deserialize_as = crate::db::time::DbTime)]
    pub created_at: NaiveDateTime,
    #[diesel(deserialize_as = crate::db::time::DbTime)]
    pub updated_at: NaiveDateTime,
}

/// An organization's status (CC's `OrgSpaceStatus`): in a suspended org only admins write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OrgStatus {
    Active,
    Suspended,
}

impl OrgStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            OrgStatus::Active => "active",
            OrgStatus::Suspended => "suspended",
        }
    }

    pub fn parse(s: &str) -> Option<OrgStatus> {
        match s {
            "active" => Some(OrgStatus::Active),
            "suspended" => Some(OrgStatus::Suspended),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = spaces)]
pub struct Space {
    #[diesel(skip_insertion)]
    pub id: i64,
    pub guid: String,
    pub name: String,
    pub organization_guid: String,
    #[diesel(deserialize_as = crate::db::time::DbTime)]
    pub created_at: NaiveDateTime,
    #[diesel(deserialize_as = crate::db::time::DbTime)]
    pub updated_at: NaiveDateTime,
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = apps)]
pub struct App {
    #[diesel(skip_insertion)]
    pub id: i64,
    pub guid: String,
    pub name: String,
    pub space_guid: String,
    pub state: String,
    pub memory: i64,
    pub instances: i32,
    pub disk_quota: i64,
    pub environment_json: String,
    #[diesel(deserialize_as = crate::db::time::DbTime)]
    pub created_at: NaiveDateTime,
    #[diesel(deserialize_as = crate::db::time::DbTime)]
    pub updated_at: NaiveDateTime,
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = service_brokers)]
pub struct ServiceBroker {
    #[diesel(skip_insertion)]
    pub id: i64,
    pub guid: String,
    pub name: String,
    pub broker_url: String,
    pub auth_username: String,
    pub auth_password: String,
    pub space_guid: Option<String>,
    #[diesel(deserialize_as = crate::db::time::DbTime)]
    pub created_at: NaiveDateTime,
    #[diesel(deserialize_as = crate::db::time::DbTime)]
    pub updated_at: NaiveDateTime,
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = services)]
pub struct Service {
    #[diesel(skip_insertion)]
    pub id: i64,
    pub guid: String,
    pub service_broker_guid: String,
    pub unique_id: String,
    pub label: String,
    pub description: String,
    pub active: bool,
    pub bindable: bool,
    /// JSON array of strings.
    pub tags: String,
    /// JSON array of strings.
    pub requires: String,
    /// The catalog's `metadata`, as JSON text (CC calls it `extra`).
    pub extra: Option<String>,
    pub plan_updateable: bool,
    pub bindings_retrievable: bool,
    pub instances_retrievable: bool,
    #[diesel(deserialize_as = crate::db::time::DbTime)]
    pub created_at: NaiveDateTime,
    #[diesel(deserialize_as = crate::db::time::DbTime)]
    pub updated_at: NaiveDateTime,
}

impl Service {
    pub fn requires_list(&self) -> Vec<String> {
        serde_json::from_str(&self.requires).unwrap_or_default()
    }
    pub fn tags_list(&self) -> Vec<String> {
        serde_json::from_str(&self.tags).unwrap_or_default()
    }
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = service_plans)]
pub struct ServicePlan {
    #[diesel(skip_insertion)]
    pub id: i64,
    pub guid: String,
    pub service_guid: String,
    pub unique_id: String,
    pub name: String,
    pub description: String,
    pub free: bool,
    pub bindable: Option<bool>,
    pub plan_updateable: Option<bool>,
    pub public: bool,
    pub active: bool,
    pub extra: Option<String>,
    pub schemas: Option<String>,
    pub maximum_polling_duration: Option<i64>,
    pub maintenance_info: Option<String>,
    #[diesel(deserialize_as = crate::db::time::DbTime)]
    pub created_at: NaiveDateTime,
    #[diesel(deserialize_as = crate::db::time::DbTime)]
    pub updated_at: NaiveDateTime,
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = service_plan_visibilities)]
pub struct ServicePlanVisibility {
    #[diesel(skip_insertion)]
    pub id: i64,
    pub guid: String,
    pub service_plan_guid: String,
    pub organization_guid: String,
    #[diesel(deserialize_as = crate::db::time::DbTime)]
    pub created_at: NaiveDateTime,
    #[diesel(deserialize_as = crate::db::time::DbTime)]
    pub updated_at: NaiveDateTime,
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = service_instances)]
pub struct ServiceInstance {
    #[diesel(skip_insertion)]
    pub id: i64,
    pub guid: String,
    pub name: String,
    pub space_guid: String,
    pub is_user_provided: bool,
    pub service_plan_guid: Option<String>,
    /// User-provided instances only: JSON object text.
    pub credentials: Option<String>,
    pub syslog_drain_url: Option<String>,
    pub route_service_url: Option<String>,
    /// JSON array of strings.
    pub tags: String,
    pub dashboard_url: Option<String>,
    pub last_operation_type: Option<String>,
    pub last_operation_state: Option<String>,
    pub last_operation_description: Option<String>,
    pub broker_operation: Option<String>,
    #[diesel(deserialize_as = crate::db::time::DbTimeOpt)]
    pub last_operation_updated_at: Option<NaiveDateTime>,
    #[diesel(deserialize_as = crate::db::time::DbTime)]
    pub created_at: NaiveDateTime,
    #[diesel(deserialize_as = crate::db::time::DbTime)]
    pub updated_at: NaiveDateTime,
}

impl ServiceInstance {
    pub fn last_operation(&self) -> LastOperation {
        LastOperation::from_stored(
            self.last_operation_type.as_deref(),
            self.last_operation_state.as_deref(),
        )
    }

    /// Sets the stored last operation (the in-memory row; repositories write it).
    pub fn set_last_operation(&mut self, op: LastOperation) {
        self.last_operation_type = Some(op.op_type.as_str().to_string());
        self.last_operation_state = Some(op.state.as_str().to_string());
    }
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = service_bindings)]
pub struct ServiceBinding {
    #[diesel(skip_insertion)]
    pub id: i64,
    pub guid: String,
    pub app_guid: String,
    pub service_instance_guid: String,
    pub name: Option<String>,
    /// JSON object text.
    pub credentials: String,
    pub syslog_drain_url: Option<String>,
    /// JSON array text, as the broker returned it.
    pub volume_mounts: String,
    pub last_operation_type: Option<String>,
    pub last_operation_state: Option<String>,
    pub last_operation_description: Option<String>,
    pub broker_operation: Option<String>,
    #[diesel(deserialize_as = crate::db::time::DbTimeOpt)]
    pub last_operation_created_at: Option<NaiveDateTime>,
    #[diesel(deserialize_as = crate::db::time::DbTimeOpt)]
    pub last_operation_updated_at: Option<NaiveDateTime>,
    #[diesel(deserialize_as = crate::db::time::DbTime)]
    pub created_at: NaiveDateTime,
    #[diesel(deserialize_as = crate::db::time::DbTime)]
    pub updated_at: NaiveDateTime,
    /// Code Engine extensions: the credential's role, the env-var prefix, the service key whose
    /// credentials the binding uses, and whether the client asked for any of them.
    pub role: Option<String>,
    pub prefix: Option<String>,
    pub service_key_guid: Option<String>,
    pub extended: bool,
    /// Whether `name` is a generated default name (Code Engine's
    /// `<app>-app-ce-service-binding-<5>`) rather than the client's.
    pub name_generated: bool,
    /// Code Engine's "existing secret": the broker binding whose credential this binding uses
    /// (another binding's guid, kept after that binding is gone); `None`: its own.
    pub credential_binding_guid: Option<String>,
}

impl ServiceBinding {
    pub fn last_operation(&self) -> LastOperation {
        LastOperation::from_stored(
            self.last_operation_type.as_deref(),
            self.last_operation_state.as_deref(),
        )
    }

    /// Sets the stored last operation (the in-memory row; repositories write it).
    pub fn set_last_operation(&mut self, op: LastOperation) {
        self.last_operation_type = Some(op.op_type.as_str().to_string());
        self.last_operation_state = Some(op.state.as_str().to_string());
    }

    /// The name CF clients see (the envelope's `name`, VCAP_SERVICES): the client's. A generated
    /// default name is a Code Engine name: shown in the binding table, the CLI, and the
    /// envelope of bindings created with a Code Engine field, and usable to unbind by name.
    pub fn client_name(&self) -> Option<&str> {
        if self.name_generated {
            None
        } else {
            self.name.as_deref()
        }
    }

    /// The envelope's `name`: a generated one only for Code Engine clients (`extended`).
    pub fn shown_name(&self) -> Option<&str> {
        if self.extended {
            self.name.as_deref()
        } else {
            self.client_name()
        }
    }

    /// The id of the binding at the broker that holds this binding's credential.
    pub fn broker_binding_id(&self) -> &str {
        self.credential_binding_guid
            .as_deref()
            .unwrap_or(&self.guid)
    }

    /// CC's `is_created?`: the binding exists for the app (VCAP_SERVICES, etc.).
    pub fn is_created(&self) -> bool {
        let op = self.last_operation();
        match op.op_type {
            OperationType::Create => op.state == OperationState::Succeeded,
            OperationType::Delete => op.state != OperationState::Succeeded,
            OperationType::Update => true,
        }
    }
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = users)]
pub struct User {
    #[diesel(skip_insertion)]
    pub id: i64,
    pub guid: String,
    pub username: Option<String>,
    /// argon2 PHC string; None for users who log in elsewhere (an external UAA).
    pub password_hash: Option<String>,
    pub origin: String,
    /// JSON array: extra scopes granted at login (e.g. `cloud_controller.admin`).
    pub scopes: String,
    pub active: bool,
    #[diesel(deserialize_as = crate::db::time::DbTime)]
    pub created_at: NaiveDateTime,
    #[diesel(deserialize_as = crate::db::time::DbTime)]
    pub updated_at: NaiveDateTime,
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = oauth_clients)]
pub struct OauthClient {
    #[diesel(skip_insertion)]
    pub id: i64,
    pub client_id: String,
    pub secret_hash: Option<String>,
    pub scopes: String,
    pub grant_types: String,
    #[diesel(deserialize_as = crate::db::time::DbTime)]
    pub created_at: NaiveDateTime,
    #[diesel(deserialize_as = crate::db::time::DbTime)]
    pub updated_at: NaiveDateTime,
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = service_keys)]
pub struct ServiceKey {
    #[diesel(skip_insertion)]
    pub id: i64,
    pub guid: String,
    pub name: String,
    pub service_instance_guid: String,
    /// JSON object text.
    pub credentials: String,
    #[diesel(deserialize_as = crate::db::time::DbTime)]
    pub created_at: NaiveDateTime,
    #[diesel(deserialize_as = crate::db::time::DbTime)]
    pub updated_at: NaiveDateTime,
    /// The IAM role of the credential (Code Engine); `None` for keys made before roles.
    pub role: Option<String>,
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = registry_secrets)]
pub struct RegistrySecret {
    #[diesel(skip_insertion)]
    pub id: i64,
    pub guid: String,
    pub name: String,
    pub space_guid: String,
    pub server: String,
    pub username: String,
    /// Sealed; never rendered.
    pub password: String,
    pub email: Option<String>,
    #[diesel(deserialize_as = crate::db::time::DbTime)]
    pub created_at: NaiveDateTime,
    #[diesel(deserialize_as = crate::db::time::DbTime)]
    pub updated_at: NaiveDateTime,
}
