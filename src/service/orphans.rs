//! Orphan mitigation (OSB A.10): when a broker may hold a binding or instance that we will not
//! keep, tell it to delete it. Done as a durable, retried job; if even the job cannot be stored
//! (the database is what failed), one immediate best-effort attempt is made.

use crate::app::AppState;
use crate::broker::{BrokerTarget, CallContext, CatalogIds};
use crate::jobs::Job;

pub struct OrphanBinding {
    pub target: BrokerTarget,
    pub broker_guid: String,
    pub instance_guid: String,
    pub binding_guid: String,
    pub ids: CatalogIds,
}

pub async fn mitigate_binding(state: &AppState, orphan: OrphanBinding) {
    let job = Job::OrphanUnbind {
        broker_guid: orphan.broker_guid.clone(),
        instance_guid: orphan.instance_guid.clone(),
        binding_guid: orphan.binding_guid.clone(),
        service_id: orphan.ids.service_id.clone(),
        plan_id: orphan.ids.plan_id.clone(),
    };
    let stored = state
        .db
        .write(move |conn| Ok(crate::jobs::enqueue(conn, &job)?))
        .await;
    match stored {
        Ok(_) => {
            tracing::info!(binding = %orphan.binding_guid, "orphan mitigation queued");
            state.jobs_wakeup.notify_one();
        }
        Err(e) => {
            tracing::error!(binding = %orphan.binding_guid, error = %e.log_text(), "could not queue orphan mitigation; unbinding now");
            let broker = state.broker.clone();
            actix_web::rt::spawn(async move {
                if let Err(e) = broker
                    .unbind(
                        &orphan.target,
                        &orphan.instance_guid,
                        &orphan.binding_guid,
                        &orphan.ids,
                        true,
                        &CallContext::default(),
                    )
                    .await
                {
                    tracing::error!(binding = %orphan.binding_guid, error = %e, "orphan unbind failed");
                }
            });
        }
    }
}

pub struct OrphanInstance {
    pub target: BrokerTarget,
    pub broker_guid: String,
    pub instance_guid: String,
    pub ids: CatalogIds,
}

pub async fn mitigate_instance(state: &AppState, orphan: OrphanInstance) {
    let job = Job::OrphanDeprovision {
        broker_guid: orphan.broker_guid.clone(),
        instance_guid: orphan.instance_guid.clone(),
        service_id: orphan.ids.service_id.clone(),
        plan_id: orphan.ids.plan_id.clone(),
    };
    let stored = state
        .db
        .write(move |conn| Ok(crate::jobs::enqueue(conn, &job)?))
        .await;
    match stored {
        Ok(_) => state.jobs_wakeup.notify_one(),
        Err(e) => {
            tracing::error!(instance = %orphan.instance_guid, error = %e.log_text(), "could not queue orphan deprovision; trying now");
            let broker = state.broker.clone();
            actix_web::rt::spawn(async move {
                let _ = broker
                    .deprovision(
                        &orphan.target,
                        &orphan.instance_guid,
                        &orphan.ids,
                        true,
                        &CallContext::default(),
                    )
                    .await;
            });
        }
    }
}
