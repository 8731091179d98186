//! OSB wire types: the catalog we read, the bodies we send, and what we accept back.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Where a broker lives and how we authenticate (OSB: basic auth on every request).
#[derive(Clone)]
pub struct BrokerTarget {
    /// The broker's name (in logs and metrics).
    pub name: String,
    pub url: String,
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for BrokerTarget {
    // Never print the password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BrokerTarget")
            .field("name", &self.name)
            .field("url", &self.url)
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

// ------------------------------------------------------------------------------------------------
// Catalog

#[derive(Debug, Clone)]
pub struct CatalogService {
    pub id: String,
    pub name: String,
    pub description: String,
    pub bindable: bool,
    pub tags: Vec<String>,
    pub requires: Vec<String>,
    pub metadata: Option<Value>,
    pub plan_updateable: bool,
    pub bindings_retrievable: bool,
    pub instances_retrievable: bool,
    pub plans: Vec<CatalogPlan>,
}

#[derive(Debug, Clone)]
pub struct CatalogPlan {
    pub id: String,
    pub name: String,
    pub description: String,
    pub free: bool,
    pub bindable: Option<bool>,
    pub plan_updateable: Option<bool>,
    pub metadata: Option<Value>,
    pub schemas: Option<Value>,
    pub maximum_polling_duration: Option<i64>,
    pub maintenance_info: Option<Value>,
}

fn str_field<'a>(
    obj: &'a Map<String, Value>,
    key: &str,
    ctx: &str,
    errors: &mut Vec<String>,
) -> Option<&'a str> {
    match obj.get(key) {
        Some(Value::String(s)) if !s.is_empty() => Some(s.as_str()),
        Some(Value::String(_)) | None | Some(Value::Null) => {
            errors.push(format!("{ctx} {key} is required"));
            None
        }
        Some(_) => {
            errors.push(format!("{ctx} {key} should be a string"));
            None
        }
    }
}

fn bool_field(
    obj: &Map<String, Value>,
    key: &str,
    ctx: &str,
    errors: &mut Vec<String>,
) -> Option<bool> {
    match obj.get(key) {
        None | Some(Value::Null) => None,
        Some(Value::Bool(b)) => Some(*b),
        Some(_) => {
            errors.push(format!("{ctx} \"{key}\" field must be a boolean"));
            None
        }
    }
}

fn string_list(
    obj: &Map<String, Value>,
    key: &str,
    ctx: &str,
    errors: &mut Vec<String>,
) -> Vec<String> {
    match obj.get(key) {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) if items.iter().all(Value::is_string) => items
            .iter()
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect(),
        Some(_) => {
            errors.push(format!("{ctx} {key} must be an array of strings"));
            Vec::new()
        }
    }
}

fn object_field(
    obj: &Map<String, Value>,
    key: &str,
    ctx: &str,
    errors: &mut Vec<String>,
) -> Option<Value> {
    match obj.get(key) {
        None | Some(Value::Null) => None,
        Some(v @ Value::Object(_)) => Some(v.clone()),
        Some(_) => {
            errors.push(format!("{ctx} {key} must be a hash"));
            None
        }
    }
}

/// Validates a `GET /v2/catalog` body. Errors are collected, CC-style, so the broker author sees
/// every problem at once.
pub fn parse_catalog(body: &[u8]) -> Result<Vec<CatalogService>, Vec<String>> {
    let root: Value = serde_json::from_slice(body)
        .map_err(|_| vec!["the catalog is not a valid JSON document".to_string()])?;
    let Some(services) = root.get("services") else {
        return Err(vec!["the catalog has no services array".to_string()]);
    };
    let Some(services) = services.as_array() else {
        return Err(vec!["services must be an array".to_string()]);
    };
    let mut errors = Vec::new();
    let mut seen = Seen::default();
    let out: Vec<CatalogService> = services
        .iter()
        .enumerate()
        .filter_map(|(i, svc)| parse_service(svc, i, &mut seen, &mut errors))
        .collect();
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}

/// Ids and names met so far (unique per catalog for services, per service for plans).
#[derive(Default)]
struct Seen {
    ids: std::collections::HashSet<String>,
    names: std::collections::HashSet<String>,
}

impl Seen {
    /// Records an id and a name; tells which of them was already there.
    fn insert(&mut self, id: Option<&str>, name: Option<&str>) -> (bool, bool) {
        let id_taken = id.is_some_and(|id| !self.ids.insert(id.to_string()));
        let name_taken = name.is_some_and(|n| !self.names.insert(n.to_string()));
        (id_taken, name_taken)
    }
}

/// One service of the catalog (`None` when a required field is missing or wrong).
fn parse_service(
    svc: &Value,
    i: usize,
    seen: &mut Seen,
    errors: &mut Vec<String>,
) -> Option<CatalogService> {
    let Some(obj) = svc.as_object() else {
        errors.push(format!("Service #{} must be an object", i + 1));
        return None;
    };
    let ctx = format!("Service #{}", i + 1);
    let id = str_field(obj, "id", &ctx, errors);
    let name = str_field(obj, "name", &ctx, errors);
    let description = str_field(obj, "description", &ctx, errors);
    let bindable = match obj.get("bindable") {
        Some(Value::Bool(b)) => Some(*b),
        None | Some(Value::Null) => {
            errors.push(format!("{ctx} bindable is required"));
            None
        }
        Some(_) => {
            errors.push(format!("{ctx} \"bindable\" field must be a boolean"));
            None
        }
    };
    let ctx = match name {
        Some(n) => format!("Service {n}"),
        None => ctx,
    };
    let (id_taken, name_taken) = seen.insert(id, name);
    if id_taken {
        errors.push(format!("{ctx} service ids must be unique"));
    }
    if name_taken {
        errors.push(format!(
            "{ctx} service names must be unique within a broker"
        ));
    }
    let tags = string_list(obj, "tags", &ctx, errors);
    let requires = string_list(obj, "requires", &ctx, errors);
    for r in &requires {
        if !matches!(
            r.as_str(),
            "syslog_drain" | "route_forwarding" | "volume_mount"
        ) {
            errors.push(format!(
                "{ctx} requires contains an unknown permission: {r}"
            ));
        }
    }
    let metadata = object_field(obj, "metadata", &ctx, errors);
    let plan_updateable = bool_field(obj, "plan_updateable", &ctx, errors);
    let bindings_retrievable = bool_field(obj, "bindings_retrievable", &ctx, errors);
    let instances_retrievable = bool_field(obj, "instances_retrievable", &ctx, errors);
    let plans = parse_plans(obj, &ctx, errors);
    Some(CatalogService {
        id: id?.to_string(),
        name: name?.to_string(),
        description: description?.to_string(),
        bindable: bindable?,
        tags,
        requires,
        metadata,
        plan_updateable: plan_updateable.unwrap_or(false),
        bindings_retrievable: bindings_retrievable.unwrap_or(false),
        instances_retrievable: instances_retrievable.unwrap_or(false),
        plans,
    })
}

/// A service's `plans`: at least one, each valid.
fn parse_plans(
    obj: &serde_json::Map<String, Value>,
    ctx: &str,
    errors: &mut Vec<String>,
) -> Vec<CatalogPlan> {
    match obj.get("plans") {
        Some(Value::Array(ps)) if !ps.is_empty() => {
            let mut seen = Seen::default();
            ps.iter()
                .enumerate()
                .filter_map(|(j, p)| parse_plan(p, j, ctx, &mut seen, errors))
                .collect()
        }
        Some(Value::Array(_)) | None | Some(Value::Null) => {
            errors.push(format!("{ctx} At least one plan is required"));
            Vec::new()
        }
        Some(_) => {
            errors.push(format!("{ctx} plans must be an array"));
            Vec::new()
        }
    }
}

/// One plan of a service (`None` when a required field is missing or wrong).
fn parse_plan(
    p: &Value,
    j: usize,
    ctx: &str,
    seen: &mut Seen,
    errors: &mut Vec<String>,
) -> Option<CatalogPlan> {
    let Some(pobj) = p.as_object() else {
        errors.push(format!("{ctx} plan #{} must be an object", j + 1));
        return None;
    };
    let pctx = format!("{ctx} plan #{}", j + 1);
    let pid = str_field(pobj, "id", &pctx, errors);
    let pname = str_field(pobj, "name", &pctx, errors);
    let pdesc = str_field(pobj, "description", &pctx, errors);
    let pctx = match pname {
        Some(n) => format!("{ctx} plan {n}"),
        None => pctx,
    };
    let (id_taken, name_taken) = seen.insert(pid, pname);
    if id_taken {
        errors.push(format!("{pctx} plan ids must be unique"));
    }
    if name_taken {
        errors.push(format!("{pctx} plan names must be unique within a service"));
    }
    let free = bool_field(pobj, "free", &pctx, errors).unwrap_or(true);
    let bindable = bool_field(pobj, "bindable", &pctx, errors);
    let plan_updateable = bool_field(pobj, "plan_updateable", &pctx, errors);
    let metadata = object_field(pobj, "metadata", &pctx, errors);
    let schemas = object_field(pobj, "schemas", &pctx, errors);
    let maintenance_info = object_field(pobj, "maintenance_info", &pctx, errors);
    let maximum_polling_duration = match pobj.get("maximum_polling_duration") {
        None | Some(Value::Null) => None,
        Some(Value::Number(n)) if n.as_i64().is_some_and(|v| v > 0) => n.as_i64(),
        Some(_) => {
            errors.push(format!(
                "{pctx} maximum_polling_duration must be a positive integer"
            ));
            None
        }
    };
    Some(CatalogPlan {
        id: pid?.to_string(),
        name: pname?.to_string(),
        description: pdesc?.to_string(),
        free,
        bindable,
        plan_updateable,
        metadata,
        schemas,
        maximum_polling_duration,
        maintenance_info,
    })
}

// ------------------------------------------------------------------------------------------------
// Requests

/// `context` as CF sends it (OSB profile.md, Cloud Foundry section).
#[derive(Debug, Clone, Serialize)]
pub struct CfContext {
    pub platform: &'static str,
    pub organization_guid: String,
    pub space_guid: String,
    pub organization_name: String,
    pub space_name: String,
    /// tether extension (Code Engine): the role of the credential a bind creates.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct BindResource {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub app_guid: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub space_guid: Option<String>,
    /// Service keys bind without an app (CF sends the key's client id instead).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub credential_client_id: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct BindRequest {
    pub service_id: String,
    pub plan_id: String,
    /// Deprecated twin of `bind_resource.app_guid`; CF still sends it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub app_guid: Option<String>,
    pub bind_resource: BindResource,
    pub context: CfContext,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parameters: Option<Map<String, Value>>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ProvisionRequest {
    pub service_id: String,
    pub plan_id: String,
    pub organization_guid: String,
    pub space_guid: String,
    pub context: CfContext,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parameters: Option<Map<String, Value>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub maintenance_info: Option<Value>,
}

/// Identifies the catalog entry a binding or instance belongs to (sent as query on DELETE/polls).
#[derive(Debug, Clone)]
pub struct CatalogIds {
    pub service_id: String,
    pub plan_id: String,
}

// ------------------------------------------------------------------------------------------------
// Responses

/// What a successful bind or fetch gives us.
#[derive(Debug, Clone, Default)]
pub struct BindingData {
    /// Serialized JSON object.
    pub credentials: String,
    pub syslog_drain_url: Option<String>,
    /// Serialized JSON array, as the broker sent it.
    pub volume_mounts: String,
    pub parameters: Option<Value>,
}

#[derive(Debug, Clone)]
pub enum BindOutcome {
    Created(BindingData),
    Async { operation: Option<String> },
}

#[derive(Debug, Clone)]
pub enum UnbindOutcome {
    /// 200 (or 410: already gone).
    Deleted,
    Async {
        operation: Option<String>,
    },
}

#[derive(Debug, Clone)]
pub enum ProvisionOutcome {
    Created {
        dashboard_url: Option<String>,
    },
    Async {
        operation: Option<String>,
        dashboard_url: Option<String>,
    },
}

pub use crate::operation::OperationState;

#[derive(Debug, Clone)]
pub enum LastOperationOutcome {
    State {
        state: OperationState,
        description: Option<String>,
        /// Seconds, from the `Retry-After` header.
        retry_after: Option<u64>,
    },
    /// 410: the resource is gone (success while polling a delete).
    Gone,
}

#[derive(Deserialize)]
pub(crate) struct ErrorBody {
    pub error: Option<String>,
    pub description: Option<String>,
}
