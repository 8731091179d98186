//! The managed side of a service instance: its plan, service and broker, and what follows from
//! them (where and how to call the broker, what may be bound, what an orphan is).

use super::orphans::Orphan;
use crate::broker::{BrokerTarget, CatalogIds};
use crate::db::models::{Service, ServiceBroker, ServicePlan};

#[derive(Clone)]
pub struct Catalog {
    pub plan: ServicePlan,
    pub service: Service,
    pub broker: ServiceBroker,
}

impl Catalog {
    /// From what `repo::instances::find_with_catalog` loads.
    pub fn from_parts(parts: Option<(ServicePlan, Service, ServiceBroker)>) -> Option<Catalog> {
        parts.map(|(plan, service, broker)| Catalog {
            plan,
            service,
            broker,
        })
    }

    pub fn target(&self) -> BrokerTarget {
        BrokerTarget {
            name: self.broker.name.clone(),
            url: self.broker.broker_url.clone(),
            username: self.broker.auth_username.clone(),
            password: self.broker.auth_password.clone(),
        }
    }

    pub fn ids(&self) -> CatalogIds {
        CatalogIds {
            service_id: self.service.unique_id.clone(),
            plan_id: self.plan.unique_id.clone(),
        }
    }

    /// A binding (or service key) this broker may hold that we will not keep.
    pub fn orphan_binding(&self, instance_guid: &str, binding_guid: &str) -> Orphan {
        Orphan::Binding {
            target: self.target(),
            broker_guid: self.broker.guid.clone(),
            instance_guid: instance_guid.to_string(),
            binding_guid: binding_guid.to_string(),
            ids: self.ids(),
        }
    }

    /// An instance this broker may hold that we will not keep.
    pub fn orphan_instance(&self, instance_guid: &str) -> Orphan {
        Orphan::Instance {
            target: self.target(),
            broker_guid: self.broker.guid.clone(),
            instance_guid: instance_guid.to_string(),
            ids: self.ids(),
        }
    }

    pub fn bindable(&self) -> bool {
        self.plan.bindable.unwrap_or(self.service.bindable)
    }
}
