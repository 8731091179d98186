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

/// What a reservation settled: the env-var prefix chosen, and the name (a generated default
/// name may have been drawn again).
pub(super) struct Reserved {
    pub prefix: String,
    pub name: Option<String>,
}

impl Reserved {
    /// Puts what was settled into the caller's copy of the row.
    pub(super) fn apply_to(self, row: &mut ServiceBinding) {
        row.prefix = Some(self.prefix);
        row.name = self.name;
    }
}

/// Inserts the reserved row (the unique indexes decide races).
pub(super) async fn reserve(
    state: &AppState,
    row: &ServiceBinding,
    plan: &BindPlan,
    instance_name: &str,
) -> ApiResult<Reserved> {
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

/// Inserts a new binding row, choosing its prefix among the app's free ones.
///
/// A prefix the client chose can be "taken". A derived one never fails a create: a parallel
/// create of the same app may take the candidate between the probe and the insert, and then the
/// next candidate is tried (each insert in a savepoint, so that a refused one leaves the
/// transaction usable on PostgreSQL). Nor does a generated default name: one the app already
/// has is drawn again.
pub(super) fn insert_reserved(
    conn: &mut DbConnection,
    mut row: ServiceBinding,
    prefixes: &Prefixes,
    name: Option<&str>,
) -> ApiResult<Reserved> {
    let reserved = |row: ServiceBinding, prefix: &str| Reserved {
        prefix: prefix.to_string(),
        name: row.name,
    };
    if let Some(p) = &prefixes.explicit {
        row.prefix = Some(p.clone());
        // Without an error on a refusal (PostgreSQL would abort the transaction), so that a
        // taken generated name can be drawn again; `insert_row` then names the rule.
        if !repo::bindings::insert_unless_taken(conn, &row)? {
            free_generated_name(conn, &mut row)?;
            insert_row(conn, &row, name)?;
        }
        return Ok(reserved(row, p));
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
                return Ok(reserved(row, free));
            }
        }
    }
    free_generated_name(conn, &mut row)?;
    for candidate in prefixes.candidates.iter().chain(std::iter::once(&fallback)) {
        if repo::bindings::prefix_taken(conn, &row.app_guid, candidate)? {
            continue;
        }
        row.prefix = Some(candidate.clone());
        match crate::db::savepoint(conn, |c| insert_row(c, &row, name)) {
            Err(ApiError::ServiceBindingInvalid(_)) => continue, // taken meanwhile
            Err(e) => return Err(e),
            Ok(()) => return Ok(reserved(row, candidate)),
        }
    }
    // The fallback holds this binding's own guid: no other binding can have taken it.
    Err(ApiError::internal(
        "no free env-var prefix, not even the binding's own",
    ))
}

/// Draws a generated default name again (Code Engine's `<app>-app-ce-service-binding-<5
/// random>`) while the app already has a binding of that name: 1 in 36^5 per binding of the
/// app, so an app with many bindings meets it now and then (the bench's apps did), and a
/// create without a name must not fail on it. Called only after an insert was refused, so a
/// create pays nothing for it otherwise.
fn free_generated_name(conn: &mut DbConnection, row: &mut ServiceBinding) -> ApiResult<()> {
    const DRAWS: usize = 8;
    if !row.name_generated {
        return Ok(());
    }
    for _ in 0..DRAWS {
        let Some(current) = row.name.as_deref() else {
            return Ok(());
        };
        if repo::bindings::find_by_app_and_name(conn, &row.app_guid, current)?.is_none() {
            return Ok(());
        }
        row.name = Some(code_engine::redraw_binding_name_suffix(current));
    }
    // Still taken after every draw: the insert reports it.
    Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::models::{App, Organization, ServiceInstance, Space};
    use crate::db::{now, Db, DbConfig};

    fn org_space_app_instance(conn: &mut DbConnection) -> ApiResult<()> {
        let t = now();
        repo::orgs::insert(
            conn,
            &Organization {
                id: 0,
                guid: "org".into(),
                name: "org".into(),
                status: "active".into(),
                created_at: t,
                updated_at: t,
            },
        )?;
        repo::spaces::insert(
            conn,
            &Space {
                id: 0,
                guid: "space".into(),
                name: "space".into(),
                organization_guid: "org".into(),
                created_at: t,
                updated_at: t,
            },
        )?;
        repo::apps::insert(
            conn,
            &App {
                id: 0,
                guid: "app".into(),
                name: "app".into(),
                space_guid: "space".into(),
                state: "STOPPED".into(),
                memory: 256,
                instances: 1,
                disk_quota: 1024,
                environment_json: "{}".into(),
                created_at: t,
                updated_at: t,
            },
        )?;
        for guid in ["ups-1", "ups-2"] {
            repo::instances::insert(
                conn,
                &ServiceInstance {
                    id: 0,
                    guid: guid.into(),
                    name: guid.into(),
                    space_guid: "space".into(),
                    is_user_provided: true,
                    service_plan_guid: None,
                    credentials: None,
                    syslog_drain_url: None,
                    route_service_url: None,
                    tags: "[]".into(),
                    dashboard_url: None,
                    last_operation_type: None,
                    last_operation_state: None,
                    last_operation_description: None,
                    broker_operation: None,
                    last_operation_updated_at: None,
                    created_at: t,
                    updated_at: t,
                },
            )?;
        }
        Ok(())
    }

    /// A binding row of `app` to `instance` with a generated default name.
    fn generated(instance: &str, name: &str) -> ServiceBinding {
        let t = now();
        ServiceBinding {
            id: 0,
            guid: crate::service::new_guid(),
            app_guid: "app".into(),
            service_instance_guid: instance.into(),
            name: Some(name.into()),
            credentials: "{}".into(),
            syslog_drain_url: None,
            volume_mounts: "[]".into(),
            last_operation_type: None,
            last_operation_state: None,
            last_operation_description: None,
            broker_operation: None,
            last_operation_created_at: None,
            last_operation_updated_at: None,
            created_at: t,
            updated_at: t,
            role: None,
            prefix: None,
            service_key_guid: None,
            extended: false,
            name_generated: true,
            credential_binding_guid: None,
        }
    }

    /// A generated name that the app already has (1 in 36^5 per binding of the app) is drawn
    /// again instead of failing the create; a client's own name is never changed.
    #[tokio::test]
    async fn a_taken_generated_name_is_drawn_again() {
        let dir = tempfile::tempdir().unwrap();
        let url = dir.path().join("t.db").to_str().unwrap().to_string();
        let db = Db::connect(&DbConfig::new(url)).unwrap();
        let taken = "app-app-ce-service-binding-abcde";
        let reserved = db
            .write(move |conn| -> ApiResult<_> {
                org_space_app_instance(conn)?;
                let prefixes = |p: &str| Prefixes {
                    explicit: None,
                    candidates: vec![p.to_string()],
                };
                insert_reserved(conn, generated("ups-1", taken), &prefixes("A"), None)?;
                let second = generated("ups-2", taken);
                let second_guid = second.guid.clone();
                let derived = insert_reserved(conn, second, &prefixes("B"), None)?;
                // The same with a prefix the client chose.
                repo::bindings::delete(conn, &second_guid)?;
                let explicit = Prefixes {
                    explicit: Some("C".into()),
                    candidates: Vec::new(),
                };
                let chosen = insert_reserved(conn, generated("ups-2", taken), &explicit, None)?;
                Ok((derived, chosen))
            })
            .await
            .unwrap();
        for (r, prefix) in [(&reserved.0, "B"), (&reserved.1, "C")] {
            let name = r.name.as_deref().unwrap();
            assert_ne!(name, taken);
            assert!(name.starts_with("app-app-ce-service-binding-"), "{name}");
            assert_eq!(r.prefix, prefix);
        }
    }
}
