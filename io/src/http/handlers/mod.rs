//! The handlers, one file per area of the API (docs/api.md has the same
//! sections). Each public handler carries its own OpenAPI annotation.

pub mod admin;
pub mod dashboard;
pub mod health;
pub mod orders;
pub mod purchase;
pub mod rebuild;
pub mod requests;
pub mod sales;
