//! `tether seed-demo`: everything the README's walk-through needs, idempotently.
//!
//! Each step finds its resource by a fixed name or guid and creates it only when it is missing,
//! so a second run changes nothing and reports the same guids.

use serde_json::{json, Value};

use super::brokers::BrokerInput;
use super::instances::{CreateInstance, UpsiInput};
use super::resources::AppInput;
use super::Caller;
use crate::app::AppState;
use crate::db::models::{App, Organization, ServiceBroker, ServiceInstance, ServicePlan, Space};
use crate::db::repo::{self, Filter, PageRequest};
use crate::error::{ApiError, ApiResult};

/// The guids of the v2 API docs' binding example (seed 001), so its curl works verbatim.
pub const DEMO_APP_GUID: &str = "081d55a0-1bfa-4e51-8d08-273f764988db";
pub const DEMO_UPSI_GUID: &str = "a0029c76-7017-4a74-94b0-54a04ad94b80";

const DEMO_ORG: &str = "demo-org";
const DEMO_SPACE: &str = "demo-space";
const DEMO_BROKER: &str = "demo-broker";

/// Seeds org, space, app and user-provided instance; with a broker URL also the demo broker,
/// its public plans and two managed instances. Returns the guids, by what they name.
pub async fn seed(
    state: &AppState,
    caller: &Caller,
    broker_url: Option<&str>,
    broker_username: &str,
    broker_password: &str,
) -> ApiResult<Value> {
    let org = demo_org(state, caller).await?;
    let space = demo_space(state, caller, &org).await?;
    let app = demo_app(state, caller, &space).await?;
    let upsi = demo_upsi(state, caller, &space).await?;
    let mut report = json!({
        "organization_guid": org.guid,
        "space_guid": space.guid,
        "app_guid": app.guid,
        "user_provided_service_instance_guid": upsi.guid,
    });
    if let Some(url) = broker_url {
        let input = BrokerInput {
            name: Some(DEMO_BROKER.into()),
            broker_url: Some(url.to_string()),
            auth_username: Some(broker_username.to_string()),
            auth_password: Some(broker_password.to_string()),
            space_guid: None,
        };
        let broker = demo_broker(state, caller, input).await?;
        seed_marketplace(state, caller, &broker, &space, &mut report).await?;
    }
    Ok(report)
}

async fn demo_org(state: &AppState, caller: &Caller) -> ApiResult<Organization> {
    let existing = state
        .db
        .read(|conn| Ok(repo::orgs::find_by_name(conn, DEMO_ORG)?))
        .await?;
    match existing {
        Some(org) => Ok(org),
        None => super::resources::create_org(state, caller, DEMO_ORG.into(), None).await,
    }
}

async fn demo_space(state: &AppState, caller: &Caller, org: &Organization) -> ApiResult<Space> {
    let org_guid = org.guid.clone();
    let existing = state
        .db
        .read(move |conn| {
            let by_name = [Filter::eq("name", DEMO_SPACE)];
            let first = PageRequest::first(1);
            let found = repo::spaces::list(conn, &by_name, Some(&org_guid), None, &first)?;
            Ok(found.rows.into_iter().next())
        })
        .await?;
    match existing {
        Some(space) => Ok(space),
        None => {
            let (name, org_guid) = (DEMO_SPACE.into(), org.guid.clone());
            super::resources::create_space(state, caller, name, org_guid, None).await
        }
    }
}

async fn demo_app(state: &AppState, caller: &Caller, space: &Space) -> ApiResult<App> {
    let existing = state
        .db
        .read(|conn| Ok(repo::apps::find(conn, DEMO_APP_GUID)?))
        .await?;
    if let Some(app) = existing {
        return Ok(app);
    }
    let input = AppInput {
        guid: Some(DEMO_APP_GUID.into()),
        name: Some("demo-app".into()),
        space_guid: Some(space.guid.clone()),
        state: None,
        memory: None,
        instances: None,
        disk_quota: None,
        environment_json: None,
    };
    super::resources::create_app(state, caller, input).await
}

async fn demo_upsi(state: &AppState, caller: &Caller, space: &Space) -> ApiResult<ServiceInstance> {
    let existing = state
        .db
        .read(|conn| Ok(repo::instances::find(conn, DEMO_UPSI_GUID)?))
        .await?;
    if let Some(upsi) = existing {
        return Ok(upsi);
    }
    let mut creds = serde_json::Map::new();
    creds.insert("creds-key-63".into(), json!("creds-val-63"));
    let input = UpsiInput {
        guid: Some(DEMO_UPSI_GUID.into()),
        name: Some("demo-upsi".into()),
        space_guid: Some(space.guid.clone()),
        credentials: Some(creds),
        syslog_drain_url: None,
        route_service_url: None,
        tags: None,
    };
    Ok(super::instances::create_upsi(state, caller, input)
        .await?
        .instance)
}

async fn demo_broker(
    state: &AppState,
    caller: &Caller,
    input: BrokerInput,
) -> ApiResult<ServiceBroker> {
    let existing = state
        .db
        .read(|conn| {
            let by_name = [Filter::eq("name", DEMO_BROKER)];
            let found = repo::brokers::list_brokers(conn, &by_name, &PageRequest::first(1))?;
            Ok(found.rows.into_iter().next())
        })
        .await?;
    match existing {
        Some(broker) => Ok(broker),
        None => super::brokers::register(state, caller, input).await,
    }
}

/// Makes every plan of the broker public and provisions the demo instances on them, adding
/// their guids to the report.
async fn seed_marketplace(
    state: &AppState,
    caller: &Caller,
    broker: &ServiceBroker,
    space: &Space,
    report: &mut Value,
) -> ApiResult<()> {
    let plans = broker_plans(state, &broker.guid).await?;
    for p in &plans {
        super::brokers::set_plan_public(state, caller, &p.guid, true).await?;
    }
    let small = plans
        .iter()
        .find(|p| p.unique_id == crate::demo_broker::PLAN_SMALL_ID)
        .or_else(|| plans.first())
        .ok_or_else(|| {
            ApiError::ServiceBrokerCatalogInvalid("the broker offers no plans".into())
        })?;
    let instance = managed_instance(state, caller, &space.guid, &small.guid, "demo-db").await?;
    report["service_instance_guid"] = json!(instance.guid);
    let async_plan = plans
        .iter()
        .find(|p| p.unique_id == crate::demo_broker::PLAN_ASYNC_ID);
    if let Some(plan) = async_plan {
        let instance =
            managed_instance(state, caller, &space.guid, &plan.guid, "demo-async-db").await?;
        report["async_service_instance_guid"] = json!(instance.guid);
    }
    report["service_broker_guid"] = json!(broker.guid);
    report["service_plan_guid"] = json!(small.guid);
    Ok(())
}

/// The broker's plans (the first hundred: the demo broker offers a handful).
async fn broker_plans(state: &AppState, broker_guid: &str) -> ApiResult<Vec<ServicePlan>> {
    let by_broker = [Filter::eq("service_broker_guid", broker_guid)];
    state
        .db
        .read(move |conn| {
            let first = PageRequest::first(100);
            Ok(repo::brokers::list_plans(conn, &by_broker, None, &first)?.rows)
        })
        .await
}

/// The managed instance of this name in the space, created on `plan` if there is none.
async fn managed_instance(
    state: &AppState,
    caller: &Caller,
    space_guid: &str,
    plan_guid: &str,
    name: &'static str,
) -> ApiResult<ServiceInstance> {
    let space = space_guid.to_string();
    let existing = state
        .db
        .read(move |conn| {
            let by_name = [Filter::eq("name", name)];
            let managed = repo::instances::Kind::Managed;
            let first = PageRequest::first(1);
            let found = repo::instances::list(conn, &by_name, managed, Some(&space), None, &first)?;
            Ok(found.rows.into_iter().next())
        })
        .await?;
    if let Some(instance) = existing {
        return Ok(instance);
    }
    let input = CreateInstance {
        name: Some(name.into()),
        space_guid: Some(space_guid.to_string()),
        service_plan_guid: Some(plan_guid.to_string()),
        parameters: None,
        tags: None,
        accepts_incomplete: false,
    };
    Ok(super::instances::create_managed(state, caller, input)
        .await?
        .instance)
}
