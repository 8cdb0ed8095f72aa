//! The OpenAPI description, generated from the handlers' annotations and
//! the schemas they answer with; served at `/api/v1/openapi.json`.

use std::sync::OnceLock;

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::codec::PurchaseBody;
use super::error::{ErrorBody, ErrorCode};
use super::extract::UserBody;
use super::handlers::{admin, orders, purchase, rebuild, requests, sales};
use crate::redis::{OrderRecord, OrderState};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "seckill",
        description = "Flash-sale daemon: sale rounds, purchase tokens, purchases, orders. \
                       Admin endpoints need `Authorization: Bearer <admin_token>`. \
                       Every error answer is an `ErrorBody` whose `error` is one of the \
                       codes of `ErrorCode`."
    ),
    paths(
        sales::time,
        sales::rounds,
        sales::sale_page,
        purchase::issue_token,
        purchase::purchase,
        requests::request_status,
        orders::get_order,
        orders::pay_order,
        orders::cancel_order,
        admin::list_sales,
        admin::put_sale,
        admin::get_sale,
        rebuild::rebuild_sale,
        admin::blacklist,
        admin::block_user,
        admin::unblock_user,
        admin::block_ip,
        admin::unblock_ip
    ),
    components(schemas(
        sales::TimeBody,
        sales::ItemView,
        sales::SaleView,
        sales::RoundsView,
        UserBody,
        purchase::TokenView,
        PurchaseBody,
        purchase::PurchaseAnswer,
        requests::RequestView,
        orders::OrderView,
        OrderRecord,
        OrderState,
        admin::SaleBody,
        admin::ItemBody,
        admin::SaleSummary,
        admin::SaleList,
        admin::Blacklist,
        ErrorBody,
        ErrorCode
    )),
    modifiers(&BearerScheme)
)]
pub struct ApiDoc;

/// Declares the `bearer` scheme the admin operations name, so generated
/// clients send the admin token.
struct BearerScheme;

impl Modify for BearerScheme {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("The admin token (`admin_token`)."))
                    .build(),
            ),
        );
    }
}

/// The OpenAPI document, built once.
pub fn json() -> &'static str {
    static DOC: OnceLock<String> = OnceLock::new();
    DOC.get_or_init(|| ApiDoc::openapi().to_pretty_json().unwrap_or_default())
}
