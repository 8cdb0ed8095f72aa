//! After the win: paying, cancelling and expiring orders (atomic Lua), the
//! order-event outbox the event publisher drains to Kafka, the channel
//! that re-opens sold-out items on every daemon, and the blacklist.

use std::collections::HashSet;
use std::net::IpAddr;

use redis::{RedisError, Script};

use super::catalog::RedisAdmin;
use super::conn::RedisConn;
use super::keys::{tag_keys, BLACKLIST_IPS, BLACKLIST_USERS, RELEASED_CHANNEL};
use super::shards::expand;

const ORDER_LUA: &str = include_str!("order.lua");
const SWEEP_LUA: &str = include_str!("sweep.lua");

/// The item (sale, item) that stored a request's outcome, and the outcome.
pub type StoredOutcome<'a> = (&'a (String, String), String);

/// What an order action asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// The owner pays: `locked` → `sold`.
    Pay,
    /// The owner cancels: `locked` → `available`.
    Cancel,
    /// The order service's backlog release: `locked` → `available` like a
    /// cancel, for any owner, state `failed`; no outbox entry (the order
    /// service publishes the event itself).
    Fail,
}

impl Action {
    fn as_str(self) -> &'static str {
        match self {
            Action::Pay => "pay",
            Action::Cancel => "cancel",
            Action::Fail => "fail",
        }
    }
}

/// What a pay, cancel or fail did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OrderAction {
    /// This call moved the order to `state`.
    Done(OrderState),
    /// The order already was in the asked state (a retried call).
    Again(OrderState),
    /// The order is closed in another state.
    Conflict(OrderState),
    Forbidden,
    Unknown,
}

/// Where an order stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum OrderState {
    /// Won, the unit is `locked`, payment is awaited until the deadline.
    AwaitingPayment,
    Paid,
    Cancelled,
    Expired,
    /// Released by the order service: the win's message was too old when
    /// it was consumed (backlog release), so no order exists.
    Failed,
}

impl OrderState {
    /// A closed state as Redis writes it (`paid`, `cancelled`, `expired`,
    /// `failed`); awaiting payment is the absence of one.
    pub fn parse(s: &str) -> Option<OrderState> {
        Some(match s {
            "paid" => OrderState::Paid,
            "cancelled" => OrderState::Cancelled,
            "expired" => OrderState::Expired,
            "failed" => OrderState::Failed,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            OrderState::AwaitingPayment => "awaiting_payment",
            OrderState::Paid => "paid",
            OrderState::Cancelled => "cancelled",
            OrderState::Expired => "expired",
            OrderState::Failed => "failed",
        }
    }
}

/// One order as Redis holds it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct OrderRecord {
    pub order_id: String,
    pub sale_id: String,
    pub item_id: String,
    pub user_id: String,
    pub quantity: u32,
    pub request_id: String,
    pub state: OrderState,
    /// Payment deadline while awaiting payment.
    pub pay_deadline_ms: Option<u64>,
    /// When it was paid, cancelled or expired.
    pub closed_ms: Option<u64>,
}

/// What a sweep did to an item.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Swept {
    /// Units released (unpaid orders past their deadline).
    pub released: u64,
    /// The earliest deadline of an order still waiting (`None`: none waits).
    pub next_deadline_ms: Option<u64>,
}

/// An order event read from an item's outbox, as it is published.
#[derive(Debug, Clone)]
pub struct OutboxEntry {
    pub sale_id: String,
    pub item_id: String,
    pub order_id: String,
    /// The list it was read from (the item's, or its shard's).
    pub events_key: String,
    /// The JSON stored by the script: the Kafka payload, and the exact
    /// list element to remove once Kafka acknowledged it.
    pub json: String,
}

/// The state and time of a `closed` entry (`<state>:<ms>`).
pub fn state_of(closed: &str) -> (Option<OrderState>, Option<u64>) {
    let (state, at) = closed.split_once(':').unwrap_or((closed, ""));
    (OrderState::parse(state), at.parse().ok())
}

impl RedisAdmin {
    /// Pays, cancels or fails an order for `user_id` (who must own it,
    /// except for `Fail`). A sharded item's order is looked for on every
    /// shard first: it lives on the shard that gave its unit, and its
    /// release goes back there.
    pub fn order_action(
        &self,
        sale_id: &str,
        item_id: &str,
        order_id: &str,
        action: Action,
        user_id: &str,
        now_ms: u64,
    ) -> Result<OrderAction, RedisError> {
        let mut c = self.conn()?;
        let tags = self.tags(&mut c, &[(sale_id, item_id)])?;
        let Some(tag) = self.shard_of_order(&mut c, &tags[0], order_id)? else {
            return Ok(OrderAction::Unknown);
        };
        let k = tag_keys(tag);
        let (result, state): (String, String) = Script::new(ORDER_LUA)
            .key(&k.stock)
            .key(&k.unpaid)
            .key(&k.orders)
            .key(&k.closed)
            .key(&k.events)
            .arg(order_id)
            .arg(action.as_str())
            .arg(user_id)
            .arg(now_ms)
            .arg(sale_id)
            .arg(item_id)
            .arg(RELEASED_CHANNEL)
            .invoke(&mut *c)?;
        let st = OrderState::parse(&state);
        Ok(match (result.as_str(), st) {
            ("done", Some(s)) => OrderAction::Done(s),
            ("again", Some(s)) => OrderAction::Again(s),
            ("conflict", Some(s)) => OrderAction::Conflict(s),
            ("forbidden", _) => OrderAction::Forbidden,
            _ => OrderAction::Unknown,
        })
    }

    /// The tag (of `tags`, an item's) whose orders hash holds `order_id`;
    /// an unsharded item's own tag without a round trip.
    fn shard_of_order<'t>(
        &self,
        c: &mut RedisConn,
        tags: &'t [String],
        order_id: &str,
    ) -> Result<Option<&'t str>, RedisError> {
        if tags.len() == 1 {
            return Ok(tags.first().map(String::as_str));
        }
        let mut pipe = redis::pipe();
        for tag in tags {
            pipe.hexists(tag_keys(tag).orders, order_id);
        }
        let found: Vec<bool> = pipe.query(c)?;
        Ok(tags
            .iter()
            .zip(found)
            .find(|(_, f)| *f)
            .map(|(t, _)| t.as_str()))
    }

    /// Reads one order of a known item.
    pub fn order(
        &self,
        sale_id: &str,
        item_id: &str,
        order_id: &str,
    ) -> Result<Option<OrderRecord>, RedisError> {
        let mut c = self.conn()?;
        let tags = self.tags(&mut c, &[(sale_id, item_id)])?;
        let Some(tag) = self.shard_of_order(&mut c, &tags[0], order_id)? else {
            return Ok(None);
        };
        let k = tag_keys(tag);
        let (entry, closed, deadline): (Option<String>, Option<String>, Option<f64>) =
            redis::pipe()
                .hget(&k.orders, order_id)
                .hget(&k.closed, order_id)
                .zscore(&k.unpaid, order_id)
                .query(&mut *c)?;
        let Some(entry) = entry.filter(|e| !e.is_empty()) else {
            return Ok(None);
        };
        let mut parts = entry.splitn(3, '|');
        let (Some(user), Some(q), Some(rid)) = (parts.next(), parts.next(), parts.next()) else {
            return Ok(None);
        };
        let (state, closed_ms) = match closed.as_deref() {
            Some(c) => state_of(c),
            None => (Some(OrderState::AwaitingPayment), None),
        };
        Ok(Some(OrderRecord {
            order_id: order_id.to_string(),
            sale_id: sale_id.to_string(),
            item_id: item_id.to_string(),
            user_id: user.to_string(),
            quantity: q.parse().unwrap_or(0),
            request_id: rid.to_string(),
            state: state.unwrap_or(OrderState::AwaitingPayment),
            pay_deadline_ms: deadline.map(|d| d as u64),
            closed_ms,
        }))
    }

    /// Which of `items` holds `order_id` (one pipelined round trip).
    pub fn find_order<'a>(
        &self,
        order_id: &str,
        items: &'a [(String, String)],
    ) -> Result<Option<&'a (String, String)>, RedisError> {
        if items.is_empty() {
            return Ok(None);
        }
        let mut c = self.conn()?;
        let tags = self.tags_owned(&mut c, items)?;
        let flat = expand(&tags);
        let mut pipe = redis::pipe();
        for (_, tag) in &flat {
            pipe.hexists(tag_keys(tag).orders, order_id);
        }
        let found: Vec<bool> = pipe.query(&mut *c)?;
        Ok(flat
            .iter()
            .zip(found)
            .find(|(_, f)| *f)
            .map(|((i, _), _)| &items[*i]))
    }

    /// The outcome the stock script stored for `request_id`, looked up in
    /// every one of `items` (one pipelined round trip): the item that holds
    /// it and the outcome (`ok:<order id>`, `sold_out`, `duplicate`, …).
    /// Answers a request the status board let go of.
    pub fn stored_outcome<'a>(
        &self,
        request_id: &str,
        items: &'a [(String, String)],
    ) -> Result<Option<StoredOutcome<'a>>, RedisError> {
        if items.is_empty() {
            return Ok(None);
        }
        let mut c = self.conn()?;
        let tags = self.tags_owned(&mut c, items)?;
        let flat = expand(&tags);
        let mut pipe = redis::pipe();
        for (_, tag) in &flat {
            pipe.hget(tag_keys(tag).req, request_id);
        }
        let found: Vec<Option<String>> = pipe.query(&mut *c)?;
        // A shard a borrow found dry keeps `dry` for the request: the
        // outcome is the home shard's.
        Ok(flat
            .iter()
            .zip(found)
            .find_map(|((i, _), f)| f.filter(|o| o != "dry").map(|o| (&items[*i], o))))
    }

    /// Expires every unpaid order past its deadline, for every item (one
    /// pipelined round trip); returns per item the units released and the
    /// earliest deadline still waiting (of all its shards).
    pub fn sweep(
        &self,
        items: &[(String, String)],
        now_ms: u64,
        per_item_max: u32,
    ) -> Result<Vec<Swept>, RedisError> {
        if items.is_empty() {
            return Ok(Vec::new());
        }
        let mut c = self.conn()?;
        let tags = self.tags_owned(&mut c, items)?;
        let flat = expand(&tags);
        let script = Script::new(SWEEP_LUA);
        let mut pipe = redis::pipe();
        // Loaded in the same pipeline, before the calls that need it: a
        // restarted Redis never answers NOSCRIPT here.
        pipe.cmd("SCRIPT").arg("LOAD").arg(SWEEP_LUA).ignore();
        for (i, tag) in &flat {
            let (sale, item) = &items[*i];
            let k = tag_keys(tag);
            pipe.cmd("EVALSHA")
                .arg(script.get_hash())
                .arg(5)
                .arg(&k.stock)
                .arg(&k.unpaid)
                .arg(&k.orders)
                .arg(&k.closed)
                .arg(&k.events)
                .arg(now_ms)
                .arg(per_item_max)
                .arg(sale)
                .arg(item)
                .arg(RELEASED_CHANNEL);
        }
        let per_shard: Vec<(u64, i64)> = pipe.query(&mut *c)?;
        let mut out = vec![Swept::default(); items.len()];
        for ((i, _), (released, next)) in flat.iter().zip(per_shard) {
            let o = &mut out[*i];
            o.released += released;
            if let Ok(next) = u64::try_from(next) {
                o.next_deadline_ms = Some(o.next_deadline_ms.map_or(next, |n| n.min(next)));
            }
        }
        Ok(out)
    }

    /// Up to `per_item_max` waiting events of every item.
    pub fn outbox(
        &self,
        items: &[(String, String)],
        per_item_max: isize,
    ) -> Result<Vec<OutboxEntry>, RedisError> {
        if items.is_empty() {
            return Ok(Vec::new());
        }
        let mut c = self.conn()?;
        let tags = self.tags_owned(&mut c, items)?;
        let flat = expand(&tags);
        let mut pipe = redis::pipe();
        for (_, tag) in &flat {
            pipe.lrange(tag_keys(tag).events, 0, per_item_max - 1);
        }
        let lists: Vec<Vec<String>> = pipe.query(&mut *c)?;
        let mut out = Vec::new();
        for ((i, tag), list) in flat.iter().zip(lists) {
            let (sale, item) = &items[*i];
            for json in list {
                let order_id = serde_json::from_str::<serde_json::Value>(&json)
                    .ok()
                    .and_then(|v| v["order_id"].as_str().map(str::to_string))
                    .unwrap_or_default();
                out.push(OutboxEntry {
                    sale_id: sale.clone(),
                    item_id: item.clone(),
                    order_id,
                    events_key: tag_keys(tag).events,
                    json,
                });
            }
        }
        Ok(out)
    }

    /// Removes published events (each entry is unique: it names its order
    /// and event, so removing by value never drops another daemon's
    /// unpublished entry).
    pub fn ack_outbox(&self, published: &[&OutboxEntry]) -> Result<(), RedisError> {
        if published.is_empty() {
            return Ok(());
        }
        let mut c = self.conn()?;
        let mut pipe = redis::pipe();
        for e in published {
            pipe.lrem(&e.events_key, 1, &e.json).ignore();
        }
        pipe.query(&mut *c)
    }

    /// Every closed order of an item: order id → `<state>:<ms>`.
    pub fn closed_orders(
        &self,
        sale_id: &str,
        item_id: &str,
    ) -> Result<std::collections::HashMap<String, String>, RedisError> {
        let mut c = self.conn()?;
        let tags = self.tags(&mut c, &[(sale_id, item_id)])?;
        let mut pipe = redis::pipe();
        for (_, tag) in expand(&tags) {
            pipe.hgetall(tag_keys(tag).closed);
        }
        let shards: Vec<std::collections::HashMap<String, String>> = pipe.query(&mut *c)?;
        let mut all: std::collections::HashMap<String, String> =
            shards.into_iter().flatten().collect();
        // The sale load's placeholder field.
        all.remove("");
        Ok(all)
    }

    /// The units the per-user counts of an item add up to.
    pub fn buyer_units(&self, sale_id: &str, item_id: &str) -> Result<u64, RedisError> {
        let mut c = self.conn()?;
        let tags = self.tags(&mut c, &[(sale_id, item_id)])?;
        let mut pipe = redis::pipe();
        for (_, tag) in expand(&tags) {
            pipe.hvals(tag_keys(tag).buyers);
        }
        let shards: Vec<Vec<String>> = pipe.query(&mut *c)?;
        // The placeholder's empty value reads as nothing.
        Ok(shards
            .iter()
            .flatten()
            .filter_map(|n| n.parse::<u64>().ok())
            .sum())
    }

    /// The item ids of a sale round, in order (empty: no such round).
    pub fn round_items(&self, sale_id: &str) -> Result<Vec<String>, RedisError> {
        let mut c = self.conn()?;
        redis::cmd("LRANGE")
            .arg(super::keys::round_items(sale_id))
            .arg(0)
            .arg(-1)
            .query(&mut *c)
    }

    pub fn blacklist(&self) -> Result<(HashSet<String>, HashSet<IpAddr>), RedisError> {
        let mut c = self.conn()?;
        let (users, ips): (HashSet<String>, Vec<String>) = redis::pipe()
            .smembers(BLACKLIST_USERS)
            .smembers(BLACKLIST_IPS)
            .query(&mut *c)?;
        Ok((users, ips.iter().filter_map(|i| i.parse().ok()).collect()))
    }

    pub fn set_user_blocked(&self, user: &str, blocked: bool) -> Result<(), RedisError> {
        let mut c = self.conn()?;
        let mut cmd = redis::cmd(if blocked { "SADD" } else { "SREM" });
        cmd.arg(BLACKLIST_USERS).arg(user).query(&mut *c)
    }

    pub fn set_ip_blocked(&self, ip: IpAddr, blocked: bool) -> Result<(), RedisError> {
        let mut c = self.conn()?;
        let mut cmd = redis::cmd(if blocked { "SADD" } else { "SREM" });
        cmd.arg(BLACKLIST_IPS).arg(ip.to_string()).query(&mut *c)
    }

    /// A connection for the released-stock subscriber.
    pub fn subscriber(&self) -> Result<redis::Connection, RedisError> {
        self.own_conn()
    }
}
