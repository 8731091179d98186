//! tether: a Cloud Foundry compatible Cloud Controller (API v2) for the service-binding
//! lifecycle. See README.md.

pub mod api;
pub mod app;
pub mod auth;
pub mod broker;
pub mod cli;
pub mod clock;
pub mod config;
pub mod crypto;
pub mod db;
pub mod demo_broker;
pub mod error;
pub mod faults;
pub mod jobs;
pub mod lifecycle;
pub mod logging;
pub mod metrics;
pub mod operation;
pub mod server;
pub mod service;

/// rustls needs one process-wide crypto provider; ring is the one we build.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
