//! Redis: the batched Lua deduction of the deduct stage (`stock`), the
//! admin side that loads sales and feeds the catalog (`catalog`), orders
//! after the win (`orders`), the dashboard's fleet figures (`fleet`), and
//! the key schema they all share (`keys`); how to reach Redis (`target`:
//! TLS, a password from a file, Sentinel, a cluster) and one connection
//! type for a server or a cluster (`conn`, `cluster`).
//! The Lua scripts sit beside them: `deduct.lua`, `order.lua`, `sweep.lua`.

mod borrow;
mod calls;
mod catalog;
mod cluster;
mod conn;
mod counts;
mod fleet;
pub mod keys;
mod layout;
mod load;
mod orders;
mod pool;
mod resp;
mod restore;
mod shards;
mod slots;
mod stock;
mod target;

pub use catalog::{ItemLoad, RedisAdmin, StoredSale, SALE_END_MS_MAX};
pub use conn::RedisConn;
pub use counts::{sum as sum_shards, StockHash, StoredWin};
pub use fleet::DashboardRead;
pub use keys::{item_keys, utc_date, ItemKeys, RELEASED_CHANNEL};
pub use layout::{home_shard, Layouts, SHARDS_MAX};
pub use orders::{state_of, Action, OrderAction, OrderRecord, OrderState, OutboxEntry, Swept};
pub use pool::PoolStats;
pub use restore::RestoredWin;
pub use slots::{slot_of, SLOT_COUNT};
pub use stock::{RedisStockStore, DEDUCT_LUA};
pub use target::{redact_url, RedisTarget};
