//! The live dashboard's data: once a second the task reads the counters
//! the stages and the purchase route already keep, one pipelined Redis
//! round trip (the stock of the items on screen, every daemon's figures),
//! builds one [`view::Snapshot`], encodes it once as a server-sent event
//! and hands it to [`crate::app::Feed`]; every open `/dashboard/events`
//! stream sends that same event. The page (`http/handlers/dashboard.html`)
//! draws it. Nothing here runs per request.

mod counts;
pub mod quantile;
pub mod task;
pub mod view;
