//! CC v2 list parameters: `page`, `results-per-page`, `order-direction`, `order-by`,
//! `inline-relations-depth`, and repeated `q` filters (lib/vcap/rest_api/query.rb semantics:
//! `;` joins filters inside one `q`, `;;` escapes a literal `;`; operators `:`, ` IN `, `>=`,
//! `<=`, `<`, `>`; a key that is not queryable is a `BadQueryParameter`).

use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

use crate::db::repo::{Filter, FilterOp, ListQuery, OrderBy, PageRequest};
use crate::error::ApiError;

pub const DEFAULT_PER_PAGE: i64 = 50;
pub const MAX_PER_PAGE: i64 = 100;
pub const MAX_INLINE_DEPTH: u8 = 2;

#[derive(Debug, Clone)]
pub struct ListParams {
    pub page: i64,
    pub per_page: i64,
    pub descending: bool,
    pub order_by: Option<String>,
    pub inline_depth: Option<u8>,
    /// The `q` values as given, for `next_url`/`prev_url`.
    pub raw_q: Vec<String>,
    pub filters: Vec<Filter>,
    /// Other parameters, some of which CC preserves in page links.
    pub extra: Vec<(String, String)>,
}

impl ListParams {
    /// Parses the query string of a list request; `allowed` are the queryable keys.
    pub fn parse(query: &str, allowed: &[&str]) -> Result<ListParams, ApiError> {
        let mut params = ListParams {
            page: 1,
            per_page: DEFAULT_PER_PAGE,
            descending: false,
            order_by: None,
            inline_depth: None,
            raw_q: Vec::new(),
            filters: Vec::new(),
            extra: Vec::new(),
        };
        for (key, value) in form_urlencoded::parse(query.as_bytes()) {
            if key.contains('\0') || value.contains('\0') {
                return Err(ApiError::BadQueryParameter(
                    "query parameters must not contain NUL characters".into(),
                ));
            }
            match key.as_ref() {
                "page" => params.page = parse_page(&value)?,
                "results-per-page" => params.per_page = parse_per_page(&value)?,
                "order-direction" => params.descending = parse_descending(&value)?,
                "order-by" => params.order_by = Some(value.into_owned()),
                "inline-relations-depth" => params.inline_depth = Some(parse_depth(&value)?),
                "q" => {
                    params.filters.extend(parse_q(&value, allowed)?);
                    params.raw_q.push(value.into_owned());
                }
                // The `qs`-library array form (`q[0]=`) is not CC syntax; silently ignoring it
                // would return an unfiltered list, so reject it.
                k if k.starts_with("q[") => {
                    return Err(ApiError::BadQueryParameter(k.to_string()));
                }
                _ => params.extra.push((key.into_owned(), value.into_owned())),
            }
        }
        Ok(params)
    }

    pub fn page_request(&self, allow_name_order: bool) -> Result<PageRequest, ApiError> {
        let order = match self.order_by.as_deref() {
            None | Some("id") | Some("created_at") => OrderBy::Id,
            Some("name") | Some("label") if allow_name_order => OrderBy::Name,
            Some(other) => {
                return Err(ApiError::BadQueryParameter(format!("order-by {other}")));
            }
        };
        Ok(PageRequest {
            page: self.page,
            per_page: self.per_page,
            descending: self.descending,
            order,
        })
    }

    /// The filters and page for the use case; `allow_name_order`: the resource has names to
    /// sort by (bindings and keys are listed by id only, as in CC).
    pub fn query(&self, allow_name_order: bool) -> Result<ListQuery, ApiError> {
        Ok(ListQuery {
            filters: self.filters.clone(),
            page: self.page_request(allow_name_order)?,
        })
    }

    pub fn extra(&self, key: &str) -> Option<&str> {
        self.extra
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// `next_url`/`prev_url` for a page, as CC builds them (keys in alphabetical order, `q`
    /// repeated, relative path).
    pub fn page_url(&self, path: &str, page: i64, preserve: &[&str]) -> String {
        let mut pairs: Vec<(&str, String)> = Vec::new();
        if let Some(d) = self.inline_depth {
            pairs.push(("inline-relations-depth", d.to_string()));
        }
        if let Some(o) = &self.order_by {
            pairs.push(("order-by", o.clone()));
        }
        pairs.push((
            "order-direction",
            if self.descending { "desc" } else { "asc" }.to_string(),
        ));
        pairs.push(("page", page.to_string()));
        for q in &self.raw_q {
            pairs.push(("q", q.clone()));
        }
        pairs.push(("results-per-page", self.per_page.to_string()));
        for key in preserve {
            if let Some(v) = self.extra(key) {
                pairs.push((key, v.to_string()));
            }
        }
        pairs.sort_by(|a, b| a.0.cmp(b.0));
        let mut url = String::with_capacity(path.len() + 96);
        url.push_str(path);
        for (i, (k, v)) in pairs.iter().enumerate() {
            url.push(if i == 0 { '?' } else { '&' });
            url.push_str(k);
            url.push('=');
            url.extend(utf8_percent_encode(v, QUERY_VALUE));
        }
        url
    }
}

/// Characters escaped in page-link query values (`:` and `,` stay readable, as in CC's links).
const QUERY_VALUE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~')
    .remove(b':')
    .remove(b',');

/// `page`: from 1.
fn parse_page(value: &str) -> Result<i64, ApiError> {
    value
        .trim()
        .parse::<i64>()
        .ok()
        .filter(|p| *p >= 1)
        .ok_or_else(|| ApiError::BadQueryParameter("page must be greater than 0".into()))
}

/// `results-per-page`: from 1 to `MAX_PER_PAGE`.
fn parse_per_page(value: &str) -> Result<i64, ApiError> {
    let n = value
        .trim()
        .parse::<i64>()
        .map_err(|_| ApiError::BadQueryParameter("results_per_page must be an integer".into()))?;
    if n > MAX_PER_PAGE {
        return Err(ApiError::BadQueryParameter(format!(
            "results_per_page must be <= {MAX_PER_PAGE}"
        )));
    }
    if n < 1 {
        return Err(ApiError::BadQueryParameter(
            "results_per_page must be greater than 0".into(),
        ));
    }
    Ok(n)
}

/// `order-direction`: `asc` or `desc` (true), exactly.
fn parse_descending(value: &str) -> Result<bool, ApiError> {
    match value {
        "asc" => Ok(false),
        "desc" => Ok(true),
        other => Err(ApiError::BadQueryParameter(format!(
            "order_direction must be 'asc' or 'desc' but was '{other}'"
        ))),
    }
}

/// `inline-relations-depth`: at most `MAX_INLINE_DEPTH`; a negative depth counts as 0.
fn parse_depth(value: &str) -> Result<u8, ApiError> {
    let d = value.trim().parse::<i64>().map_err(|_| {
        ApiError::BadQueryParameter("inline_relations_depth must be an integer".into())
    })?;
    if d > MAX_INLINE_DEPTH as i64 {
        return Err(ApiError::BadQueryParameter(format!(
            "inline_relations_depth must be <= {MAX_INLINE_DEPTH}"
        )));
    }
    Ok(d.max(0) as u8)
}

/// Splits one `q` value into filters.
pub fn parse_q(q: &str, allowed: &[&str]) -> Result<Vec<Filter>, ApiError> {
    let mut out = Vec::new();
    for segment in split_filters(q) {
        let (key, op, value) =
            split_segment(&segment).ok_or_else(|| ApiError::BadQueryParameter(segment.clone()))?;
        if !allowed.contains(&key) {
            return Err(ApiError::BadQueryParameter(key.to_string()));
        }
        let values = if op == FilterOp::In {
            value.split(',').map(str::to_string).collect()
        } else {
            vec![value.to_string()]
        };
        out.push(Filter {
            key: key.to_string(),
            op,
            values,
        });
    }
    Ok(out)
}

/// The filters joined in one `q` value: `;` separates them, `;;` stands for a literal `;`.
fn split_filters(q: &str) -> Vec<String> {
    let mut segments = vec![String::new()];
    let mut chars = q.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            ';' if chars.peek() == Some(&';') => {
                chars.next();
                if let Some(s) = segments.last_mut() {
                    s.push(';');
                }
            }
            ';' => segments.push(String::new()),
            c => {
                if let Some(s) = segments.last_mut() {
                    s.push(c);
                }
            }
        }
    }
    segments
}

/// The leftmost operator wins, as with CC's `split(/(:|>=|<=|<|>| IN )/, 2)`. Operators are
/// ASCII, so they can only start at a char boundary: walking `char_indices` keeps every slice
/// on one (a multi-byte character before or inside an operator must not panic).
fn split_segment(segment: &str) -> Option<(&str, FilterOp, &str)> {
    const OPERATORS: [(&str, FilterOp); 6] = [
        (":", FilterOp::Eq),
        (">=", FilterOp::Ge),
        ("<=", FilterOp::Le),
        ("<", FilterOp::Lt),
        (">", FilterOp::Gt),
        (" IN ", FilterOp::In),
    ];
    segment.char_indices().find_map(|(i, _)| {
        let rest = &segment[i..];
        OPERATORS
            .iter()
            .find(|(token, _)| rest.starts_with(token))
            .map(|(token, op)| (&segment[..i], *op, &rest[token.len()..]))
    })
}

/// Total pages as Sequel computes them (at least 1).
pub fn total_pages(total: i64, per_page: i64) -> i64 {
    ((total + per_page - 1) / per_page).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEYS: &[&str] = &["app_guid", "name", "service_instance_guid"];

    #[test]
    fn parses_operators_and_joined_filters() {
        let f = parse_q("app_guid:a;name IN x,y;;z", KEYS).unwrap();
        assert_eq!(f.len(), 2);
        assert_eq!(f[0].key, "app_guid");
        assert_eq!(f[0].op, FilterOp::Eq);
        assert_eq!(f[0].values, vec!["a"]);
        assert_eq!(f[1].op, FilterOp::In);
        assert_eq!(f[1].values, vec!["x", "y;z"]);
        let f = parse_q("name>=b", KEYS).unwrap();
        assert_eq!(f[0].op, FilterOp::Ge);
        let f = parse_q("name:a:b", KEYS).unwrap();
        assert_eq!(f[0].values, vec!["a:b"]);
    }

    #[test]
    fn rejects_unknown_keys_and_missing_operators() {
        assert!(
            matches!(parse_q("space_guid:x", KEYS), Err(ApiError::BadQueryParameter(k)) if k == "space_guid")
        );
        assert!(parse_q("name", KEYS).is_err());
        assert!(parse_q("", KEYS).is_err());
    }

    #[test]
    fn page_limits() {
        assert!(ListParams::parse("results-per-page=101", KEYS).is_err());
        assert!(ListParams::parse("results-per-page=0", KEYS).is_err());
        assert!(ListParams::parse("page=0", KEYS).is_err());
        assert!(ListParams::parse("page=x", KEYS).is_err());
        assert!(ListParams::parse("inline-relations-depth=3", KEYS).is_err());
        assert!(ListParams::parse("order-direction=up", KEYS).is_err());
        assert!(ListParams::parse("q%5B0%5D=name:x", KEYS).is_err());
        let p =
            ListParams::parse("results-per-page=100&page=3&order-direction=desc", KEYS).unwrap();
        assert_eq!((p.per_page, p.page, p.descending), (100, 3, true));
    }

    #[test]
    fn page_urls_are_sorted_relative_and_keep_q() {
        let p =
            ListParams::parse("q=app_guid:a&q=name%20IN%20x,y&results-per-page=2", KEYS).unwrap();
        assert_eq!(
            p.page_url("/v2/service_bindings", 2, &[]),
            "/v2/service_bindings?order-direction=asc&page=2&q=app_guid:a&q=name%20IN%20x,y&results-per-page=2"
        );
    }

    #[test]
    fn total_pages_is_at_least_one() {
        assert_eq!(total_pages(0, 50), 1);
        assert_eq!(total_pages(50, 50), 1);
        assert_eq!(total_pages(51, 50), 2);
    }

    /// Multi-byte characters before, inside and after an operator: a clean
    /// `BadQueryParameter` or a filter, never a panic.
    #[test]
    fn multibyte_characters_never_split_a_char() {
        for q in [
            "name\u{e9}",
            "\u{e9}",
            "app_guid\u{e9}:x",
            "name\u{e9}>=\u{1F600}",
            "\u{e9} IN a",
        ] {
            let _ = parse_q(q, KEYS);
        }
        let f = parse_q("name:\u{e9}t\u{e9}", KEYS).unwrap();
        assert_eq!(f[0].values, vec!["\u{e9}t\u{e9}"]);
        assert!(matches!(
            parse_q("name\u{e9}:x", KEYS),
            Err(ApiError::BadQueryParameter(k)) if k == "name\u{e9}"
        ));
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        fn op_token(op: FilterOp) -> &'static str {
            match op {
                FilterOp::Eq => ":",
                FilterOp::Ge => ">=",
                FilterOp::Le => "<=",
                FilterOp::Lt => "<",
                FilterOp::Gt => ">",
                FilterOp::In => " IN ",
            }
        }

        fn any_op() -> impl Strategy<Value = FilterOp> {
            prop_oneof![
                Just(FilterOp::Eq),
                Just(FilterOp::Ge),
                Just(FilterOp::Le),
                Just(FilterOp::Lt),
                Just(FilterOp::Gt),
                Just(FilterOp::In),
            ]
        }

        proptest! {
            #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

            /// Any query string, bytes included: parsed or refused, never a panic.
            #[test]
            fn any_query_string_is_parsed_or_refused(raw in proptest::collection::vec(any::<u8>(), 0..200)) {
                let query: String = form_urlencoded::byte_serialize(&raw).collect();
                let _ = ListParams::parse(&format!("q={query}"), KEYS);
                let _ = ListParams::parse(&String::from_utf8_lossy(&raw), KEYS);
            }

            #[test]
            fn any_q_value_is_parsed_or_refused(q in "\\PC*") {
                if let Ok(filters) = parse_q(&q, KEYS) {
                    prop_assert!(filters.iter().all(|f| KEYS.contains(&f.key.as_str())));
                }
            }

            /// A filter written as CC clients write it comes back as written (`;` doubled to
            /// escape it; a value may contain operators after the first one).
            #[test]
            fn a_written_filter_parses_back(
                key in proptest::sample::select(KEYS.to_vec()),
                op in any_op(),
                value in "[^,]{0,30}",
            ) {
                // `<=`/`>=` win over `<`/`>` followed by a value that starts with `=` (CC's
                // regex alternation): such a value cannot be written after `<` or `>`.
                prop_assume!(!(matches!(op, FilterOp::Lt | FilterOp::Gt) && value.starts_with('=')));
                let written = format!("{key}{}{}", op_token(op), value.replace(';', ";;"));
                let parsed = parse_q(&written, KEYS).unwrap();
                prop_assert_eq!(parsed.len(), 1);
                prop_assert_eq!(&parsed[0].key, key);
                prop_assert_eq!(parsed[0].op, op);
                prop_assert_eq!(parsed[0].values.clone(), vec![value]);
            }

            /// A page link parses back into the same page, size, order and filters.
            #[test]
            fn page_links_round_trip(
                page in 1i64..10_000,
                per_page in 1i64..=MAX_PER_PAGE,
                descending in any::<bool>(),
                value in "\\PC{0,20}",
            ) {
                let query = format!(
                    "q={}&results-per-page={per_page}&order-direction={}",
                    form_urlencoded::byte_serialize(format!("name:{}", value.replace(';', ";;")).as_bytes()).collect::<String>(),
                    if descending { "desc" } else { "asc" },
                );
                let params = ListParams::parse(&query, KEYS).unwrap();
                let link = params.page_url("/v2/service_bindings", page, &[]);
                let (_, link_query) = link.split_once('?').unwrap();
                let back = ListParams::parse(link_query, KEYS).unwrap();
                prop_assert_eq!(back.page, page);
                prop_assert_eq!(back.per_page, per_page);
                prop_assert_eq!(back.descending, descending);
                prop_assert_eq!(back.filters, params.filters);
            }
        }
    }
}
