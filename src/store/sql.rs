//! Search SQL as text plus bind values, independent of the driver that runs it.
//!
//! The search builder (`push_where`, `push_order`, the `_include`/`_revinclude` fetches in
//! `backend_impl.rs`) is shared by both dialects. It writes into a [`Sql`] instead of an
//! `sqlx::QueryBuilder` so that the same statement can run on sqlx (PostgreSQL) or on the rusqlite
//! readers of the SQLite store (`sqlite_read`), whose statements are prepared once per connection and
//! cached (`prepare_cached`), without sqlx's worker-thread hand-off.

use std::fmt::Display;

/// One bind value. The variants are the Rust types the builder binds (so PostgreSQL infers the same
/// parameter types as with `sqlx::QueryBuilder::push_bind` of the same values).
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Arg {
    Text(String),
    Int(i64),
    Real(f64),
    Bool(bool),
}

impl From<String> for Arg {
    fn from(v: String) -> Arg {
        Arg::Text(v)
    }
}
impl From<i64> for Arg {
    fn from(v: i64) -> Arg {
        Arg::Int(v)
    }
}
impl From<f64> for Arg {
    fn from(v: f64) -> Arg {
        Arg::Real(v)
    }
}
impl From<bool> for Arg {
    fn from(v: bool) -> Arg {
        Arg::Bool(v)
    }
}

/// SQLite stores booleans as integers 0/1 (sqlx-sqlite binds `bool` the same way).
impl rusqlite::ToSql for Arg {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        use rusqlite::types::{ToSqlOutput, Value, ValueRef};
        Ok(match self {
            Arg::Text(s) => ToSqlOutput::Borrowed(ValueRef::Text(s.as_bytes())),
            Arg::Int(i) => ToSqlOutput::Owned(Value::Integer(*i)),
            Arg::Real(f) => ToSqlOutput::Owned(Value::Real(*f)),
            Arg::Bool(b) => ToSqlOutput::Owned(Value::Integer(i64::from(*b))),
        })
    }
}

/// Placeholder style of a dialect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Placeholders {
    /// `?` (SQLite: positional, bound in order).
    Question,
    /// `$1`, `$2`, … (PostgreSQL).
    Numbered,
}

/// SQL text with its bind values in placeholder order.
#[derive(Debug, Clone)]
pub(crate) struct Sql {
    text: String,
    args: Vec<Arg>,
    style: Placeholders,
}

impl Sql {
    /// A statement starting with `init`, with placeholders of `style`.
    pub(crate) fn new(style: Placeholders, init: impl Into<String>) -> Sql {
        Sql { text: init.into(), args: Vec::new(), style }
    }

    /// Appends SQL text (never a value from the request: those go through [`Sql::push_bind`]).
    pub(crate) fn push(&mut self, s: impl Display) -> &mut Sql {
        use std::fmt::Write;
        let _ = write!(self.text, "{s}");
        self
    }

    /// Appends a placeholder bound to `v`.
    pub(crate) fn push_bind(&mut self, v: impl Into<Arg>) -> &mut Sql {
        self.args.push(v.into());
        match self.style {
            Placeholders::Question => self.text.push('?'),
            Placeholders::Numbered => {
                let n = self.args.len();
                self.push(format_args!("${n}"));
            }
        }
        self
    }

    /// Appends `v1, v2, …`: one placeholder per value, comma-separated (the inside of an `IN (…)`).
    pub(crate) fn push_bind_list<V: Into<Arg>>(&mut self, values: impl IntoIterator<Item = V>) -> &mut Sql {
        for (i, v) in values.into_iter().enumerate() {
            if i > 0 {
                self.text.push_str(", ");
            }
            self.push_bind(v);
        }
        self
    }

    /// The SQL text.
    pub(crate) fn text(&self) -> &str {
        &self.text
    }

    /// The bind values, in placeholder order.
    pub(crate) fn args(&self) -> &[Arg] {
        &self.args
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_follow_the_dialect_and_values_keep_their_order() {
        let mut q = Sql::new(Placeholders::Numbered, "SELECT 1 WHERE a = ");
        q.push_bind("x".to_string()).push(" AND b = ").push_bind(2i64).push(" AND c = ").push_bind(false);
        assert_eq!(q.text(), "SELECT 1 WHERE a = $1 AND b = $2 AND c = $3");
        assert_eq!(q.args(), &[Arg::Text("x".into()), Arg::Int(2), Arg::Bool(false)]);

        let mut q = Sql::new(Placeholders::Question, "SELECT 1 WHERE a = ");
        q.push_bind(1.5f64).push(" AND b = ").push_bind(true);
        assert_eq!(q.text(), "SELECT 1 WHERE a = ? AND b = ?");
        assert_eq!(q.args(), &[Arg::Real(1.5), Arg::Bool(true)]);

        let mut q = Sql::new(Placeholders::Numbered, "SELECT 1 WHERE a = ");
        q.push_bind(0i64).push(" AND b IN (").push_bind_list([7i64, 8, 9]).push(")");
        assert_eq!(q.text(), "SELECT 1 WHERE a = $1 AND b IN ($2, $3, $4)");
        assert_eq!(q.args(), &[Arg::Int(0), Arg::Int(7), Arg::Int(8), Arg::Int(9)]);
    }

    #[test]
    fn sqlite_binds_booleans_as_integers() {
        let c = rusqlite::Connection::open_in_memory().unwrap();
        let mut q = Sql::new(Placeholders::Question, "SELECT typeof(");
        q.push_bind(true).push("), ").push_bind(true).push(" + 0, ").push_bind("t".to_string());
        let (t, v, s): (String, i64, String) = c
            .query_row(q.text(), rusqlite::params_from_iter(q.args()), |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .unwrap();
        assert_eq!((t.as_str(), v, s.as_str()), ("integer", 1, "t"));
    }
}
