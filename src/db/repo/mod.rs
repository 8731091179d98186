//! Repository functions: plain diesel over a caller's connection, no transactions of their own.

pub mod apps;
pub mod bindings;
pub mod brokers;
pub mod instances;
pub mod keys;
pub mod marketplace;
pub mod orgs;
pub mod registry;
pub mod roles;
pub mod spaces;
pub mod stats;

use diesel::QueryResult;

diesel::define_sql_function! {
    /// SQL `lower()`: CC's names of orgs and spaces compare case-insensitively.
    fn lower(x: diesel::sql_types::Text) -> diesel::sql_types::Text;
}

/// Applies an equality filter (`:` or `IN`) to a name column case-insensitively, as CC's
/// case-insensitive name columns compare; other operators as [`filter_text!`].
#[macro_export]
macro_rules! filter_name {
    ($query:expr, $col:expr, $filter:expr) => {{
        use diesel::prelude::*;
        let f: &$crate::db::repo::Filter = $filter;
        match f.op {
            $crate::db::repo::FilterOp::Eq => {
                $query.filter($crate::db::repo::lower($col).eq(f.first().to_lowercase()))
            }
            $crate::db::repo::FilterOp::In => $query.filter(
                $crate::db::repo::lower($col).eq_any(
                    f.values
                        .iter()
                        .map(|v| v.to_lowercase())
                        .collect::<Vec<_>>(),
                ),
            ),
            _ => $crate::filter_text!($query, $col, f),
        }
    }};
}

pub use super::DbConnection;
pub type Backend = super::MultiBackend;

/// A `q=` filter: `key:value`, `key IN a,b`, `key>=v`, `key<=v`, `key<v`, `key>v`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Filter {
    pub key: String,
    pub op: FilterOp,
    pub values: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FilterOp {
    Eq,
    In,
    Ge,
    Le,
    Lt,
    Gt,
}

impl Filter {
    /// `key:value`, the filter a lookup by one column's value needs.
    pub fn eq(key: &str, value: impl Into<String>) -> Self {
        Filter {
            key: key.into(),
            op: FilterOp::Eq,
            values: vec![value.into()],
        }
    }

    pub fn first(&self) -> String {
        self.values.first().cloned().unwrap_or_default()
    }
}

/// What page of a list to load.
#[derive(Debug, Clone, Copy)]
pub struct PageRequest {
    pub page: i64,
    pub per_page: i64,
    pub descending: bool,
    pub order: OrderBy,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OrderBy {
    Id,
    Name,
}

impl PageRequest {
    /// The first `per_page` rows by id, ascending.
    pub fn first(per_page: i64) -> Self {
        PageRequest {
            page: 1,
            per_page,
            descending: false,
            order: OrderBy::Id,
        }
    }

    pub fn offset(&self) -> i64 {
        (self.page - 1).saturating_mul(self.per_page)
    }
}

/// What a list request asks for: its `q=` filters and which page.
#[derive(Debug, Clone)]
pub struct ListQuery {
    pub filters: Vec<Filter>,
    pub page: PageRequest,
}

impl ListQuery {
    /// Everything unfiltered, first page of 50 by id (embedded lists).
    pub fn first_page() -> Self {
        ListQuery {
            filters: Vec::new(),
            page: PageRequest::first(50),
        }
    }
}

/// A loaded page: the total count and the rows.
#[derive(Debug)]
pub struct Loaded<T> {
    pub total: i64,
    pub rows: Vec<T>,
}

/// Applies a filter to a text column of a boxed query.
#[macro_export]
macro_rules! filter_text {
    ($query:expr, $col:expr, $filter:expr) => {{
        use diesel::prelude::*;
        let f: &$crate::db::repo::Filter = $filter;
        match f.op {
            $crate::db::repo::FilterOp::Eq => $query.filter($col.eq(f.first())),
            $crate::db::repo::FilterOp::In => $query.filter($col.eq_any(f.values.clone())),
            $crate::db::repo::FilterOp::Ge => $query.filter($col.ge(f.first())),
            $crate::db::repo::FilterOp::Le => $query.filter($col.le(f.first())),
            $crate::db::repo::FilterOp::Lt => $query.filter($col.lt(f.first())),
            $crate::db::repo::FilterOp::Gt => $query.filter($col.gt(f.first())),
        }
    }};
}

/// Applies a filter on a column of another table: `outer IN (sub WHERE col <op> value)`.
/// (Boxed subqueries cannot be rendered through diesel's MultiBackend, so each arm builds its
/// own plain subquery.)
#[macro_export]
macro_rules! filter_via {
    ($query:expr, $outer:expr, $sub:expr, $col:expr, $filter:expr) => {{
        use diesel::prelude::*;
        let f: &$crate::db::repo::Filter = $filter;
        match f.op {
            $crate::db::repo::FilterOp::Eq => {
                $query.filter($outer.eq_any($sub.filter($col.eq(f.first()))))
            }
            $crate::db::repo::FilterOp::In => {
                $query.filter($outer.eq_any($sub.filter($col.eq_any(f.values.clone()))))
            }
            $crate::db::repo::FilterOp::Ge => {
                $query.filter($outer.eq_any($sub.filter($col.ge(f.first()))))
            }
            $crate::db::repo::FilterOp::Le => {
                $query.filter($outer.eq_any($sub.filter($col.le(f.first()))))
            }
            $crate::db::repo::FilterOp::Lt => {
                $query.filter($outer.eq_any($sub.filter($col.lt(f.first()))))
            }
            $crate::db::repo::FilterOp::Gt => {
                $query.filter($outer.eq_any($sub.filter($col.gt(f.first()))))
            }
        }
    }};
}

/// Applies a filter to a boolean column (`t`/`true`/`1`, `f`/`false`/`0`).
#[macro_export]
macro_rules! filter_bool {
    ($query:expr, $col:expr, $filter:expr) => {{
        use diesel::prelude::*;
        let f: &$crate::db::repo::Filter = $filter;
        let parse = |v: &str| matches!(v, "t" | "true" | "1" | "TRUE" | "True");
        match f.op {
            $crate::db::repo::FilterOp::In => {
                $query.filter($col.eq_any(f.values.iter().map(|v| parse(v)).collect::<Vec<_>>()))
            }
            _ => $query.filter($col.eq(parse(&f.first()))),
        }
    }};
}

/// Orders a boxed query by id or name.
#[macro_export]
macro_rules! order_page {
    ($query:expr, $page:expr, $id:expr, $name:expr) => {{
        use diesel::prelude::*;
        let p: &$crate::db::repo::PageRequest = $page;
        let q = match (p.order, p.descending) {
            ($crate::db::repo::OrderBy::Id, false) => $query.order($id.asc()),
            ($crate::db::repo::OrderBy::Id, true) => $query.order($id.desc()),
            ($crate::db::repo::OrderBy::Name, false) => $query.order(($name.asc(), $id.asc())),
            ($crate::db::repo::OrderBy::Name, true) => $query.order(($name.desc(), $id.desc())),
        };
        q.limit(p.per_page).offset(p.offset())
    }};
}

/// Maps "no row" to `None`.
pub fn optional<T>(r: QueryResult<T>) -> QueryResult<Option<T>> {
    use diesel::OptionalExtension;
    r.optional()
}
