//! The statements, written once and compiled for each engine (`pg`,
//! `my`): a macro rather than generics, because sqlx's generic bounds
//! (an executor per connection type, an encoder per bound type) would say
//! more than the SQL does. One file on purpose, longer than most: every
//! statement lives in the one macro body.

use std::collections::BTreeSet;

use super::waiting::{fold_waiting, WaitingRow};
use super::Applied;

/// Rows per multi-row statement (13 columns: well under either engine's
/// limit of bound parameters).
const CHUNK: usize = 500;

const ORDER_COLUMNS: &str = "order_id, request_id, sale_id, item_id, user_id, quantity, \
    price_cents, state, reason, created_ms, updated_ms";

fn touched<'a>(w: &'a super::Write<'_>) -> BTreeSet<&'a str> {
    w.orders
        .iter()
        .chain(&w.closed)
        .map(|o| o.order.order_id.as_str())
        .chain(w.events.iter().map(|e| e.order_id.as_str()))
        .collect()
}

macro_rules! backend {
    ($module:ident, $db:ty, $dialect:expr) => {
        pub mod $module {
            use sqlx::{QueryBuilder, Row};

            use super::super::dialect::Dialect;
            use super::super::{Cursor, DlqIn, DlqRow, NewOrder, OrderRow, Write, Written};
            use super::{fold_waiting, touched, Applied, WaitingRow, CHUNK, ORDER_COLUMNS};

            type Db = $db;
            type Pool = sqlx::Pool<Db>;
            type Tx = sqlx::Transaction<'static, Db>;
            type DbRow = <Db as sqlx::Database>::Row;
            const D: &Dialect = &$dialect;

            /// A text column. MySQL reports a column of a binary collation
            /// (the ids are `utf8mb4_bin`: case-sensitive) as VARBINARY,
            /// which sqlx will not decode as a `String`; its bytes are the
            /// UTF-8 text.
            fn text(r: &DbRow, i: usize) -> Result<String, sqlx::Error> {
                r.try_get::<String, _>(i).or_else(|_| {
                    r.try_get::<Vec<u8>, _>(i)
                        .map(|b| String::from_utf8_lossy(&b).into_owned())
                })
            }

            fn text_opt(r: &DbRow, i: usize) -> Result<Option<String>, sqlx::Error> {
                r.try_get::<Option<String>, _>(i).or_else(|_| {
                    r.try_get::<Option<Vec<u8>>, _>(i)
                        .map(|b| b.map(|b| String::from_utf8_lossy(&b).into_owned()))
                })
            }

            fn order_row(r: &DbRow) -> Result<OrderRow, sqlx::Error> {
                Ok(OrderRow {
                    order_id: text(r, 0)?,
                    request_id: text(r, 1)?,
                    sale_id: text(r, 2)?,
                    item_id: text(r, 3)?,
                    user_id: text(r, 4)?,
                    quantity: r.try_get(5)?,
                    price_cents: r.try_get(6)?,
                    state: text(r, 7)?,
                    reason: text_opt(r, 8)?,
                    created_ms: r.try_get(9)?,
                    updated_ms: r.try_get(10)?,
                })
            }

            fn dlq_row(r: &DbRow) -> Result<DlqRow, sqlx::Error> {
                Ok(DlqRow {
                    id: r.try_get(0)?,
                    source_topic: text(r, 1)?,
                    source_partition: r.try_get(2)?,
                    source_offset: r.try_get(3)?,
                    key: r.try_get(4)?,
                    payload: r.try_get(5)?,
                    error_kind: text(r, 6)?,
                    error: text(r, 7)?,
                    attempts: r.try_get(8)?,
                    first_failed_ms: r.try_get(9)?,
                    last_failed_ms: r.try_get(10)?,
                    parks: r.try_get(11)?,
                    state: text(r, 12)?,
                    redriven_ms: r.try_get(13)?,
                })
            }

            const DLQ_COLUMNS: &str = "id, source_topic, source_partition, source_offset, \
                msg_key, payload, error_kind, error, attempts, first_failed_ms, last_failed_ms, \
                parks, state, redriven_ms";

            pub async fn ping(p: &Pool) -> Result<(), sqlx::Error> {
                sqlx::query("SELECT 1").execute(p).await.map(|_| ())
            }

            /// Two plain index lookups rather than one `OR`: with no
            /// statistics yet (a table filling fast) the planner may scan
            /// the whole table for the `OR`.
            pub async fn existing(
                p: &Pool,
                order_ids: &[&str],
                request_ids: &[&str],
            ) -> Result<Vec<OrderRow>, sqlx::Error> {
                let mut out = Vec::new();
                let mut seen = std::collections::HashSet::new();
                for (column, ids) in [("order_id", order_ids), ("request_id", request_ids)] {
                    for chunk in ids.chunks(CHUNK) {
                        let mut qb = QueryBuilder::<Db>::new(format!(
                            "SELECT {ORDER_COLUMNS} FROM seckill_orders WHERE {column} IN ("
                        ));
                        let mut s = qb.separated(", ");
                        for id in chunk {
                            s.push_bind(id.to_string());
                        }
                        qb.push(")");
                        for r in qb.build().fetch_all(p).await? {
                            let row = order_row(&r)?;
                            if seen.insert(row.order_id.clone()) {
                                out.push(row);
                            }
                        }
                    }
                }
                Ok(out)
            }

            async fn insert_orders(
                tx: &mut Tx,
                rows: &[NewOrder<'_>],
                now_ms: i64,
                on_present: &str,
                returning: bool,
            ) -> Result<Vec<String>, sqlx::Error> {
                let mut qb = QueryBuilder::<Db>::new(
                    "INSERT INTO seckill_orders (order_id, request_id, sale_id, item_id, \
                     user_id, quantity, price_cents, state, reason, created_ms, updated_ms, \
                     source_partition, source_offset) ",
                );
                qb.push_values(rows, |mut b, r| {
                    let o = r.order;
                    b.push_bind(o.order_id.clone())
                        .push_bind(o.request_id.clone())
                        .push_bind(o.sale_id.clone())
                        .push_bind(o.item_id.clone())
                        .push_bind(o.user_id.clone())
                        .push_bind(i32::try_from(o.quantity).unwrap_or(i32::MAX))
                        .push_bind(i64::try_from(o.price_cents).unwrap_or(i64::MAX))
                        .push_bind(r.state.as_str())
                        .push_bind(r.reason.map(str::to_string))
                        .push_bind(i64::try_from(o.created_ms).unwrap_or(i64::MAX))
                        .push_bind(now_ms)
                        .push_bind(r.partition)
                        .push_bind(r.offset);
                });
                qb.push(on_present);
                if returning {
                    let rows = qb.build().fetch_all(&mut **tx).await?;
                    return rows.iter().map(|r| text(r, 0)).collect();
                }
                qb.build().execute(&mut **tx).await.map(|_| Vec::new())
            }

            /// The orders of `rows` with no row of theirs (by primary key).
            async fn absent(tx: &mut Tx, rows: &[NewOrder<'_>]) -> Result<Vec<String>, sqlx::Error> {
                let mut qb = QueryBuilder::<Db>::new(
                    "SELECT order_id FROM seckill_orders WHERE order_id IN (",
                );
                let mut s = qb.separated(", ");
                for r in rows {
                    s.push_bind(r.order.order_id.clone());
                }
                qb.push(")");
                let present: std::collections::HashSet<String> = qb
                    .build()
                    .fetch_all(&mut **tx)
                    .await?
                    .iter()
                    .map(|r| text(r, 0))
                    .collect::<Result<_, sqlx::Error>>()?;
                Ok(rows
                    .iter()
                    .filter(|r| !present.contains(&r.order.order_id))
                    .map(|r| r.order.order_id.clone())
                    .collect())
            }

            async fn insert_events(
                tx: &mut Tx,
                table: &str,
                events: &[&crate::message::EventIn],
                now_ms: i64,
            ) -> Result<(), sqlx::Error> {
                let mut qb = QueryBuilder::<Db>::new(format!(
                    "INSERT INTO {table} (order_id, event, reason, at_ms, received_ms) "
                ));
                qb.push_values(events, |mut b, e| {
                    b.push_bind(e.order_id.clone())
                        .push_bind(e.kind.as_str())
                        .push_bind(e.reason.clone())
                        .push_bind(i64::try_from(e.at_ms).unwrap_or(i64::MAX))
                        .push_bind(now_ms);
                });
                qb.push(D.keep_present);
                qb.build().execute(&mut **tx).await.map(|_| ())
            }

            async fn insert_dlq(tx: &mut Tx, entries: &[DlqIn]) -> Result<(), sqlx::Error> {
                let mut qb = QueryBuilder::<Db>::new(
                    "INSERT INTO seckill_dlq (source_topic, source_partition, source_offset, \
                     msg_key, payload, error_kind, error, attempts, first_failed_ms, \
                     last_failed_ms, parks, state) ",
                );
                qb.push_values(entries, |mut b, e| {
                    b.push_bind(e.source.topic.clone())
                        .push_bind(e.source.partition)
                        .push_bind(e.source.offset)
                        .push_bind(e.key.clone())
                        .push_bind(e.payload.clone())
                        .push_bind(e.error_kind.clone())
                        .push_bind(e.error.clone())
                        .push_bind(i32::try_from(e.attempts).unwrap_or(i32::MAX))
                        .push_bind(i64::try_from(e.first_failed_ms).unwrap_or(i64::MAX))
                        .push_bind(i64::try_from(e.last_failed_ms).unwrap_or(i64::MAX))
                        .push_bind(1i32)
                        .push_bind("parked");
                });
                qb.push(D.repark);
                qb.build().execute(&mut **tx).await.map(|_| ())
            }

            /// The waiting events of `ids` whose order has a row: the
            /// events first (by their key: usually none), then their
            /// orders' states by primary key — no join for the planner to
            /// get wrong on a table filling faster than its statistics.
            async fn waiting_of(tx: &mut Tx, ids: &[&str]) -> Result<Vec<WaitingRow>, sqlx::Error> {
                if ids.is_empty() {
                    return Ok(Vec::new());
                }
                let mut qb = QueryBuilder::<Db>::new(
                    "SELECT order_id, event, reason FROM seckill_order_events_waiting \
                     WHERE order_id IN (",
                );
                let mut s = qb.separated(", ");
                for id in ids {
                    s.push_bind(id.to_string());
                }
                qb.push(") ORDER BY at_ms, order_id");
                let mut waiting = Vec::new();
                for r in qb.build().fetch_all(&mut **tx).await? {
                    let w: (String, String, Option<String>) = (text(&r, 0)?, text(&r, 1)?, text_opt(&r, 2)?);
                    waiting.push(w);
                }
                if waiting.is_empty() {
                    return Ok(Vec::new());
                }
                let mut qb = QueryBuilder::<Db>::new(
                    "SELECT order_id, state FROM seckill_orders WHERE order_id IN (",
                );
                let mut s = qb.separated(", ");
                for w in &waiting {
                    s.push_bind(w.0.clone());
                }
                qb.push(")");
                let mut states = std::collections::HashMap::new();
                for r in qb.build().fetch_all(&mut **tx).await? {
                    let (id, state): (String, String) = (text(&r, 0)?, text(&r, 1)?);
                    states.insert(id, state);
                }
                // Events whose order has no row yet keep waiting.
                Ok(waiting
                    .into_iter()
                    .filter_map(|(order_id, event, reason)| {
                        let state = states.get(&order_id)?.clone();
                        Some(WaitingRow { order_id, event, reason, state })
                    })
                    .collect())
            }

            /// The oldest waiting events whose order has a row (the
            /// background pass: one join a second, however it is planned).
            async fn waiting_with_orders(tx: &mut Tx, limit: i64) -> Result<Vec<WaitingRow>, sqlx::Error> {
                let mut qb = QueryBuilder::<Db>::new(
                    "SELECT w.order_id, w.event, w.reason, o.state \
                     FROM seckill_order_events_waiting w \
                     JOIN seckill_orders o ON o.order_id = w.order_id \
                     ORDER BY w.at_ms, w.order_id LIMIT ",
                );
                qb.push_bind(limit);
                let rows = qb.build().fetch_all(&mut **tx).await?;
                rows.iter()
                    .map(|r| {
                        Ok(WaitingRow {
                            order_id: text(r, 0)?,
                            event: text(r, 1)?,
                            reason: text_opt(r, 2)?,
                            state: text(r, 3)?,
                        })
                    })
                    .collect()
            }

            /// Applies the waiting events of `ids` (all orders: `None`).
            async fn apply(
                tx: &mut Tx,
                ids: Option<&[&str]>,
                now_ms: i64,
                limit: i64,
            ) -> Result<Applied, sqlx::Error> {
                let rows = match ids {
                    Some(ids) => waiting_of(tx, ids).await?,
                    None => waiting_with_orders(tx, limit).await?,
                };
                let (updates, applied) = fold_waiting(&rows);
                for ((state, reason), orders) in &updates {
                    for chunk in orders.chunks(CHUNK) {
                        let mut qb = QueryBuilder::<Db>::new("UPDATE seckill_orders SET state = ");
                        qb.push_bind(state.clone())
                            .push(", reason = ")
                            .push_bind(reason.clone())
                            .push(", updated_ms = ")
                            .push_bind(now_ms)
                            .push(" WHERE state = 'awaiting_payment' AND order_id IN (");
                        let mut s = qb.separated(", ");
                        for id in chunk {
                            s.push_bind(id.to_string());
                        }
                        qb.push(")");
                        qb.build().execute(&mut **tx).await?;
                    }
                }
                for chunk in rows.chunks(CHUNK) {
                    let mut qb = QueryBuilder::<Db>::new(
                        "DELETE FROM seckill_order_events_waiting WHERE (order_id, event) IN ",
                    );
                    qb.push_tuples(chunk, |mut b, r| {
                        b.push_bind(r.order_id.clone()).push_bind(r.event.clone());
                    });
                    qb.build().execute(&mut **tx).await?;
                }
                Ok(applied)
            }

            pub fn returns_inserted() -> bool {
                D.returns_inserted
            }

            pub async fn write(p: &Pool, w: &Write<'_>, now_ms: i64) -> Result<Written, sqlx::Error> {
                let mut tx = p.begin().await?;
                let mut inserted = std::collections::BTreeSet::new();
                let mut missing = Vec::new();
                for chunk in w.orders.chunks(CHUNK) {
                    let ids = insert_orders(&mut tx, chunk, now_ms, D.insert_orders, D.returns_inserted).await?;
                    inserted.extend(ids);
                    if !D.returns_inserted {
                        missing.extend(absent(&mut tx, chunk).await?);
                    }
                }
                for chunk in w.closed.chunks(CHUNK) {
                    insert_orders(&mut tx, chunk, now_ms, D.close_awaiting, false).await?;
                }
                for chunk in w.events.chunks(CHUNK) {
                    insert_events(&mut tx, "seckill_order_events", chunk, now_ms).await?;
                    insert_events(&mut tx, "seckill_order_events_waiting", chunk, now_ms).await?;
                }
                for chunk in w.dlq.chunks(CHUNK) {
                    insert_dlq(&mut tx, chunk).await?;
                }
                let ids: Vec<&str> = touched(w).into_iter().collect();
                let mut applied = Applied::default();
                for chunk in ids.chunks(CHUNK) {
                    let a = apply(&mut tx, Some(chunk), now_ms, i64::from(i32::MAX)).await?;
                    applied.applied += a.applied;
                    applied.same += a.same;
                    applied.conflicts.extend(a.conflicts);
                }
                tx.commit().await?;
                Ok(Written {
                    applied,
                    inserted: D.returns_inserted.then_some(inserted),
                    missing,
                })
            }

            pub async fn apply_waiting(p: &Pool, now_ms: i64, limit: i64) -> Result<Applied, sqlx::Error> {
                let mut tx = p.begin().await?;
                let a = apply(&mut tx, None, now_ms, limit).await?;
                tx.commit().await?;
                Ok(a)
            }

            pub async fn waiting_len(p: &Pool) -> Result<i64, sqlx::Error> {
                sqlx::query("SELECT COUNT(*) FROM seckill_order_events_waiting")
                    .fetch_one(p)
                    .await?
                    .try_get(0)
            }

            pub async fn order(p: &Pool, order_id: &str) -> Result<Option<OrderRow>, sqlx::Error> {
                let mut qb = QueryBuilder::<Db>::new(format!(
                    "SELECT {ORDER_COLUMNS} FROM seckill_orders WHERE order_id = "
                ));
                qb.push_bind(order_id.to_string());
                qb.build().fetch_optional(p).await?.as_ref().map(order_row).transpose()
            }

            pub async fn user_orders(
                p: &Pool,
                user_id: &str,
                cursor: Option<&Cursor>,
                limit: i64,
            ) -> Result<Vec<OrderRow>, sqlx::Error> {
                let mut qb = QueryBuilder::<Db>::new(format!(
                    "SELECT {ORDER_COLUMNS} FROM seckill_orders WHERE user_id = "
                ));
                qb.push_bind(user_id.to_string());
                if let Some(c) = cursor {
                    qb.push(" AND (created_ms < ")
                        .push_bind(c.created_ms)
                        .push(" OR (created_ms = ")
                        .push_bind(c.created_ms)
                        .push(" AND order_id < ")
                        .push_bind(c.order_id.clone())
                        .push("))");
                }
                qb.push(" ORDER BY created_ms DESC, order_id DESC LIMIT ")
                    .push_bind(limit);
                let rows = qb.build().fetch_all(p).await?;
                rows.iter().map(order_row).collect()
            }

            pub async fn sale_rows(p: &Pool, sale_id: &str) -> Result<Vec<OrderRow>, sqlx::Error> {
                let mut qb = QueryBuilder::<Db>::new(format!(
                    "SELECT {ORDER_COLUMNS} FROM seckill_orders WHERE sale_id = "
                ));
                qb.push_bind(sale_id.to_string());
                let rows = qb.build().fetch_all(p).await?;
                rows.iter().map(order_row).collect()
            }

            pub async fn state_counts(
                p: &Pool,
                sale_id: Option<&str>,
            ) -> Result<Vec<(String, i64)>, sqlx::Error> {
                let mut qb = QueryBuilder::<Db>::new("SELECT state, COUNT(*) FROM seckill_orders");
                if let Some(s) = sale_id {
                    qb.push(" WHERE sale_id = ").push_bind(s.to_string());
                }
                qb.push(" GROUP BY state ORDER BY state");
                let rows = qb.build().fetch_all(p).await?;
                rows.iter()
                    .map(|r| Ok((text(r, 0)?, r.try_get(1)?)))
                    .collect()
            }

            pub async fn dlq_list(p: &Pool, all: bool, limit: i64) -> Result<Vec<DlqRow>, sqlx::Error> {
                let mut qb = QueryBuilder::<Db>::new(format!("SELECT {DLQ_COLUMNS} FROM seckill_dlq"));
                if !all {
                    qb.push(" WHERE state = 'parked'");
                }
                qb.push(" ORDER BY id LIMIT ").push_bind(limit);
                let rows = qb.build().fetch_all(p).await?;
                rows.iter().map(dlq_row).collect()
            }

            pub async fn dlq_get(p: &Pool, ids: &[i64]) -> Result<Vec<DlqRow>, sqlx::Error> {
                let mut qb = QueryBuilder::<Db>::new(format!(
                    "SELECT {DLQ_COLUMNS} FROM seckill_dlq WHERE id IN ("
                ));
                let mut s = qb.separated(", ");
                for id in ids {
                    s.push_bind(*id);
                }
                qb.push(") ORDER BY id");
                let rows = qb.build().fetch_all(p).await?;
                rows.iter().map(dlq_row).collect()
            }

            pub async fn dlq_mark_redriven(
                p: &Pool,
                id: i64,
                parks: i32,
                now_ms: i64,
            ) -> Result<bool, sqlx::Error> {
                let mut qb = QueryBuilder::<Db>::new(
                    "UPDATE seckill_dlq SET state = 'redriven', redriven_ms = ",
                );
                qb.push_bind(now_ms)
                    .push(" WHERE state = 'parked' AND id = ")
                    .push_bind(id)
                    .push(" AND parks = ")
                    .push_bind(parks);
                Ok(qb.build().execute(p).await?.rows_affected() == 1)
            }

            pub async fn dlq_parked(p: &Pool) -> Result<i64, sqlx::Error> {
                sqlx::query("SELECT COUNT(*) FROM seckill_dlq WHERE state = 'parked'")
                    .fetch_one(p)
                    .await?
                    .try_get(0)
            }
        }
    };
}

backend!(pg, sqlx::Postgres, super::super::dialect::POSTGRES);
backend!(my, sqlx::MySql, super::super::dialect::MYSQL);
