//! User-provided service instances: local records, credentials sealed at rest.

use serde_json::{Map, Value};

use super::{check_instance_name, check_tags, name_unique, open_view, InstanceView};
use crate::app::AppState;
use crate::db::models::ServiceInstance;
use crate::db::repo;
use crate::db::repo::instances::Kind;
use crate::error::{ApiError, ApiResult};
use crate::service::{authz, new_guid, no_such_space, on_unique, Caller};

pub struct UpsiInput {
    /// Only for tools (seed-demo); the API always generates one.
    pub guid: Option<String>,
    pub name: Option<String>,
    pub space_guid: Option<String>,
    pub credentials: Option<Map<String, Value>>,
    pub syslog_drain_url: Option<String>,
    pub route_service_url: Option<String>,
    pub tags: Option<Vec<String>>,
}

fn check_route_service_url(url: &Option<String>) -> ApiResult<()> {
    if let Some(u) = url.as_deref().filter(|u| !u.is_empty()) {
        if !u.starts_with("https://") {
            return Err(ApiError::ServiceInstanceInvalid(format!(
                "The route service URL is invalid: Scheme must be https: {u}"
            )));
        }
    }
    Ok(())
}

pub async fn create_upsi(
    state: &AppState,
    caller: &Caller,
    input: UpsiInput,
) -> ApiResult<InstanceView> {
    authz::require_write_scope(&caller.actor)?;
    let name = check_instance_name(input.name.as_deref())?;
    let space_guid = input.space_guid.clone().ok_or_else(|| {
        ApiError::MessageParseError("Field: space_guid, Error: Missing field space_guid".into())
    })?;
    check_route_service_url(&input.route_service_url)?;
    let tags = check_tags(&name, input.tags.as_deref().unwrap_or_default())?;
    let now = crate::db::now();
    let row = ServiceInstance {
        id: 0,
        guid: input.guid.clone().unwrap_or_else(new_guid),
        name,
        space_guid,
        is_user_provided: true,
        service_plan_guid: None,
        credentials: Some(
            state.crypto_seal(&Value::Object(input.credentials.unwrap_or_default()).to_string()),
        ),
        syslog_drain_url: input.syslog_drain_url.filter(|s| !s.is_empty()),
        route_service_url: input.route_service_url.filter(|s| !s.is_empty()),
        tags,
        dashboard_url: None,
        last_operation_type: None,
        last_operation_state: None,
        last_operation_description: None,
        broker_operation: None,
        last_operation_updated_at: None,
        created_at: now,
        updated_at: now,
    };
    let insert = row.clone();
    let (actor, space) = (&caller.actor, &row.space_guid);
    authz::require_existing_space_writer(&state.db, actor, space, no_such_space).await?;
    state
        .db
        .write(move |conn| {
            on_unique(repo::instances::insert(conn, &insert), |v| {
                name_unique(v, &insert.name)
            })
        })
        .await?;
    open_view(
        state,
        InstanceView {
            instance: row,
            service_guid: None,
            show_credentials: true,
        },
    )
}

pub async fn update_upsi(
    state: &AppState,
    caller: &Caller,
    guid: &str,
    input: UpsiInput,
) -> ApiResult<InstanceView> {
    authz::require_write_scope(&caller.actor)?;
    check_route_service_url(&input.route_service_url)?;
    let g = guid.to_string();
    let space = super::space_of(state, guid, Kind::UserProvided).await?;
    authz::require_space_writer(&state.db, &caller.actor, &space).await?;
    let sealed = input
        .credentials
        .as_ref()
        .map(|c| state.crypto_seal(&Value::Object(c.clone()).to_string()));
    state
        .db
        .write(move |conn| {
            let mut instance = repo::instances::find(conn, &g)?
                .filter(|i| i.is_user_provided)
                .ok_or_else(|| ApiError::UserProvidedServiceInstanceNotFound(g.clone()))?;
            if let Some(n) = input.name {
                instance.name = check_instance_name(Some(&n))?;
            }
            if sealed.is_some() {
                instance.credentials = sealed;
            }
            if let Some(s) = input.syslog_drain_url {
                instance.syslog_drain_url = Some(s).filter(|s| !s.is_empty());
            }
            if let Some(r) = input.route_service_url {
                instance.route_service_url = Some(r).filter(|s| !s.is_empty());
            }
            if let Some(t) = input.tags {
                instance.tags = check_tags(&instance.name, &t)?;
            }
            let n = instance.name.clone();
            on_unique(repo::instances::update_fields(conn, &instance), |v| {
                name_unique(v, &n)
            })?;
            let instance = repo::instances::find(conn, &g)?
                .ok_or_else(|| ApiError::UserProvidedServiceInstanceNotFound(g.clone()))?;
            Ok(InstanceView {
                instance,
                service_guid: None,
                show_credentials: true,
            })
        })
        .await
        .and_then(|v| open_view(state, v))
}
