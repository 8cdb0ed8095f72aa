//! The Redis stock store: the batched Lua deduction for the deduct stage,
//! and the admin writes that load a sale.

mod store;

pub use store::{
    item_keys, ItemKeys, ItemLoad, RedisAdmin, RedisStockStore, StockHash, StoredSale, StoredWin,
    SALE_END_MS_MAX,
};
