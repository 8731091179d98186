//! The `tether` command line: `serve`, `migrate`, `token`, `seed-demo`, `demo-broker`.

use clap::{Parser, Subcommand};
use std::process::ExitCode;

use crate::app::AppState;
use crate::auth::{Actor, SCOPE_ADMIN};
use crate::config::{CommonArgs, Config, Secrets, ServeArgs};
use crate::jobs::{JobRunner, RunnerConfig};
use crate::service::Caller;

#[derive(Parser)]
#[command(
    name = "tether",
    version,
    about = "A Cloud Foundry compatible Cloud Controller (v2) for service bindings"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the API server (and the job runner).
    Serve(ServeArgs),
    /// Apply database migrations and exit.
    Migrate(CommonArgs),
    /// Print a bearer token signed with the server's key, for local use.
    Token(TokenArgs),
    /// Create a demo org, space, app, user-provided instance (the guids of the v2 docs'
    /// example), and, with --broker-url, register that broker and create a managed instance.
    SeedDemo(SeedArgs),
    /// Run the demo OSB broker on 127.0.0.1.
    DemoBroker(DemoBrokerArgs),
    /// Users of the built-in token issuer.
    #[command(subcommand)]
    User(UserCommand),
    /// OAuth clients of the built-in token issuer (for the client_credentials grant).
    #[command(subcommand)]
    Client(ClientCommand),
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
}

#[derive(clap::Args)]
struct SeedArgs {
    #[command(flatten)]
    common: CommonArgs,
    /// A broker to register (e.g. the one `tether demo-broker` runs).
    #[arg(long)]
    broker_url: Option<String>,
    #[arg(long, default_value = "broker")]
    broker_username: String,
    #[arg(long, default_value = "broker-secret")]
    broker_password: String,
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

pub fn init_tracing() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("TETHER_LOG")
        .or_else(|_| EnvFilter::try_from_default_env())
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing();
    crate::install_crypto_provider();
    let result = match cli.command {
        Command::Serve(args) => serve(args),
        Command::Migrate(args) => migrate(args),
        Command::Token(args) => token(args),
        Command::SeedDemo(args) => seed_demo(args),
        Command::DemoBroker(args) => demo_broker(args),
        Command::User(UserCommand::Create(args)) => user_create(args),
        Command::Client(ClientCommand::Create(args)) => client_create(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tether: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn config_from_common(common: &CommonArgs) -> anyhow::Result<Config> {
    let secrets = Secrets::load_or_create(&common.secrets_file)?;
    let mut config = Config::for_database(common.database_url.clone(), secrets.signing_key);
    config.db_pool_size = common.db_pool_size;
    config.jwt_secret = common.jwt_secret.clone().map(String::into_bytes);
    Ok(config)
}

fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let config = Config::from_serve_args(&args)?;
    actix_web::rt::System::new().block_on(run_server(config))
}

/// Runs the server until SIGINT/SIGTERM.
pub async fn run_server(config: Config) -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    let bind = config.bind.clone();
    let workers = config.workers;
    let runner_config = RunnerConfig::for_broker_timeout(config.broker_timeout);
    let runner_config = runner_from_env(runner_config);
    let state = actix_web::web::Data::new(AppState::new(config)?);
    JobRunner::new(state.clone().into_inner(), runner_config).spawn();
    let data = state.clone();
    let mut server = actix_web::HttpServer::new(move || crate::build_app!(data))
        .backlog(2048)
        .bind(&bind)?;
    if let Some(w) = workers {
        server = server.workers(w.max(1));
    }
    let addrs = server.addrs();
    let running = server.run();
    tracing::info!(
        addresses = ?addrs,
        backend = ?state.db.backend(),
        startup_ms = started.elapsed().as_millis() as u64,
        "tether is listening"
    );
    running.await?;
    Ok(())
}

/// Test and operations knobs for the job runner, from the environment.
fn runner_from_env(mut c: RunnerConfig) -> RunnerConfig {
    let secs = |name: &str| {
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse::<f64>().ok())
            .map(std::time::Duration::from_secs_f64)
    };
    if let Some(d) = secs("TETHER_POLL_INTERVAL_SECS") {
        c.poll_interval = d;
    }
    if let Some(d) = secs("TETHER_MAX_POLL_DURATION_SECS") {
        c.max_poll_duration = d;
    }
    if let Some(d) = secs("TETHER_JOB_LEASE_SECS") {
        c.lease = d;
    }
    if let Some(d) = secs("TETHER_JOB_RETRY_BASE_SECS") {
        c.retry_base = d;
    }
    if let Some(d) = secs("TETHER_JOB_TICK_SECS") {
        c.tick = d;
    }
    c
}

fn migrate(args: CommonArgs) -> anyhow::Result<()> {
    // Connecting runs the migrations (PostgreSQL: under an advisory lock).
    crate::db::Db::connect(&crate::db::DbConfig::new(args.database_url.clone()))?;
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

fn token(args: TokenArgs) -> anyhow::Result<()> {
    let config = config_from_common(&args.common)?;
    let key = crate::auth::token::SigningKey::from_pem(&config.signing_key_pem)?;
    let issuer = crate::auth::TokenIssuer::new(key, "http://localhost/oauth/token", args.ttl);
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

/// The guids of the v2 API docs' binding example (seed 001), so its curl works verbatim.
pub const DEMO_APP_GUID: &str = "081d55a0-1bfa-4e51-8d08-273f764988db";
pub const DEMO_UPSI_GUID: &str = "a0029c76-7017-4a74-94b0-54a04ad94b80";

fn admin_caller() -> Caller {
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

fn seed_demo(args: SeedArgs) -> anyhow::Result<()> {
    let config = config_from_common(&args.common)?;
    actix_web::rt::System::new().block_on(async move {
        let state = AppState::new(config)?;
        let caller = admin_caller();
        let report = crate::service::demo::seed(
            &state,
            &caller,
            args.broker_url.as_deref(),
            &args.broker_username,
            &args.broker_password,
        )
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
        println!("{}", serde_json::to_string_pretty(&report)?);
        Ok(())
    })
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

fn open_db(common: &CommonArgs) -> anyhow::Result<crate::db::Db> {
    let mut cfg = crate::db::DbConfig::new(common.database_url.clone());
    cfg.pool_size = 1;
    crate::db::Db::connect(&cfg)
}

fn user_create(args: UserCreateArgs) -> anyhow::Result<()> {
    let db = open_db(&args.common)?;
    let mut scopes = args.scopes.clone();
    if args.admin && !scopes.iter().any(|s| s == SCOPE_ADMIN) {
        scopes.push(SCOPE_ADMIN.to_string());
    }
    let user = db
        .write_blocking(|conn| {
            crate::service::uaa::create_user(conn, &args.username, &args.password, &scopes)
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
    db.write_blocking(|conn| {
        crate::service::uaa::create_client(conn, &args.id, &args.secret, &args.scopes)
    })
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    println!(
        "client {} ready; scopes: {}",
        args.id,
        args.scopes.join(" ")
    );
    Ok(())
}
