//! Service instances, managed and user-provided (one table, `is_user_provided` tells them apart).

use diesel::prelude::*;
use diesel::QueryResult;

use super::{optional, Backend, DbConnection, Filter, Loaded, PageRequest};
use crate::db::models::{Service, ServiceBroker, ServiceInstance, ServicePlan};
use crate::db::schema::service_instances::dsl as i;
use crate::db::schema::{service_bindings, service_plans, services, spaces};
use crate::operation::LastOperation;

pub fn insert(conn: &mut DbConnection, instance: &ServiceInstance) -> QueryResult<()> {
    diesel::insert_into(i::service_instances)
        .values(instance)
        .execute(conn)
        .map(|_| ())
}

pub fn find(conn: &mut DbConnection, guid: &str) -> QueryResult<Option<ServiceInstance>> {
    optional(crate::db::native!(conn, |c| i::service_instances
        .filter(i::guid.eq(guid))
        .select(ServiceInstance::as_select())
        .first(c)))
}

/// The instances among `guids` that exist (one query).
pub fn find_many(conn: &mut DbConnection, guids: &[String]) -> QueryResult<Vec<ServiceInstance>> {
    crate::db::native!(conn, |c| i::service_instances
        .filter(i::guid.eq_any(guids))
        .select(ServiceInstance::as_select())
        .load(c))
}

/// An instance and, for managed ones, its plan, service and broker.
pub type InstanceWithCatalog = (
    ServiceInstance,
    Option<(ServicePlan, Service, ServiceBroker)>,
);

/// One query: the instance left-joined to its plan, service and broker (a create's read path
/// asks for all four; one round trip instead of two on PostgreSQL).
pub fn find_with_catalog(
    conn: &mut DbConnection,
    guid: &str,
) -> QueryResult<Option<InstanceWithCatalog>> {
    use crate::db::schema::service_brokers;
    type Row = (
        ServiceInstance,
        Option<ServicePlan>,
        Option<Service>,
        Option<ServiceBroker>,
    );
    let found: Option<Row> = optional(crate::db::native!(conn, |c| i::service_instances
        .left_join(service_plans::table.on(i::service_plan_guid.eq(service_plans::guid.nullable())))
        .left_join(services::table.on(services::guid.eq(service_plans::service_guid)))
        .left_join(
            service_brokers::table.on(service_brokers::guid.eq(services::service_broker_guid))
        )
        .filter(i::guid.eq(guid))
        .select((
            ServiceInstance::as_select(),
            Option::<ServicePlan>::as_select(),
            Option::<Service>::as_select(),
            Option::<ServiceBroker>::as_select(),
        ))
        .first(c)))?;
    Ok(found.map(|(instance, plan, service, broker)| {
        let catalog = match (plan, service, broker) {
            (Some(p), Some(s), Some(b)) => Some((p, s, b)),
            _ => None,
        };
        (instance, catalog)
    }))
}

pub const FILTERS: &[&str] = &[
    "name",
    "space_guid",
    "service_plan_guid",
    "service_binding_guid",
    "gateway_name",
    "organization_guid",
    "service_key_guid",
    "guid",
];

pub const UPSI_FILTERS: &[&str] = &["name", "space_guid", "organization_guid", "guid"];

/// Which kinds of instance a list shows.
#[derive(Debug, Clone, Copy)]
pub enum Kind {
    Managed,
    UserProvided,
    Both,
}

impl Kind {
    pub fn includes(self, instance: &ServiceInstance) -> bool {
        match self {
            Kind::UserProvided => instance.is_user_provided,
            Kind::Managed => !instance.is_user_provided,
            Kind::Both => true,
        }
    }
}

fn filtered<'a>(
    filters: &[Filter],
    kind: Kind,
    scope_space: Option<&'a str>,
    visible: Option<&'a [String]>,
) -> crate::db::schema::service_instances::BoxedQuery<'a, Backend> {
    let mut q = i::service_instances.into_boxed();
    q = match kind {
        Kind::Managed => q.filter(i::is_user_provided.eq(false)),
        Kind::UserProvided => q.filter(i::is_user_provided.eq(true)),
        Kind::Both => q,
    };
    for f in filters {
        q = match f.key.as_str() {
            "name" => crate::filter_text!(q, i::name, f),
            "guid" => crate::filter_text!(q, i::guid, f),
            "space_guid" => crate::filter_text!(q, i::space_guid, f),
            "service_plan_guid" => crate::filter_text!(q, i::service_plan_guid, f),
            "organization_guid" => crate::filter_via!(
                q,
                i::space_guid,
                spaces::table.select(spaces::guid),
                spaces::organization_guid,
                f
            ),
            "service_binding_guid" => crate::filter_via!(
                q,
                i::guid,
                service_bindings::table.select(service_bindings::service_instance_guid),
                service_bindings::guid,
                f
            ),
            // Old v1 field: no instance has a gateway name.
            "gateway_name" => q.filter(i::guid.ne(i::guid)),
            _ => q,
        };
    }
    if let Some(space) = scope_space {
        q = q.filter(i::space_guid.eq(space));
    }
    if let Some(v) = visible {
        q = q.filter(i::space_guid.eq_any(v));
    }
    q
}

pub fn list(
    conn: &mut DbConnection,
    filters: &[Filter],
    kind: Kind,
    scope_space: Option<&str>,
    visible: Option<&[String]>,
    page: &PageRequest,
) -> QueryResult<Loaded<ServiceInstance>> {
    let total = filtered(filters, kind, scope_space, visible)
        .count()
        .get_result(conn)?;
    let q = filtered(filters, kind, scope_space, visible).select(ServiceInstance::as_select());
    let rows = crate::order_page!(q, page, i::id, i::name).load(conn)?;
    Ok(Loaded { total, rows })
}

/// Plan guid → (plan, service) for rendering a page of instances.
pub fn plans_and_services(
    conn: &mut DbConnection,
    plan_guids: &[String],
) -> QueryResult<Vec<(ServicePlan, Service)>> {
    service_plans::table
        .inner_join(services::table.on(services::guid.eq(service_plans::service_guid)))
        .filter(service_plans::guid.eq_any(plan_guids))
        .select((ServicePlan::as_select(), Service::as_select()))
        .load(conn)
}

pub fn set_operation(
    conn: &mut DbConnection,
    guid: &str,
    op: LastOperation,
    description: Option<&str>,
    broker_operation: Option<&str>,
) -> QueryResult<usize> {
    let now = crate::db::now();
    diesel::update(i::service_instances.filter(i::guid.eq(guid)))
        .set((
            i::last_operation_type.eq(op.op_type.as_str()),
            i::last_operation_state.eq(op.state.as_str()),
            i::last_operation_description.eq(description),
            i::broker_operation.eq(broker_operation),
            i::last_operation_updated_at.eq(now),
            i::updated_at.eq(now),
        ))
        .execute(conn)
}

/// Starts an operation (an update or a delete) unless one is running. Returns rows changed (0:
/// busy or gone).
pub fn claim_for(
    conn: &mut DbConnection,
    guid: &str,
    operation: crate::operation::OperationType,
) -> QueryResult<usize> {
    use crate::operation::OperationState;
    let now = crate::db::now();
    diesel::update(
        i::service_instances.filter(i::guid.eq(guid)).filter(
            i::last_operation_state
                .ne(OperationState::InProgress.as_str())
                .or(i::last_operation_state.is_null()),
        ),
    )
    .set((
        i::last_operation_type.eq(operation.as_str()),
        i::last_operation_state.eq(OperationState::InProgress.as_str()),
        i::last_operation_description.eq(None::<String>),
        i::broker_operation.eq(None::<String>),
        i::last_operation_updated_at.eq(now),
        i::updated_at.eq(now),
    ))
    .execute(conn)
}

/// Instances whose operation has been `in progress` since before `cutoff` (at most `limit`).
pub fn stale_in_progress(
    conn: &mut DbConnection,
    cutoff: chrono::NaiveDateTime,
    limit: i64,
) -> QueryResult<Vec<ServiceInstance>> {
    i::service_instances
        .filter(i::last_operation_state.eq(crate::operation::OperationState::InProgress.as_str()))
        .filter(i::last_operation_updated_at.lt(cutoff))
        .select(ServiceInstance::as_select())
        .limit(limit)
        .load(conn)
}

/// Updates only the description of the running operation (polling progress).
pub fn set_operation_description(
    conn: &mut DbConnection,
    guid: &str,
    description: Option<&str>,
) -> QueryResult<usize> {
    let now = crate::db::now();
    diesel::update(i::service_instances.filter(i::guid.eq(guid)))
        .set((
            i::last_operation_description.eq(description),
            i::last_operation_updated_at.eq(now),
        ))
        .execute(conn)
}

pub fn set_dashboard_url(
    conn: &mut DbConnection,
    guid: &str,
    url: Option<&str>,
) -> QueryResult<usize> {
    diesel::update(i::service_instances.filter(i::guid.eq(guid)))
        .set(i::dashboard_url.eq(url))
        .execute(conn)
}

/// Updates the user-editable fields (name, credentials, drains, tags, plan).
pub fn update_fields(conn: &mut DbConnection, si: &ServiceInstance) -> QueryResult<usize> {
    diesel::update(i::service_instances.filter(i::guid.eq(&si.guid)))
        .set((
            i::name.eq(&si.name),
            i::credentials.eq(&si.credentials),
            i::syslog_drain_url.eq(&si.syslog_drain_url),
            i::route_service_url.eq(&si.route_service_url),
            i::tags.eq(&si.tags),
            i::service_plan_guid.eq(&si.service_plan_guid),
            i::updated_at.eq(crate::db::now()),
        ))
        .execute(conn)
}

pub fn count_in_space(conn: &mut DbConnection, space: &str) -> QueryResult<i64> {
    i::service_instances
        .filter(i::space_guid.eq(space))
        .count()
        .get_result(conn)
}

pub fn delete(conn: &mut DbConnection, guid: &str) -> QueryResult<usize> {
    diesel::delete(i::service_instances.filter(i::guid.eq(guid))).execute(conn)
}

/// The guids of an instance's bindings and of its service keys.
pub fn associations(
    conn: &mut DbConnection,
    guid: &str,
) -> QueryResult<(Vec<String>, Vec<String>)> {
    use crate::db::schema::service_keys;
    let bindings = service_bindings::table
        .filter(service_bindings::service_instance_guid.eq(guid))
        .order(service_bindings::id.asc())
        .select(service_bindings::guid)
        .load(conn)?;
    let keys = service_keys::table
        .filter(service_keys::service_instance_guid.eq(guid))
        .order(service_keys::id.asc())
        .select(service_keys::guid)
        .load(conn)?;
    Ok((bindings, keys))
}

/// Forgets an instance with its bindings and keys (no broker is told: CC's purge).
pub fn purge(conn: &mut DbConnection, guid: &str) -> QueryResult<usize> {
    use crate::db::schema::service_keys;
    diesel::delete(
        service_bindings::table.filter(service_bindings::service_instance_guid.eq(guid)),
    )
    .execute(conn)?;
    diesel::delete(service_keys::table.filter(service_keys::service_instance_guid.eq(guid)))
        .execute(conn)?;
    delete(conn, guid)
}

/// Moves an instance to another plan (an update the broker made).
pub fn set_plan(conn: &mut DbConnection, guid: &str, plan: &str) -> QueryResult<usize> {
    diesel::update(i::service_instances.filter(i::guid.eq(guid)))
        .set((
            i::service_plan_guid.eq(plan),
            i::updated_at.eq(crate::db::now()),
        ))
        .execute(conn)
}
