//! Reserving a new binding's row: the unique indexes settle races between parallel creates
//! (same app and instance, same name, same env-var prefix) before anyone calls a broker, and
//! their violations become the client's errors.

use super::create::BindPlan;
use super::ALREADY_BOUND;
use crate::app::AppState;
use crate::db::models::ServiceBinding;
use crate::db::repo;
use crate::db::DbConnection;
use crate::error::{ApiError, ApiResult};
use crate::service::{code_engine, on_unique};

/// Inserts the reserved row (the unique indexes decide races); returns its env-var prefix.
pub(super) async fn reserve(
    state: &AppState,
    row: &ServiceBinding,
    plan: &BindPlan,
    instance_name: &str,
) -> ApiResult<String> {
    let prefixes = Prefixes::for_row(row, plan, instance_name);
    let insert = row.clone();
    let name = plan.name.clone();
    state
        .db
        .write(move |conn| insert_reserved(conn, insert, &prefixes, name.as_deref()))
        .await
}

/// How to choose a binding's env-var prefix at insert time.
#[derive(Clone)]
pub(super) struct Prefixes {
    explicit: Option<String>,
    candidates: Vec<String>,
}

impl Prefixes {
    pub(super) fn for_row(row: &ServiceBinding, plan: &BindPlan, instance_name: &str) -> Self {
        Prefixes {
            explicit: plan.prefix.clone(),
            candidates: code_engine::derived_prefixes(&plan.label, instance_name, &row.guid),
        }
    }
}

/// Inserts a new binding row, choosing its prefix among the app's free ones. Returns the prefix.
///
/// A prefix the client chose can be "taken". A derived one never fails a create: a parallel
/// create of the same app may take the candidate between the probe and the insert, and then the
/// next candidate is tried (each insert in a savepoint, so that a refused one leaves the
/// transaction usable on PostgreSQL).
pub(super) fn insert_reserved(
    conn: &mut DbConnection,
    mut row: ServiceBinding,
    prefixes: &Prefixes,
    name: Option<&str>,
) -> ApiResult<String> {
    if let Some(p) = &prefixes.explicit {
        row.prefix = Some(p.clone());
        insert_row(conn, &row, name)?;
        return Ok(p.clone());
    }
    let fallback = format!("B_{}", row.guid.replace('-', "").to_ascii_uppercase());
    // The first candidate the app does not use yet (one index probe for all of them), inserted
    // in one statement. Probing first: a refused `INSERT … ON CONFLICT DO NOTHING` is not cheap
    // on PostgreSQL (the heap tuple is written, then killed), and apps bound to several
    // instances of one service have their first candidate taken. Refused anyway (the app and
    // instance, or the name, taken; or a parallel create), the careful loop below finds out
    // which rule refused it.
    if !prefixes.candidates.is_empty() {
        let taken = repo::bindings::taken_prefixes(conn, &row.app_guid, &prefixes.candidates)?;
        if let Some(free) = prefixes.candidates.iter().find(|c| !taken.contains(c)) {
            row.prefix = Some(free.clone());
            if repo::bindings::insert_unless_taken(conn, &row)? {
                return Ok(free.clone());
            }
        }
    }
    for candidate in prefixes.candidates.iter().chain(std::iter::once(&fallback)) {
        if repo::bindings::prefix_taken(conn, &row.app_guid, candidate)? {
            continue;
        }
        row.prefix = Some(candidate.clone());
        match crate::db::savepoint(conn, |c| insert_row(c, &row, name)) {
            Err(ApiError::ServiceBindingInvalid(_)) => continue, // taken meanwhile
            other => return other.map(|()| candidate.clone()),
        }
    }
    // The fallback holds this binding's own guid: no other binding can have taken it.
    Err(ApiError::internal(
        "no free env-var prefix, not even the binding's own",
    ))
}

/// Inserts the row, mapping unique-index violations to the client's errors.
fn insert_row(conn: &mut DbConnection, row: &ServiceBinding, name: Option<&str>) -> ApiResult<()> {
    let prefix = row.prefix.as_deref().unwrap_or_default();
    on_unique(repo::bindings::insert(conn, row), |v| {
        if v.is(
            "service_bindings_app_prefix_key",
            "service_bindings",
            &["app_guid", "prefix"],
        ) {
            return Some(prefix_taken(prefix));
        }
        unique_error(v, name)
    })
}

fn prefix_taken(prefix: &str) -> ApiError {
    ApiError::ServiceBindingInvalid(format!(
        "The prefix '{prefix}' is already used by another binding of this app; choose another prefix."
    ))
}

fn name_taken(name: &str) -> String {
    format!(
        "The binding name is invalid. App binding names must be unique. The app already has a binding with name '{name}'."
    )
}

fn unique_error(v: &crate::db::UniqueViolation, name: Option<&str>) -> Option<ApiError> {
    if v.is(
        "service_bindings_app_instance_key",
        "service_bindings",
        &["app_guid", "service_instance_guid"],
    ) {
        return Some(ApiError::ServiceBindingAppServiceTaken(
            ALREADY_BOUND.into(),
        ));
    }
    if v.is(
        "service_bindings_app_name_key",
        "service_bindings",
        &["app_guid", "name"],
    ) {
        return Some(ApiError::ServiceBindingAppServiceTaken(name_taken(
            name.unwrap_or_default(),
        )));
    }
    None
}

/// The error a binding of `app` to `instance` (named `name`) would meet on a unique index.
pub(super) fn duplicate_error(
    conn: &mut DbConnection,
    app: &str,
    instance: &str,
    name: Option<&str>,
) -> ApiResult<Option<ApiError>> {
    if repo::bindings::find_by_app_and_instance(conn, app, instance)?.is_some() {
        return Ok(Some(ApiError::ServiceBindingAppServiceTaken(
            ALREADY_BOUND.into(),
        )));
    }
    if let Some(name) = name {
        if repo::bindings::find_by_app_and_name(conn, app, name)?.is_some() {
            return Ok(Some(ApiError::ServiceBindingAppServiceTaken(name_taken(
                name,
            ))));
        }
    }
    Ok(None)
}
