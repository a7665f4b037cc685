//! The segment compiler: a validated [`Filter`] becomes one parameterized `WHERE` clause over
//! the mirror ([`crate::mirror`]), with the exact meaning of the in-memory evaluator
//! ([`tarefas_core::eval::matches`]), against which it is tested.
//!
//! * The clause is always scoped, `account_id = $1 AND (…)`.
//! * Every value is bound (`push_bind`), custom field keys included; the SQL text is built
//!   only from `'static` fragments, so no value can ever reach it.
//! * Text compares the normalized `*_lc` columns with the already lower-cased values by
//!   equality, `strpos` and `starts_with` (no `LIKE`, no `lower()`), which a deterministic
//!   collation cannot change; sort keys compare under `COLLATE "C"`.
//! * Time windows are computed in Rust with
//!   [`TimeTest::range`](tarefas_core::segment::TimeTest::range). `timestamptz` columns hold
//!   microseconds, so bounds are rounded to the microsecond in the direction that keeps the
//!   comparison exact. Custom dates, local date-times and instants are compared as the sort
//!   keys the mirror writes, against [`date_threshold`] / [`local_threshold`] / the instants.
//! * Conditions are combined with `AND` / `OR` only, never `NOT`, and each condition is NULL
//!   only where the evaluator says false; so NULL always acts as false.
//!
//! Segments are read in keyset pages (`id > $after ORDER BY id LIMIT $n`): [`page`] for one
//! page, [`SegmentPages`] to walk a whole segment in constant memory.
//!
//! **Plans.** Two choices keep the planner from reading a segment badly (measured by
//! `tarefas-bench segment`, see `docs/benchmarks.md`):
//! * the statements are unnamed (not cached per connection), so every execution is planned
//!   with its values: a cached generic plan cannot know how wide a time window is and took
//!   an index on `updated_at` for a window holding 38% of the rows (15× slower);
//! * conditions the planner cannot estimate (custom fields in JSONB) are wrapped so that its
//!   guess stays neutral (see `Compiler::root`); a low guess made every keyset page scan
//!   and sort the whole account instead of walking the primary key.

use chrono::{DateTime, Duration, Timelike, Utc};
use chrono_tz::Tz;
use sqlx::{PgExecutor, PgPool, Postgres, QueryBuilder};
use tarefas_core::segment::{
    Cmp, Field, Filter, NumTest, RefValue, Situation, Table, Test, TextTest, TimeRange,
};
use tarefas_core::time::{date_threshold, local_threshold};

use crate::mirror::{date_key, instant_key, local_key};
use crate::StoreError;

/// A value to bind.
#[derive(Debug, Clone, PartialEq)]
enum Bind {
    Int(i64),
    Ints(Vec<i64>),
    Text(String),
    Texts(Vec<String>),
    Float(f64),
    Time(DateTime<Utc>),
}

/// A piece of the compiled predicate: SQL text (always a `'static` fragment) or a value.
#[derive(Debug, Clone, PartialEq)]
enum Piece {
    Sql(&'static str),
    Bind(Bind),
}

/// A segment compiled for one table, zone and run start; render it for an account with
/// [`count`], [`sample`], [`page`] or [`SegmentPages`].
#[derive(Debug, Clone, PartialEq)]
pub struct SegmentQuery {
    table: Table,
    predicate: Vec<Piece>,
}

impl SegmentQuery {
    /// Compiles `filter` (`None`: the whole table) over `table`, reading whole days in the
    /// task's zone `tz` and relative dates from `run_started_at`.
    pub fn new(
        table: Table,
        filter: Option<&Filter>,
        tz: Tz,
        run_started_at: DateTime<Utc>,
    ) -> SegmentQuery {
        let mut c = Compiler {
            table,
            tz,
            now: run_started_at,
            out: Vec::new(),
        };
        match filter {
            Some(f) => c.root(f),
            None => c.sql("TRUE"),
        }
        SegmentQuery {
            table,
            predicate: c.out,
        }
    }

    /// The table the segment reads.
    pub fn table(&self) -> Table {
        self.table
    }

    /// The statement [`page`] runs (`SELECT id … WHERE account_id = $1 AND (…) AND id > $n
    /// ORDER BY id LIMIT $m`) and how many values it binds: for tests and debugging.
    pub fn explain(&self) -> (String, usize) {
        let mut qb = QueryBuilder::new("");
        let binds = self.push_page(&mut qb, 0, Some(0), 1);
        (qb.into_sql(), binds)
    }

    /// Pushes `account_id = $ AND (predicate)`; returns the number of values bound.
    fn push_where(&self, qb: &mut QueryBuilder<'_, Postgres>, account_id: i64) -> usize {
        qb.push("account_id = ")
            .push_bind(account_id)
            .push(" AND (");
        let mut binds = 1;
        for p in &self.predicate {
            match p {
                Piece::Sql(s) => {
                    qb.push(*s);
                }
                Piece::Bind(b) => {
                    binds += 1;
                    match b.clone() {
                        Bind::Int(v) => qb.push_bind(v),
                        Bind::Ints(v) => qb.push_bind(v),
                        Bind::Text(v) => qb.push_bind(v),
                        Bind::Texts(v) => qb.push_bind(v),
                        Bind::Float(v) => qb.push_bind(v),
                        Bind::Time(v) => qb.push_bind(v),
                    };
                }
            }
        }
        qb.push(")");
        binds
    }

    fn push_page(
        &self,
        qb: &mut QueryBuilder<'_, Postgres>,
        account_id: i64,
        after_id: Option<i64>,
        limit: i64,
    ) -> usize {
        qb.push("SELECT id FROM ")
            .push(self.table.as_str())
            .push(" WHERE ");
        let mut binds = self.push_where(qb, account_id);
        if let Some(after) = after_id {
            qb.push(" AND id > ").push_bind(after);
            binds += 1;
        }
        qb.push(" ORDER BY id LIMIT ").push_bind(limit.max(0));
        binds + 1
    }
}

/// How many records of `account_id` are in the segment.
pub async fn count<'e>(
    executor: impl PgExecutor<'e>,
    account_id: i64,
    query: &SegmentQuery,
) -> Result<i64, StoreError> {
    let mut qb = QueryBuilder::new("SELECT count(*) FROM ");
    qb.push(query.table.as_str()).push(" WHERE ");
    query.push_where(&mut qb, account_id);
    Ok(qb
        .build_query_scalar::<i64>()
        .persistent(false)
        .fetch_one(executor)
        .await?)
}

/// The first `limit` ids of the segment, by id (a preview sample).
pub async fn sample<'e>(
    executor: impl PgExecutor<'e>,
    account_id: i64,
    query: &SegmentQuery,
    limit: i64,
) -> Result<Vec<i64>, StoreError> {
    page(executor, account_id, query, None, limit).await
}

/// One keyset page: the first `limit` ids of the segment greater than `after_id` (from the
/// start when `None`), by id. An empty page means the segment is exhausted.
pub async fn page<'e>(
    executor: impl PgExecutor<'e>,
    account_id: i64,
    query: &SegmentQuery,
    after_id: Option<i64>,
    limit: i64,
) -> Result<Vec<i64>, StoreError> {
    let mut qb = QueryBuilder::new("");
    query.push_page(&mut qb, account_id, after_id, limit);
    Ok(qb
        .build_query_scalar::<i64>()
        .persistent(false)
        .fetch_all(executor)
        .await?)
}

/// Walks a segment in keyset pages, in constant memory: each [`next_page`] reads the next
/// `page_size` ids after the last one returned. [`cursor`] is the checkpoint to store, and
/// [`resume_after`] starts from one.
///
/// [`next_page`]: SegmentPages::next_page
/// [`cursor`]: SegmentPages::cursor
/// [`resume_after`]: SegmentPages::resume_after
#[derive(Debug)]
pub struct SegmentPages {
    pool: PgPool,
    account_id: i64,
    query: SegmentQuery,
    page_size: i64,
    after: Option<i64>,
    finished: bool,
}

impl SegmentPages {
    /// Starts at the beginning of the segment of `account_id`; `page_size` is at least 1.
    pub fn new(pool: PgPool, account_id: i64, query: SegmentQuery, page_size: i64) -> Self {
        SegmentPages {
            pool,
            account_id,
            query,
            page_size: page_size.max(1),
            after: None,
            finished: false,
        }
    }

    /// Continues after the id `after` (a stored checkpoint) instead of from the start.
    pub fn resume_after(mut self, after: Option<i64>) -> Self {
        self.after = after;
        self.finished = false;
        self
    }

    /// The last id returned so far (or the resume point): where the next page starts.
    pub fn cursor(&self) -> Option<i64> {
        self.after
    }

    /// The next page of ids, or `None` when the segment is exhausted.
    pub async fn next_page(&mut self) -> Result<Option<Vec<i64>>, StoreError> {
        if self.finished {
            return Ok(None);
        }
        let ids = page(
            &self.pool,
            self.account_id,
            &self.query,
            self.after,
            self.page_size,
        )
        .await?;
        if (ids.len() as i64) < self.page_size {
            self.finished = true;
        }
        match ids.last() {
            Some(&last) => {
                self.after = Some(last);
                Ok(Some(ids))
            }
            None => Ok(None),
        }
    }
}

/// Where a field lives in the table's row.
enum Column {
    Id,
    /// A normalized text column (`*_lc`, or digits for phones).
    Text(&'static str),
    /// A custom field: `custom_lc` / `custom_num` / `custom_date` under this key.
    Custom(String),
    Ref {
        id: &'static str,
        name_lc: &'static str,
    },
    Situation,
    Time(&'static str),
    /// Not a field of this table: never matches (as in the evaluator).
    Absent,
}

struct Compiler {
    table: Table,
    tz: Tz,
    now: DateTime<Utc>,
    out: Vec<Piece>,
}

/// A bound of a time window: its instant and whether it is inclusive.
type Bound = Option<(DateTime<Utc>, bool)>;
/// A bound on a sort key: the comparison operator and the key.
type KeyBound = Option<(&'static str, String)>;

impl Compiler {
    fn sql(&mut self, s: &'static str) {
        self.out.push(Piece::Sql(s));
    }

    fn bind(&mut self, b: Bind) {
        self.out.push(Piece::Bind(b));
    }

    /// The root of a filter, shaped for the planner. Postgres picks how to read a segment
    /// (walk the primary key for a keyset page, or scan everything and sort) from its
    /// estimate of how many rows match. It has statistics for plain columns, but for the
    /// custom fields in JSONB it can only guess (0.5% for an equality), and a low guess made
    /// it scan and sort the whole account for every page. So the members of the top `all`
    /// that it can estimate (time windows, ids, situations: plain columns, indexed) stay
    /// visible, ANDed at the top where indexes serve them, and the rest is one
    /// `COALESCE((…), FALSE)`, which it estimates at one half whatever it holds. In a WHERE
    /// clause that is the same predicate: NULL acts as false either way.
    fn root(&mut self, f: &Filter) {
        let members: Vec<&Filter> = match f {
            Filter::All(m) if !m.is_empty() => m.iter().collect(),
            Filter::All(_) => return self.node(f),
            other => vec![other],
        };
        let (visible, guarded): (Vec<&Filter>, Vec<&Filter>) =
            members.into_iter().partition(|m| self.estimable(m));
        for (i, m) in visible.iter().enumerate() {
            if i > 0 {
                self.sql(" AND ");
            }
            self.node(m);
        }
        if guarded.is_empty() {
            return;
        }
        if !visible.is_empty() {
            self.sql(" AND ");
        }
        self.sql("COALESCE((");
        for (i, m) in guarded.iter().enumerate() {
            if i > 0 {
                self.sql(" AND ");
            }
            self.node(m);
        }
        self.sql("), FALSE)");
    }

    /// A condition on a plain column whose selectivity the planner knows from statistics.
    fn estimable(&self, f: &Filter) -> bool {
        let Filter::Condition(c) = f else {
            return false;
        };
        matches!(
            (self.column(&c.field), &c.test),
            (Column::Time(_), Test::Time(_))
                | (Column::Id, Test::IdCmp(..) | Test::IdIn(..))
                | (Column::Situation, Test::Situation(..))
        )
    }

    fn node(&mut self, f: &Filter) {
        let (members, joiner, empty) = match f {
            Filter::All(m) => (m, " AND ", "TRUE"),
            Filter::Any(m) => (m, " OR ", "FALSE"),
            Filter::Condition(c) => {
                let column = self.column(&c.field);
                return self.condition(&c.test, column);
            }
        };
        if members.is_empty() {
            return self.sql(empty);
        }
        self.sql("(");
        for (i, m) in members.iter().enumerate() {
            if i > 0 {
                self.sql(joiner);
            }
            self.node(m);
        }
        self.sql(")");
    }

    fn column(&self, field: &Field) -> Column {
        use Field::*;
        match (self.table, field) {
            (_, Id) => Column::Id,
            (_, CreatedAt) => Column::Time("created_at"),
            (_, UpdatedAt) => Column::Time("updated_at"),
            (Table::Contacts, Name) => Column::Text("name_lc"),
            (Table::Contacts, Email) => Column::Text("email_lc"),
            (Table::Contacts, Mobile) => Column::Text("mobile"),
            (Table::Contacts, Phone) => Column::Text("phone"),
            (Table::Contacts, Group) => Column::Ref {
                id: "group_id",
                name_lc: "group_name_lc",
            },
            (Table::Contacts, Organization) => Column::Ref {
                id: "organization_id",
                name_lc: "organization_name_lc",
            },
            (Table::Contacts, Custom(k)) => Column::Custom(k.clone()),
            (Table::Chats, Department) => Column::Ref {
                id: "department_id",
                name_lc: "department_name_lc",
            },
            (Table::Chats, Channel) => Column::Ref {
                id: "channel_id",
                name_lc: "channel_name_lc",
            },
            (Table::Chats, Workflow) => Column::Ref {
                id: "workflow_id",
                name_lc: "workflow_name_lc",
            },
            (Table::Chats, WorkflowStep) => Column::Ref {
                id: "workflow_step_id",
                name_lc: "workflow_step_name_lc",
            },
            (Table::Chats, Situation) => Column::Situation,
            (Table::Chats, LastMessageAt) => Column::Time("last_message_at"),
            _ => Column::Absent,
        }
    }

    fn condition(&mut self, test: &Test, column: Column) {
        match (test, column) {
            (_, Column::Absent) => self.sql("FALSE"),
            (Test::IsSet, c) => self.is_set(&c, true),
            (Test::IsNotSet, c) => self.is_set(&c, false),
            (Test::Text(t), Column::Text(col)) => self.text(t, &TextCol::Plain(col)),
            (Test::Text(t), Column::Custom(k)) => self.text(t, &TextCol::Custom(k)),
            (Test::IdCmp(cmp, n), Column::Id) => {
                self.sql("id ");
                self.sql(cmp.sql());
                self.sql(" ");
                self.bind(Bind::Int(*n));
            }
            (Test::IdIn(ids, negated), Column::Id) => {
                self.sql(if *negated { "id <> ALL(" } else { "id = ANY(" });
                self.bind(Bind::Ints(ids.clone()));
                self.sql(")");
            }
            (Test::Ref(values, negated), Column::Ref { id, name_lc }) => {
                self.reference(values, *negated, id, name_lc)
            }
            (Test::Situation(values, negated), Column::Situation) => {
                self.sql(if *negated {
                    "situation <> ALL("
                } else {
                    "situation = ANY("
                });
                let names = values.iter().map(|s| Situation::as_str(*s).to_string());
                self.bind(Bind::Texts(names.collect()));
                self.sql(")");
            }
            (Test::Time(t), Column::Time(col)) => {
                let range = t.range(self.tz, self.now);
                self.time_column(col, range);
            }
            (Test::Time(t), Column::Custom(k)) => {
                let range = t.range(self.tz, self.now);
                self.custom_time(&k, range);
            }
            (Test::Number(n), Column::Custom(k)) => self.number(n, k),
            // Any other pairing cannot come out of validation; the evaluator says no.
            _ => self.sql("FALSE"),
        }
    }

    fn is_set(&mut self, column: &Column, set: bool) {
        let null_test = if set { " IS NOT NULL" } else { " IS NULL" };
        match column {
            Column::Id | Column::Situation => self.sql(if set { "TRUE" } else { "FALSE" }),
            Column::Absent => self.sql("FALSE"),
            Column::Text(col) | Column::Time(col) | Column::Ref { id: col, .. } => {
                self.sql(col);
                self.sql(null_test);
            }
            Column::Custom(k) => {
                // custom_lc holds the non-empty values only: set = non-empty text.
                self.push_text_col(&TextCol::Custom(k.clone()));
                self.sql(null_test);
            }
        }
    }

    fn push_text_col(&mut self, col: &TextCol) {
        match col {
            TextCol::Plain(c) => self.sql(c),
            TextCol::Custom(k) => {
                self.sql("(custom_lc->>");
                self.bind(Bind::Text(k.clone()));
                self.sql(")");
            }
        }
    }

    fn text(&mut self, test: &TextTest, col: &TextCol) {
        // Stored text never holds NUL (the mirror removes it), so a value holding one
        // equals nothing, contains in nothing and starts nothing.
        let storable = |v: &String| !v.contains('\0');
        match test {
            TextTest::Eq(v) | TextTest::Contains(v) | TextTest::StartsWith(v) if !storable(v) => {
                self.sql("FALSE")
            }
            TextTest::Ne(v) | TextTest::NotContains(v) if !storable(v) => {
                self.push_text_col(col);
                self.sql(" IS NOT NULL");
            }
            TextTest::Eq(v) => {
                self.push_text_col(col);
                self.sql(" = ");
                self.bind(Bind::Text(v.clone()));
            }
            TextTest::Ne(v) => {
                self.push_text_col(col);
                self.sql(" <> ");
                self.bind(Bind::Text(v.clone()));
            }
            TextTest::Contains(v) => {
                self.sql("strpos(");
                self.push_text_col(col);
                self.sql(", ");
                self.bind(Bind::Text(v.clone()));
                self.sql(") > 0");
            }
            TextTest::NotContains(v) => {
                self.sql("strpos(");
                self.push_text_col(col);
                self.sql(", ");
                self.bind(Bind::Text(v.clone()));
                self.sql(") = 0");
            }
            TextTest::StartsWith(v) => {
                self.sql("starts_with(");
                self.push_text_col(col);
                self.sql(", ");
                self.bind(Bind::Text(v.clone()));
                self.sql(")");
            }
            TextTest::In(vs) => {
                self.push_text_col(col);
                self.sql(" = ANY(");
                self.bind(Bind::Texts(
                    vs.iter().filter(|v| storable(v)).cloned().collect(),
                ));
                self.sql(")");
            }
            TextTest::NotIn(vs) => {
                // `<> ALL` of an empty list is true, even for NULL: guard it.
                self.sql("(");
                self.push_text_col(col);
                self.sql(" IS NOT NULL AND ");
                self.push_text_col(col);
                self.sql(" <> ALL(");
                self.bind(Bind::Texts(
                    vs.iter().filter(|v| storable(v)).cloned().collect(),
                ));
                self.sql("))");
            }
        }
    }

    fn reference(
        &mut self,
        values: &[RefValue],
        negated: bool,
        id: &'static str,
        name_lc: &'static str,
    ) {
        let ids: Vec<i64> = values
            .iter()
            .filter_map(|v| match v {
                RefValue::Id(i) => Some(*i),
                RefValue::Name(_) => None,
            })
            .collect();
        let names: Vec<String> = values
            .iter()
            .filter_map(|v| match v {
                RefValue::Name(n) if !n.contains('\0') => Some(n.clone()),
                _ => None,
            })
            .collect();
        // A missing reference matches nothing, negated or not; a missing name is no match.
        self.sql("(");
        self.sql(id);
        self.sql(if negated {
            " IS NOT NULL AND NOT COALESCE("
        } else {
            " IS NOT NULL AND COALESCE("
        });
        self.sql(id);
        self.sql(" = ANY(");
        self.bind(Bind::Ints(ids));
        self.sql(") OR ");
        self.sql(name_lc);
        self.sql(" = ANY(");
        self.bind(Bind::Texts(names));
        self.sql("), FALSE))");
    }

    fn time_column(&mut self, col: &'static str, range: TimeRange) {
        let parts = [
            range.lower.map(|b| column_bound(b, true)),
            range.upper.map(|b| column_bound(b, false)),
        ];
        if parts.iter().all(Option::is_none) {
            self.sql(col);
            return self.sql(" IS NOT NULL");
        }
        self.sql("(");
        let mut first = true;
        for (op, t) in parts.into_iter().flatten() {
            if !first {
                self.sql(" AND ");
            }
            first = false;
            self.sql(col);
            self.sql(op);
            self.bind(Bind::Time(t));
        }
        self.sql(")");
    }

    /// A custom field's value in a window: whichever of its three parsed forms it has.
    fn custom_time(&mut self, key: &str, range: TimeRange) {
        if range.lower.is_none() && range.upper.is_none() {
            self.sql("(custom_date->");
            self.bind(Bind::Text(key.to_string()));
            return self.sql(") IS NOT NULL");
        }
        let (tz, lower, upper) = (self.tz, range.lower, range.upper);
        // Instants: compared as they are (the sort key is exact to the nanosecond).
        let instant = |b: Bound, is_lower: bool| {
            b.map(|(t, inclusive)| (key_op(is_lower, inclusive), instant_key(t)))
        };
        // Local date-times resolve monotonically: `resolve_local(l) >= t` is
        // `l >= local_threshold(t)`, and `<= t` is `l < local_threshold(t, strict)`.
        let local = |b: Bound, is_lower: bool| {
            b.map(|(t, inclusive)| {
                let strict = if is_lower { !inclusive } else { inclusive };
                let op = if is_lower { " >= " } else { " < " };
                (op, local_key(local_threshold(tz, t, strict)))
            })
        };
        // Dates: the same with the start of the day.
        let date = |b: Bound, is_lower: bool| {
            b.map(|(t, inclusive)| {
                let strict = if is_lower { !inclusive } else { inclusive };
                let op = if is_lower { " >= " } else { " < " };
                (op, date_key(date_threshold(tz, t, strict)))
            })
        };
        let forms: [(&'static str, [KeyBound; 2]); 3] = [
            ("->>'t')", [instant(lower, true), instant(upper, false)]),
            ("->>'l')", [local(lower, true), local(upper, false)]),
            ("->>'d')", [date(lower, true), date(upper, false)]),
        ];
        self.sql("(");
        for (i, (form, bounds)) in forms.into_iter().enumerate() {
            if i > 0 {
                self.sql(" OR ");
            }
            self.sql("(");
            let mut first = true;
            for (op, k) in bounds.into_iter().flatten() {
                if !first {
                    self.sql(" AND ");
                }
                first = false;
                self.sql("(custom_date->");
                self.bind(Bind::Text(key.to_string()));
                self.sql(form);
                self.sql(" COLLATE \"C\"");
                self.sql(op);
                self.bind(Bind::Text(k));
            }
            self.sql(")");
        }
        self.sql(")");
    }

    fn number(&mut self, test: &NumTest, key: String) {
        self.sql("(custom_num->>");
        self.bind(Bind::Text(key));
        self.sql(")::float8");
        match *test {
            NumTest::Cmp(cmp, n) => {
                self.sql(" ");
                self.sql(Cmp::sql(cmp));
                self.sql(" ");
                self.bind(Bind::Float(n));
            }
            NumTest::Between(a, b) => {
                self.sql(" BETWEEN ");
                self.bind(Bind::Float(a));
                self.sql(" AND ");
                self.bind(Bind::Float(b));
            }
        }
    }
}

/// Where a text test reads its text.
enum TextCol {
    Plain(&'static str),
    Custom(String),
}

/// The operator of a sort-key comparison for a bound.
fn key_op(is_lower: bool, inclusive: bool) -> &'static str {
    match (is_lower, inclusive) {
        (true, true) => " >= ",
        (true, false) => " > ",
        (false, true) => " <= ",
        (false, false) => " < ",
    }
}

/// A window bound as a comparison on a `timestamptz` column, which holds whole
/// microseconds: the bound is rounded so that the comparison stays exact (`c >= 1.5µs` is
/// `c >= 2µs`, `c <= 1.5µs` is `c <= 1µs`). A leap second (chrono's nanos ≥ 10⁹), which no
/// stored value can fall in, compares as the start of the next second.
fn column_bound(
    (t, inclusive): (DateTime<Utc>, bool),
    is_lower: bool,
) -> (&'static str, DateTime<Utc>) {
    let nanos = t.nanosecond();
    if nanos >= 1_000_000_000 {
        let next = t.with_nanosecond(0).unwrap_or(t) + Duration::seconds(1);
        return (if is_lower { " >= " } else { " < " }, next);
    }
    let sub = i64::from(nanos % 1_000);
    let floor = t - Duration::nanoseconds(sub);
    let ceil = if sub == 0 {
        floor
    } else {
        floor + Duration::microseconds(1)
    };
    match (is_lower, inclusive) {
        (true, true) => (" >= ", ceil),
        (true, false) => (" > ", floor),
        (false, true) => (" <= ", floor),
        (false, false) => (" < ", ceil),
    }
}
