//! Records of a sale as the tests hand them to a rebuild.

/// The wins Redis holds of an item as a rebuild takes them: unpaid ones
/// due at `deadline_ms`, closed ones as `closed` (order id →
/// `<state>:<ms>`, as `RedisAdmin::closed_orders` reads them) says.
pub fn restored<'a>(
    wins: &'a [seckill_io::redis::StoredWin],
    closed: &'a std::collections::HashMap<String, String>,
    deadline_ms: u64,
) -> Vec<seckill_io::redis::RestoredWin<'a>> {
    wins.iter()
        .map(|w| seckill_io::redis::RestoredWin {
            order_id: &w.order_id,
            request_id: &w.request_id,
            user_id: &w.user_id,
            quantity: w.quantity,
            deadline_ms,
            closed: closed.get(&w.order_id).and_then(|c| {
                let (state, at) = c.split_once(':')?;
                Some((state, at.parse().ok()?))
            }),
        })
        .collect()
}
