use diesel::prelude::*;
use diesel::QueryResult;

use super::{optional, Backend, DbConnection, Filter, Loaded, PageRequest};
use crate::db::models::{App, Organization, Space};
use crate::db::schema::apps::dsl as a;
use crate::db::schema::spaces;

pub fn insert(conn: &mut DbConnection, app: &App) -> QueryResult<()> {
    diesel::insert_into(a::apps)
        .values(app)
        .execute(conn)
        .map(|_| ())
}

pub fn find(conn: &mut DbConnection, guid: &str) -> QueryResult<Option<App>> {
    optional(crate::db::native!(conn, |c| a::apps
        .filter(a::guid.eq(guid))
        .select(App::as_select())
        .first(c)))
}

/// One query: the app with its space and the space's org (a create's read path).
pub fn find_with_space_and_org(
    conn: &mut DbConnection,
    guid: &str,
) -> QueryResult<Option<(App, Space, Organization)>> {
    use crate::db::schema::organizations;
    optional(crate::db::native!(conn, |c| a::apps
        .inner_join(spaces::table.on(spaces::guid.eq(a::space_guid)))
        .inner_join(organizations::table.on(organizations::guid.eq(spaces::organization_guid)))
        .filter(a::guid.eq(guid))
        .select((
            App::as_select(),
            Space::as_select(),
            Organization::as_select(),
        ))
        .first(c)))
}

/// The apps among `guids` that exist (one query, for a page's embedded relations).
pub fn find_many(conn: &mut DbConnection, guids: &[String]) -> QueryResult<Vec<App>> {
    crate::db::native!(conn, |c| a::apps
        .filter(a::guid.eq_any(guids))
        .select(App::as_select())
        .load(c))
}

pub fn find_by_name(conn: &mut DbConnection, space: &str, name: &str) -> QueryResult<Option<App>> {
    optional(
        a::apps
            .filter(a::space_guid.eq(space))
            .filter(a::name.eq(name))
            .select(App::as_select())
            .first(conn),
    )
}

pub const FILTERS: &[&str] = &["name", "space_guid", "organization_guid", "guid", "state"];

fn filtered<'a>(
    filters: &[Filter],
    scope_space: Option<&'a str>,
    visible: Option<&'a [String]>,
) -> crate::db::schema::apps::BoxedQuery<'a, Backend> {
    let mut q = a::apps.into_boxed();
    for f in filters {
        q = match f.key.as_str() {
            "name" => crate::filter_text!(q, a::name, f),
            "space_guid" => crate::filter_text!(q, a::space_guid, f),
            "guid" => crate::filter_text!(q, a::guid, f),
            "state" => crate::filter_text!(q, a::state, f),
            "organization_guid" => crate::filter_via!(
                q,
                a::space_guid,
                spaces::table.select(spaces::guid),
                spaces::organization_guid,
                f
            ),
            _ => q,
        };
    }
    if let Some(space) = scope_space {
        q = q.filter(a::space_guid.eq(space));
    }
    if let Some(v) = visible {
        q = q.filter(a::space_guid.eq_any(v));
    }
    q
}

pub fn list(
    conn: &mut DbConnection,
    filters: &[Filter],
    scope_space: Option<&str>,
    visible: Option<&[String]>,
    page: &PageRequest,
) -> QueryResult<Loaded<App>> {
    let total = filtered(filters, scope_space, visible)
        .count()
        .get_result(conn)?;
    let q = filtered(filters, scope_space, visible).select(App::as_select());
    let rows = crate::order_page!(q, page, a::id, a::name).load(conn)?;
    Ok(Loaded { total, rows })
}

pub fn update(conn: &mut DbConnection, app: &App) -> QueryResult<usize> {
    diesel::update(a::apps.filter(a::guid.eq(&app.guid)))
        .set((
            a::name.eq(&app.name),
            a::state.eq(&app.state),
            a::memory.eq(app.memory),
            a::instances.eq(app.instances),
            a::disk_quota.eq(app.disk_quota),
            a::environment_json.eq(&app.environment_json),
            a::updated_at.eq(crate::db::now()),
        ))
        .execute(conn)
}

pub fn count_in_space(conn: &mut DbConnection, space: &str) -> QueryResult<i64> {
    a::apps
        .filter(a::space_guid.eq(space))
        .count()
        .get_result(conn)
}

pub fn delete(conn: &mut DbConnection, guid: &str) -> QueryResult<usize> {
    diesel::delete(a::apps.filter(a::guid.eq(guid))).execute(conn)
}
