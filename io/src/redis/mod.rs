//! Redis: the batched Lua deduction of the deduct stage (`stock`), the
//! admin side that loads sales and feeds the catalog (`catalog`), orders
//! after the win (`orders`), the dashboard's fleet figures (`fleet`), and
//! the key schema they all share (`keys`); how to reach Redis (`target`:
//! TLS, a password from a file).
//! The Lua scripts sit beside them: `deduct.lua`, `order.lua`, `sweep.lua`.

mod catalog;
mod fleet;
pub mod keys;
mod orders;
mod pool;
mod restore;
mod stock;
mod target;

pub use catalog::{ItemLoad, RedisAdmin, StockHash, StoredSale, StoredWin, SALE_END_MS_MAX};
pub use fleet::DashboardRead;
pub use keys::{item_keys, utc_date, ItemKeys, RELEASED_CHANNEL};
pub use orders::{state_of, Action, OrderAction, OrderRecord, OrderState, OutboxEntry};
pub use pool::PoolStats;
pub use restore::RestoredWin;
pub use stock::{RedisStockStore, DEDUCT_LUA};
pub use target::{redact_url, RedisTarget};
