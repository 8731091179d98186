//! Service keys.

use diesel::prelude::*;
use diesel::QueryResult;

use super::{optional, DbConnection, Filter, Loaded, PageRequest};
use crate::db::models::ServiceKey;
use crate::db::schema::service_instances;
use crate::db::schema::service_keys::dsl as k;

pub const FILTERS: &[&str] = &["name", "service_instance_guid"];

pub fn insert(conn: &mut DbConnection, key: &ServiceKey) -> QueryResult<()> {
    diesel::insert_into(k::service_keys)
        .values(key)
        .execute(conn)
        .map(|_| ())
}

pub fn find(conn: &mut DbConnection, guid: &str) -> QueryResult<Option<ServiceKey>> {
    optional(
        k::service_keys
            .filter(k::guid.eq(guid))
            .select(ServiceKey::as_select())
            .first(conn),
    )
}

/// The keys of the instances of `space` that no binding of `app` uses, oldest first.
pub fn unused_by_app(
    conn: &mut DbConnection,
    app: &str,
    space: &str,
) -> QueryResult<Vec<ServiceKey>> {
    use crate::db::schema::service_bindings::dsl as b;
    let used = b::service_bindings
        .filter(b::app_guid.eq(app))
        .filter(b::service_key_guid.is_not_null())
        .select(b::service_key_guid.assume_not_null());
    let in_space = service_instances::table
        .filter(service_instances::space_guid.eq(space))
        .select(service_instances::guid);
    k::service_keys
        .filter(k::service_instance_guid.eq_any(in_space))
        .filter(k::guid.ne_all(used))
        .order(k::id.asc())
        .select(ServiceKey::as_select())
        .load(conn)
}

pub fn find_by_name(
    conn: &mut DbConnection,
    instance: &str,
    name: &str,
) -> QueryResult<Option<ServiceKey>> {
    optional(
        k::service_keys
            .filter(k::service_instance_guid.eq(instance))
            .filter(k::name.eq(name))
            .select(ServiceKey::as_select())
            .first(conn),
    )
}

/// A key with the space of its instance (for authorization and redaction).
pub fn find_with_space(
    conn: &mut DbConnection,
    guid: &str,
) -> QueryResult<Option<(ServiceKey, String)>> {
    optional(
        k::service_keys
            .inner_join(
                service_instances::table.on(service_instances::guid.eq(k::service_instance_guid)),
            )
            .filter(k::guid.eq(guid))
            .select((ServiceKey::as_select(), service_instances::space_guid))
            .first(conn),
    )
}

pub fn list(
    conn: &mut DbConnection,
    filters: &[Filter],
    instance: Option<&str>,
    visible_spaces: Option<&[String]>,
    page: &PageRequest,
) -> QueryResult<Loaded<(ServiceKey, String)>> {
    macro_rules! build {
        () => {{
            let mut q = k::service_keys
                .inner_join(
                    service_instances::table
                        .on(service_instances::guid.eq(k::service_instance_guid)),
                )
                .into_boxed();
            for f in filters {
                q = match f.key.as_str() {
                    "name" => crate::filter_text!(q, k::name, f),
                    "service_instance_guid" => crate::filter_text!(q, k::service_instance_guid, f),
                    _ => q,
                };
            }
            if let Some(i) = instance {
                q = q.filter(k::service_instance_guid.eq(i));
            }
            if let Some(v) = visible_spaces {
                q = q.filter(service_instances::space_guid.eq_any(v));
            }
            q
        }};
    }
    let total = build!().count().get_result(conn)?;
    let q = build!().select((ServiceKey::as_select(), service_instances::space_guid));
    let q = if page.descending {
        q.order(k::id.desc())
    } else {
        q.order(k::id.asc())
    };
    let rows = q.limit(page.per_page).offset(page.offset()).load(conn)?;
    Ok(Loaded { total, rows })
}

pub fn count_for_instance(conn: &mut DbConnection, instance: &str) -> QueryResult<i64> {
    k::service_keys
        .filter(k::service_instance_guid.eq(instance))
        .count()
        .get_result(conn)
}

pub fn set_credentials(
    conn: &mut DbConnection,
    guid: &str,
    credentials: &str,
) -> QueryResult<usize> {
    diesel::update(k::service_keys.filter(k::guid.eq(guid)))
        .set((
            k::credentials.eq(credentials),
            k::updated_at.eq(crate::db::now()),
        ))
        .execute(conn)
}

pub fn delete(conn: &mut DbConnection, guid: &str) -> QueryResult<usize> {
    diesel::delete(k::service_keys.filter(k::guid.eq(guid))).execute(conn)
}
