//! Service brokers and the catalog they publish: services, plans, plan visibilities.

use diesel::prelude::*;
use diesel::QueryResult;

use super::{optional, Backend, DbConnection, Filter, Loaded, PageRequest};
use crate::broker::CatalogService;
use crate::db::models::{Service, ServiceBroker, ServicePlan, ServicePlanVisibility};
use crate::db::schema::service_brokers::dsl as b;
use crate::db::schema::service_plan_visibilities::dsl as v;
use crate::db::schema::service_plans::dsl as p;
use crate::db::schema::services::dsl as s;
use crate::db::schema::{service_instances, spaces};

// ---- brokers ----------------------------------------------------------------------------------

pub fn insert_broker(conn: &mut DbConnection, broker: &ServiceBroker) -> QueryResult<()> {
    diesel::insert_into(b::service_brokers)
        .values(broker)
        .execute(conn)
        .map(|_| ())
}

pub fn find_broker(conn: &mut DbConnection, guid: &str) -> QueryResult<Option<ServiceBroker>> {
    optional(
        b::service_brokers
            .filter(b::guid.eq(guid))
            .select(ServiceBroker::as_select())
            .first(conn),
    )
}

pub const BROKER_FILTERS: &[&str] = &["name", "space_guid"];

fn brokers_filtered<'a>(
    filters: &[Filter],
) -> crate::db::schema::service_brokers::BoxedQuery<'a, Backend> {
    let mut q = b::service_brokers.into_boxed();
    for f in filters {
        q = match f.key.as_str() {
            "name" => crate::filter_text!(q, b::name, f),
            "space_guid" => q.filter(b::space_guid.eq(f.first())),
            _ => q,
        };
    }
    q
}

pub fn list_brokers(
    conn: &mut DbConnection,
    filters: &[Filter],
    page: &PageRequest,
) -> QueryResult<Loaded<ServiceBroker>> {
    let total = brokers_filtered(filters).count().get_result(conn)?;
    let q = brokers_filtered(filters).select(ServiceBroker::as_select());
    let rows = crate::order_page!(q, page, b::id, b::name).load(conn)?;
    Ok(Loaded { total, rows })
}

pub fn update_broker(conn: &mut DbConnection, broker: &ServiceBroker) -> QueryResult<usize> {
    diesel::update(b::service_brokers.filter(b::guid.eq(&broker.guid)))
        .set((
            b::name.eq(&broker.name),
            b::broker_url.eq(&broker.broker_url),
            b::auth_username.eq(&broker.auth_username),
            b::auth_password.eq(&broker.auth_password),
            b::updated_at.eq(crate::db::now()),
        ))
        .execute(conn)
}

/// Number of service instances using any plan of the broker.
pub fn count_broker_instances(conn: &mut DbConnection, broker: &str) -> QueryResult<i64> {
    let plan_guids = p::service_plans
        .inner_join(s::services.on(s::guid.eq(p::service_guid)))
        .filter(s::service_broker_guid.eq(broker))
        .select(p::guid);
    service_instances::table
        .filter(service_instances::service_plan_guid.eq_any(plan_guids.nullable()))
        .count()
        .get_result(conn)
}

/// Deletes a broker and its catalog (callers check that no instance uses it).
pub fn delete_broker(conn: &mut DbConnection, guid: &str) -> QueryResult<usize> {
    let service_guids: Vec<String> = s::services
        .filter(s::service_broker_guid.eq(guid))
        .select(s::guid)
        .load(conn)?;
    let plan_guids: Vec<String> = p::service_plans
        .filter(p::service_guid.eq_any(&service_guids))
        .select(p::guid)
        .load(conn)?;
    diesel::delete(v::service_plan_visibilities.filter(v::service_plan_guid.eq_any(&plan_guids)))
        .execute(conn)?;
    diesel::delete(p::service_plans.filter(p::guid.eq_any(&plan_guids))).execute(conn)?;
    diesel::delete(s::services.filter(s::guid.eq_any(&service_guids))).execute(conn)?;
    diesel::delete(b::service_brokers.filter(b::guid.eq(guid))).execute(conn)
}

// ---- catalog sync ------------------------------------------------------------------------------

fn json_list(items: &[String]) -> String {
    serde_json::to_string(items).unwrap_or_else(|_| "[]".into())
}

fn json_opt(v: &Option<serde_json::Value>) -> Option<String> {
    v.as_ref().map(|v| v.to_string())
}

/// Brings the stored catalog of `broker` in line with `catalog`: entries are matched by the
/// broker's ids (OSB: names may change, ids identify). Entries that vanished are deleted, or
/// deactivated if instances still use them.
pub fn sync_catalog(
    conn: &mut DbConnection,
    broker: &ServiceBroker,
    catalog: &[CatalogService],
) -> QueryResult<()> {
    let now = crate::db::now();
    let existing: Vec<Service> = s::services
        .filter(s::service_broker_guid.eq(&broker.guid))
        .select(Service::as_select())
        .load(conn)?;
    let mut kept_services = Vec::new();
    for cs in catalog {
        let service_guid = match existing.iter().find(|e| e.unique_id == cs.id) {
            Some(e) => {
                diesel::update(s::services.filter(s::guid.eq(&e.guid)))
                    .set((
                        s::label.eq(&cs.name),
                        s::description.eq(&cs.description),
                        s::active.eq(true),
                        s::bindable.eq(cs.bindable),
                        s::tags.eq(json_list(&cs.tags)),
                        s::requires.eq(json_list(&cs.requires)),
                        s::extra.eq(json_opt(&cs.metadata)),
                        s::plan_updateable.eq(cs.plan_updateable),
                        s::bindings_retrievable.eq(cs.bindings_retrievable),
                        s::instances_retrievable.eq(cs.instances_retrievable),
                        s::updated_at.eq(now),
                    ))
                    .execute(conn)?;
                e.guid.clone()
            }
            None => {
                let guid = uuid::Uuid::new_v4().to_string();
                diesel::insert_into(s::services)
                    .values(&Service {
                        id: 0,
                        guid: guid.clone(),
                        service_broker_guid: broker.guid.clone(),
                        unique_id: cs.id.clone(),
                        label: cs.name.clone(),
                        description: cs.description.clone(),
                        active: true,
                        bindable: cs.bindable,
                        tags: json_list(&cs.tags),
                        requires: json_list(&cs.requires),
                        extra: json_opt(&cs.metadata),
                        plan_updateable: cs.plan_updateable,
                        bindings_retrievable: cs.bindings_retrievable,
                        instances_retrievable: cs.instances_retrievable,
                        created_at: now,
                        updated_at: now,
                    })
                    .execute(conn)?;
                guid
            }
        };
        sync_plans(conn, &service_guid, cs, now)?;
        kept_services.push(service_guid);
    }
    for gone in existing.iter().filter(|e| !kept_services.contains(&e.guid)) {
        let plan_guids: Vec<String> = p::service_plans
            .filter(p::service_guid.eq(&gone.guid))
            .select(p::guid)
            .load(conn)?;
        let mut in_use = false;
        for plan in &plan_guids {
            in_use |= retire_plan(conn, plan, now)?;
        }
        if in_use {
            diesel::update(s::services.filter(s::guid.eq(&gone.guid)))
                .set((s::active.eq(false), s::updated_at.eq(now)))
                .execute(conn)?;
        } else {
            diesel::delete(s::services.filter(s::guid.eq(&gone.guid))).execute(conn)?;
        }
    }
    Ok(())
}

/// Deletes a plan, or deactivates it if instances use it. Returns whether it is still in use.
fn retire_plan(
    conn: &mut DbConnection,
    plan: &str,
    now: chrono::NaiveDateTime,
) -> QueryResult<bool> {
    let users: i64 = service_instances::table
        .filter(service_instances::service_plan_guid.eq(plan))
        .count()
        .get_result(conn)?;
    if users > 0 {
        diesel::update(p::service_plans.filter(p::guid.eq(plan)))
            .set((p::active.eq(false), p::updated_at.eq(now)))
            .execute(conn)?;
        Ok(true)
    } else {
        diesel::delete(v::service_plan_visibilities.filter(v::service_plan_guid.eq(plan)))
            .execute(conn)?;
        diesel::delete(p::service_plans.filter(p::guid.eq(plan))).execute(conn)?;
        Ok(false)
    }
}

fn sync_plans(
    conn: &mut DbConnection,
    service_guid: &str,
    cs: &CatalogService,
    now: chrono::NaiveDateTime,
) -> QueryResult<()> {
    let existing: Vec<ServicePlan> = p::service_plans
        .filter(p::service_guid.eq(service_guid))
        .select(ServicePlan::as_select())
        .load(conn)?;
    let mut kept = Vec::new();
    for cp in &cs.plans {
        match existing.iter().find(|e| e.unique_id == cp.id) {
            Some(e) => {
                diesel::update(p::service_plans.filter(p::guid.eq(&e.guid)))
                    .set((
                        p::name.eq(&cp.name),
                        p::description.eq(&cp.description),
                        p::free.eq(cp.free),
                        // Stored effective: the plan's value, else the offering's (OSB A.2).
                        p::bindable.eq(Some(cp.bindable.unwrap_or(cs.bindable))),
                        p::plan_updateable
                            .eq(Some(cp.plan_updateable.unwrap_or(cs.plan_updateable))),
                        p::active.eq(true),
                        p::extra.eq(json_opt(&cp.metadata)),
                        p::schemas.eq(json_opt(&cp.schemas)),
                        p::maximum_polling_duration.eq(cp.maximum_polling_duration),
                        p::maintenance_info.eq(json_opt(&cp.maintenance_info)),
                        p::updated_at.eq(now),
                    ))
                    .execute(conn)?;
                kept.push(e.guid.clone());
            }
            None => {
                let guid = uuid::Uuid::new_v4().to_string();
                diesel::insert_into(p::service_plans)
                    .values(&ServicePlan {
                        id: 0,
                        guid: guid.clone(),
                        service_guid: service_guid.to_string(),
                        unique_id: cp.id.clone(),
                        name: cp.name.clone(),
                        description: cp.description.clone(),
                        free: cp.free,
                        bindable: Some(cp.bindable.unwrap_or(cs.bindable)),
                        plan_updateable: Some(cp.plan_updateable.unwrap_or(cs.plan_updateable)),
                        // CC: plans of a standard broker start private until an admin enables
                        // access; a space-scoped broker's plans are usable in its space only.
                        public: false,
                        active: true,
                        extra: json_opt(&cp.metadata),
                        schemas: json_opt(&cp.schemas),
                        maximum_polling_duration: cp.maximum_polling_duration,
                        maintenance_info: json_opt(&cp.maintenance_info),
                        created_at: now,
                        updated_at: now,
                    })
                    .execute(conn)?;
                kept.push(guid);
            }
        }
    }
    for gone in existing.iter().filter(|e| !kept.contains(&e.guid)) {
        retire_plan(conn, &gone.guid, now)?;
    }
    Ok(())
}

// ---- services --------------------------------------------------------------------------------

pub fn find_service(conn: &mut DbConnection, guid: &str) -> QueryResult<Option<Service>> {
    optional(
        s::services
            .filter(s::guid.eq(guid))
            .select(Service::as_select())
            .first(conn),
    )
}

pub const SERVICE_FILTERS: &[&str] = &[
    "label",
    "active",
    "service_broker_guid",
    "unique_id",
    "provider",
];

pub(super) fn services_filtered<'a>(
    filters: &[Filter],
) -> crate::db::schema::services::BoxedQuery<'a, Backend> {
    let mut q = s::services.into_boxed();
    for f in filters {
        q = match f.key.as_str() {
            "label" => crate::filter_text!(q, s::label, f),
            "unique_id" => crate::filter_text!(q, s::unique_id, f),
            "service_broker_guid" => crate::filter_text!(q, s::service_broker_guid, f),
            "active" => crate::filter_bool!(q, s::active, f),
            _ => q,
        };
    }
    q
}

pub fn list_services(
    conn: &mut DbConnection,
    filters: &[Filter],
    page: &PageRequest,
) -> QueryResult<Loaded<Service>> {
    let total = services_filtered(filters).count().get_result(conn)?;
    let q = services_filtered(filters).select(Service::as_select());
    let rows = crate::order_page!(q, page, s::id, s::label).load(conn)?;
    Ok(Loaded { total, rows })
}

/// Services and their brokers' names, for rendering.
pub fn broker_names(
    conn: &mut DbConnection,
    broker_guids: &[String],
) -> QueryResult<Vec<(String, String)>> {
    b::service_brokers
        .filter(b::guid.eq_any(broker_guids))
        .select((b::guid, b::name))
        .load(conn)
}

// ---- plans -----------------------------------------------------------------------------------

pub fn find_plan(conn: &mut DbConnection, guid: &str) -> QueryResult<Option<ServicePlan>> {
    optional(
        p::service_plans
            .filter(p::guid.eq(guid))
            .select(ServicePlan::as_select())
            .first(conn),
    )
}

/// A plan with its service and broker.
/// The plans among `guids` that exist (one query).
pub fn find_plans(conn: &mut DbConnection, guids: &[String]) -> QueryResult<Vec<ServicePlan>> {
    crate::db::native!(conn, |c| p::service_plans
        .filter(p::guid.eq_any(guids))
        .select(ServicePlan::as_select())
        .load(c))
}

pub fn find_plan_full(
    conn: &mut DbConnection,
    guid: &str,
) -> QueryResult<Option<(ServicePlan, Service, ServiceBroker)>> {
    optional(crate::db::native!(conn, |c| p::service_plans
        .inner_join(s::services.on(s::guid.eq(p::service_guid)))
        .inner_join(b::service_brokers.on(b::guid.eq(s::service_broker_guid)))
        .filter(p::guid.eq(guid))
        .select((
            ServicePlan::as_select(),
            Service::as_select(),
            ServiceBroker::as_select(),
        ))
        .first(c)))
}

pub const PLAN_FILTERS: &[&str] = &[
    "active",
    "service_guid",
    "service_broker_guid",
    "unique_id",
    "name",
    "service_instance_guid",
];

pub(super) fn plans_filtered<'a>(
    filters: &[Filter],
    service: Option<&'a str>,
) -> crate::db::schema::service_plans::BoxedQuery<'a, Backend> {
    let mut q = p::service_plans.into_boxed();
    for f in filters {
        q = match f.key.as_str() {
            "name" => crate::filter_text!(q, p::name, f),
            "unique_id" => crate::filter_text!(q, p::unique_id, f),
            "service_guid" => crate::filter_text!(q, p::service_guid, f),
            "active" => crate::filter_bool!(q, p::active, f),
            "service_broker_guid" => crate::filter_via!(
                q,
                p::service_guid,
                s::services.select(s::guid),
                s::service_broker_guid,
                f
            ),
            "service_instance_guid" => crate::filter_via!(
                q,
                p::guid.nullable(),
                service_instances::table.select(service_instances::service_plan_guid),
                service_instances::guid,
                f
            ),
            _ => q,
        };
    }
    if let Some(service) = service {
        q = q.filter(p::service_guid.eq(service));
    }
    q
}

pub fn list_plans(
    conn: &mut DbConnection,
    filters: &[Filter],
    service: Option<&str>,
    page: &PageRequest,
) -> QueryResult<Loaded<ServicePlan>> {
    let total = plans_filtered(filters, service).count().get_result(conn)?;
    let q = plans_filtered(filters, service).select(ServicePlan::as_select());
    let rows = crate::order_page!(q, page, p::id, p::name).load(conn)?;
    Ok(Loaded { total, rows })
}

pub fn set_plan_public(conn: &mut DbConnection, guid: &str, public: bool) -> QueryResult<usize> {
    diesel::update(p::service_plans.filter(p::guid.eq(guid)))
        .set((p::public.eq(public), p::updated_at.eq(crate::db::now())))
        .execute(conn)
}

/// Whether `plan` may be used in `org`: public, visible to the org, or from a broker scoped to
/// a space of that org.
pub fn plan_visible_in_org(
    conn: &mut DbConnection,
    plan: &ServicePlan,
    broker: &ServiceBroker,
    org: &str,
) -> QueryResult<bool> {
    if let Some(space) = &broker.space_guid {
        let space_org: Option<String> = optional(
            spaces::table
                .filter(spaces::guid.eq(space))
                .select(spaces::organization_guid)
                .first(conn),
        )?;
        return Ok(space_org.as_deref() == Some(org));
    }
    if plan.public {
        return Ok(true);
    }
    let n: i64 = v::service_plan_visibilities
        .filter(v::service_plan_guid.eq(&plan.guid))
        .filter(v::organization_guid.eq(org))
        .count()
        .get_result(conn)?;
    Ok(n > 0)
}

// ---- visibilities ----------------------------------------------------------------------------

pub fn insert_visibility(conn: &mut DbConnection, vis: &ServicePlanVisibility) -> QueryResult<()> {
    diesel::insert_into(v::service_plan_visibilities)
        .values(vis)
        .execute(conn)
        .map(|_| ())
}

pub fn find_visibility(
    conn: &mut DbConnection,
    guid: &str,
) -> QueryResult<Option<ServicePlanVisibility>> {
    optional(
        v::service_plan_visibilities
            .filter(v::guid.eq(guid))
            .select(ServicePlanVisibility::as_select())
            .first(conn),
    )
}

pub const VISIBILITY_FILTERS: &[&str] = &["service_plan_guid", "organization_guid"];

fn visibilities_filtered<'a>(
    filters: &[Filter],
) -> crate::db::schema::service_plan_visibilities::BoxedQuery<'a, Backend> {
    let mut q = v::service_plan_visibilities.into_boxed();
    for f in filters {
        q = match f.key.as_str() {
            "service_plan_guid" => crate::filter_text!(q, v::service_plan_guid, f),
            "organization_guid" => crate::filter_text!(q, v::organization_guid, f),
            _ => q,
        };
    }
    q
}

pub fn list_visibilities(
    conn: &mut DbConnection,
    filters: &[Filter],
    page: &PageRequest,
) -> QueryResult<Loaded<ServicePlanVisibility>> {
    let total = visibilities_filtered(filters).count().get_result(conn)?;
    let q = visibilities_filtered(filters).select(ServicePlanVisibility::as_select());
    let rows = crate::order_page!(q, page, v::id, v::guid).load(conn)?;
    Ok(Loaded { total, rows })
}

pub fn delete_visibility(conn: &mut DbConnection, guid: &str) -> QueryResult<usize> {
    diesel::delete(v::service_plan_visibilities.filter(v::guid.eq(guid))).execute(conn)
}
