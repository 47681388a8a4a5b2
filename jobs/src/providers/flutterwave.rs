//! A Flutterwave-compatible bills adapter (v3): the catalogue (`/bill-categories`), customer validation
//! (`/bill-items/{item}/validate`), vending (`/billers/{biller}/items/{item}/payment`), status
//! (`/bills/{reference}`) and the period list used for reconciliation (`/bills?from&to`). Requests carry
//! `Authorization: Bearer <secret key>`; answers have Flutterwave's `{"status": "success"|"error", "message",
//! "data"}` envelope; amounts are in major units (naira), converted exactly.

use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use serde::Deserialize;
use serde_json::{json, Value};

use super::capability::{
    BillCustomer, BillItem, BillsProvider, ProviderError, ProviderName, ProviderResult,
    SettlementRecord, VendInstruction, VendState, VendStatus,
};
use super::http::{
    classify_status, major_amount_at, minor_to_major_string, parse_exact, transport_error,
    urlencode,
};
use crate::money::Currency;

pub struct Flutterwave {
    http: reqwest::Client,
    base_url: String,
    secret_key: String,
}

#[derive(Deserialize)]
struct Envelope {
    status: String,
    #[serde(default)]
    message: String,
    #[serde(default)]
    data: Value,
}

fn str_of(value: &Value, key: &str) -> Option<String> {
    match value.get(key)? {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn vend_status(raw: &str) -> VendStatus {
    match raw.to_ascii_lowercase().as_str() {
        "successful" | "success" => VendStatus::Success,
        "failed" | "error" => VendStatus::Failed,
        _ => VendStatus::Pending,
    }
}

impl Flutterwave {
    pub fn new(http: reqwest::Client, base_url: &str, secret_key: &str) -> Self {
        Self {
            http,
            base_url: base_url.trim_end_matches('/').to_owned(),
            secret_key: secret_key.to_owned(),
        }
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<Value>,
    ) -> ProviderResult<Value> {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.base_url))
            .bearer_auth(&self.secret_key)
            .query(query);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.map_err(transport_error)?;
        let status = response.status();
        let text = response.text().await.map_err(transport_error)?;
        // Amounts come in naira with kobo as decimals: parsed from their exact text, never through an f64.
        let envelope = parse_exact(&text).and_then(serde_json::from_value::<Envelope>);
        match envelope {
            Ok(envelope) if status.is_success() && envelope.status == "success" => {
                Ok(envelope.data)
            }
            Ok(envelope) => {
                let lower = envelope.message.to_ascii_lowercase();
                if status.is_client_error()
                    && (lower.contains("not found") || lower.contains("no transaction"))
                {
                    return Err(ProviderError::NotFound);
                }
                if status.is_success() {
                    return Err(ProviderError::Declined(envelope.message));
                }
                Err(classify_status(status, envelope.message))
            }
            Err(_) if !status.is_success() => {
                Err(classify_status(status, text.chars().take(300).collect()))
            }
            Err(_) => Err(ProviderError::Protocol(format!(
                "unreadable answer to {path}"
            ))),
        }
    }

    fn vend_state(
        data: &Value,
        reference: &str,
        fallback: VendStatus,
    ) -> ProviderResult<VendState> {
        let extra = data.get("extra");
        let token = str_of(data, "recharge_token")
            .or_else(|| str_of(data, "token"))
            .or_else(|| extra.and_then(|e| str_of(e, "token")));
        Ok(VendState {
            reference: str_of(data, "reference").unwrap_or_else(|| reference.to_owned()),
            status: str_of(data, "status")
                .map(|s| vend_status(&s))
                .unwrap_or(fallback),
            provider_reference: str_of(data, "tx_ref").or_else(|| str_of(data, "flw_ref")),
            amount_minor: major_amount_at(data, "amount", Currency::Ngn)?.unwrap_or(0),
            token,
            units: str_of(data, "units").or_else(|| extra.and_then(|e| str_of(e, "units"))),
            message: str_of(data, "message"),
        })
    }
}

impl BillsProvider for Flutterwave {
    fn name(&self) -> ProviderName {
        ProviderName::Flutterwave
    }

    fn catalogue(&self) -> BoxFuture<'_, ProviderResult<Vec<BillItem>>> {
        Box::pin(async move {
            let data = self
                .call(reqwest::Method::GET, "/bill-categories", &[], None)
                .await?;
            let items = data
                .as_array()
                .ok_or_else(|| ProviderError::Protocol("catalogue is not a list".into()))?;
            Ok(items
                .iter()
                .filter_map(|item| {
                    let item_code = str_of(item, "item_code")?;
                    // An item whose price is not an exact naira amount is left out, never offered at a
                    // rounded price.
                    let amount_minor = match major_amount_at(item, "amount", Currency::Ngn) {
                        Ok(amount) => amount.unwrap_or(0),
                        Err(error) => {
                            tracing::warn!(%error, %item_code, "a biller item with a malformed price is left out");
                            return None;
                        }
                    };
                    Some(BillItem {
                        biller_code: str_of(item, "biller_code")?,
                        item_code,
                        name: str_of(item, "biller_name").or_else(|| str_of(item, "name"))?,
                        amount_minor,
                    })
                })
                .collect())
        })
    }

    fn validate<'a>(
        &'a self,
        biller_code: &'a str,
        item_code: &'a str,
        customer_id: &'a str,
    ) -> BoxFuture<'a, ProviderResult<BillCustomer>> {
        Box::pin(async move {
            let path = format!("/bill-items/{}/validate", urlencode(item_code));
            let query = [
                ("code", biller_code.to_owned()),
                ("customer", customer_id.to_owned()),
            ];
            let data = match self.call(reqwest::Method::GET, &path, &query, None).await {
                Err(ProviderError::NotFound) => {
                    return Err(ProviderError::Declined("Customer not found.".into()))
                }
                other => other?,
            };
            if str_of(&data, "response_code").is_some_and(|code| code != "00") {
                return Err(ProviderError::Declined(
                    str_of(&data, "response_message")
                        .unwrap_or_else(|| "Customer validation failed.".into()),
                ));
            }
            Ok(BillCustomer {
                customer_id: str_of(&data, "customer").unwrap_or_else(|| customer_id.to_owned()),
                name: str_of(&data, "name").unwrap_or_default(),
                address: str_of(&data, "address"),
            })
        })
    }

    fn vend<'a>(
        &'a self,
        instruction: &'a VendInstruction,
    ) -> BoxFuture<'a, ProviderResult<VendState>> {
        Box::pin(async move {
            let path = format!(
                "/billers/{}/items/{}/payment",
                urlencode(&instruction.biller_code),
                urlencode(&instruction.item_code)
            );
            let amount: Value = minor_to_major_string(instruction.amount_minor, Currency::Ngn)
                .parse::<serde_json::Number>()
                .map(Value::Number)
                .map_err(|e| ProviderError::Protocol(e.to_string()))?;
            let body = json!({
                "country": "NG",
                "customer_id": instruction.customer_id,
                "amount": amount,
                "reference": instruction.reference,
            });
            let data = self
                .call(reqwest::Method::POST, &path, &[], Some(body))
                .await?;
            Self::vend_state(&data, &instruction.reference, VendStatus::Success)
        })
    }

    fn vend_status<'a>(&'a self, reference: &'a str) -> BoxFuture<'a, ProviderResult<VendState>> {
        Box::pin(async move {
            let path = format!("/bills/{}", urlencode(reference));
            let data = self.call(reqwest::Method::GET, &path, &[], None).await?;
            Self::vend_state(&data, reference, VendStatus::Pending)
        })
    }

    fn settled_vends(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> BoxFuture<'_, ProviderResult<Vec<SettlementRecord>>> {
        Box::pin(async move {
            let query = [("from", from.to_rfc3339()), ("to", to.to_rfc3339())];
            let data = self
                .call(reqwest::Method::GET, "/bills", &query, None)
                .await?;
            let details = data
                .get("details")
                .and_then(Value::as_array)
                .ok_or_else(|| ProviderError::Protocol("no details in the bills list".into()))?;
            // A settled vend whose amount is malformed fails the listing (the reconciliation retries and
            // reports it) rather than being dropped or rounded.
            let mut records = Vec::new();
            for d in details {
                let settled =
                    str_of(d, "status").is_some_and(|s| vend_status(&s) == VendStatus::Success);
                let (true, Some(reference)) = (settled, str_of(d, "reference")) else {
                    continue;
                };
                let Some(amount_minor) = major_amount_at(d, "amount", Currency::Ngn)? else {
                    continue;
                };
                records.push(SettlementRecord {
                    reference,
                    amount_minor,
                    currency: str_of(d, "currency").unwrap_or_else(|| "NGN".into()),
                    status: "success".into(),
                });
            }
            Ok(records)
        })
    }
}
