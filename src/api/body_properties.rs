//! Property tests of the request-body decoders, shared: arbitrary JSON, bodies whose fields fit a
//! decoder, the same with one field of the wrong kind, and valid bodies with their bytes mangled.
//! A decoder's own test module states its fields once ([`decoder_properties!`]) and is checked
//! for what every decoder must do:
//!
//! - any bytes are decoded or refused with a CF error, never a panic;
//! - a JSON document that is not an object is `CF-MessageParseError`;
//! - a body whose fields have the right kinds is decoded into what was sent (unknown fields are
//!   ignored, `null` is absent);
//! - one field of the wrong kind, or a required one missing, is `CF-MessageParseError` naming it;
//! - a valid body truncated, or with a byte changed, added or removed, is decoded or refused as
//!   above, and refused as `CF-MessageParseError` when it is no JSON any more.

use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::TestCaseError;
use serde_json::{Map, Value};

use crate::error::ApiError;

/// Cases per property: with ~80 properties, the whole set runs in about a second.
const CASES: u32 = 96;

/// `CF-MessageParseError`.
pub const MESSAGE_PARSE_ERROR: u32 = 1001;

pub fn config() -> ProptestConfig {
    ProptestConfig {
        cases: CASES,
        ..ProptestConfig::default()
    }
}

/// What a decoder expects in one field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// An optional string.
    Str,
    /// A string that must be there (absent and `null` are "Missing field").
    RequiredStr,
    /// An optional JSON object.
    Object,
    Bool,
    /// An integer that fits an `i64`.
    Int,
    /// An array of strings.
    StrList,
    /// A string, one of these (another string is the decoder's own error, not a parse error).
    OneOf(&'static [&'static str]),
}

/// A decoder's fields, by name.
pub type Spec = &'static [(&'static str, Kind)];

/// Fields of which a body may give at most one.
pub type Groups = &'static [&'static [&'static str]];

/// Strings as clients send them: anything but NUL (which every decoder refuses).
pub fn text() -> impl Strategy<Value = String> {
    "[^\\x00]{0,24}"
}

/// Numbers whose JSON text parses back to the same number.
fn number() -> impl Strategy<Value = Value> {
    prop_oneof![
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        // Multiples of 1/8: exact in binary, short in decimal.
        (-1_000_000i32..1_000_000).prop_map(|n| Value::from(f64::from(n) / 8.0)),
    ]
}

fn object_of(entries: std::collections::BTreeMap<String, Value>) -> Value {
    Value::Object(entries.into_iter().collect())
}

/// Any JSON document, a few levels deep.
pub fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        number(),
        any::<String>().prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(any::<String>(), inner, 0..4).prop_map(object_of),
        ]
    })
}

/// Any JSON document but an object.
pub fn any_non_object() -> impl Strategy<Value = Value> {
    any_json().prop_filter("not an object", |v| !v.is_object())
}

/// Any bytes: mostly short, some of them JSON-ish.
pub fn any_bytes() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..64),
        any_json().prop_map(|v| v.to_string().into_bytes()),
        // Text made of JSON's own punctuation and a few words.
        prop::collection::vec(
            prop::sample::select(vec![
                "{", "}", "[", "]", ":", ",", "\"", "\\", "null", "true", "1e999", "-", " ",
                "\"name\"", "\u{e9}", "\u{0}",
            ]),
            0..24
        )
        .prop_map(|parts| parts.concat().into_bytes()),
    ]
}

fn no_nul(s: &str) -> bool {
    !s.contains('\0')
}

/// Whether a decoder takes `v` in a field of `kind` (`null` is an absent optional field).
fn fits(kind: Kind, v: &Value) -> bool {
    match (kind, v) {
        (Kind::RequiredStr, Value::String(s)) => no_nul(s),
        (Kind::RequiredStr, _) => false,
        (_, Value::Null) => true,
        (Kind::Str, Value::String(s)) => no_nul(s),
        (Kind::OneOf(allowed), Value::String(s)) => allowed.contains(&s.as_str()),
        (Kind::Object, Value::Object(_)) => true,
        (Kind::Bool, Value::Bool(_)) => true,
        (Kind::Int, Value::Number(n)) => n.as_i64().is_some(),
        (Kind::StrList, Value::Array(items)) => {
            items.iter().all(|i| i.as_str().is_some_and(no_nul))
        }
        _ => false,
    }
}

/// A value a decoder takes in a field of `kind` (never `null`).
fn value_of(kind: Kind) -> BoxedStrategy<Value> {
    match kind {
        Kind::Str | Kind::RequiredStr => text().prop_map(Value::String).boxed(),
        Kind::OneOf(allowed) => prop::sample::select(allowed).prop_map(Value::from).boxed(),
        Kind::Object => prop::collection::btree_map(any::<String>(), any_json(), 0..4)
            .prop_map(object_of)
            .boxed(),
        Kind::Bool => any::<bool>().prop_map(Value::Bool).boxed(),
        Kind::Int => any::<i64>().prop_map(Value::from).boxed(),
        Kind::StrList => prop::collection::vec(text(), 0..4)
            .prop_map(Value::from)
            .boxed(),
    }
}

/// A value a decoder refuses in a field of `kind` as being of the wrong kind. (For `OneOf`,
/// only what is not a string: another string is the decoder's own error.)
fn wrong_value_of(kind: Kind) -> BoxedStrategy<Value> {
    let another_choice = move |v: &Value| matches!(kind, Kind::OneOf(_)) && v.is_string();
    let other = any_json()
        .prop_filter("of the wrong kind", move |v| {
            !(fits(kind, v) || another_choice(v))
        })
        .boxed();
    let with_nul = (text(), text()).prop_map(|(a, b)| format!("{a}\0{b}"));
    match kind {
        Kind::Str | Kind::RequiredStr => {
            prop_oneof![other, with_nul.prop_map(Value::String)].boxed()
        }
        Kind::StrList => prop_oneof![other, with_nul.prop_map(|s| Value::from(vec![s]))].boxed(),
        Kind::OneOf(_) => prop_oneof![other, with_nul.prop_map(Value::String)].boxed(),
        _ => other,
    }
}

/// A body whose fields all fit `spec` (optional ones absent, `null` or given), at most one of
/// each group, and a few unknown fields besides.
pub fn well_typed(spec: Spec, groups: Groups) -> impl Strategy<Value = Map<String, Value>> {
    let fields: Vec<BoxedStrategy<Option<Value>>> = spec
        .iter()
        .map(|(_, kind)| match kind {
            Kind::RequiredStr => value_of(*kind).prop_map(Some).boxed(),
            _ => prop_oneof![
                Just(None),
                Just(Some(Value::Null)),
                value_of(*kind).prop_map(Some),
                value_of(*kind).prop_map(Some),
            ]
            .boxed(),
        })
        .collect();
    let unknown = prop::collection::btree_map("[a-z_]{1,12}", any_json(), 0..3);
    (fields, unknown).prop_map(move |(values, unknown)| {
        let mut body: Map<String, Value> = unknown
            .into_iter()
            .filter(|(k, _)| !spec.iter().any(|(name, _)| name == k))
            .collect();
        for ((name, _), value) in spec.iter().zip(values) {
            if let Some(v) = value {
                body.insert(name.to_string(), v);
            }
        }
        for group in groups {
            let mut given = group
                .iter()
                .filter(|f| body.get(**f).is_some_and(|v| !v.is_null()));
            given.next();
            let extra: Vec<&str> = given.copied().collect();
            for f in extra {
                body.remove(f);
            }
        }
        body
    })
}

/// A [`well_typed`] body with one field (named) of the wrong kind, or, if required, missing.
pub fn ill_typed(
    spec: Spec,
    groups: Groups,
) -> impl Strategy<Value = (Map<String, Value>, &'static str)> {
    (well_typed(spec, groups), any::<Index>()).prop_flat_map(move |(body, which)| {
        let (name, kind) = spec[which.index(spec.len())];
        let wrong = if kind == Kind::RequiredStr {
            prop_oneof![Just(None), wrong_value_of(kind).prop_map(Some)].boxed()
        } else {
            wrong_value_of(kind).prop_map(Some).boxed()
        };
        wrong.prop_map(move |wrong| {
            let mut body = body.clone();
            match wrong {
                Some(v) => body.insert(name.to_string(), v),
                None => body.remove(name),
            };
            (body, name)
        })
    })
}

/// How a valid body's bytes get mangled.
#[derive(Debug, Clone)]
enum Mangle {
    Truncate(Index),
    Replace(Index, u8),
    Insert(Index, u8),
    Remove(Index),
}

fn mangle(mut bytes: Vec<u8>, how: Mangle) -> Vec<u8> {
    if bytes.is_empty() {
        return bytes;
    }
    match how {
        Mangle::Truncate(at) => bytes.truncate(at.index(bytes.len())),
        Mangle::Replace(at, b) => {
            let i = at.index(bytes.len());
            bytes[i] = b;
        }
        Mangle::Insert(at, b) => {
            let i = at.index(bytes.len() + 1);
            bytes.insert(i, b);
        }
        Mangle::Remove(at) => {
            bytes.remove(at.index(bytes.len()));
        }
    }
    bytes
}

/// A [`well_typed`] body, serialized, then mangled once or twice.
pub fn mangled(spec: Spec, groups: Groups) -> impl Strategy<Value = Vec<u8>> {
    let how = prop_oneof![
        any::<Index>().prop_map(Mangle::Truncate),
        (any::<Index>(), any::<u8>()).prop_map(|(i, b)| Mangle::Replace(i, b)),
        (any::<Index>(), any::<u8>()).prop_map(|(i, b)| Mangle::Insert(i, b)),
        any::<Index>().prop_map(Mangle::Remove),
    ];
    (well_typed(spec, groups), prop::collection::vec(how, 1..3)).prop_map(|(body, hows)| {
        let bytes = serde_json::to_vec(&body).unwrap_or_default();
        hows.into_iter().fold(bytes, mangle)
    })
}

/// The fields of `sent` a decoder reads, as it should have read them (`null` is absent).
pub fn sent_fields(spec: Spec, sent: &Map<String, Value>) -> Map<String, Value> {
    spec.iter()
        .filter_map(|(name, _)| {
            sent.get(*name)
                .filter(|v| !v.is_null())
                .map(|v| (name.to_string(), v.clone()))
        })
        .collect()
}

/// What a decoder made of a body, as the fields it was read from (absent ones left out).
pub fn decoded<const N: usize>(fields: [(&str, Option<Value>); N]) -> Map<String, Value> {
    fields
        .into_iter()
        .filter_map(|(name, v)| v.map(|v| (name.to_string(), v)))
        .collect()
}

/// Decoded, or refused with `CF-MessageParseError` or one of the decoder's own `codes`; a
/// refusal renders as a CF error document.
pub fn check_refusal<T>(result: &Result<T, ApiError>, codes: &[u32]) -> Result<(), TestCaseError> {
    let Err(e) = result else { return Ok(()) };
    let (status, code, name) = e.details();
    prop_assert!(
        code == MESSAGE_PARSE_ERROR || codes.contains(&code),
        "refused with {code} {name}: {e}"
    );
    prop_assert!((400..500).contains(&status), "{status} for {e}");
    let doc: Value = serde_json::from_slice(&e.body())
        .map_err(|err| TestCaseError::fail(format!("not a JSON error body: {err}")))?;
    prop_assert_eq!(doc["code"].as_u64(), Some(u64::from(code)));
    let error_code = format!("CF-{name}");
    prop_assert_eq!(doc["error_code"].as_str(), Some(error_code.as_str()));
    prop_assert!(doc["description"].is_string());
    Ok(())
}

/// Refused with `CF-MessageParseError` (naming `field`, if given).
pub fn check_parse_error<T>(
    result: &Result<T, ApiError>,
    field: Option<&str>,
) -> Result<(), TestCaseError> {
    let Err(e) = result else {
        return Err(TestCaseError::fail("decoded, not refused"));
    };
    prop_assert!(
        matches!(e, ApiError::MessageParseError(_)),
        "refused with {e:?}"
    );
    check_refusal(result, &[])?;
    if let Some(field) = field {
        let named = format!("Field: {field},");
        prop_assert!(e.to_string().contains(&named), "{e} does not name {field}");
    }
    Ok(())
}

/// The properties every request-body decoder has (see the module's documentation), as a test
/// module named `$name`:
///
/// ```ignore
/// decoder_properties!(space_update {
///     decode: update_input,                    // fn(&[u8]) -> ApiResult<T>
///     fields: &[("name", Kind::Str)],
///     at_most_one_of: &[&["a", "b"]],          // optional
///     also_refused_with: &[30001],             // optional: the decoder's own CF codes
///     decoded_as: |input: &T, sent: &Map<String, Value>| decoded([("name", ...)]),
/// });
/// ```
macro_rules! decoder_properties {
    ($name:ident {
        decode: $decode:expr,
        fields: $fields:expr,
        $(at_most_one_of: $groups:expr,)?
        $(also_refused_with: $codes:expr,)?
        decoded_as: $back:expr $(,)?
    }) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;
            #[allow(unused_imports)]
            use $crate::api::body_properties::{self as props, decoded, Kind};
            // (The enclosing test module may have imported it already.)
            #[allow(unused_imports)]
            use proptest::prelude::*;

            const FIELDS: props::Spec = $fields;

            fn groups() -> props::Groups {
                #[allow(unused_variables)]
                let groups: props::Groups = &[];
                $(let groups: props::Groups = $groups;)?
                groups
            }

            fn codes() -> &'static [u32] {
                #[allow(unused_variables)]
                let codes: &'static [u32] = &[];
                $(let codes: &'static [u32] = $codes;)?
                codes
            }

            proptest! {
                #![proptest_config(props::config())]

                #[test]
                fn any_bytes_are_decoded_or_refused(bytes in props::any_bytes()) {
                    props::check_refusal(&($decode)(&bytes), codes())?;
                }

                #[test]
                fn json_that_is_not_an_object_is_a_parse_error(v in props::any_non_object()) {
                    let body = serde_json::to_vec(&v).unwrap();
                    props::check_parse_error(&($decode)(&body), None)?;
                }

                #[test]
                fn well_typed_fields_decode_as_sent(sent in props::well_typed(FIELDS, groups())) {
                    let body = serde_json::to_vec(&sent).unwrap();
                    let input = match ($decode)(&body) {
                        Ok(input) => input,
                        Err(e) => return Err(TestCaseError::fail(format!("{sent:?} refused: {e:?}"))),
                    };
                    let back: serde_json::Map<String, serde_json::Value> = ($back)(&input, &sent);
                    prop_assert_eq!(back, props::sent_fields(FIELDS, &sent));
                }

                #[test]
                fn a_field_of_the_wrong_kind_is_a_parse_error_naming_it(
                    (sent, field) in props::ill_typed(FIELDS, groups()),
                ) {
                    let body = serde_json::to_vec(&sent).unwrap();
                    props::check_parse_error(&($decode)(&body), Some(field))?;
                }

                #[test]
                fn a_mangled_body_is_decoded_or_refused(bytes in props::mangled(FIELDS, groups())) {
                    let result = ($decode)(&bytes);
                    props::check_refusal(&result, codes())?;
                    let blank = bytes.iter().all(u8::is_ascii_whitespace);
                    if !blank && serde_json::from_slice::<serde_json::Value>(&bytes).is_err() {
                        props::check_parse_error(&result, None)?;
                    }
                }
            }
        }
    };
}

pub(crate) use decoder_properties;
