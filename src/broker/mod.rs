//! The Open Service Broker API client (the platform side of OSB v2).

mod client;
mod error;
pub mod model;
mod response;

pub use client::{
    BrokerClient, BrokerClientConfig, CallContext, PreviousValues, UpdateOutcome, UpdateRequest,
};
pub use error::{BrokerError, BrokerErrorKind, BrokerHttpInfo};
pub use model::*;
pub use response::encode_syslog_drain_url_commas;
