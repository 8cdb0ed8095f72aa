//! The Redis stock store: the batched Lua deduction for the deduct stage,
//! and the admin writes that load a sale.

mod orders;
mod store;

pub use orders::{OrderAction, OrderRecord, OrderState, OutboxEntry, RELEASED_CHANNEL};
pub use store::{
    day_rounds_key, item_keys, utc_date, ItemKeys, ItemLoad, RedisAdmin, RedisStockStore,
    StockHash, StoredSale, StoredWin, SALE_END_MS_MAX,
};
