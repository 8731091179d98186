//! `tether registry create|list|get|update|delete`: Code Engine's registry access secrets
//! (seed 002) from the command line, with the seed's wording ("Creating image registry access
//! secret 'myregistry'...", then "OK"). Secrets are named within a space, as in the seed; the
//! password is write-only: no command prints it.

use clap::Subcommand;

use super::{admin_caller, config_from_common, print_table, resolve_space};
use crate::app::AppState;
use crate::config::CommonArgs;
use crate::db::models::RegistrySecret;
use crate::db::repo::{Filter, ListQuery, OrderBy, PageRequest};
use crate::service::registry::{self, RegistryInput};

#[derive(Subcommand)]
pub enum RegistryCommand {
    /// Create a registry access secret in a space.
    Create(CreateArgs),
    /// List the registry access secrets of a space.
    List(SpaceArgs),
    /// Show a registry access secret (never its password).
    Get(NameArgs),
    /// Change a registry access secret's server, username, password or email.
    Update(UpdateArgs),
    /// Delete a registry access secret.
    Delete(NameArgs),
}

#[derive(clap::Args)]
pub struct SpaceArgs {
    #[command(flatten)]
    common: CommonArgs,
    /// The space (name or guid); may be left out when there is only one.
    #[arg(long)]
    space: Option<String>,
}

#[derive(clap::Args)]
pub struct NameArgs {
    #[command(flatten)]
    at: SpaceArgs,
    /// The registry access secret's name.
    #[arg(long)]
    name: String,
}

#[derive(clap::Args)]
pub struct CreateArgs {
    #[command(flatten)]
    at: SpaceArgs,
    /// Name: lowercase alphanumerics, '.', '-'; starts and ends alphanumeric; at most 253.
    #[arg(long)]
    name: String,
    /// Registry server, e.g. us.icr.io or https://index.docker.io/v1/.
    #[arg(long)]
    server: String,
    #[arg(long)]
    username: String,
    /// The password or API key (or set TETHER_REGISTRY_PASSWORD).
    #[arg(long, env = "TETHER_REGISTRY_PASSWORD", hide_env_values = true)]
    password: String,
    #[arg(long)]
    email: Option<String>,
}

#[derive(clap::Args)]
pub struct UpdateArgs {
    #[command(flatten)]
    at: SpaceArgs,
    /// The registry access secret's name (it cannot be changed).
    #[arg(long)]
    name: String,
    #[arg(long)]
    server: Option<String>,
    #[arg(long)]
    username: Option<String>,
    /// A new password or API key (or set TETHER_REGISTRY_PASSWORD).
    #[arg(long, env = "TETHER_REGISTRY_PASSWORD", hide_env_values = true)]
    password: Option<String>,
    #[arg(long)]
    email: Option<String>,
}

pub fn run(command: RegistryCommand) -> anyhow::Result<()> {
    let common = match &command {
        RegistryCommand::Create(a) => &a.at.common,
        RegistryCommand::List(a) => &a.common,
        RegistryCommand::Get(a) | RegistryCommand::Delete(a) => &a.at.common,
        RegistryCommand::Update(a) => &a.at.common,
    };
    let config = config_from_common(common)?;
    actix_web::rt::System::new().block_on(async move {
        let state = AppState::new(config)?;
        // Pools closed and their threads at rest before the process exits.
        let _close = state.db.close_on_drop();
        match command {
            RegistryCommand::Create(a) => create(&state, a).await,
            RegistryCommand::List(a) => list(&state, a).await,
            RegistryCommand::Get(a) => get(&state, a).await,
            RegistryCommand::Update(a) => update(&state, a).await,
            RegistryCommand::Delete(a) => delete(&state, a).await,
        }
    })
}

fn failed(e: crate::error::ApiError) -> anyhow::Error {
    anyhow::anyhow!("{e}")
}

async fn create(state: &AppState, a: CreateArgs) -> anyhow::Result<()> {
    let space = resolve_space(&state.db, a.at.space.as_deref())?;
    println!("Creating image registry access secret '{}'...", a.name);
    let input = RegistryInput {
        name: Some(a.name),
        server: Some(a.server),
        username: Some(a.username),
        password: Some(a.password),
        email: a.email,
    };
    registry::create(state, &admin_caller(), &space.guid, input)
        .await
        .map_err(failed)?;
    println!("OK");
    Ok(())
}

/// The space's secrets, by name (at most `per_page`).
async fn secrets_of(
    state: &AppState,
    space: &str,
    name: Option<&str>,
) -> anyhow::Result<Vec<RegistrySecret>> {
    let filters = name.map(|n| Filter::eq("name", n)).into_iter().collect();
    let query = ListQuery {
        filters,
        page: PageRequest {
            page: 1,
            per_page: 1000,
            descending: false,
            order: OrderBy::Name,
        },
    };
    let loaded = registry::list(state, &admin_caller(), space, &query)
        .await
        .map_err(failed)?;
    Ok(loaded.rows)
}

/// The secret the arguments name, or the seed's not-found wording.
async fn named(state: &AppState, at: &SpaceArgs, name: &str) -> anyhow::Result<RegistrySecret> {
    let space = resolve_space(&state.db, at.space.as_deref())?;
    secrets_of(state, &space.guid, Some(name))
        .await?
        .into_iter()
        .next()
        .ok_or_else(|| anyhow::anyhow!("Image registry access secret '{name}' does not exist."))
}

async fn list(state: &AppState, a: SpaceArgs) -> anyhow::Result<()> {
    let space = resolve_space(&state.db, a.space.as_deref())?;
    println!("Listing image registry access secrets...");
    let secrets = secrets_of(state, &space.guid, None).await?;
    println!("OK");
    println!();
    let rows: Vec<[String; 3]> = secrets
        .into_iter()
        .map(|s| [s.name, s.server, s.username])
        .collect();
    print_table(["Name", "Server", "Username"], &rows);
    Ok(())
}

async fn get(state: &AppState, a: NameArgs) -> anyhow::Result<()> {
    println!("Getting image registry access secret '{}'...", a.name);
    let s = named(state, &a.at, &a.name).await?;
    println!("OK");
    println!();
    println!("Name:      {}", s.name);
    println!("ID:        {}", s.guid);
    println!("Server:    {}", s.server);
    println!("Username:  {}", s.username);
    println!("Email:     {}", s.email.as_deref().unwrap_or(""));
    println!("Created:   {}", s.created_at.and_utc().to_rfc3339());
    Ok(())
}

async fn update(state: &AppState, a: UpdateArgs) -> anyhow::Result<()> {
    println!("Updating image registry access secret '{}'...", a.name);
    let s = named(state, &a.at, &a.name).await?;
    let input = RegistryInput {
        name: None,
        server: a.server,
        username: a.username,
        password: a.password,
        email: a.email,
    };
    registry::update(state, &admin_caller(), &s.guid, input)
        .await
        .map_err(failed)?;
    println!("OK");
    Ok(())
}

async fn delete(state: &AppState, a: NameArgs) -> anyhow::Result<()> {
    println!("Deleting image registry access secret '{}'...", a.name);
    let s = named(state, &a.at, &a.name).await?;
    registry::delete(state, &admin_caller(), &s.guid)
        .await
        .map_err(failed)?;
    println!("OK");
    Ok(())
}
