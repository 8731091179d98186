//! Registry access secrets (Code Engine, seed 002).

use diesel::prelude::*;
use diesel::QueryResult;

use super::{optional, DbConnection, Filter, Loaded, PageRequest};
use crate::db::models::RegistrySecret;
use crate::db::schema::registry_secrets::dsl as r;

pub const FILTERS: &[&str] = &["name", "server"];

pub fn insert(conn: &mut DbConnection, secret: &RegistrySecret) -> QueryResult<()> {
    diesel::insert_into(r::registry_secrets)
        .values(secret)
        .execute(conn)
        .map(|_| ())
}

pub fn find(conn: &mut DbConnection, guid: &str) -> QueryResult<Option<RegistrySecret>> {
    optional(
        r::registry_secrets
            .filter(r::guid.eq(guid))
            .select(RegistrySecret::as_select())
            .first(conn),
    )
}

pub fn find_by_name(
    conn: &mut DbConnection,
    space: &str,
    name: &str,
) -> QueryResult<Option<RegistrySecret>> {
    optional(
        r::registry_secrets
            .filter(r::space_guid.eq(space))
            .filter(r::name.eq(name))
            .select(RegistrySecret::as_select())
            .first(conn),
    )
}

pub fn list(
    conn: &mut DbConnection,
    filters: &[Filter],
    space: &str,
    page: &PageRequest,
) -> QueryResult<Loaded<RegistrySecret>> {
    let build = || {
        let mut q = r::registry_secrets
            .filter(r::space_guid.eq(space.to_string()))
            .into_boxed();
        for f in filters {
            q = match f.key.as_str() {
                "name" => crate::filter_text!(q, r::name, f),
                "server" => crate::filter_text!(q, r::server, f),
                _ => q,
            };
        }
        q
    };
    let total = build().count().get_result(conn)?;
    let q = build().select(RegistrySecret::as_select());
    let rows = crate::order_page!(q, page, r::id, r::name).load(conn)?;
    Ok(Loaded { total, rows })
}

pub fn update(conn: &mut DbConnection, s: &RegistrySecret) -> QueryResult<usize> {
    diesel::update(r::registry_secrets.filter(r::guid.eq(&s.guid)))
        .set((
            r::server.eq(&s.server),
            r::username.eq(&s.username),
            r::password.eq(&s.password),
            r::email.eq(&s.email),
            r::updated_at.eq(crate::db::now()),
        ))
        .execute(conn)
}

pub fn delete(conn: &mut DbConnection, guid: &str) -> QueryResult<usize> {
    diesel::delete(r::registry_secrets.filter(r::guid.eq(guid))).execute(conn)
}

pub fn count_in_space(conn: &mut DbConnection, space: &str) -> QueryResult<i64> {
    r::registry_secrets
        .filter(r::space_guid.eq(space))
        .count()
        .get_result(conn)
}
