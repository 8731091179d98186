//! Set-up and seeding: the org, space, brokers and one instance through tether's API; apps,
//! instances and bindings straight into the database (as rows a completed create leaves).

use std::cell::{Cell, RefCell};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail};
use base64::Engine;
use diesel::connection::SimpleConnection;
use diesel::{Connection, ExpressionMethods, RunQueryDsl};
use serde_json::{json, Value};
use tether::db::{DbConnection, DbUrl};
use tether::demo_broker;

use crate::args::RunArgs;
use crate::broker::{async_plan_id, BrokerProc, BROKER_PASS, BROKER_USER};
use crate::http::{build_request, HttpConn};

/// Rows per INSERT statement while seeding (15 columns: under SQLite's 32,766 variables).
pub const SEED_ROWS_PER_STATEMENT: usize = 1000;
/// Statements per seeding transaction.
pub const SEED_STATEMENTS_PER_TXN: usize = 20;

/// What the load needs to know about the seeded world.
pub struct World {
    pub broker: SocketAddr,
    pub auth: String,
    pub broker_auth: String,
    pub org_guid: String,
    pub space_guid: String,
    pub apps: Vec<String>,
    pub sync_instances: Vec<String>,
    pub async_instances: Vec<String>,
    /// Next unused (app, sync instance) pair: pair k is (apps[k % A], sync_instances[k / A]).
    pub next_pair: Cell<u64>,
    pub next_async_pair: Cell<u64>,
    /// Bindings created through the API (deleted first by the delete runs).
    pub created: RefCell<Vec<String>>,
    /// Seeded bindings (a sample of them for the large sizes).
    pub seeded: RefCell<Vec<String>>,
    pub rng: Cell<u64>,
    pub async_poll: Duration,
    pub async_poll_max: Duration,
    /// GETs the async creates made while waiting for completion.
    pub async_polls: Cell<u64>,
    /// Size of the last `list-inline` page, bytes.
    pub inline_page_bytes: Cell<usize>,
    /// Size of the last answer's body, bytes.
    pub last_body_bytes: Cell<usize>,
}

impl World {
    pub fn rand(&self, n: usize) -> usize {
        // xorshift64*
        let mut x = self.rng.get();
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng.set(x);
        (x.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as usize % n.max(1)
    }

    pub fn pair(&self, k: u64, instances: &[String]) -> Option<(String, String)> {
        let a = self.apps.len() as u64;
        let app = &self.apps[(k % a) as usize];
        let si = instances.get((k / a) as usize)?;
        Some((app.clone(), si.clone()))
    }
}

pub async fn api(
    conn: &mut HttpConn,
    auth: &str,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> anyhow::Result<Value> {
    let text = body.map(|b| b.to_string());
    let req = build_request(method, conn.addr, path, auth, "", text.as_deref());
    let resp = conn.request(&req).await.map_err(|e| anyhow!(e))?;
    if !(200..300).contains(&resp.status) {
        bail!(
            "{method} {path}: {} {}",
            resp.status,
            String::from_utf8_lossy(&resp.body)
        );
    }
    if resp.body.is_empty() {
        return Ok(Value::Null);
    }
    Ok(serde_json::from_slice(&resp.body)?)
}

pub async fn plan_guid(c: &mut HttpConn, auth: &str, unique_id: &str) -> anyhow::Result<String> {
    let v = api(
        c,
        auth,
        "GET",
        &format!("/v2/service_plans?q=unique_id:{unique_id}"),
        None,
    )
    .await?;
    guid_of(&v["resources"][0])
}

pub fn guid_of(v: &Value) -> anyhow::Result<String> {
    v["metadata"]["guid"]
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| anyhow!("no metadata.guid in {v}"))
}

/// The bench's own connection for seeding (the server has migrated the database).
pub fn open_db(url: &str) -> anyhow::Result<DbConnection> {
    Ok(match DbUrl::parse(url)? {
        DbUrl::Postgres(u) => DbConnection::Pg(diesel::PgConnection::establish(&u)?),
        DbUrl::Sqlite(path) => {
            let mut c = diesel::SqliteConnection::establish(&path)?;
            c.batch_execute(
                "PRAGMA busy_timeout = 10000; PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON; \
                 PRAGMA cache_size = -262144;",
            )?;
            DbConnection::Sqlite(c)
        }
    })
}

/// Runs `f` in one transaction (diesel's: its batch inserts may open savepoints).
pub fn write_txn<T>(
    conn: &mut DbConnection,
    f: impl FnOnce(&mut DbConnection) -> diesel::QueryResult<T>,
) -> anyhow::Result<T> {
    Ok(conn.transaction(f)?)
}

macro_rules! insert_rows {
    ($conn:expr, $table:expr, $rows:expr) => {
        match $conn {
            DbConnection::Sqlite(c) => diesel::insert_into($table).values($rows).execute(c),
            DbConnection::Pg(c) => diesel::insert_into($table).values($rows).execute(c),
        }
    };
}

pub fn credentials_for(guid: &str) -> String {
    json!({
        "uri": format!("demo://user-{guid}:secret@demo-db.local:5432/db"),
        "username": format!("user-{guid}"),
        "password": "secret",
    })
    .to_string()
}

/// What the API set-up made.
struct ApiWorld {
    org: String,
    space: String,
    sync_plan: String,
    async_plan: String,
    first_instance: String,
}

/// The org, space, both brokers (tether fetches their catalogs) and one instance provisioned
/// through the broker, all through tether's API.
async fn setup_through_api(
    broker: &BrokerProc,
    c: &mut HttpConn,
    auth: &str,
) -> anyhow::Result<ApiWorld> {
    let org = guid_of(
        &api(
            c,
            auth,
            "POST",
            "/v2/organizations",
            Some(json!({"name": "bench-org"})),
        )
        .await?,
    )?;
    let space_body = json!({"name": "bench-space", "organization_guid": org});
    let space = guid_of(&api(c, auth, "POST", "/v2/spaces", Some(space_body)).await?)?;
    for (name, url) in [
        ("bench-sync", &broker.sync_url),
        ("bench-async", &broker.async_url),
    ] {
        let body = json!({"name": name, "broker_url": url, "auth_username": BROKER_USER,
                          "auth_password": BROKER_PASS});
        api(c, auth, "POST", "/v2/service_brokers", Some(body)).await?;
    }
    let sync_plan = plan_guid(c, auth, demo_broker::PLAN_SMALL_ID).await?;
    let async_plan = plan_guid(c, auth, &async_plan_id()).await?;
    let si_body =
        json!({"name": "bench-si-api", "space_guid": space, "service_plan_guid": sync_plan});
    let first_instance =
        guid_of(&api(c, auth, "POST", "/v2/service_instances", Some(si_body)).await?)?;
    Ok(ApiWorld {
        org,
        space,
        sync_plan,
        async_plan,
        first_instance,
    })
}

/// Apps and managed instances (guid, name, plan) straight into the database. Only the columns
/// a create sets: columns added later get their defaults, so the bench keeps compiling while
/// the schema grows.
fn insert_apps_and_instances(
    db: &mut DbConnection,
    space: &str,
    app_guids: &[String],
    instances: &[(String, String, String)],
) -> anyhow::Result<()> {
    use tether::db::schema::apps::dsl as a;
    use tether::db::schema::service_instances::dsl as si;
    let now = tether::db::now();
    let app_rows: Vec<_> = app_guids
        .iter()
        .enumerate()
        .map(|(i, guid)| {
            (
                a::guid.eq(guid.clone()),
                a::name.eq(format!("bench-app-{i}")),
                a::space_guid.eq(space.to_string()),
                a::state.eq("STARTED"),
                a::memory.eq(1024i64),
                a::instances.eq(1i32),
                a::disk_quota.eq(1024i64),
                a::environment_json.eq("{}"),
                a::created_at.eq(now),
                a::updated_at.eq(now),
            )
        })
        .collect();
    let si_rows: Vec<_> = instances
        .iter()
        .map(|(guid, name, plan)| {
            (
                si::guid.eq(guid.clone()),
                si::name.eq(name.clone()),
                si::space_guid.eq(space.to_string()),
                si::is_user_provided.eq(false),
                si::service_plan_guid.eq(plan.clone()),
                si::tags.eq("[]"),
                si::dashboard_url.eq(format!("https://demo-db.local/dashboard/{guid}")),
                si::last_operation_type.eq("create"),
                si::last_operation_state.eq("succeeded"),
                si::last_operation_updated_at.eq(now),
                si::created_at.eq(now),
                si::updated_at.eq(now),
            )
        })
        .collect();
    let (app_rows, si_rows) = (&app_rows, &si_rows);
    write_txn(db, move |conn| {
        for chunk in app_rows.chunks(SEED_ROWS_PER_STATEMENT) {
            insert_rows!(conn, a::apps, chunk)?;
        }
        for chunk in si_rows.chunks(SEED_ROWS_PER_STATEMENT) {
            insert_rows!(conn, si::service_instances, chunk)?;
        }
        Ok(())
    })
}

/// Creates the org, space and brokers through the API, and apps and instances in the database:
/// enough for `sync_pairs` (app, instance) pairs on the sync broker and `async_pairs` on the
/// async one.
pub async fn setup(
    broker: &BrokerProc,
    server: SocketAddr,
    db: &mut DbConnection,
    token: &str,
    args: &RunArgs,
    sync_pairs: u64,
    async_pairs: u64,
) -> anyhow::Result<World> {
    let apps = args.apps.max(1);
    let auth = format!("bearer {token}");
    let made = setup_through_api(broker, &mut HttpConn::new(server), &auth).await?;
    let app_guids: Vec<String> = (0..apps)
        .map(|_| uuid::Uuid::new_v4().to_string())
        .collect();
    let n_sync = sync_pairs.div_ceil(apps).max(1);
    let n_async = async_pairs.div_ceil(apps).max(1);
    // (guid, name, plan) of the database-made instances.
    let mut instances: Vec<(String, String, String)> = (1..n_sync)
        .map(|i| (format!("bench-si-{i}"), made.sync_plan.clone()))
        .chain((0..n_async).map(|i| (format!("bench-si-async-{i}"), made.async_plan.clone())))
        .map(|(name, plan)| (uuid::Uuid::new_v4().to_string(), name, plan))
        .collect();
    insert_apps_and_instances(db, &made.space, &app_guids, &instances)?;
    let async_instances = instances
        .split_off((n_sync - 1) as usize)
        .into_iter()
        .map(|r| r.0)
        .collect();
    let mut sync_instances = vec![made.first_instance];
    sync_instances.extend(instances.into_iter().map(|r| r.0));
    let broker_auth = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{BROKER_USER}:{BROKER_PASS}"))
    );
    Ok(World {
        broker: broker.sync_addr,
        auth,
        broker_auth,
        org_guid: made.org,
        space_guid: made.space,
        apps: app_guids,
        sync_instances,
        async_instances,
        next_pair: Cell::new(0),
        next_async_pair: Cell::new(0),
        created: RefCell::new(Vec::new()),
        seeded: RefCell::new(Vec::new()),
        rng: Cell::new(0x9E37_79B9_7F4A_7C15),
        async_poll: Duration::from_millis(args.async_poll_ms),
        async_poll_max: Duration::from_millis(args.async_poll_max_ms.max(args.async_poll_ms)),
        async_polls: Cell::new(0),
        inline_page_bytes: Cell::new(0),
        last_body_bytes: Cell::new(0),
    })
}

/// Inserts `count` bindings straight into the database (as a broker-backed create leaves them).
/// Keeps at most `keep` of their guids in `world.seeded`.
pub fn seed_bindings(
    db: &mut DbConnection,
    world: &World,
    count: u64,
    keep: usize,
) -> anyhow::Result<Duration> {
    use tether::db::schema::service_bindings::dsl as sb;
    let started = Instant::now();
    let per_txn = (SEED_ROWS_PER_STATEMENT * SEED_STATEMENTS_PER_TXN) as u64;
    let mut done = 0;
    while done < count {
        let n = per_txn.min(count - done);
        let now = tether::db::now();
        let mut rows = Vec::with_capacity(n as usize);
        let mut guids = Vec::with_capacity(n as usize);
        for _ in 0..n {
            let k = world.next_pair.get();
            world.next_pair.set(k + 1);
            let (app, si) = world
                .pair(k, &world.sync_instances)
                .ok_or_else(|| anyhow!("out of (app, instance) pairs while seeding"))?;
            let guid = uuid::Uuid::new_v4().to_string();
            rows.push((
                sb::guid.eq(guid.clone()),
                sb::app_guid.eq(app),
                sb::service_instance_guid.eq(si),
                sb::credentials.eq(credentials_for(&guid)),
                sb::volume_mounts.eq("[]"),
                sb::last_operation_type.eq("create"),
                sb::last_operation_state.eq("succeeded"),
                sb::last_operation_created_at.eq(now),
                sb::last_operation_updated_at.eq(now),
                sb::created_at.eq(now),
                sb::updated_at.eq(now),
            ));
            guids.push(guid);
        }
        {
            let mut seeded = world.seeded.borrow_mut();
            let room = keep.saturating_sub(seeded.len());
            seeded.extend(guids.into_iter().take(room));
        }
        let rows_ref = &rows;
        write_txn(db, move |conn| {
            for chunk in rows_ref.chunks(SEED_ROWS_PER_STATEMENT) {
                insert_rows!(conn, sb::service_bindings, chunk)?;
            }
            Ok(())
        })?;
        done += n;
        if count >= 100_000 && done % 100_000 == 0 {
            eprintln!(
                "  seeded {done}/{count} in {:.1} s",
                started.elapsed().as_secs_f64()
            );
        }
    }
    if let DbConnection::Pg(_) = db {
        // What autovacuum does a minute later: fresh statistics, and the dead row versions a
        // bulk load leaves (each seeded binding updates its block's count row) cleared away and
        // the visibility map set. Without it the first minute after seeding measures the
        // seeding's garbage, not the table size (list at 1M rows: 4.7 ms, 3× slower).
        db.batch_execute("VACUUM ANALYZE")?;
    }
    Ok(started.elapsed())
}
