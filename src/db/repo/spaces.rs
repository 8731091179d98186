use diesel::prelude::*;
use diesel::QueryResult;

use super::{optional, Backend, DbConnection, Filter, Loaded, PageRequest};
use crate::db::models::{Organization, Space};
use crate::db::schema::organizations;
use crate::db::schema::spaces::dsl as s;

pub fn insert(conn: &mut DbConnection, space: &Space) -> QueryResult<()> {
    diesel::insert_into(s::spaces)
        .values(space)
        .execute(conn)
        .map(|_| ())
}

pub fn find(conn: &mut DbConnection, guid: &str) -> QueryResult<Option<Space>> {
    optional(
        s::spaces
            .filter(s::guid.eq(guid))
            .select(Space::as_select())
            .first(conn),
    )
}

/// The spaces among `guids` that exist (one query).
pub fn find_many(conn: &mut DbConnection, guids: &[String]) -> QueryResult<Vec<Space>> {
    crate::db::native!(conn, |c| s::spaces
        .filter(s::guid.eq_any(guids))
        .select(Space::as_select())
        .load(c))
}

/// The space and its organization.
pub fn find_with_org(
    conn: &mut DbConnection,
    guid: &str,
) -> QueryResult<Option<(Space, Organization)>> {
    optional(crate::db::native!(conn, |c| s::spaces
        .inner_join(organizations::table.on(organizations::guid.eq(s::organization_guid)))
        .filter(s::guid.eq(guid))
        .select((Space::as_select(), Organization::as_select()))
        .first(c)))
}

pub const FILTERS: &[&str] = &["name", "organization_guid", "guid"];

fn filtered<'a>(
    filters: &[Filter],
    scope_org: Option<&'a str>,
    visible: Option<&'a [String]>,
) -> crate::db::schema::spaces::BoxedQuery<'a, Backend> {
    let mut q = s::spaces.into_boxed();
    for f in filters {
        q = match f.key.as_str() {
            "name" => crate::filter_name!(q, s::name, f),
            "organization_guid" => crate::filter_text!(q, s::organization_guid, f),
            "guid" => crate::filter_text!(q, s::guid, f),
            _ => q,
        };
    }
    if let Some(org) = scope_org {
        q = q.filter(s::organization_guid.eq(org));
    }
    if let Some(v) = visible {
        q = q.filter(s::guid.eq_any(v));
    }
    q
}

pub fn list(
    conn: &mut DbConnection,
    filters: &[Filter],
    scope_org: Option<&str>,
    visible: Option<&[String]>,
    page: &PageRequest,
) -> QueryResult<Loaded<Space>> {
    let total = filtered(filters, scope_org, visible)
        .count()
        .get_result(conn)?;
    let q = filtered(filters, scope_org, visible).select(Space::as_select());
    let rows = crate::order_page!(q, page, s::id, s::name).load(conn)?;
    Ok(Loaded { total, rows })
}

pub fn rename(conn: &mut DbConnection, guid: &str, name: &str) -> QueryResult<usize> {
    diesel::update(s::spaces.filter(s::guid.eq(guid)))
        .set((s::name.eq(name), s::updated_at.eq(crate::db::now())))
        .execute(conn)
}

pub fn count_in_org(conn: &mut DbConnection, org: &str) -> QueryResult<i64> {
    s::spaces
        .filter(s::organization_guid.eq(org))
        .count()
        .get_result(conn)
}

pub fn delete(conn: &mut DbConnection, guid: &str) -> QueryResult<usize> {
    diesel::delete(s::spaces.filter(s::guid.eq(guid))).execute(conn)
}
