//! The floor server (`tether-bench floor`): what a binding create, get and list cost at least
//! with tether's HTTP stack (actix-web 4, same backlog and default workers), tether's database
//! settings (its r2d2 connection manager: the same SQLite pragmas and WAL, the same
//! PostgreSQL connections; pool of 8 like tether's default) and tether's schema (the unique
//! indexes and triggers of its migrations), doing only what each operation must do:
//!
//! - create (two writes, the default): insert the row `in progress` (the unique indexes
//!   decide before the broker is called), PUT to the broker, store its credentials and mark the
//!   row succeeded, answer 201 with the binding; `?writes=one`: PUT to the broker first, then
//!   one insert of the finished row;
//! - get: one row by guid, rendered;
//! - list: one page of 50 (by id, `q=app_guid:` filters) and its total (the sum of the
//!   per-block counts tether's triggers keep; `COUNT(*)` of the app's rows with a filter), in
//!   one read snapshot, rendered.
//!
//! No authentication or authorization, no lookups (the broker and its plan come from the
//! command line), credentials stored as the broker sent them (tether seals them with AES-GCM).
//! SQLite writes go through one connection, each in its own `BEGIN IMMEDIATE` transaction;
//! PostgreSQL writes are single autocommit statements on the pool.

mod db;
mod render;

use std::time::Duration;

use actix_web::{web, App, HttpResponse, HttpServer};
use clap::Args;
use serde_json::Value;

use crate::broker::{BROKER_PASS, BROKER_USER};
use db::{FloorDb, WriteError};

#[derive(Args, Debug)]
pub struct FloorArgs {
    /// Database URL (SQLite path or postgres://), migrated by tether's migrations at start.
    #[arg(long)]
    pub db: String,
    /// Base URL of the OSB broker the creates PUT to (the bench's sync demo broker).
    #[arg(long)]
    pub broker: String,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:0")]
    pub bind: String,
    /// Database connections (tether's default pool size).
    #[arg(long, default_value_t = 8)]
    pub pool_size: u32,
}

struct Floor {
    db: FloorDb,
    http: reqwest::Client,
    broker: String,
}

pub fn floor_main(args: FloorArgs) -> anyhow::Result<()> {
    // reqwest is built with rustls but no provider (tether's choice): install tether's.
    tether::install_crypto_provider();
    let db = FloorDb::open(&args.db, args.pool_size)?;
    actix_web::rt::System::new().block_on(serve(args, db))
}

async fn serve(args: FloorArgs, db: FloorDb) -> anyhow::Result<()> {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .redirect(reqwest::redirect::Policy::none())
        .pool_idle_timeout(Duration::from_secs(30))
        .build()?;
    let floor = web::Data::new(Floor {
        db,
        http,
        broker: args.broker.trim_end_matches('/').to_string(),
    });
    let server = HttpServer::new(move || {
        App::new()
            .app_data(floor.clone())
            .route("/v2/info", web::get().to(info))
            .route("/v2/service_bindings", web::post().to(create))
            .route("/v2/service_bindings", web::get().to(list))
            .route("/v2/service_bindings/{guid}", web::get().to(get))
    })
    .backlog(2048)
    .bind(&args.bind)?;
    eprintln!("floor listening on {:?}", server.addrs());
    server.run().await?;
    Ok(())
}

async fn info() -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({"name": "tether-bench floor"}))
}

/// A CF-style error body.
fn error(status: u16, code: u32, description: &str) -> HttpResponse {
    let status = actix_web::http::StatusCode::from_u16(status)
        .unwrap_or(actix_web::http::StatusCode::INTERNAL_SERVER_ERROR);
    HttpResponse::build(status).json(serde_json::json!({
        "code": code, "description": description, "error_code": "CF-FloorError"
    }))
}

#[derive(serde::Deserialize)]
struct CreateBody {
    app_guid: String,
    service_instance_guid: String,
}

#[derive(serde::Deserialize)]
struct CreateQuery {
    writes: Option<String>,
}

async fn create(
    floor: web::Data<Floor>,
    query: web::Query<CreateQuery>,
    body: web::Json<CreateBody>,
) -> HttpResponse {
    let body = body.into_inner();
    let guid = uuid::Uuid::new_v4().to_string();
    let result = if query.writes.as_deref() == Some("one") {
        create_one_write(&floor, &guid, body).await
    } else {
        create_two_writes(&floor, &guid, body).await
    };
    match result {
        Ok(row) => HttpResponse::Created()
            .content_type("application/json")
            .body(render::binding_json(&row)),
        Err(resp) => resp,
    }
}

/// Reserve the row (unique indexes decide), call the broker, complete the row.
async fn create_two_writes(
    floor: &Floor,
    guid: &str,
    body: CreateBody,
) -> Result<db::Row, HttpResponse> {
    let reserved = floor
        .db
        .reserve(guid.to_string(), body.app_guid, body.service_instance_guid)
        .await
        .map_err(write_error)?;
    let credentials = match bind_at_broker(floor, &reserved).await {
        Ok(c) => c,
        Err(e) => {
            let _ = floor.db.remove(reserved.id).await;
            return Err(error(502, 10001, &e));
        }
    };
    floor
        .db
        .complete(reserved, credentials)
        .await
        .map_err(write_error)
}

/// Call the broker, then one insert of the finished row.
async fn create_one_write(
    floor: &Floor,
    guid: &str,
    body: CreateBody,
) -> Result<db::Row, HttpResponse> {
    let row = db::Row::new(guid, body.app_guid, body.service_instance_guid);
    let credentials = bind_at_broker(floor, &row)
        .await
        .map_err(|e| error(502, 10001, &e))?;
    floor
        .db
        .insert_finished(row, credentials)
        .await
        .map_err(write_error)
}

fn write_error(e: WriteError) -> HttpResponse {
    match e {
        WriteError::Taken => error(400, 90003, "The app is already bound to the service."),
        WriteError::Other(m) => error(500, 10001, &m),
    }
}

/// The OSB bind (PUT, synchronous) with the headers and body shape tether sends; returns the
/// broker's credentials as JSON text.
async fn bind_at_broker(floor: &Floor, row: &db::Row) -> Result<String, String> {
    let url = format!(
        "{}/v2/service_instances/{}/service_bindings/{}",
        floor.broker, row.service_instance_guid, row.guid
    );
    let body = serde_json::json!({
        "service_id": tether::demo_broker::SERVICE_ID,
        "plan_id": tether::demo_broker::PLAN_SMALL_ID,
        "app_guid": row.app_guid,
        "bind_resource": {"app_guid": row.app_guid},
        "context": {"platform": "cloudfoundry"},
    });
    let resp = floor
        .http
        .put(url)
        .basic_auth(BROKER_USER, Some(BROKER_PASS))
        .header("X-Broker-API-Version", "2.15")
        .header(
            "X-Broker-API-Request-Identity",
            uuid::Uuid::new_v4().to_string(),
        )
        .header("Content-Type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .map_err(|e| format!("broker: {e}"))?;
    let status = resp.status().as_u16();
    let bytes = resp.bytes().await.map_err(|e| format!("broker: {e}"))?;
    if status != 201 && status != 200 {
        return Err(format!("broker answered {status}"));
    }
    let doc: Value = serde_json::from_slice(&bytes).map_err(|e| format!("broker body: {e}"))?;
    Ok(doc.get("credentials").map_or("{}".into(), Value::to_string))
}

async fn get(floor: web::Data<Floor>, guid: web::Path<String>) -> HttpResponse {
    match floor.db.get(guid.into_inner()).await {
        Ok(Some(row)) => HttpResponse::Ok()
            .content_type("application/json")
            .body(render::binding_json(&row)),
        Ok(None) => error(404, 90004, "The service binding could not be found"),
        Err(e) => error(500, 10001, &e),
    }
}

#[derive(serde::Deserialize)]
struct ListQuery {
    q: Option<String>,
    page: Option<i64>,
    #[serde(rename = "results-per-page")]
    per_page: Option<i64>,
}

async fn list(floor: web::Data<Floor>, query: web::Query<ListQuery>) -> HttpResponse {
    let query = query.into_inner();
    let per_page = query.per_page.unwrap_or(50).clamp(1, 100);
    // Bounded so that the offset cannot overflow.
    let page = query.page.unwrap_or(1).clamp(1, i64::MAX / 100);
    let app = query
        .q
        .as_deref()
        .and_then(|q| q.strip_prefix("app_guid:"))
        .map(str::to_string);
    match floor.db.page(app.clone(), page, per_page).await {
        Ok((total, rows)) => {
            HttpResponse::Ok()
                .content_type("application/json")
                .body(render::page_json(
                    total,
                    page,
                    per_page,
                    app.as_deref(),
                    &rows,
                ))
        }
        Err(e) => error(500, 10001, &e),
    }
}
