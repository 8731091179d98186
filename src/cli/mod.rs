//! The `tether` command line: `serve`, `migrate`, `token`, `seed-demo`, `demo-broker`.

use clap::{Parser, Subcommand};
use std::process::ExitCode;

use crate::app::AppState;
use crate::auth::{Actor, SCOPE_ADMIN};
use crate::config::{CommonArgs, Config, Secrets, ServeArgs};
use crate::jobs::RunnerConfig;
use crate::service::Caller;

mod registry;
mod seed;

#[derive(Parser)]
#[command(
    name = "tether",
    version,
    about = "A Cloud Foundry compatible Cloud Controller (v2) for service bindings"
)]
struct Cli {
    /// Log format: `text` (for people; colour only on a terminal) or `json` (one object per
    /// line, for log shippers). Logs go to stderr; TETHER_LOG sets the level (e.g. debug).
    #[arg(long, global = true, env = "TETHER_LOG_FORMAT", value_enum, default_value_t = crate::logging::LogFormat::Text)]
    log_format: crate::logging::LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the API server (and the job runner).
    Serve(Box<ServeArgs>),
    /// Apply database migrations and exit.
    Migrate(CommonArgs),
    /// Print a bearer token signed with the server's key, for local use.
    Token(TokenArgs),
    /// Create a demo org, space, app, user-provided instance (the guids of the v2 docs'
    /// example), and, with --broker-url, register that broker and create a managed instance
    /// and one of its async plan; prints `export` lines for the walk-through's variables
    /// (`eval "$(tether seed-demo …)"`).
    SeedDemo(seed::SeedArgs),
    /// Run the demo OSB broker on 127.0.0.1.
    DemoBroker(DemoBrokerArgs),
    /// Users of the built-in token issuer.
    #[command(subcommand)]
    User(UserCommand),
    /// OAuth clients of the built-in token issuer (for the client_credentials grant).
    #[command(subcommand)]
    Client(ClientCommand),
    /// Show an app's service bindings as a table (name, id, instance, type, role/credential,
    /// env-var prefix); with --unused-credentials, the existing credentials it could bind with.
    Bindings(BindingsArgs),
    /// Registry access secrets.
    #[command(subcommand)]
    Registry(registry::RegistryCommand),
    /// Make a new encryption key current and re-seal every stored credential with it.
    RotateKey(RotateKeyArgs),
}

#[derive(clap::Args)]
struct BindingsArgs {
    #[command(flatten)]
    common: CommonArgs,
    /// The app's name.
    #[arg(long)]
    app: String,
    /// The app's space (name or guid), if the name is not unique.
    #[arg(long)]
    space: Option<String>,
    /// Instead of the bindings: the existing credentials (service keys, other apps' binding
    /// credentials) of the app's space that the app does not use yet, which a new binding can
    /// reuse (Code Engine's "Existing secret").
    #[arg(long)]
    unused_credentials: bool,
    /// With --unused-credentials: only the credentials of this service instance (its name, in
    /// the app's space).
    #[arg(long, requires = "unused_credentials")]
    service_instance: Option<String>,
}

#[derive(clap::Args)]
struct RotateKeyArgs {
    #[command(flatten)]
    common: CommonArgs,
    /// After re-sealing, drop keys that no stored value uses any more.
    #[arg(long)]
    prune: bool,
}

#[derive(Subcommand)]
enum UserCommand {
    /// Create a user (or reset its password and scopes).
    Create(UserCreateArgs),
}

#[derive(clap::Args)]
struct UserCreateArgs {
    #[command(flatten)]
    common: CommonArgs,
    #[arg(long)]
    username: String,
    /// The password (or set TETHER_USER_PASSWORD).
    #[arg(long, env = "TETHER_USER_PASSWORD", hide_env_values = true)]
    password: String,
    /// Grant cloud_controller.admin.
    #[arg(long)]
    admin: bool,
    /// Extra scopes (repeatable), e.g. cloud_controller.global_auditor.
    #[arg(long = "scope")]
    scopes: Vec<String>,
}

#[derive(Subcommand)]
enum ClientCommand {
    /// Create a client (or reset its secret and scopes).
    Create(ClientCreateArgs),
}

#[derive(clap::Args)]
struct ClientCreateArgs {
    #[command(flatten)]
    common: CommonArgs,
    #[arg(long)]
    id: String,
    /// The secret (or set TETHER_CLIENT_SECRET).
    #[arg(long, env = "TETHER_CLIENT_SECRET", hide_env_values = true)]
    secret: String,
    /// Scopes (authorities) granted to the client (repeatable).
    #[arg(long = "scope")]
    scopes: Vec<String>,
}

#[derive(clap::Args)]
struct TokenArgs {
    #[command(flatten)]
    common: CommonArgs,
    /// The server's address settings: its tokens name it as their issuer.
    #[command(flatten)]
    address: crate::config::AddressArgs,
    /// Scopes to grant (repeatable).
    #[arg(long = "scope", default_values_t = vec![SCOPE_ADMIN.to_string(), "cloud_controller.read".to_string(), "cloud_controller.write".to_string()])]
    scopes: Vec<String>,
    /// User id (`user_id`/`sub`) to put in the token.
    #[arg(long, default_value = "admin")]
    user_id: String,
    /// User name to put in the token.
    #[arg(long, default_value = "admin")]
    user_name: String,
    /// Lifetime in seconds.
    #[arg(long, default_value_t = 43200)]
    ttl: i64,
    /// Create the secrets file if there is none (else a missing file is an error): for a
    /// server that has not started yet and will use this file.
    #[arg(long)]
    create_secrets: bool,
}

#[derive(clap::Args)]
struct DemoBrokerArgs {
    #[arg(long, default_value_t = 9292)]
    port: u16,
    #[arg(long, default_value = "broker")]
    username: String,
    #[arg(long, default_value = "broker-secret")]
    password: String,
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    // Held to the end of `main`: its drop writes out the log lines still queued.
    let _log = crate::logging::init_tracing(cli.log_format);
    crate::install_crypto_provider();
    let result = match cli.command {
        Command::Serve(args) => serve(*args),
        Command::Migrate(args) => migrate(args),
        Command::Token(args) => token(args),
        Command::SeedDemo(args) => seed::seed_demo(args),
        Command::DemoBroker(args) => demo_broker(args),
        Command::User(UserCommand::Create(args)) => user_create(args),
        Command::Client(ClientCommand::Create(args)) => client_create(args),
        Command::Bindings(args) => bindings_table(args),
        Command::Registry(command) => registry::run(command),
        Command::RotateKey(args) => rotate_key(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tether: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// The configuration of a command working for an existing server: its secrets file and (for
/// SQLite) its database must exist.
pub(crate) fn config_from_common(common: &CommonArgs) -> anyhow::Result<Config> {
    require_database(&common.database_url)?;
    config_with_secrets(common, common.load_secrets(false)?)
}

fn config_with_secrets(common: &CommonArgs, secrets: Secrets) -> anyhow::Result<Config> {
    let mut config = Config::for_database(common.database_url.clone(), secrets.signing_key.clone());
    config.encryption = secrets.encryption_keys();
    config.secrets_file = common.secrets_path();
    config.db_pool_size = common.db_pool_size;
    config.jwt_secret = common.jwt_secret.clone().map(String::into_bytes);
    Ok(config)
}

fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let config = Config::from_serve_args(&args)?;
    let runner = RunnerConfig::from_args(&args.jobs, config.broker_timeout);
    actix_web::rt::System::new().block_on(crate::server::run_server(config, runner))
}

fn migrate(args: CommonArgs) -> anyhow::Result<()> {
    // Connecting runs the migrations (PostgreSQL: under an advisory lock).
    crate::db::Db::connect(&crate::db::DbConfig::new(args.database_url.clone()))?.close();
    println!("migrations applied to {}", redact_url(&args.database_url));
    Ok(())
}

fn redact_url(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        _ => url.to_string(),
    }
}

/// An SQLite database file must be there already (a typo in a path must not become a new,
/// empty database); PostgreSQL URLs are the server's to check.
fn require_database(url: &str) -> anyhow::Result<()> {
    if let crate::db::DbUrl::Sqlite(path) = crate::db::DbUrl::parse(url)? {
        if !path.starts_with(':') && !std::path::Path::new(&path).exists() {
            anyhow::bail!(
                "no database at {path}: start `tether serve` (or run `tether migrate`) first, or \
                 name the server's database with --database-url (TETHER_DATABASE_URL)"
            );
        }
    }
    Ok(())
}

fn token(args: TokenArgs) -> anyhow::Result<()> {
    let secrets = args.common.load_secrets(args.create_secrets)?;
    let config = config_with_secrets(&args.common, secrets)?;
    let key = crate::auth::token::SigningKey::from_pem(&config.signing_key_pem)?;
    let issuer = crate::auth::TokenIssuer::new(key, args.address.token_issuer(), args.ttl);
    let (token, _) = issuer.user_token(
        &args.user_id,
        &args.user_name,
        &args.scopes,
        "cf",
        "password",
    )?;
    println!("{token}");
    Ok(())
}

pub(crate) fn admin_caller() -> Caller {
    Caller {
        actor: Actor {
            user_id: Some("admin".into()),
            user_name: Some("admin".into()),
            client_id: Some("cf".into()),
            scopes: vec![SCOPE_ADMIN.to_string()],
        },
        request_id: uuid::Uuid::new_v4().to_string(),
    }
}

fn demo_broker(args: DemoBrokerArgs) -> anyhow::Result<()> {
    let broker = crate::demo_broker::DemoBroker::start(args.port, &args.username, &args.password)?;
    println!(
        "demo broker listening at {} (basic auth {}:{})",
        broker.url, args.username, args.password
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let _ = tokio::signal::ctrl_c().await;
    });
    drop(broker);
    Ok(())
}

fn open_db(common: &CommonArgs) -> anyhow::Result<crate::app::Store> {
    let mut cfg = crate::db::DbConfig::new(common.database_url.clone());
    cfg.pool_size = 1;
    Ok(crate::app::Store(crate::db::Db::connect(&cfg)?))
}

fn user_create(args: UserCreateArgs) -> anyhow::Result<()> {
    let db = open_db(&args.common)?;
    let _close = db.close_on_drop();
    let mut scopes = args.scopes.clone();
    if args.admin && !scopes.iter().any(|s| s == SCOPE_ADMIN) {
        scopes.push(SCOPE_ADMIN.to_string());
    }
    let (name, password, granted) = (args.username.clone(), args.password.clone(), scopes.clone());
    let user = db
        .write_blocking(move |conn| {
            crate::service::uaa::create_user(conn, &name, &password, &granted)
        })
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    println!(
        "user {} ({}) ready; extra scopes: {}",
        args.username,
        user.guid,
        if scopes.is_empty() {
            "none".to_string()
        } else {
            scopes.join(" ")
        }
    );
    Ok(())
}

fn client_create(args: ClientCreateArgs) -> anyhow::Result<()> {
    let db = open_db(&args.common)?;
    let _close = db.close_on_drop();
    let (id, secret, scopes) = (args.id.clone(), args.secret.clone(), args.scopes.clone());
    db.write_blocking(move |conn| crate::service::uaa::create_client(conn, &id, &secret, &scopes))
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    println!(
        "client {} ready; scopes: {}",
        args.id,
        args.scopes.join(" ")
    );
    Ok(())
}

/// Finds a space by guid or name (unique across orgs, else an error).
fn resolve_space(
    db: &crate::app::Store,
    space: Option<&str>,
) -> anyhow::Result<crate::db::models::Space> {
    use crate::db::repo;
    let all = repo::PageRequest {
        page: 1,
        per_page: 100,
        descending: false,
        order: repo::OrderBy::Name,
    };
    let candidates = db
        .read_blocking(|conn| {
            let filters = match space {
                Some(s) => vec![repo::Filter {
                    key: "guid".into(),
                    op: repo::FilterOp::In,
                    values: vec![s.to_string()],
                }],
                None => vec![],
            };
            let mut found = repo::spaces::list(conn, &filters, None, None, &all)?.rows;
            if found.is_empty() {
                if let Some(s) = space {
                    let by_name = vec![repo::Filter::eq("name", s)];
                    found = repo::spaces::list(conn, &by_name, None, None, &all)?.rows;
                }
            }
            Ok(found)
        })
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    match candidates.len() {
        1 => Ok(candidates
            .into_iter()
            .next()
            .unwrap_or_else(|| unreachable!())),
        0 => anyhow::bail!(
            "no such space{}",
            space.map(|s| format!(": {s}")).unwrap_or_default()
        ),
        n => anyhow::bail!("{n} spaces match; name one with --space (guid or a unique name)"),
    }
}

fn bindings_table(args: BindingsArgs) -> anyhow::Result<()> {
    let config = config_from_common(&args.common)?;
    actix_web::rt::System::new().block_on(async move {
        let state = AppState::new(config)?;
        let _close = state.db.close_on_drop();
        let app = app_named(&state, &args.app, args.space.as_deref()).await?;
        if args.unused_credentials {
            return unused_credentials_table(&state, &app, args.service_instance.as_deref()).await;
        }
        let ab = crate::service::env::load(&state, &admin_caller(), &app.guid, false)
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let header = [
            "Name",
            "ID",
            "Service Instance",
            "Service Type",
            "Role / Credential",
            "Environment Variable Prefix",
        ];
        let dash = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
        let cells: Vec<[String; 6]> = crate::api::v2::table_rows(&ab)
            .iter()
            .map(|r| {
                [
                    dash(&r.name),
                    r.guid.clone(),
                    r.service_instance.clone(),
                    r.service_type.clone(),
                    dash(&r.role_or_credential),
                    dash(&r.prefix),
                ]
            })
            .collect();
        println!("Service Bindings of {}:", app.name);
        print_table(header, &cells);
        Ok(())
    })
}

/// The credentials an app could bind with and does not use yet (`GET
/// /v2/apps/:guid/unused_credentials`), of its space's instances or of one of them, with the
/// binding request field that reuses each.
async fn unused_credentials_table(
    state: &AppState,
    app: &crate::db::models::App,
    instance_name: Option<&str>,
) -> anyhow::Result<()> {
    use crate::db::repo;
    let only = match instance_name {
        Some(name) => {
            let (space, by_name) = (app.space_guid.clone(), [repo::Filter::eq("name", name)]);
            let found = state
                .db
                .read(move |conn| {
                    let kind = repo::instances::Kind::Both;
                    let first = repo::PageRequest::first(1);
                    Ok(
                        repo::instances::list(conn, &by_name, kind, Some(&space), None, &first)?
                            .rows,
                    )
                })
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            match found.first() {
                Some(instance) => Some(instance.guid.clone()),
                None => anyhow::bail!(
                    "no service instance named {name} in the space of {}",
                    app.name
                ),
            }
        }
        None => None,
    };
    let offered =
        crate::service::keys::unused_by_app(state, &admin_caller(), &app.guid, only.as_deref())
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
    let guids: Vec<String> = offered
        .iter()
        .map(|o| o.service_instance_guid.clone())
        .collect();
    let instances = state
        .db
        .read(move |conn| Ok(repo::instances::find_many(conn, &guids)?))
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let instance_named = |guid: &str| {
        instances
            .iter()
            .find(|i| i.guid == guid)
            .map(|i| i.name.clone())
            .unwrap_or_else(|| guid.to_string())
    };
    let cells: Vec<[String; 6]> = offered
        .iter()
        .map(|o| {
            let bind_with = match o.kind {
                crate::service::keys::CredentialKind::ServiceKey => "service_key_guid",
                crate::service::keys::CredentialKind::ServiceBinding => "credential_binding_guid",
            };
            [
                o.name.clone(),
                o.guid.clone(),
                instance_named(&o.service_instance_guid),
                o.kind.as_str().to_string(),
                o.role.clone().unwrap_or_else(|| "-".into()),
                bind_with.to_string(),
            ]
        })
        .collect();
    match instance_name {
        Some(name) => println!(
            "Existing credentials of {name} that {} does not use yet:",
            app.name
        ),
        None => println!("Existing credentials that {} does not use yet:", app.name),
    }
    if cells.is_empty() {
        println!("None: a new binding gets a new credential.");
        return Ok(());
    }
    let header = [
        "Name",
        "ID",
        "Service Instance",
        "Type",
        "Role",
        "Bind With",
    ];
    print_table(header, &cells);
    Ok(())
}

/// The one app of this name (in the space, a guid or unique name, when one is given).
async fn app_named(
    state: &AppState,
    name: &str,
    space: Option<&str>,
) -> anyhow::Result<crate::db::models::App> {
    use crate::db::repo;
    let space = match space {
        Some(s) => Some(resolve_space(&state.db, Some(s))?.guid),
        None => None,
    };
    let by_name = [repo::Filter::eq("name", name)];
    let apps = state
        .db
        .read(move |conn| {
            let all = repo::PageRequest::first(100);
            Ok(repo::apps::list(conn, &by_name, space.as_deref(), None, &all)?.rows)
        })
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    match apps.as_slice() {
        [one] => Ok(one.clone()),
        [] => anyhow::bail!("no app named {name}"),
        _ => anyhow::bail!("several apps are named {name}; add --space"),
    }
}

/// Columns padded to their widest cell, two spaces apart, no trailing blanks.
fn print_table<const N: usize>(header: [&str; N], rows: &[[String; N]]) {
    let mut widths = header.map(str::len);
    for row in rows {
        for (w, v) in widths.iter_mut().zip(row.iter()) {
            *w = (*w).max(v.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        cells
            .iter()
            .zip(widths.iter())
            .map(|(v, w)| format!("{v:<w$}"))
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_string()
    };
    println!("{}", line(header.to_vec()));
    for row in rows {
        println!("{}", line(row.iter().map(String::as_str).collect()));
    }
}

fn rotate_key(args: RotateKeyArgs) -> anyhow::Result<()> {
    if args.common.secrets.is_some() {
        anyhow::bail!(
            "rotate-key writes a new key into the secrets file: it cannot with TETHER_SECRETS \
             (rotate with the file, then hand its new content to every instance)"
        );
    }
    let path = &args.common.secrets_file;
    let mut secrets = Secrets::load_existing(path)?;
    let mut ring = secrets.encryption_keys();
    let label = crate::crypto::new_label();
    ring.keys
        .insert(label.clone(), crate::crypto::random_key_b64());
    ring.current = label.clone();
    secrets.encryption = Some(ring.clone());
    // The new key is saved before anything is sealed with it, so no value can outlive its key.
    secrets.save(path)?;
    println!("new current key {label}");
    let keyring = crate::crypto::KeyRing::new(&ring, None)?;
    let db = open_db(&args.common)?;
    let _close = db.close_on_drop();
    let report =
        crate::service::rotation::reseal_all(&db, &keyring).map_err(|e| anyhow::anyhow!("{e}"))?;
    for (table, n) in &report.resealed {
        println!("re-sealed {n} values in {table}");
    }
    if args.prune {
        let used = &report.labels_in_use;
        let before = ring.keys.len();
        ring.keys
            .retain(|l, _| l == &ring.current || used.contains(l));
        secrets.encryption = Some(ring.clone());
        secrets.save(path)?;
        println!("pruned {} unused keys", before - ring.keys.len());
    }
    println!("done; running servers pick the new key up by themselves");
    Ok(())
}
