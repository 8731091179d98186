//! The marketplace: the services a space's users may provision (CC's
//! `Service.space_or_org_visible_for_user`), and the plans (and their services) a caller may
//! list (CC's `ServicePlan.user_visibility_list_filter`).

use diesel::prelude::*;
use diesel::QueryResult;

use super::{DbConnection, Filter, Loaded, PageRequest};
use crate::db::models::{Service, ServicePlan};
use crate::db::schema::service_brokers::dsl as b;
use crate::db::schema::service_plan_visibilities::dsl as v;
use crate::db::schema::service_plans::dsl as p;
use crate::db::schema::services::dsl as s;

/// Guids of the services visible in `space` of `org`: those with an active plan that is public
/// or made visible to the org (from a broker of the whole platform), and, when `member` (the
/// caller belongs to the space or reads everything), every service of a broker scoped to the
/// space.
pub fn visible_service_guids(
    conn: &mut DbConnection,
    space: &str,
    org: &str,
    member: bool,
) -> QueryResult<Vec<String>> {
    let mut guids: Vec<String> = platform_plans_visible_to(conn, &[org.to_string()])?
        .into_iter()
        .map(|(_, service)| service)
        .collect();
    if member {
        guids.extend(services_of_space_brokers(conn, &[space.to_string()])?);
    }
    guids.sort();
    guids.dedup();
    Ok(guids)
}

/// `(plan guid, service guid)` of the active plans from brokers of the whole platform that are
/// public or made visible to one of `orgs`.
fn platform_plans_visible_to(
    conn: &mut DbConnection,
    orgs: &[String],
) -> QueryResult<Vec<(String, String)>> {
    let org_plans: Vec<String> = v::service_plan_visibilities
        .filter(v::organization_guid.eq_any(orgs))
        .select(v::service_plan_guid)
        .load(conn)?;
    let platform_brokers: Vec<String> = b::service_brokers
        .filter(b::space_guid.is_null())
        .select(b::guid)
        .load(conn)?;
    let platform_services: Vec<String> = s::services
        .filter(s::service_broker_guid.eq_any(&platform_brokers))
        .select(s::guid)
        .load(conn)?;
    p::service_plans
        .filter(p::active.eq(true))
        .filter(p::service_guid.eq_any(&platform_services))
        .filter(p::public.eq(true).or(p::guid.eq_any(&org_plans)))
        .select((p::guid, p::service_guid))
        .load(conn)
}

/// Guids of the services of the brokers scoped to one of `spaces`.
fn services_of_space_brokers(
    conn: &mut DbConnection,
    spaces: &[String],
) -> QueryResult<Vec<String>> {
    let space_brokers: Vec<String> = b::service_brokers
        .filter(b::space_guid.eq_any(spaces))
        .select(b::guid)
        .load(conn)?;
    s::services
        .filter(s::service_broker_guid.eq_any(&space_brokers))
        .select(s::guid)
        .load(conn)
}

/// A page of the services among `guids`, with the `/v2/services` filters.
pub fn list_services_among(
    conn: &mut DbConnection,
    filters: &[Filter],
    guids: &[String],
    page: &PageRequest,
) -> QueryResult<Loaded<Service>> {
    let total = super::brokers::services_filtered(filters)
        .filter(s::guid.eq_any(guids))
        .count()
        .get_result(conn)?;
    let q = super::brokers::services_filtered(filters)
        .filter(s::guid.eq_any(guids))
        .select(Service::as_select());
    let rows = crate::order_page!(q, page, s::id, s::label).load(conn)?;
    Ok(Loaded { total, rows })
}

/// Guids of the plans a caller may list (CC's `ServicePlan.user_visibility_list_filter`): the
/// active plans that are public or made visible to one of `orgs` (from a broker of the whole
/// platform), and the active plans of brokers scoped to one of `spaces`. A caller without a
/// token has neither orgs nor spaces: the public active plans, CC's anonymous marketplace.
pub fn listable_plan_guids(
    conn: &mut DbConnection,
    orgs: &[String],
    spaces: &[String],
) -> QueryResult<Vec<String>> {
    let mut guids: Vec<String> = platform_plans_visible_to(conn, orgs)?
        .into_iter()
        .map(|(plan, _)| plan)
        .collect();
    if !spaces.is_empty() {
        let scoped_services = services_of_space_brokers(conn, spaces)?;
        let scoped: Vec<String> = p::service_plans
            .filter(p::active.eq(true))
            .filter(p::service_guid.eq_any(&scoped_services))
            .select(p::guid)
            .load(conn)?;
        guids.extend(scoped);
    }
    guids.sort();
    guids.dedup();
    Ok(guids)
}

/// Guids of the services that offer one of `plans` (CC: a service is listed when one of its
/// plans is).
pub fn services_of_plans(conn: &mut DbConnection, plans: &[String]) -> QueryResult<Vec<String>> {
    p::service_plans
        .filter(p::guid.eq_any(plans))
        .select(p::service_guid)
        .distinct()
        .load(conn)
}

/// A page of the plans among `guids`, with the `/v2/service_plans` filters (and only those of
/// `service`, for `/v2/services/:guid/service_plans`).
pub fn list_plans_among(
    conn: &mut DbConnection,
    filters: &[Filter],
    service: Option<&str>,
    guids: &[String],
    page: &PageRequest,
) -> QueryResult<Loaded<ServicePlan>> {
    let total = super::brokers::plans_filtered(filters, service)
        .filter(p::guid.eq_any(guids))
        .count()
        .get_result(conn)?;
    let q = super::brokers::plans_filtered(filters, service)
        .filter(p::guid.eq_any(guids))
        .select(ServicePlan::as_select());
    let rows = crate::order_page!(q, page, p::id, p::name).load(conn)?;
    Ok(Loaded { total, rows })
}
