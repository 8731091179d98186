use diesel::prelude::*;
use diesel::QueryResult;

use super::{optional, Backend, DbConnection, Filter, Loaded, PageRequest};
use crate::db::models::Organization;
use crate::db::schema::organizations::dsl as o;

pub fn insert(conn: &mut DbConnection, org: &Organization) -> QueryResult<()> {
    diesel::insert_into(o::organizations)
        .values(org)
        .execute(conn)
        .map(|_| ())
}

pub fn find(conn: &mut DbConnection, guid: &str) -> QueryResult<Option<Organization>> {
    optional(
        o::organizations
            .filter(o::guid.eq(guid))
            .select(Organization::as_select())
            .first(conn),
    )
}

pub fn find_by_name(conn: &mut DbConnection, name: &str) -> QueryResult<Option<Organization>> {
    optional(
        o::organizations
            .filter(o::name.eq(name))
            .select(Organization::as_select())
            .first(conn),
    )
}

fn filtered<'a>(
    filters: &[Filter],
    visible: Option<&'a [String]>,
) -> crate::db::schema::organizations::BoxedQuery<'a, Backend> {
    let mut q = o::organizations.into_boxed();
    for f in filters {
        q = match f.key.as_str() {
            "name" => crate::filter_name!(q, o::name, f),
            "status" => crate::filter_text!(q, o::status, f),
            "guid" => crate::filter_text!(q, o::guid, f),
            _ => q,
        };
    }
    if let Some(v) = visible {
        q = q.filter(o::guid.eq_any(v));
    }
    q
}

pub const FILTERS: &[&str] = &["name", "status", "guid"];

pub fn list(
    conn: &mut DbConnection,
    filters: &[Filter],
    visible: Option<&[String]>,
    page: &PageRequest,
) -> QueryResult<Loaded<Organization>> {
    let total = filtered(filters, visible).count().get_result(conn)?;
    let q = filtered(filters, visible).select(Organization::as_select());
    let rows = crate::order_page!(q, page, o::id, o::name).load(conn)?;
    Ok(Loaded { total, rows })
}

pub fn rename(conn: &mut DbConnection, guid: &str, name: &str) -> QueryResult<usize> {
    diesel::update(o::organizations.filter(o::guid.eq(guid)))
        .set((o::name.eq(name), o::updated_at.eq(crate::db::now())))
        .execute(conn)
}

pub fn delete(conn: &mut DbConnection, guid: &str) -> QueryResult<usize> {
    diesel::delete(o::organizations.filter(o::guid.eq(guid))).execute(conn)
}

pub fn set_status(conn: &mut DbConnection, guid: &str, status: &str) -> QueryResult<usize> {
    diesel::update(o::organizations.filter(o::guid.eq(guid)))
        .set((o::status.eq(status), o::updated_at.eq(crate::db::now())))
        .execute(conn)
}

/// The status of the org a space is in (`None`: no such space).
pub fn status_of_space(conn: &mut DbConnection, space: &str) -> QueryResult<Option<String>> {
    use crate::db::schema::spaces;
    optional(
        o::organizations
            .inner_join(spaces::table.on(spaces::organization_guid.eq(o::guid)))
            .filter(spaces::guid.eq(space))
            .select(o::status)
            .first(conn),
    )
}
