//! What each job does (CC: `ServiceBindingStateFetch`, `DeleteOrphanedBinding`, ...).

use std::time::Duration;

use diesel::prelude::*;

use super::orphan::{clean_up, Orphaned};
use super::runner::RunnerConfig;
use super::Job;
use crate::app::AppState;
use crate::broker::{CallContext, CatalogIds, LastOperationOutcome, OperationState, UnbindOutcome};
use crate::db::models::{ServiceBinding, ServiceInstance};
use crate::db::repo;
use crate::error::ApiResult;
use crate::service::bindings::Catalog;

#[derive(Debug)]
pub(super) enum Outcome {
    /// Finished.
    Done,
    /// Run again after the delay (a poll that goes on); optionally with a new payload.
    Reschedule(Duration, Option<String>),
    /// Failed this time; retry with backoff until the attempts run out.
    Retry(String),
    /// Failed for good.
    Fail(String),
}

fn catalog_of(
    c: Option<(
        crate::db::models::ServicePlan,
        crate::db::models::Service,
        crate::db::models::ServiceBroker,
    )>,
) -> Option<Catalog> {
    c.map(|(plan, service, broker)| Catalog {
        plan,
        service,
        broker,
    })
}

/// When polling started, and how long it may go on (the runner's maximum, or the plan's
/// `maximum_polling_duration` if smaller).
#[derive(Debug, Clone, Copy)]
struct PollWindow {
    started_at_ms: i64,
    max_ms: i64,
}

impl PollWindow {
    fn new(
        config: &RunnerConfig,
        started_at: i64,
        started_at_ms: Option<i64>,
        plan_max_secs: Option<i64>,
    ) -> Self {
        let mut max_ms = i64::try_from(config.max_poll_duration.as_millis()).unwrap_or(i64::MAX);
        if let Some(p) = plan_max_secs.filter(|p| *p > 0) {
            max_ms = max_ms.min(p.saturating_mul(1000));
        }
        PollWindow {
            started_at_ms: started_at_ms.unwrap_or(started_at.saturating_mul(1000)),
            max_ms,
        }
    }

    /// Time left before the operation counts as failed (zero: expired).
    fn remaining(&self) -> Duration {
        let elapsed = chrono::Utc::now().timestamp_millis() - self.started_at_ms;
        Duration::from_millis(self.max_ms.saturating_sub(elapsed).max(0) as u64)
    }

    fn expired(&self) -> bool {
        self.remaining().is_zero()
    }

    /// The wait before the next poll: the configured interval, or the broker's `Retry-After` if
    /// longer (CC: `max(default interval, Retry-After)`, at most 24 h), but never past the end of
    /// the window, so an operation that runs out of time is marked failed on time.
    fn next_poll(&self, config: &RunnerConfig, retry_after: Option<u64>) -> Duration {
        let wanted = retry_after
            .map(Duration::from_secs)
            .unwrap_or_default()
            .max(config.poll_interval)
            .min(Duration::from_secs(24 * 3600));
        wanted.min(self.remaining() + Duration::from_millis(10))
    }
}

pub(super) async fn execute(
    state: &AppState,
    config: &RunnerConfig,
    job: &Job,
    _attempts: i32,
) -> Outcome {
    let result = match job {
        Job::PollBinding {
            binding_guid,
            operation_type,
            started_at,
            started_at_ms,
            plan_max_secs,
        } => {
            let window = PollWindow::new(config, *started_at, *started_at_ms, *plan_max_secs);
            poll_binding(state, config, binding_guid, operation_type, window).await
        }
        Job::OrphanUnbind {
            broker_guid,
            instance_guid,
            binding_guid,
            service_id,
            plan_id,
            progress,
        } => {
            let ids = CatalogIds {
                service_id: service_id.clone(),
                plan_id: plan_id.clone(),
            };
            let what = Orphaned::Binding {
                instance: instance_guid,
                binding: binding_guid,
            };
            clean_up(
                state,
                config,
                broker_guid,
                what,
                &ids,
                progress,
                |progress| {
                    Job::orphan_unbind(broker_guid, instance_guid, binding_guid, &ids)
                        .with(progress)
                },
            )
            .await
        }
        Job::DeleteBinding {
            binding_guid,
            user_id,
            request_id,
        } => {
            delete_binding(
                state,
                binding_guid,
                CallContext {
                    request_id: request_id.clone(),
                    user_id: user_id.clone(),
                },
            )
            .await
        }
        Job::PollInstance {
            instance_guid,
            operation_type,
            started_at,
            started_at_ms,
            plan_max_secs,
        } => {
            let window = PollWindow::new(config, *started_at, *started_at_ms, *plan_max_secs);
            poll_instance(state, config, instance_guid, operation_type, window).await
        }
        Job::OrphanDeprovision {
            broker_guid,
            instance_guid,
            service_id,
            plan_id,
            progress,
        } => {
            let ids = CatalogIds {
                service_id: service_id.clone(),
                plan_id: plan_id.clone(),
            };
            let what = Orphaned::Instance {
                instance: instance_guid,
            };
            clean_up(
                state,
                config,
                broker_guid,
                what,
                &ids,
                progress,
                |progress| Job::orphan_deprovision(broker_guid, instance_guid, &ids).with(progress),
            )
            .await
        }
    };
    match result {
        Ok(outcome) => outcome,
        // Database trouble: try again later.
        Err(e) => Outcome::Retry(e.to_string()),
    }
}

async fn load_binding(
    state: &AppState,
    guid: &str,
) -> ApiResult<Option<(ServiceBinding, ServiceInstance, Option<Catalog>)>> {
    let g = guid.to_string();
    state
        .db
        .read(move |conn| {
            let Some(b) = repo::bindings::find(conn, &g)? else {
                return Ok(None);
            };
            let Some((si, c)) = repo::instances::find_with_catalog(conn, &b.service_instance_guid)?
            else {
                return Ok(None);
            };
            Ok(Some((b, si, catalog_of(c))))
        })
        .await
}

fn orphan_job(catalog: &Catalog, instance: &str, binding: &str) -> Job {
    Job::orphan_unbind(&catalog.broker.guid, instance, binding, &catalog.ids())
}

async fn poll_binding(
    state: &AppState,
    config: &RunnerConfig,
    guid: &str,
    op: &str,
    window: PollWindow,
) -> ApiResult<Outcome> {
    let Some((binding, instance, catalog)) = load_binding(state, guid).await? else {
        return Ok(Outcome::Done);
    };
    if !binding.operation_in_progress() || binding.last_operation_type.as_deref() != Some(op) {
        // Settled by someone else (a delete during a create, say).
        return Ok(Outcome::Done);
    }
    let Some(catalog) = catalog else {
        return Ok(Outcome::Fail("the binding's instance has no plan".into()));
    };
    let g = guid.to_string();
    let op_s = op.to_string();
    if window.expired() {
        let description =
            format!("Service Broker failed to {op} binding within the required time.");
        let orphan = (op == "create").then(|| orphan_job(&catalog, &instance.guid, guid));
        state
            .db
            .write(move |conn| {
                repo::bindings::set_operation(conn, &g, &op_s, "failed", Some(&description), None)?;
                if let Some(j) = &orphan {
                    super::enqueue(conn, j)?;
                }
                Ok(())
            })
            .await?;
        return Ok(Outcome::Done);
    }
    let ctx = CallContext::default();
    let result = state
        .broker
        .binding_last_operation(
            &catalog.target(),
            &instance.guid,
            guid,
            &catalog.ids(),
            binding.broker_operation.as_deref(),
            &ctx,
        )
        .await;
    match result {
        // Network errors, 5xx, garbage: poll again (OSB D.8).
        Err(e) => {
            tracing::info!(binding = %guid, error = %e, "binding last_operation poll failed; will retry");
            Ok(Outcome::Reschedule(window.next_poll(config, None), None))
        }
        Ok(LastOperationOutcome::Gone) if op == "delete" => {
            state
                .db
                .write(move |conn| Ok(repo::bindings::delete(conn, &g)?))
                .await?;
            Ok(Outcome::Done)
        }
        // 410 while creating is meaningless: keep polling.
        Ok(LastOperationOutcome::Gone) => {
            Ok(Outcome::Reschedule(window.next_poll(config, None), None))
        }
        Ok(LastOperationOutcome::State {
            state: OperationState::InProgress,
            description,
            retry_after,
        }) => {
            if description != binding.last_operation_description {
                state
                    .db
                    .write(move |conn| {
                        Ok(repo::bindings::set_operation_description(
                            conn,
                            &g,
                            description.as_deref(),
                        )?)
                    })
                    .await?;
            }
            Ok(Outcome::Reschedule(
                window.next_poll(config, retry_after),
                None,
            ))
        }
        Ok(LastOperationOutcome::State {
            state: OperationState::Succeeded,
            description,
            ..
        }) => {
            if op == "delete" {
                state
                    .db
                    .write(move |conn| Ok(repo::bindings::delete(conn, &g)?))
                    .await?;
                return Ok(Outcome::Done);
            }
            let fetched = state
                .broker
                .fetch_binding(
                    &catalog.target(),
                    &instance.guid,
                    guid,
                    &catalog.ids(),
                    &catalog.service.requires_list(),
                    &ctx,
                )
                .await;
            match fetched {
                Ok(data) => {
                    // Credentials are stored sealed, as on the sync path.
                    let sealed = state.crypto_seal(&data.credentials);
                    state
                        .db
                        .write(move |conn| {
                            Ok(repo::bindings::complete_create(
                                conn,
                                &g,
                                &sealed,
                                data.syslog_drain_url.as_deref(),
                                &data.volume_mounts,
                                description.as_deref(),
                            )?)
                        })
                        .await?;
                }
                Err(e) => {
                    tracing::warn!(binding = %guid, error = %e, "fetching an async binding failed");
                    let orphan = orphan_job(&catalog, &instance.guid, guid);
                    state
                        .db
                        .write(move |conn| {
                            repo::bindings::set_operation(
                                conn,
                                &g,
                                "create",
                                "failed",
                                Some(
                                    "A valid binding could not be fetched from the service broker.",
                                ),
                                None,
                            )?;
                            super::enqueue(conn, &orphan)?;
                            Ok(())
                        })
                        .await?;
                }
            }
            Ok(Outcome::Done)
        }
        Ok(LastOperationOutcome::State {
            state: OperationState::Failed,
            description,
            ..
        }) => {
            // OSB A.10: a bind whose last_operation says `failed` may have left something at
            // the broker; the binding row stays (failed, with the broker's description).
            let orphan = (op == "create").then(|| orphan_job(&catalog, &instance.guid, guid));
            state
                .db
                .write(move |conn| {
                    repo::bindings::set_operation(
                        conn,
                        &g,
                        &op_s,
                        "failed",
                        description.as_deref(),
                        None,
                    )?;
                    if let Some(j) = &orphan {
                        super::enqueue(conn, j)?;
                    }
                    Ok(())
                })
                .await?;
            Ok(Outcome::Done)
        }
    }
}

/// `DELETE ...?async=true`: the unbind, run by the queue.
async fn delete_binding(state: &AppState, guid: &str, ctx: CallContext) -> ApiResult<Outcome> {
    let Some((binding, instance, catalog)) = load_binding(state, guid).await? else {
        return Ok(Outcome::Done);
    };
    let g = guid.to_string();
    let Some(catalog) = catalog else {
        state
            .db
            .write(move |conn| Ok(repo::bindings::delete(conn, &g)?))
            .await?;
        return Ok(Outcome::Done);
    };
    let _ = binding;
    let result = state
        .broker
        .unbind(
            &catalog.target(),
            &instance.guid,
            guid,
            &catalog.ids(),
            true,
            &ctx,
        )
        .await;
    match result {
        Ok(UnbindOutcome::Deleted) => {
            state
                .db
                .write(move |conn| Ok(repo::bindings::delete(conn, &g)?))
                .await?;
            Ok(Outcome::Done)
        }
        Ok(UnbindOutcome::Async { operation }) => {
            let poll = Job::poll_binding(guid, &catalog.plan, "delete");
            state
                .db
                .write(move |conn| {
                    repo::bindings::set_operation(
                        conn,
                        &g,
                        "delete",
                        "in progress",
                        None,
                        operation.as_deref(),
                    )?;
                    super::enqueue(conn, &poll)?;
                    Ok(())
                })
                .await?;
            state.jobs_wakeup.notify_one();
            Ok(Outcome::Done)
        }
        Err(e) => {
            let description = e.description.clone();
            state
                .db
                .write(move |conn| {
                    Ok(repo::bindings::set_operation(
                        conn,
                        &g,
                        "delete",
                        "failed",
                        Some(&description),
                        None,
                    )?)
                })
                .await?;
            Ok(Outcome::Fail(e.description))
        }
    }
}

async fn poll_instance(
    state: &AppState,
    config: &RunnerConfig,
    guid: &str,
    op: &str,
    window: PollWindow,
) -> ApiResult<Outcome> {
    let g = guid.to_string();
    let loaded = state
        .db
        .read(move |conn| Ok(repo::instances::find_with_catalog(conn, &g)?))
        .await?;
    let Some((instance, catalog)) = loaded else {
        return Ok(Outcome::Done);
    };
    if !instance.operation_in_progress() || instance.last_operation_type.as_deref() != Some(op) {
        return Ok(Outcome::Done);
    }
    let Some(catalog) = catalog_of(catalog) else {
        return Ok(Outcome::Fail("instance without plan".into()));
    };
    let g = guid.to_string();
    let op_s = op.to_string();
    if window.expired() {
        let description =
            format!("Service Broker failed to {op} service instance within the required time.");
        state
            .db
            .write(move |conn| {
                Ok(repo::instances::set_operation(
                    conn,
                    &g,
                    &op_s,
                    "failed",
                    Some(&description),
                    None,
                )?)
            })
            .await?;
        return Ok(Outcome::Done);
    }
    let result = state
        .broker
        .instance_last_operation(
            &catalog.target(),
            guid,
            &catalog.ids(),
            instance.broker_operation.as_deref(),
            &CallContext::default(),
        )
        .await;
    match result {
        Err(e) => {
            tracing::info!(instance = %guid, error = %e, "instance last_operation poll failed; will retry");
            Ok(Outcome::Reschedule(window.next_poll(config, None), None))
        }
        Ok(LastOperationOutcome::Gone) if op == "delete" => {
            state
                .db
                .write(move |conn| Ok(repo::instances::delete(conn, &g)?))
                .await?;
            Ok(Outcome::Done)
        }
        Ok(LastOperationOutcome::Gone) => {
            Ok(Outcome::Reschedule(window.next_poll(config, None), None))
        }
        Ok(LastOperationOutcome::State {
            state: OperationState::InProgress,
            description,
            retry_after,
        }) => {
            let op_op = instance.broker_operation.clone();
            state
                .db
                .write(move |conn| {
                    Ok(repo::instances::set_operation(
                        conn,
                        &g,
                        &op_s,
                        "in progress",
                        description.as_deref(),
                        op_op.as_deref(),
                    )?)
                })
                .await?;
            Ok(Outcome::Reschedule(
                window.next_poll(config, retry_after),
                None,
            ))
        }
        Ok(LastOperationOutcome::State {
            state: OperationState::Succeeded,
            description,
            ..
        }) => {
            state
                .db
                .write(move |conn| {
                    if op_s == "delete" {
                        repo::instances::delete(conn, &g)?;
                    } else {
                        repo::instances::set_operation(
                            conn,
                            &g,
                            &op_s,
                            "succeeded",
                            description.as_deref(),
                            None,
                        )?;
                    }
                    Ok(())
                })
                .await?;
            Ok(Outcome::Done)
        }
        Ok(LastOperationOutcome::State {
            state: OperationState::Failed,
            description,
            ..
        }) => {
            state
                .db
                .write(move |conn| {
                    Ok(repo::instances::set_operation(
                        conn,
                        &g,
                        &op_s,
                        "failed",
                        description.as_deref(),
                        None,
                    )?)
                })
                .await?;
            Ok(Outcome::Done)
        }
    }
}

/// Finds operations left `in progress` by a request that died mid-call (no job behind them,
/// older than any broker call can take) and settles them: an abandoned create is removed and
/// the broker told to unbind/deprovision (it may have acted); an abandoned delete is marked
/// failed so the user can retry it.
pub(super) async fn sweep(state: &AppState, config: &RunnerConfig) -> ApiResult<()> {
    use crate::db::schema::{service_bindings as sb, service_instances as si};
    let cutoff = crate::db::now()
        - chrono::Duration::from_std(config.abandoned_after).unwrap_or(chrono::Duration::hours(1));
    let prune_before = crate::db::now()
        - chrono::Duration::from_std(config.keep_settled).unwrap_or(chrono::Duration::days(1));
    state
        .db
        .write(move |conn| {
            super::prune(conn, prune_before)?;
            let stale: Vec<ServiceBinding> = sb::table
                .filter(sb::last_operation_state.eq("in progress"))
                .filter(sb::last_operation_updated_at.lt(cutoff))
                .select(ServiceBinding::as_select())
                .limit(100)
                .load(conn)?;
            for b in stale {
                if super::has_pending(conn, &b.guid)? {
                    continue;
                }
                match b.last_operation_type.as_deref() {
                    Some("create") => {
                        let catalog = repo::instances::find_with_catalog(conn, &b.service_instance_guid)?
                            .and_then(|(_, c)| catalog_of(c));
                        // Another process sweeping at the same time may have removed it first:
                        // then that process also queued the unbind.
                        if repo::bindings::delete(conn, &b.guid)? == 0 {
                            continue;
                        }
                        if let Some(c) = catalog {
                            super::enqueue(conn, &orphan_job(&c, &b.service_instance_guid, &b.guid))?;
                        }
                        tracing::warn!(binding = %b.guid, "removed a binding whose create was abandoned; unbinding at the broker");
                    }
                    Some(op) => {
                        let op = op.to_string();
                        repo::bindings::set_operation(
                            conn,
                            &b.guid,
                            &op,
                            "failed",
                            Some("The operation was interrupted. Please try again."),
                            None,
                        )?;
                    }
                    None => {}
                }
            }
            let stale: Vec<ServiceInstance> = si::table
                .filter(si::last_operation_state.eq("in progress"))
                .filter(si::last_operation_updated_at.lt(cutoff))
                .select(ServiceInstance::as_select())
                .limit(100)
                .load(conn)?;
            for i in stale {
                if super::has_pending(conn, &i.guid)? {
                    continue;
                }
                match i.last_operation_type.as_deref() {
                    Some("create") => {
                        let catalog = repo::instances::find_with_catalog(conn, &i.guid)?
                            .and_then(|(_, c)| catalog_of(c));
                        if repo::instances::delete(conn, &i.guid)? == 0 {
                            continue;
                        }
                        if let Some(c) = catalog {
                            super::enqueue(
                                conn,
                                &Job::orphan_deprovision(&c.broker.guid, &i.guid, &c.ids()),
                            )?;
                        }
                    }
                    Some(op) => {
                        let op = op.to_string();
                        repo::instances::set_operation(
                            conn,
                            &i.guid,
                            &op,
                            "failed",
                            Some("The operation was interrupted. Please try again."),
                            None,
                        )?;
                    }
                    None => {}
                }
            }
            Ok(())
        })
        .await
}
