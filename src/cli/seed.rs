//! `tether seed-demo`: the walk-through's demo data, and the shell variables that name it.

use crate::app::AppState;
use crate::auth::SCOPE_ADMIN;
use crate::config::{AddressArgs, CommonArgs};

#[derive(clap::Args)]
pub struct SeedArgs {
    #[command(flatten)]
    common: CommonArgs,
    /// The server's address settings: `API` and the token's issuer.
    #[command(flatten)]
    address: AddressArgs,
    /// A broker to register (e.g. the one `tether demo-broker` runs).
    #[arg(long)]
    broker_url: Option<String>,
    #[arg(long, default_value = "broker")]
    broker_username: String,
    #[arg(long, default_value = "broker-secret")]
    broker_password: String,
}

pub fn seed_demo(args: SeedArgs) -> anyhow::Result<()> {
    let config = super::config_from_common(&args.common)?;
    let api = args
        .address
        .external_url()
        .unwrap_or_else(|| format!("http://{}", args.address.bind));
    let issuer = args.address.token_issuer();
    actix_web::rt::System::new().block_on(async move {
        let state = AppState::new(config)?;
        let _close = state.db.close_on_drop();
        let caller = super::admin_caller();
        let report = crate::service::demo::seed(
            &state,
            &caller,
            args.broker_url.as_deref(),
            &args.broker_username,
            &args.broker_password,
        )
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
        // For a person: what was made (stderr); for the shell: the variables (stdout).
        eprintln!("{}", serde_json::to_string_pretty(&report)?);
        let key = crate::auth::token::SigningKey::from_pem(&state.config.signing_key_pem)?;
        let tokens = crate::auth::TokenIssuer::new(key, issuer, 43200);
        let scopes = [
            SCOPE_ADMIN,
            "cloud_controller.read",
            "cloud_controller.write",
        ]
        .map(str::to_string);
        let (token, _) = tokens.user_token("admin", "admin", &scopes, "cf", "password")?;
        print!("{}", export_lines(&api, &token, &report));
        Ok(())
    })
}

/// `export NAME='value'` lines (values are guids, a URL and a JWT: no quote inside).
fn export_lines(api: &str, token: &str, report: &serde_json::Value) -> String {
    let mut out = String::from("# eval \"$(tether seed-demo …)\" sets these\n");
    let mut export = |name: &str, value: &str| {
        if !value.contains('\'') {
            out.push_str(&format!("export {name}='{value}'\n"));
        }
    };
    export("TOKEN", token);
    export("API", api);
    for (name, field) in [
        ("ORG", "organization_guid"),
        ("SPACE", "space_guid"),
        ("APP", "app_guid"),
        ("UPSI", "user_provided_service_instance_guid"),
        ("SI", "service_instance_guid"),
        ("ASYNC_SI", "async_service_instance_guid"),
    ] {
        if let Some(v) = report[field].as_str() {
            export(name, v);
        }
    }
    out.push_str("export H=\"Authorization: bearer $TOKEN\"\n");
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn export_lines_name_what_was_made() {
        let report = serde_json::json!({"app_guid": "a-1", "service_instance_guid": "s-1"});
        let out = super::export_lines("http://127.0.0.1:8080", "t.o.k", &report);
        assert!(out.contains("export TOKEN='t.o.k'\n"), "{out}");
        assert!(
            out.contains("export API='http://127.0.0.1:8080'\n"),
            "{out}"
        );
        assert!(out.contains("export APP='a-1'\nexport SI='s-1'\n"), "{out}");
        assert!(!out.contains("ASYNC_SI"), "{out}");
        assert!(
            out.ends_with("export H=\"Authorization: bearer $TOKEN\"\n"),
            "{out}"
        );
    }
}
