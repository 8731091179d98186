//! v2 envelopes: `{metadata, entity}` resources and the paginated list document. Typed
//! `Serialize` structs throughout (no `serde_json::Value` trees): measured about twice as cheap.

use chrono::NaiveDateTime;
use serde::ser::{Serialize, Serializer};
use serde_json::value::RawValue;

/// A timestamp rendered as CC does: ISO-8601 UTC with a `Z`, to the second.
#[derive(Debug, Clone, Copy)]
pub struct Ts(pub NaiveDateTime);

impl Serialize for Ts {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format_ts(&self.0))
    }
}

pub fn format_ts(t: &NaiveDateTime) -> String {
    use chrono::{Datelike, Timelike};
    // Hand-rolled: chrono's formatter parses the pattern on every call.
    let mut out = String::with_capacity(20);
    let y = t.year();
    let push2 = |out: &mut String, v: u32| {
        out.push((b'0' + (v / 10) as u8) as char);
        out.push((b'0' + (v % 10) as u8) as char);
    };
    if (0..=9999).contains(&y) {
        let y = y as u32;
        push2(&mut out, y / 100);
        push2(&mut out, y % 100);
    } else {
        out.push_str(&y.to_string());
    }
    out.push('-');
    push2(&mut out, t.month());
    out.push('-');
    push2(&mut out, t.day());
    out.push('T');
    push2(&mut out, t.hour());
    out.push(':');
    push2(&mut out, t.minute());
    out.push(':');
    push2(&mut out, t.second());
    out.push('Z');
    out
}

#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct Metadata {
    pub guid: String,
    pub url: String,
    pub created_at: Ts,
    pub updated_at: Ts,
}

impl Metadata {
    pub fn new(
        collection: &str,
        guid: &str,
        created: NaiveDateTime,
        updated: NaiveDateTime,
    ) -> Self {
        Metadata {
            guid: guid.to_string(),
            url: format!("/v2/{collection}/{guid}"),
            created_at: Ts(created),
            updated_at: Ts(updated),
        }
    }
}

#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct Resource<E: Serialize, M: Serialize = Metadata> {
    pub metadata: M,
    pub entity: E,
}

/// A URL made of a fixed prefix, a guid and a fixed suffix, written straight into the JSON
/// output (no `String` per URL: a page of 50 bindings has 200 of them).
#[derive(Debug, Clone, Copy)]
pub struct Link<'a>(pub &'static str, pub &'a str, pub &'static str);

impl std::fmt::Display for Link<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)?;
        f.write_str(self.1)?;
        f.write_str(self.2)
    }
}

impl Serialize for Link<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// [`Metadata`] borrowing its guid, for the hot paths (binding pages).
#[derive(serde::Serialize, utoipa::ToSchema)]
#[schema(description = "A resource's metadata")]
pub struct MetadataRef<'a> {
    pub guid: &'a str,
    pub url: Link<'a>,
    pub created_at: Ts,
    pub updated_at: Ts,
}

#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct PageDoc<T: Serialize> {
    pub total_results: i64,
    pub total_pages: i64,
    pub prev_url: Option<String>,
    pub next_url: Option<String>,
    pub resources: Vec<T>,
}

/// Stored JSON text, emitted verbatim (it was validated when stored).
pub fn raw_json(text: &str, fallback: &'static str) -> Box<RawValue> {
    RawValue::from_string(text.to_string())
        .or_else(|_| RawValue::from_string(fallback.to_string()))
        .unwrap_or_else(|_| RawValue::from_string("null".into()).expect("null is valid JSON"))
}

/// `{}` for fields CC always renders empty.
#[derive(Debug, Clone, Copy, Default)]
pub struct EmptyObject;

impl Serialize for EmptyObject {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        s.serialize_map(Some(0))?.end()
    }
}

/// CC's redacted credentials.
pub const REDACTED: &str = r#"{"redacted_message":"[PRIVATE DATA HIDDEN]"}"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_render_like_cc() {
        let t = chrono::NaiveDate::from_ymd_opt(2016, 6, 8)
            .unwrap()
            .and_hms_micro_opt(16, 41, 42, 123456)
            .unwrap();
        assert_eq!(format_ts(&t), "2016-06-08T16:41:42Z");
        assert_eq!(format_ts(&t), t.format("%Y-%m-%dT%H:%M:%SZ").to_string());
    }
}
