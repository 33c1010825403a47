//! Restricted (personal) data of one Amazon order, read on demand: when a rule's
//! template or the ghost-order search needs the buyer. Never called by polling.
//!
//! A read asks the Tokens API for a Restricted Data Token (RDT) for exactly the two
//! resources of that order (createRestrictedDataToken), then calls getOrderBuyerInfo and
//! getOrderAddress with the RDT in `x-amz-access-token` instead of the LWA access token.
//! The RDT is not cached: Amazon expects one token per use for specific paths, and a
//! token kept around (or issued for the generic `{orderId}` paths) would only widen what
//! a leak could reach. Its lifetime (`expiresIn`) is therefore irrelevant here.
//!
//! This module must never store or log what it reads, quote a personal value in an
//! error, or let the RDT reach an error, a log or a `Debug`: the RDT is a
//! `SecretString`, the wire types of personal data derive no `Debug`, and
//! [`BuyerDetails`] is not `Serialize` and shows only which fields it holds.

use std::sync::Arc;

use secrecy::{ExposeSecret, SecretString};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use url::Url;

use crate::http::UpstreamError;
use crate::model::{BuyerAddress, BuyerDetails};
use crate::sources::amazon::api::{Operation, Retries, SpApi, refused};
use crate::sources::amazon::orders::{ApiError, describe};
use crate::sources::amazon::pacing::UsagePlan;

/// createRestrictedDataToken: 1 a second, burst 10 (tokens_2021-03-01.json).
pub const CREATE_RESTRICTED_DATA_TOKEN: Operation = Operation {
    name: "createRestrictedDataToken",
    plan: Some(UsagePlan {
        rate: 1.0,
        burst: 10,
    }),
    retries: Retries::InCall,
};

/// getOrderBuyerInfo: 0.5 a second, burst 30 (ordersV0.json).
pub const GET_ORDER_BUYER_INFO: Operation = Operation {
    name: "getOrderBuyerInfo",
    plan: Some(UsagePlan {
        rate: 0.5,
        burst: 30,
    }),
    retries: Retries::InCall,
};

/// getOrderAddress: 0.5 a second, burst 30 (ordersV0.json).
pub const GET_ORDER_ADDRESS: Operation = Operation {
    name: "getOrderAddress",
    plan: Some(UsagePlan {
        rate: 0.5,
        burst: 30,
    }),
    retries: Retries::InCall,
};

const TOKEN_PATH: [&str; 3] = ["tokens", "2021-03-01", "restrictedDataToken"];

/// Reads an order's buyer through one seller account's [`SpApi`].
pub struct RestrictedData {
    api: Arc<SpApi>,
}

impl RestrictedData {
    pub fn new(api: Arc<SpApi>) -> Self {
        Self { api }
    }

    /// The buyer of `order_id`: name, anonymised e-mail, company, purchase order
    /// number and shipping address, as far as Amazon gives them for the order's status.
    pub async fn buyer(&self, order_id: &str) -> Result<BuyerDetails, UpstreamError> {
        if !is_order_id(order_id) {
            // The id is not quoted: on the ghost-order path it comes from a buyer's mail.
            return Err(refused(
                "an order id is letters, digits, '-' and '_' only (at most 64)",
            ));
        }
        let buyer_info = order_path(order_id, "buyerInfo");
        let address = order_path(order_id, "address");
        let rdt = self.token(&[&buyer_info, &address]).await?;
        let info_url = self.api.url(&buyer_info)?;
        let address_url = self.api.url(&address)?;
        let (info, address) = tokio::try_join!(
            self.read::<GetOrderBuyerInfoResponse>(&GET_ORDER_BUYER_INFO, &info_url, &rdt),
            self.read::<GetOrderAddressResponse>(&GET_ORDER_ADDRESS, &address_url, &rdt),
        )?;
        let mut buyer = BuyerDetails::default();
        add_buyer_info(&mut buyer, order_id, info)?;
        add_address(&mut buyer, order_id, address)?;
        // Who read personal data, and when, belongs in the log; what was read never does.
        tracing::info!(
            order = order_id,
            "Read an order's buyer with a Restricted Data Token."
        );
        Ok(buyer)
    }

    /// A fresh RDT for GET on each of `paths` (path segments from the root).
    async fn token(&self, paths: &[&[&str]]) -> Result<SecretString, UpstreamError> {
        let url = self.api.url(&TOKEN_PATH)?;
        let request = TokenRequest {
            restricted_resources: paths.iter().map(|p| resource(p)).collect(),
        };
        let response: TokenResponse = self
            .api
            .post_json(&CREATE_RESTRICTED_DATA_TOKEN, &url, &request)
            .await?;
        response.into_token()
    }

    /// A GET with the RDT; the body is parsed here so that no serde message, which may
    /// quote a personal value, reaches the error.
    async fn read<T: DeserializeOwned>(
        &self,
        operation: &Operation,
        url: &Url,
        rdt: &SecretString,
    ) -> Result<T, UpstreamError> {
        let body: Value = self
            .api
            .get_json_restricted(operation, url, &[], rdt)
            .await?;
        parse_personal(operation.name, body)
    }
}

/// Amazon order ids are 3-7-7 digits; the static sandbox uses names like
/// `TEST_CASE_200`. Nothing else, so the id cannot change the path the RDT is for.
fn is_order_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn order_path<'a>(order_id: &'a str, leaf: &'a str) -> [&'a str; 5] {
    ["orders", "v0", "orders", order_id, leaf]
}

/// `RestrictedResource` for GET on a path given as segments; the segments need no
/// encoding (see [`is_order_id`]), so the path is the one the GET will use.
fn resource(segments: &[&str]) -> RestrictedResource {
    RestrictedResource {
        method: "GET",
        path: format!("/{}", segments.join("/")),
    }
}

/// `CreateRestrictedDataTokenRequest` (no `targetApplication`: the token is ours).
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct TokenRequest {
    restricted_resources: Vec<RestrictedResource>,
}

/// `RestrictedResource` (no `dataElements`: they apply only to getOrders, getOrder and
/// getOrderItems).
#[derive(Debug, Serialize, PartialEq, Eq)]
struct RestrictedResource {
    method: &'static str,
    path: String,
}

/// `CreateRestrictedDataTokenResponse`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct TokenResponse {
    restricted_data_token: Option<SecretString>,
    expires_in: Option<i64>,
}

impl TokenResponse {
    fn into_token(self) -> Result<SecretString, UpstreamError> {
        let malformed = |reason: &str| UpstreamError::Malformed {
            what: format!("{} response", CREATE_RESTRICTED_DATA_TOKEN.name),
            reason: reason.to_owned(),
        };
        if self.expires_in.is_some_and(|seconds| seconds <= 0) {
            return Err(malformed("expiresIn is not positive"));
        }
        self.restricted_data_token
            .filter(|token| !token.expose_secret().trim().is_empty())
            .ok_or_else(|| malformed("no restrictedDataToken"))
    }
}

/// `GetOrderBuyerInfoResponse`. Personal: no `Debug`.
#[derive(Deserialize)]
struct GetOrderBuyerInfoResponse {
    payload: Option<OrderBuyerInfo>,
    #[serde(default)]
    errors: Vec<ApiError>,
}

/// `OrderBuyerInfo`, fields as sent (`BuyerTaxInfo` and `BuyerCounty` are not read).
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct OrderBuyerInfo {
    amazon_order_id: Option<Value>,
    buyer_email: Option<Value>,
    buyer_name: Option<Value>,
    purchase_order_number: Option<Value>,
}

/// `GetOrderAddressResponse`. Personal: no `Debug`.
#[derive(Deserialize)]
struct GetOrderAddressResponse {
    payload: Option<OrderAddress>,
    #[serde(default)]
    errors: Vec<ApiError>,
}

/// `OrderAddress`, fields as sent (`DeliveryPreferences` are not read).
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct OrderAddress {
    amazon_order_id: Option<Value>,
    buyer_company_name: Option<Value>,
    shipping_address: Option<Value>,
}

/// `T` from a personal body. On a contract break only the shape is named, never a value.
fn parse_personal<T: DeserializeOwned>(operation: &str, body: Value) -> Result<T, UpstreamError> {
    serde_json::from_value(body).map_err(|_| UpstreamError::Malformed {
        what: format!("{operation} response"),
        reason: "the body does not have the contract's shape (personal data, not quoted)".into(),
    })
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// A personal string field; a non-string is named by its JSON type, never quoted.
fn text(
    operation: &str,
    field: &str,
    value: Option<&Value>,
) -> Result<Option<String>, UpstreamError> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(other) => Err(UpstreamError::Malformed {
            what: format!("{operation} response"),
            reason: format!("{field} is {}, not a string", kind(other)),
        }),
    }
}

/// The payload, or why there is none; and it must be about `order_id`, so that a
/// mixed-up answer never puts one buyer's data on another's order.
fn payload_for<P>(
    operation: &str,
    order_id: &str,
    payload: Option<P>,
    errors: &[ApiError],
    id_of: impl Fn(&P) -> Option<&Value>,
) -> Result<P, UpstreamError> {
    let malformed = |reason: String| UpstreamError::Malformed {
        what: format!("{operation} response for order {order_id}"),
        reason,
    };
    let Some(payload) = payload else {
        return Err(malformed(if errors.is_empty() {
            "no payload".into()
        } else {
            describe(errors)
        }));
    };
    match text(operation, "AmazonOrderId", id_of(&payload))? {
        Some(id) if id != order_id => Err(malformed("it is about another order".into())),
        _ => Ok(payload),
    }
}

fn add_buyer_info(
    buyer: &mut BuyerDetails,
    order_id: &str,
    response: GetOrderBuyerInfoResponse,
) -> Result<(), UpstreamError> {
    let op = GET_ORDER_BUYER_INFO.name;
    let info = payload_for(op, order_id, response.payload, &response.errors, |p| {
        p.amazon_order_id.as_ref()
    })?;
    buyer.name = text(op, "BuyerName", info.buyer_name.as_ref())?;
    buyer.email = text(op, "BuyerEmail", info.buyer_email.as_ref())?;
    buyer.purchase_order_number = text(
        op,
        "PurchaseOrderNumber",
        info.purchase_order_number.as_ref(),
    )?;
    Ok(())
}

fn add_address(
    buyer: &mut BuyerDetails,
    order_id: &str,
    response: GetOrderAddressResponse,
) -> Result<(), UpstreamError> {
    let op = GET_ORDER_ADDRESS.name;
    let found = payload_for(op, order_id, response.payload, &response.errors, |p| {
        p.amazon_order_id.as_ref()
    })?;
    let address = match &found.shipping_address {
        None | Some(Value::Null) => None,
        Some(Value::Object(a)) => {
            let field = |key: &str| text(op, &format!("ShippingAddress.{key}"), a.get(key));
            Some(BuyerAddress {
                name: field("Name")?,
                company: field("CompanyName")?,
                line1: field("AddressLine1")?,
                line2: field("AddressLine2")?,
                line3: field("AddressLine3")?,
                city: field("City")?,
                county: field("County")?,
                district: field("District")?,
                municipality: field("Municipality")?,
                state_or_region: field("StateOrRegion")?,
                postal_code: field("PostalCode")?,
                country_code: field("CountryCode")?,
                phone: field("Phone")?,
                address_type: field("AddressType")?,
            })
        }
        Some(other) => {
            return Err(UpstreamError::Malformed {
                what: format!("{op} response"),
                reason: format!("ShippingAddress is {}, not an object", kind(other)),
            });
        }
    };
    buyer.company = text(op, "BuyerCompanyName", found.buyer_company_name.as_ref())?
        .or_else(|| address.as_ref().and_then(|a| a.company.clone()));
    buyer.shipping_address = address;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sources::amazon::api::ACCESS_TOKEN_HEADER;
    use crate::sources::amazon::api::fake::{Answer, Fake, TOKEN_PREFIX};
    use crate::sources::amazon::orders::ErrorBody;
    use crate::sources::amazon::orders::spec_examples::{Case, cases};
    use serde_json::json;

    const ORDER: &str = "902-1234567-1234567";
    const RDT: &str = "Atz.sprdt|SECRET-RDT-VALUE";
    const TOKEN_URL_PATH: &str = "/tokens/2021-03-01/restrictedDataToken";

    fn info_path() -> String {
        format!("/orders/v0/orders/{ORDER}/buyerInfo")
    }

    fn address_path() -> String {
        format!("/orders/v0/orders/{ORDER}/address")
    }

    /// A 400 case of the contract: the error list with code and message (and details).
    fn error_case(label: &str, case: &Case) -> ErrorBody {
        let body: Result<ErrorBody, _> = serde_json::from_value(case.response.clone());
        let Ok(body) = body else {
            panic!("{label}: the 400 example does not parse: {body:?}")
        };
        assert!(!body.errors.is_empty(), "{label}: no errors");
        body
    }

    #[test]
    fn every_getorderbuyerinfo_sandbox_example_maps() {
        let all = cases(
            "ordersV0.json",
            "/orders/v0/orders/{orderId}/buyerInfo",
            "get",
        );
        let Ok(all) = all else {
            panic!("reading the getOrderBuyerInfo examples: {:?}", all.err())
        };
        let mut parsed = 0;
        let mut recognised = 0;
        for case in &all {
            let label = format!("getOrderBuyerInfo {} {}", case.status, case.request);
            if case.status == 400 {
                let body = error_case(&label, case);
                assert_eq!(describe(&body.errors), "InvalidInput: Invalid Input");
                parsed += 1;
                continue;
            }
            assert_eq!(case.status, 200, "{label}");
            let response = parse_personal::<GetOrderBuyerInfoResponse>("t", case.response.clone());
            let Ok(response) = response else {
                panic!("{label}: does not parse")
            };
            // A canned answer is about its own order, whatever id the request used.
            let order = case.response["payload"]["AmazonOrderId"].as_str();
            let mut buyer = BuyerDetails::default();
            let added = add_buyer_info(&mut buyer, order.unwrap_or_default(), response);
            assert!(added.is_ok(), "{label}: {added:?}");
            assert!(buyer != BuyerDetails::default(), "{label}: nothing read");
            if case.asks_for("TEST_CASE_200") {
                recognised += 1;
                assert_eq!(order, Some("902-1845936-5435065"));
                assert_eq!(buyer.email.as_deref(), Some("fzyrv6gwkhbb15c@example.com"));
                assert_eq!(buyer.name.as_deref(), Some("MFNIntegrationTestMerchant"));
                assert_eq!(buyer.purchase_order_number, None);
            }
            parsed += 1;
        }
        assert_eq!(parsed, all.len());
        assert!(recognised >= 1, "the known cases were not found");
        assert!(parsed >= 2, "only {parsed} getOrderBuyerInfo examples");
    }

    #[test]
    fn every_getorderaddress_sandbox_example_maps() {
        let all = cases(
            "ordersV0.json",
            "/orders/v0/orders/{orderId}/address",
            "get",
        );
        let Ok(all) = all else {
            panic!("reading the getOrderAddress examples: {:?}", all.err())
        };
        let mut parsed = 0;
        let mut recognised = 0;
        for case in &all {
            let label = format!("getOrderAddress {} {}", case.status, case.request);
            if case.status == 400 {
                let body = error_case(&label, case);
                assert_eq!(describe(&body.errors), "InvalidInput: Invalid Input");
                parsed += 1;
                continue;
            }
            assert_eq!(case.status, 200, "{label}");
            let response = parse_personal::<GetOrderAddressResponse>("t", case.response.clone());
            let Ok(response) = response else {
                panic!("{label}: does not parse")
            };
            let order = case.response["payload"]["AmazonOrderId"].as_str();
            let mut buyer = BuyerDetails::default();
            let added = add_address(&mut buyer, order.unwrap_or_default(), response);
            assert!(added.is_ok(), "{label}: {added:?}");
            let Some(address) = &buyer.shipping_address else {
                panic!("{label}: no shipping address")
            };
            if !case.asks_for("TEST_CASE_200") {
                parsed += 1;
                continue;
            }
            recognised += 1;
            assert_eq!(order, Some("902-1845936-5435065"));
            assert_eq!(address.name.as_deref(), Some("MFNIntegrationTestMerchant"));
            assert_eq!(address.line1.as_deref(), Some("2201 WESTLAKE AVE"));
            assert_eq!(address.line2, None);
            assert_eq!(address.city.as_deref(), Some("SEATTLE"));
            assert_eq!(address.state_or_region.as_deref(), Some("WA"));
            assert_eq!(address.postal_code.as_deref(), Some("98121-2778"));
            assert_eq!(address.country_code.as_deref(), Some("US"));
            assert_eq!(address.phone.as_deref(), Some("+1 480-386-0930 ext. 73824"));
            assert_eq!(address.address_type.as_deref(), Some("Commercial"));
            assert_eq!(buyer.company, None);
            parsed += 1;
        }
        assert_eq!(parsed, all.len());
        assert!(recognised >= 1, "the known cases were not found");
        assert!(parsed >= 2, "only {parsed} getOrderAddress examples");
    }

    #[test]
    fn every_createrestricteddatatoken_sandbox_example_maps() {
        let all = cases(
            "tokens_2021-03-01.json",
            "/tokens/2021-03-01/restrictedDataToken",
            "post",
        );
        let Ok(all) = all else {
            panic!(
                "reading the createRestrictedDataToken examples: {:?}",
                all.err()
            )
        };
        let mut parsed = 0;
        let mut recognised = 0;
        for case in &all {
            let label = format!("createRestrictedDataToken {} {}", case.status, case.request);
            if case.status == 400 {
                let body = error_case(&label, case);
                assert_eq!(body.errors[0].code, "InvalidRequest");
                assert_eq!(
                    body.errors[0].message,
                    "Request is missing or has invalid parameters"
                );
                assert_eq!(
                    body.errors[0].details.as_deref(),
                    Some("Resource not provided.")
                );
                parsed += 1;
                continue;
            }
            assert_eq!(case.status, 200, "{label}");
            let response: Result<TokenResponse, _> = serde_json::from_value(case.response.clone());
            let Ok(response) = response else {
                panic!("{label}: does not parse: {response:?}")
            };
            assert_eq!(response.expires_in, Some(3600), "{label}");
            let token = response.into_token();
            let Ok(token) = token else {
                panic!("{label}: {token:?}")
            };
            assert!(token.expose_secret().starts_with("Atz.sprdt|"), "{label}");
            if case.asks_for("/orders/v0/orders/943-12-123434/address") {
                recognised += 1;
                assert_eq!(
                    token.expose_secret(),
                    "Atz.sprdt|AODFNESLjAsAhRmHjNgHpi0U-Dme37rR6CuUpSR"
                );
                // What nightdesk asks for has the contract's shape for the same resource.
                let ours = serde_json::to_value(resource(&order_path("943-12-123434", "address")))
                    .unwrap_or_default();
                assert_eq!(
                    case.request["body"]["value"]["restrictedResources"][0], ours,
                    "{label}"
                );
            } else {
                recognised += 1;
                assert_eq!(
                    token.expose_secret(),
                    "Atz.sprdt|IQEBLjAsAhRmHjNgHpi0U-Dme37rR6CuUpSR"
                );
            }
            parsed += 1;
        }
        assert_eq!(parsed, all.len());
        assert!(recognised >= 2, "the known cases were not found");
        assert!(
            parsed >= 3,
            "only {parsed} createRestrictedDataToken examples"
        );
    }

    fn script_token(fake: &Fake) {
        fake.script(
            "POST",
            TOKEN_URL_PATH,
            vec![Answer::json(
                200,
                json!({"restrictedDataToken": RDT, "expiresIn": 3600}),
            )],
        );
    }

    fn script_buyer(fake: &Fake) {
        fake.script(
            "GET",
            &info_path(),
            vec![Answer::json(
                200,
                json!({"payload": {"AmazonOrderId": ORDER, "BuyerEmail": "abc123@marketplace.amazon.com",
                    "BuyerName": "Jane Private", "PurchaseOrderNumber": "PO-778899", "BuyerCounty": "Vila Mariana"}}),
            )],
        );
        fake.script(
            "GET",
            &address_path(),
            vec![Answer::json(
                200,
                json!({"payload": {"AmazonOrderId": ORDER, "BuyerCompanyName": "Private Widgets",
                    "ShippingAddress": {"Name": "Janet Receiver", "AddressLine1": "1 Secret Lane",
                        "AddressLine2": "Flat 9", "City": "Springfield", "County": "Greene",
                        "StateOrRegion": "IL", "PostalCode": "62701", "CountryCode": "US",
                        "Phone": "+1 555 0100", "AddressType": "Residential"},
                    "DeliveryPreferences": {"AddressInstructions": "Behind the blue gate"}}}),
            )],
        );
    }

    const PERSONAL: [&str; 10] = [
        "Jane Private",
        "abc123@",
        "PO-778899",
        "Private Widgets",
        "Janet Receiver",
        "Secret Lane",
        "Flat 9",
        "Springfield",
        "555 0100",
        "blue gate",
    ];

    #[tokio::test]
    async fn one_rdt_for_both_resources_authorises_both_reads() {
        let fake = Fake::start().await;
        script_token(&fake);
        script_buyer(&fake);
        let restricted = RestrictedData::new(fake.api());
        let buyer = restricted.buyer(ORDER).await;
        let Ok(buyer) = buyer else {
            panic!("{:?}", buyer.err())
        };

        let token_calls = fake.seen(TOKEN_URL_PATH);
        assert_eq!(token_calls.len(), 1);
        assert_eq!(token_calls[0].method, "POST");
        assert_eq!(
            token_calls[0].json(),
            json!({"restrictedResources": [
                {"method": "GET", "path": format!("/orders/v0/orders/{ORDER}/buyerInfo")},
                {"method": "GET", "path": format!("/orders/v0/orders/{ORDER}/address")}
            ]})
        );
        // The token call is the seller's (LWA access token); the reads are the RDT's.
        assert!(
            token_calls[0]
                .header(ACCESS_TOKEN_HEADER)
                .is_some_and(|t| t.starts_with(TOKEN_PREFIX))
        );
        for path in [info_path(), address_path()] {
            let seen = fake.seen(&path);
            assert_eq!(seen.len(), 1, "{path}");
            assert_eq!(seen[0].method, "GET");
            assert_eq!(seen[0].header(ACCESS_TOKEN_HEADER).as_deref(), Some(RDT));
        }

        assert_eq!(buyer.name.as_deref(), Some("Jane Private"));
        assert_eq!(
            buyer.email.as_deref(),
            Some("abc123@marketplace.amazon.com")
        );
        assert_eq!(buyer.company.as_deref(), Some("Private Widgets"));
        assert_eq!(buyer.purchase_order_number.as_deref(), Some("PO-778899"));
        let Some(address) = &buyer.shipping_address else {
            panic!("no shipping address")
        };
        assert_eq!(address.name.as_deref(), Some("Janet Receiver"));
        assert_eq!(address.line1.as_deref(), Some("1 Secret Lane"));
        assert_eq!(address.line2.as_deref(), Some("Flat 9"));
        assert_eq!(address.county.as_deref(), Some("Greene"));
        assert_eq!(address.postal_code.as_deref(), Some("62701"));
        assert_eq!(address.phone.as_deref(), Some("+1 555 0100"));
        assert_eq!(address.address_type.as_deref(), Some("Residential"));

        let shown = format!("{buyer:?} {buyer:#?}");
        for value in PERSONAL.iter().chain([&RDT]) {
            assert!(!shown.contains(value), "{value} in {shown}");
        }

        // No RDT is kept: the next read asks for a new one.
        let again = restricted.buyer(ORDER).await;
        assert!(again.is_ok(), "{:?}", again.err());
        assert_eq!(fake.seen(TOKEN_URL_PATH).len(), 2);
    }

    #[test]
    fn buyer_details_debug_shows_no_personal_value() {
        let values = [
            "Jane Q. Buyer",
            "abc123@marketplace.amazon.com",
            "Buyer Widgets GmbH",
            "PO-778899",
            "Janet Receiver",
            "Receiver Corp",
            "1 Secret Lane",
            "Flat 9",
            "Back door",
            "Springfield",
            "Greene County",
            "Old Town",
            "Springfield Municipality",
            "Illinois",
            "62701-1234",
            "United States",
            "+1 555 0100",
            "Residential",
        ];
        let [
            name,
            email,
            company,
            po,
            to_name,
            to_company,
            line1,
            line2,
            line3,
            city,
            county,
            district,
            municipality,
            state,
            postal,
            country,
            phone,
            kind,
        ] = values.map(|v| Some(v.to_owned()));
        let buyer = BuyerDetails {
            name,
            email,
            company,
            purchase_order_number: po,
            shipping_address: Some(BuyerAddress {
                name: to_name,
                company: to_company,
                line1,
                line2,
                line3,
                city,
                county,
                district,
                municipality,
                state_or_region: state,
                postal_code: postal,
                country_code: country,
                phone,
                address_type: kind,
            }),
        };
        let shown = format!("{buyer:?} {buyer:#?}");
        for value in values {
            assert!(!shown.contains(value), "{value} in {shown}");
        }
        assert!(shown.contains("name: Some(..)") && shown.contains("line1: Some(..)"));
        let empty = format!("{:?}", BuyerDetails::default());
        assert!(empty.contains("email: None") && empty.contains("shipping_address: None"));
    }

    #[tokio::test]
    async fn a_403_on_a_restricted_read_is_an_error_and_keeps_the_access_token() {
        let fake = Fake::start().await;
        script_token(&fake);
        script_buyer(&fake);
        fake.script(
            "GET",
            &info_path(),
            vec![Answer::json(
                403,
                json!({"errors": [{"code": "Unauthorized", "message": "Access to requested resource is denied.",
                    "details": "The access token you provided is revoked, malformed or invalid."}]}),
            )],
        );
        let restricted = RestrictedData::new(fake.api());
        let result = restricted.buyer(ORDER).await;
        let Err(error) = result else {
            panic!("a 403 was accepted")
        };
        let text = format!("{error} {error:?}");
        assert!(text.contains("Unauthorized"), "{text}");
        assert!(
            !text.contains(RDT) && !text.contains("SECRET-RDT"),
            "{text}"
        );
        assert!(!error.is_retryable());
        // Sent once with the RDT; a refused RDT says nothing about the access token.
        assert_eq!(fake.seen(&info_path()).len(), 1);
        assert_eq!(fake.tokens_issued(), 1);

        let _ = restricted.buyer(ORDER).await;
        let token_calls = fake.seen(TOKEN_URL_PATH);
        assert_eq!(token_calls.len(), 2);
        assert_eq!(
            token_calls[1].header(ACCESS_TOKEN_HEADER).as_deref(),
            Some(format!("{TOKEN_PREFIX}1").as_str())
        );
        assert_eq!(fake.tokens_issued(), 1);
    }

    #[tokio::test]
    async fn errors_quote_neither_the_rdt_nor_personal_values() {
        let fake = Fake::start().await;
        script_token(&fake);
        script_buyer(&fake);
        // A contract break in a personal answer: named by field and type only.
        fake.script(
            "GET",
            &address_path(),
            vec![Answer::json(
                200,
                json!({"payload": {"AmazonOrderId": ORDER, "ShippingAddress": {"Name": ["Janet Receiver"],
                    "AddressLine1": "1 Secret Lane"}}}),
            )],
        );
        let restricted = RestrictedData::new(fake.api());
        let result = restricted.buyer(ORDER).await;
        let Err(error) = result else {
            panic!("a bad address was accepted")
        };
        let text = format!("{error} {error:?}");
        assert!(text.contains("ShippingAddress.Name is an array"), "{text}");
        for value in PERSONAL.iter().chain([&RDT]) {
            assert!(!text.contains(value), "{value} in {text}");
        }

        // A body that is not the contract's shape at all.
        fake.script(
            "GET",
            &address_path(),
            vec![Answer::json(
                200,
                json!({"payload": "Janet Receiver, 1 Secret Lane"}),
            )],
        );
        let Err(error) = restricted.buyer(ORDER).await else {
            panic!("a bad body was accepted")
        };
        let text = format!("{error} {error:?}");
        assert!(!text.contains("Janet") && !text.contains(RDT), "{text}");

        // A server error on a read, retried and then given up.
        fake.script(
            "GET",
            &address_path(),
            vec![Answer::json(
                500,
                json!({"errors": [{"code": "InternalFailure", "message": "We encountered an internal error."}]}),
            )],
        );
        let Err(error) = restricted.buyer(ORDER).await else {
            panic!("a 500 was accepted")
        };
        let text = format!("{error} {error:?}");
        assert!(text.contains("InternalFailure"), "{text}");
        assert!(
            !text.contains(RDT) && !text.contains("SECRET-RDT"),
            "{text}"
        );

        // An answer about another order is never taken for this one.
        script_buyer(&fake);
        fake.script(
            "GET",
            &info_path(),
            vec![Answer::json(
                200,
                json!({"payload": {"AmazonOrderId": "111-0000000-0000000", "BuyerName": "Someone Else"}}),
            )],
        );
        let Err(error) = restricted.buyer(ORDER).await else {
            panic!("another order's buyer was accepted")
        };
        let text = error.to_string();
        assert!(
            text.contains("another order") && !text.contains("Someone"),
            "{text}"
        );
    }

    #[tokio::test]
    async fn a_token_answer_without_a_token_is_malformed() {
        let fake = Fake::start().await;
        fake.script(
            "POST",
            TOKEN_URL_PATH,
            vec![Answer::json(200, json!({"expiresIn": 3600}))],
        );
        let restricted = RestrictedData::new(fake.api());
        let result = restricted.buyer(ORDER).await;
        assert!(
            matches!(result, Err(UpstreamError::Malformed { .. })),
            "{:?}",
            result.err()
        );
        assert!(fake.seen(&info_path()).is_empty());
    }

    #[tokio::test]
    async fn an_id_that_is_not_an_order_id_is_refused_before_any_call() {
        let fake = Fake::start().await;
        let restricted = RestrictedData::new(fake.api());
        for id in [
            "",
            "../../tokens",
            "902-1234567-1234567/address",
            "jane@example.com",
            "a b",
        ] {
            let result = restricted.buyer(id).await;
            let Err(error) = result else {
                panic!("{id:?} was accepted")
            };
            assert!(!error.may_have_acted() && !error.is_retryable(), "{error}");
            if !id.is_empty() {
                assert!(!error.to_string().contains(id), "{error}");
            }
        }
        assert!(fake.all_seen().is_empty());
        assert_eq!(fake.tokens_issued(), 0);
    }
}
