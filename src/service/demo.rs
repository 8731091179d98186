//! `tether seed-demo`: everything the README's walk-through needs, idempotently.

use serde_json::{json, Value};

use super::instances::{CreateInstance, UpsiInput};
use super::resources::AppInput;
use super::Caller;
use crate::app::AppState;
use crate::db::repo;
use crate::error::{ApiError, ApiResult};

/// The guids of the v2 API docs' binding example (seed 001), so its curl works verbatim.
pub const DEMO_APP_GUID: &str = "081d55a0-1bfa-4e51-8d08-273f764988db";
pub const DEMO_UPSI_GUID: &str = "a0029c76-7017-4a74-94b0-54a04ad94b80";

pub async fn seed(
    state: &AppState,
    caller: &Caller,
    broker_url: Option<&str>,
    broker_username: &str,
    broker_password: &str,
) -> ApiResult<Value> {
    let existing_org = state
        .db
        .read(|conn| Ok(repo::orgs::find_by_name(conn, "demo-org")?))
        .await?;
    let org = match existing_org {
        Some(o) => o,
        None => super::resources::create_org(state, caller, "demo-org".into(), None).await?,
    };
    let org_guid = org.guid.clone();
    let existing_space = state
        .db
        .read(move |conn| {
            Ok(repo::spaces::list(
                conn,
                &[repo::Filter {
                    key: "name".into(),
                    op: repo::FilterOp::Eq,
                    values: vec!["demo-space".into()],
                }],
                Some(&org_guid),
                None,
                &repo::PageRequest {
                    page: 1,
                    per_page: 1,
                    descending: false,
                    order: repo::OrderBy::Id,
                },
            )?
            .rows
            .pop())
        })
        .await?;
    let space = match existing_space {
        Some(s) => s,
        None => {
            super::resources::create_space(
                state,
                caller,
                "demo-space".into(),
                org.guid.clone(),
                None,
            )
            .await?
        }
    };
    let app = match state
        .db
        .read(|conn| Ok(repo::apps::find(conn, DEMO_APP_GUID)?))
        .await?
    {
        Some(a) => a,
        None => {
            super::resources::create_app(
                state,
                caller,
                AppInput {
                    guid: Some(DEMO_APP_GUID.into()),
                    name: Some("demo-app".into()),
                    space_guid: Some(space.guid.clone()),
                    state: None,
                    memory: None,
                    instances: None,
                    disk_quota: None,
                    environment_json: None,
                },
            )
            .await?
        }
    };
    let upsi = match state
        .db
        .read(|conn| Ok(repo::instances::find(conn, DEMO_UPSI_GUID)?))
        .await?
    {
        Some(i) => i,
        None => {
            let mut creds = serde_json::Map::new();
            creds.insert("creds-key-63".into(), json!("creds-val-63"));
            super::instances::create_upsi(
                state,
                caller,
                UpsiInput {
                    guid: Some(DEMO_UPSI_GUID.into()),
                    name: Some("demo-upsi".into()),
                    space_guid: Some(space.guid.clone()),
                    credentials: Some(creds),
                    syslog_drain_url: None,
                    route_service_url: None,
                    tags: None,
                },
            )
            .await?
            .instance
        }
    };
    let mut report = json!({
        "organization_guid": org.guid,
        "space_guid": space.guid,
        "app_guid": app.guid,
        "user_provided_service_instance_guid": upsi.guid,
    });
    if let Some(url) = broker_url {
        let broker = match state
            .db
            .read(|conn| {
                Ok(repo::brokers::list_brokers(
                    conn,
                    &[repo::Filter {
                        key: "name".into(),
                        op: repo::FilterOp::Eq,
                        values: vec!["demo-broker".into()],
                    }],
                    &repo::PageRequest {
                        page: 1,
                        per_page: 1,
                        descending: false,
                        order: repo::OrderBy::Id,
                    },
                )?
                .rows
                .pop())
            })
            .await?
        {
            Some(b) => b,
            None => {
                super::brokers::register(
                    state,
                    caller,
                    super::brokers::BrokerInput {
                        name: Some("demo-broker".into()),
                        broker_url: Some(url.to_string()),
                        auth_username: Some(broker_username.to_string()),
                        auth_password: Some(broker_password.to_string()),
                        space_guid: None,
                    },
                )
                .await?
            }
        };
        let broker_guid = broker.guid.clone();
        let plans = state
            .db
            .read(move |conn| {
                Ok(repo::brokers::list_plans(
                    conn,
                    &[repo::Filter {
                        key: "service_broker_guid".into(),
                        op: repo::FilterOp::Eq,
                        values: vec![broker_guid],
                    }],
                    None,
                    &repo::PageRequest {
                        page: 1,
                        per_page: 100,
                        descending: false,
                        order: repo::OrderBy::Id,
                    },
                )?
                .rows)
            })
            .await?;
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
    }
    Ok(report)
}

/// The managed instance of this name in the space, created on `plan` if there is none.
async fn managed_instance(
    state: &AppState,
    caller: &Caller,
    space_guid: &str,
    plan_guid: &str,
    name: &'static str,
) -> ApiResult<crate::db::models::ServiceInstance> {
    let space = space_guid.to_string();
    let existing = state
        .db
        .read(move |conn| {
            Ok(repo::instances::list(
                conn,
                &[repo::Filter {
                    key: "name".into(),
                    op: repo::FilterOp::Eq,
                    values: vec![name.into()],
                }],
                repo::instances::Kind::Managed,
                Some(&space),
                None,
                &repo::PageRequest {
                    page: 1,
                    per_page: 1,
                    descending: false,
                    order: repo::OrderBy::Id,
                },
            )?
            .rows
            .pop())
        })
        .await?;
    if let Some(instance) = existing {
        return Ok(instance);
    }
    Ok(super::instances::create_managed(
        state,
        caller,
        CreateInstance {
            name: Some(name.into()),
            space_guid: Some(space_guid.to_string()),
            service_plan_guid: Some(plan_guid.to_string()),
            parameters: None,
            tags: None,
            accepts_incomplete: false,
        },
    )
    .await?
    .instance)
}
