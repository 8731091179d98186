//! Timestamp columns read without chrono's format parser.
//!
//! On SQLite a timestamp is text (`2026-11-29 16:41:42.123456`, as diesel writes it); diesel
//! reads it back with `NaiveDateTime::parse_from_str`, which interprets its format string anew
//! for every value. A page of 50 bindings holds 200 timestamps, and that parsing was 9% of the
//! server's CPU for a list (perf, bench/RESULTS.md). [`DbTime`] parses the one layout diesel
//! writes directly and falls back to diesel for anything else; on PostgreSQL (binary
//! timestamps) it is diesel's own conversion.
//!
//! Models use it through `#[diesel(deserialize_as = DbTime)]` (and [`DbTimeOpt`] for nullable
//! columns), so their fields stay `NaiveDateTime`.

use chrono::{NaiveDate, NaiveDateTime};
use diesel::deserialize::{self, FromSql};
use diesel::pg::{Pg, PgValue};
use diesel::sql_types::{Nullable, Timestamp};
use diesel::sqlite::{Sqlite, SqliteValue};

use super::{MultiBackend, MultiRawValue};

/// A non-null timestamp column, deserialized fast.
#[derive(Debug, Clone, Copy, PartialEq, Eq, diesel::deserialize::FromSqlRow)]
pub struct DbTime(pub NaiveDateTime);

/// A nullable timestamp column, deserialized fast.
#[derive(Debug, Clone, Copy, PartialEq, Eq, diesel::deserialize::FromSqlRow)]
pub struct DbTimeOpt(pub Option<NaiveDateTime>);

impl From<DbTime> for NaiveDateTime {
    fn from(t: DbTime) -> Self {
        t.0
    }
}

impl From<DbTimeOpt> for Option<NaiveDateTime> {
    fn from(t: DbTimeOpt) -> Self {
        t.0
    }
}

impl FromSql<Timestamp, Sqlite> for DbTime {
    fn from_sql(mut value: SqliteValue<'_, '_, '_>) -> deserialize::Result<Self> {
        if let Some(t) = parse_sqlite_text(value.read_text()) {
            return Ok(DbTime(t));
        }
        <NaiveDateTime as FromSql<Timestamp, Sqlite>>::from_sql(value).map(DbTime)
    }
}

impl FromSql<Timestamp, Pg> for DbTime {
    fn from_sql(value: PgValue<'_>) -> deserialize::Result<Self> {
        <NaiveDateTime as FromSql<Timestamp, Pg>>::from_sql(value).map(DbTime)
    }
}

impl FromSql<Timestamp, MultiBackend> for DbTime {
    fn from_sql(value: MultiRawValue<'_>) -> deserialize::Result<Self> {
        match value {
            MultiRawValue::Sqlite(v) => <DbTime as FromSql<Timestamp, Sqlite>>::from_sql(v),
            MultiRawValue::Pg(v) => <DbTime as FromSql<Timestamp, Pg>>::from_sql(v),
        }
    }
}

/// The nullable column: `None` for NULL, else what [`DbTime`] reads.
macro_rules! nullable_time {
    ($backend:ty, $raw:ty) => {
        impl FromSql<Nullable<Timestamp>, $backend> for DbTimeOpt {
            fn from_sql(value: $raw) -> deserialize::Result<Self> {
                <DbTime as FromSql<Timestamp, $backend>>::from_sql(value)
                    .map(|t| DbTimeOpt(Some(t.0)))
            }

            fn from_nullable_sql(value: Option<$raw>) -> deserialize::Result<Self> {
                match value {
                    Some(v) => <Self as FromSql<Nullable<Timestamp>, $backend>>::from_sql(v),
                    None => Ok(DbTimeOpt(None)),
                }
            }
        }
    };
}

nullable_time!(Sqlite, SqliteValue<'_, '_, '_>);
nullable_time!(Pg, PgValue<'_>);
nullable_time!(MultiBackend, MultiRawValue<'_>);

/// `YYYY-MM-DD HH:MM:SS` with an optional `.` and 1 to 9 fraction digits (a `T` between date
/// and time is accepted too). `None` for anything else, including impossible dates.
pub fn parse_sqlite_text(s: &str) -> Option<NaiveDateTime> {
    let b = s.as_bytes();
    if b.len() < 19 {
        return None;
    }
    let num = |range: std::ops::Range<usize>| -> Option<u32> {
        let mut n = 0u32;
        for &c in &b[range] {
            if !c.is_ascii_digit() {
                return None;
            }
            n = n * 10 + u32::from(c - b'0');
        }
        Some(n)
    };
    if b[4] != b'-'
        || b[7] != b'-'
        || !(b[10] == b' ' || b[10] == b'T')
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let nanos = match &b[19..] {
        [] => 0,
        [b'.', digits @ ..] if (1..=9).contains(&digits.len()) => {
            let n = num(20..b.len())?;
            n * 10u32.pow(9 - digits.len() as u32)
        }
        _ => return None,
    };
    NaiveDate::from_ymd_opt(num(0..4)? as i32, num(5..7)?, num(8..10)?)?.and_hms_nano_opt(
        num(11..13)?,
        num(14..16)?,
        num(17..19)?,
        nanos,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_what_diesel_writes_and_agrees_with_chrono() {
        for text in [
            "2026-11-29 16:41:42.123456",
            "2026-11-29 16:41:42",
            "2026-11-29T16:41:42.5",
            "1999-01-01 00:00:00.000000001",
            "2024-02-29 23:59:59.999999999",
        ] {
            let expected = NaiveDateTime::parse_from_str(&text.replace('T', " "), "%F %T%.f")
                .expect("valid sample");
            assert_eq!(parse_sqlite_text(text), Some(expected), "{text}");
        }
    }

    #[test]
    fn rejects_everything_else() {
        for text in [
            "",
            "2026-11-29",
            "2026-11-29 16:41",
            "2026-13-01 00:00:00",
            "2026-02-30 00:00:00",
            "2026-11-29 24:00:00",
            "2026-11-29 16:41:42.",
            "2026-11-29 16:41:42.1234567890",
            "2026-11-29 16:41:42+00:00",
            "2026/11/29 16:41:42",
            "2026-11-29 16:4x:42",
            "+2026-11-29 16:41:42",
        ] {
            assert_eq!(parse_sqlite_text(text), None, "{text}");
        }
    }
}
