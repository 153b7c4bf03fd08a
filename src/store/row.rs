//! Reading stored rows into typed values, and the text encoding of small enumerations.
//!
//! Every table's `TryFrom<&AnyRow>` reads its columns through [`Fields`], so that any column
//! that is missing, of the wrong type, out of range or not one of the allowed values becomes a
//! [`StoreError::Decode`] naming the table, the row's key, the column and what was wrong.

use chrono::{DateTime, Utc};
use sqlx::any::AnyRow;
use sqlx::{Any, Decode, Row, Type};

use super::StoreError;

/// Gives a fieldless enum its stored spelling: `as_str`, `FromStr` (an error naming the allowed
/// values), `Display` and `ALL` (every variant, e.g. to report zero counts).
macro_rules! string_enum {
    ($ty:ident { $($variant:ident => $text:literal),+ $(,)? }) => {
        impl $ty {
            /// Every value, in declaration order.
            pub const ALL: &'static [Self] = &[$(Self::$variant),+];

            /// The stored spelling.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => $text),+
                }
            }
        }

        impl ::std::str::FromStr for $ty {
            type Err = String;
            fn from_str(text: &str) -> Result<Self, String> {
                match text {
                    $($text => Ok(Self::$variant),)+
                    _ => Err(format!(
                        "`{}` is not a {}; expected one of {}",
                        crate::names::shorten(text),
                        stringify!($ty),
                        [$($text),+].join(", ")
                    )),
                }
            }
        }

        impl ::std::fmt::Display for $ty {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}
pub(crate) use string_enum;

/// One row being decoded, with what is needed to say which row was bad.
pub(crate) struct Fields<'r> {
    row: &'r AnyRow,
    table: &'static str,
    key: String,
}

impl<'r> Fields<'r> {
    /// `key_column` identifies the row in error messages (an id, a seq).
    pub fn new(row: &'r AnyRow, table: &'static str, key_column: &str) -> Self {
        let key = row
            .try_get::<String, _>(key_column)
            .ok()
            .or_else(|| {
                row.try_get::<i64, _>(key_column)
                    .ok()
                    .map(|n| n.to_string())
            })
            .unwrap_or_else(|| "?".to_owned());
        Self { row, table, key }
    }

    /// A decode error for this row.
    pub fn error(&self, reason: impl Into<String>) -> StoreError {
        StoreError::Decode {
            table: self.table,
            key: self.key.clone(),
            reason: reason.into(),
        }
    }

    fn get<T>(&self, column: &str) -> Result<T, StoreError>
    where
        T: Decode<'r, Any> + Type<Any>,
    {
        self.row
            .try_get::<T, _>(column)
            .map_err(|err| self.error(format!("column `{column}`: {err}")))
    }

    pub fn text(&self, column: &str) -> Result<String, StoreError> {
        self.get(column)
    }

    pub fn opt_text(&self, column: &str) -> Result<Option<String>, StoreError> {
        self.get(column)
    }

    pub fn int(&self, column: &str) -> Result<i64, StoreError> {
        self.get(column)
    }

    pub fn opt_int(&self, column: &str) -> Result<Option<i64>, StoreError> {
        self.get(column)
    }

    /// A non-negative integer (forge ids, numbers, durations).
    pub fn uint(&self, column: &str) -> Result<u64, StoreError> {
        self.unsigned(column, self.int(column)?)
    }

    pub fn opt_uint(&self, column: &str) -> Result<Option<u64>, StoreError> {
        self.opt_int(column)?
            .map(|n| self.unsigned(column, n))
            .transpose()
    }

    /// A retry counter.
    pub fn count(&self, column: &str) -> Result<u32, StoreError> {
        let n = self.int(column)?;
        u32::try_from(n).map_err(|_| self.error(format!("column `{column}`: {n} is not a count")))
    }

    pub fn time(&self, column: &str) -> Result<DateTime<Utc>, StoreError> {
        self.millis(column, self.int(column)?)
    }

    pub fn opt_time(&self, column: &str) -> Result<Option<DateTime<Utc>>, StoreError> {
        self.opt_int(column)?
            .map(|ms| self.millis(column, ms))
            .transpose()
    }

    /// Text turned into a domain type by its own validation (`FromStr`, `TryFrom<String>`).
    pub fn parsed<T>(
        &self,
        column: &str,
        parse: impl FnOnce(String) -> Result<T, String>,
    ) -> Result<T, StoreError> {
        parse(self.text(column)?).map_err(|err| self.error(format!("column `{column}`: {err}")))
    }

    pub fn opt_parsed<T>(
        &self,
        column: &str,
        parse: impl FnOnce(String) -> Result<T, String>,
    ) -> Result<Option<T>, StoreError> {
        self.opt_text(column)?
            .map(|text| parse(text).map_err(|err| self.error(format!("column `{column}`: {err}"))))
            .transpose()
    }

    /// A JSON text column.
    pub fn json<T: serde::de::DeserializeOwned>(&self, column: &str) -> Result<T, StoreError> {
        self.parsed(column, |text| {
            serde_json::from_str(&text).map_err(|err| format!("not valid JSON here: {err}"))
        })
    }

    pub fn opt_json<T: serde::de::DeserializeOwned>(
        &self,
        column: &str,
    ) -> Result<Option<T>, StoreError> {
        self.opt_parsed(column, |text| {
            serde_json::from_str(&text).map_err(|err| format!("not valid JSON here: {err}"))
        })
    }

    fn unsigned(&self, column: &str, n: i64) -> Result<u64, StoreError> {
        u64::try_from(n).map_err(|_| self.error(format!("column `{column}`: {n} is negative")))
    }

    fn millis(&self, column: &str, ms: i64) -> Result<DateTime<Utc>, StoreError> {
        DateTime::from_timestamp_millis(ms).ok_or_else(|| {
            self.error(format!(
                "column `{column}`: {ms} ms is not a representable time"
            ))
        })
    }
}

/// Reads `SELECT <text>, COUNT(*)` rows into zero-filled counts for every value of `T`, so
/// that a metrics gauge drops back to 0 instead of keeping its last value.
pub(crate) fn counts_by<T>(
    rows: &[AnyRow],
    table: &'static str,
    all: &[T],
) -> Result<Vec<(T, u64)>, StoreError>
where
    T: Copy + PartialEq + std::str::FromStr<Err = String>,
{
    let mut counts: Vec<(T, u64)> = all.iter().map(|value| (*value, 0)).collect();
    for row in rows {
        let fields = Fields::new(row, table, "state");
        let state = fields.parsed("state", |text| text.parse::<T>())?;
        let n = fields.uint("n")?;
        if let Some(slot) = counts.iter_mut().find(|(value, _)| *value == state) {
            slot.1 = n;
        }
    }
    Ok(counts)
}
