//! The floor's documents: a binding in CC's v2 shape (the fields tether renders) and a page of
//! them, serialized from borrowed rows.

use chrono::NaiveDateTime;
use serde::Serialize;
use serde_json::value::RawValue;

use super::db::Row;

struct Ts(NaiveDateTime);

impl Serialize for Ts {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format_ts(&self.0))
    }
}

/// `YYYY-MM-DDTHH:MM:SSZ`, hand-rolled as tether's (chrono's formatter parses its pattern on
/// every call).
fn format_ts(t: &NaiveDateTime) -> String {
    use chrono::{Datelike, Timelike};
    let mut out = String::with_capacity(20);
    let push2 = |out: &mut String, v: u32| {
        out.push((b'0' + (v / 10 % 10) as u8) as char);
        out.push((b'0' + (v % 10) as u8) as char);
    };
    let y = t.year().clamp(0, 9999) as u32;
    push2(&mut out, y / 100);
    push2(&mut out, y % 100);
    for (sep, v) in [('-', t.month()), ('-', t.day()), ('T', t.hour())] {
        out.push(sep);
        push2(&mut out, v);
    }
    for v in [t.minute(), t.second()] {
        out.push(':');
        push2(&mut out, v);
    }
    out.push('Z');
    out
}

#[derive(Serialize)]
struct Metadata<'a> {
    guid: &'a str,
    url: String,
    created_at: Ts,
    updated_at: Ts,
}

#[derive(Serialize)]
struct LastOperation<'a> {
    #[serde(rename = "type")]
    op_type: &'a str,
    state: &'a str,
    description: &'a str,
    updated_at: Ts,
    created_at: Ts,
}

#[derive(Serialize)]
struct Entity<'a> {
    app_guid: &'a str,
    service_instance_guid: &'a str,
    credentials: Credentials<'a>,
    binding_options: serde_json::Map<String, serde_json::Value>,
    gateway_data: Option<()>,
    gateway_name: &'static str,
    syslog_drain_url: Option<&'a str>,
    volume_mounts: &'a RawValue,
    name: Option<&'a str>,
    last_operation: LastOperation<'a>,
    app_url: String,
    service_instance_url: String,
    service_binding_parameters_url: String,
}

/// Stored credentials: JSON as stored, or (a value tether sealed) as a string.
#[derive(Serialize)]
#[serde(untagged)]
enum Credentials<'a> {
    Json(&'a RawValue),
    Text(&'a str),
}

#[derive(Serialize)]
struct Resource<'a> {
    metadata: Metadata<'a>,
    entity: Entity<'a>,
}

fn raw(text: &str) -> Option<&RawValue> {
    serde_json::from_str::<&RawValue>(text).ok()
}

fn resource(row: &Row) -> Resource<'_> {
    Resource {
        metadata: Metadata {
            guid: &row.guid,
            url: format!("/v2/service_bindings/{}", row.guid),
            created_at: Ts(row.created_at),
            updated_at: Ts(row.updated_at),
        },
        entity: Entity {
            app_guid: &row.app_guid,
            service_instance_guid: &row.service_instance_guid,
            credentials: raw(&row.credentials)
                .map_or(Credentials::Text(&row.credentials), Credentials::Json),
            binding_options: serde_json::Map::new(),
            gateway_data: None,
            gateway_name: "",
            syslog_drain_url: row.syslog_drain_url.as_deref(),
            volume_mounts: raw(&row.volume_mounts).unwrap_or(empty_array()),
            name: row.name.as_deref(),
            last_operation: LastOperation {
                op_type: row.last_operation_type.as_deref().unwrap_or("create"),
                state: row.last_operation_state.as_deref().unwrap_or("succeeded"),
                description: row.last_operation_description.as_deref().unwrap_or(""),
                updated_at: Ts(row.last_operation_updated_at.unwrap_or(row.updated_at)),
                created_at: Ts(row.last_operation_created_at.unwrap_or(row.created_at)),
            },
            app_url: format!("/v2/apps/{}", row.app_guid),
            service_instance_url: format!("/v2/service_instances/{}", row.service_instance_guid),
            service_binding_parameters_url: format!("/v2/service_bindings/{}/parameters", row.guid),
        },
    }
}

/// `[]` as a raw value, for a row whose volume mounts are not JSON.
fn empty_array() -> &'static RawValue {
    static EMPTY: std::sync::OnceLock<Box<RawValue>> = std::sync::OnceLock::new();
    EMPTY.get_or_init(|| {
        RawValue::from_string("[]".into()).unwrap_or_else(|_| RawValue::NULL.to_owned())
    })
}

pub fn binding_json(row: &Row) -> String {
    serde_json::to_string(&resource(row)).unwrap_or_default()
}

#[derive(Serialize)]
struct Page<'a> {
    total_results: i64,
    total_pages: i64,
    prev_url: Option<String>,
    next_url: Option<String>,
    resources: Vec<Resource<'a>>,
}

pub fn page_json(total: i64, page: i64, per_page: i64, app: Option<&str>, rows: &[Row]) -> String {
    let pages = (total + per_page - 1) / per_page;
    let q = app.map(|a| format!("q=app_guid:{a}&")).unwrap_or_default();
    let url = |p: i64| format!("/v2/service_bindings?{q}page={p}&results-per-page={per_page}");
    let doc = Page {
        total_results: total,
        total_pages: pages,
        prev_url: (page > 1).then(|| url(page - 1)),
        next_url: (page < pages).then(|| url(page + 1)),
        resources: rows.iter().map(resource).collect(),
    };
    serde_json::to_string(&doc).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row() -> Row {
        let mut r = Row::new("b-1", "app-1".into(), "si-1".into());
        r.created_at = chrono::NaiveDate::from_ymd_opt(2026, 1, 2)
            .and_then(|d| d.and_hms_opt(3, 4, 5))
            .unwrap_or_default();
        r.credentials = r#"{"uri":"demo://x"}"#.into();
        r
    }

    #[test]
    fn a_binding_has_cc_shape() {
        let doc: serde_json::Value = serde_json::from_str(&binding_json(&row())).unwrap();
        assert_eq!(doc["metadata"]["guid"], "b-1");
        assert_eq!(doc["metadata"]["created_at"], "2026-01-02T03:04:05Z");
        assert_eq!(doc["entity"]["credentials"]["uri"], "demo://x");
        assert_eq!(doc["entity"]["last_operation"]["state"], "in progress");
        assert_eq!(doc["entity"]["volume_mounts"], serde_json::json!([]));
        assert_eq!(doc["entity"]["app_url"], "/v2/apps/app-1");
    }

    #[test]
    fn sealed_credentials_render_as_text() {
        let mut r = row();
        r.credentials = "enc:v1:key-1:AAAA".into();
        let doc: serde_json::Value = serde_json::from_str(&binding_json(&r)).unwrap();
        assert_eq!(doc["entity"]["credentials"], "enc:v1:key-1:AAAA");
    }

    #[test]
    fn a_page_links_its_neighbours() {
        let rows = vec![row(), row()];
        let doc: serde_json::Value =
            serde_json::from_str(&page_json(120, 2, 50, Some("app-1"), &rows)).unwrap();
        assert_eq!(doc["total_results"], 120);
        assert_eq!(doc["total_pages"], 3);
        assert_eq!(
            doc["prev_url"],
            "/v2/service_bindings?q=app_guid:app-1&page=1&results-per-page=50"
        );
        assert_eq!(
            doc["next_url"],
            "/v2/service_bindings?q=app_guid:app-1&page=3&results-per-page=50"
        );
        assert_eq!(doc["resources"].as_array().map(Vec::len), Some(2));
    }
}
