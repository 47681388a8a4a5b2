//! A Paystack-compatible adapter: deposits through the hosted checkout (`/transaction/initialize`, `/verify`),
//! payouts (`/bank`, `/bank/resolve`, `/transferrecipient`, `/transfer`, `/transfer/verify`) and the lists used for
//! reconciliation. Requests carry `Authorization: Bearer <secret key>`; answers have Paystack's
//! `{"status": bool, "message", "data"}` envelope; amounts are in minor units (kobo).

use chrono::{DateTime, SecondsFormat, Utc};
use futures::future::BoxFuture;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Value};

use super::capability::{
    Bank, Charge, ChargeStatus, DepositInit, DepositSession, PaymentGateway, PayoutInstruction,
    PayoutProvider, PayoutState, PayoutStatus, ProviderError, ProviderName, ProviderResult,
    SettlementRecord,
};
use super::http::{classify_status, transport_error, urlencode};
use crate::money::Currency;

/// Pages fetched at most for one reconciliation list (100 records a page).
const LIST_PAGES_MAX: u32 = 1000;

pub struct Paystack {
    http: reqwest::Client,
    base_url: String,
    secret_key: String,
}

#[derive(Deserialize)]
struct Envelope<T> {
    status: bool,
    #[serde(default)]
    message: String,
    data: Option<T>,
    #[serde(default)]
    meta: Option<Value>,
}

impl Paystack {
    pub fn new(http: reqwest::Client, base_url: &str, secret_key: &str) -> Self {
        Self {
            http,
            base_url: base_url.trim_end_matches('/').to_owned(),
            secret_key: secret_key.to_owned(),
        }
    }

    async fn call<T: DeserializeOwned>(
        &self,
        method: reqwest::Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<Value>,
    ) -> ProviderResult<(T, Option<Value>)> {
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
        let envelope: Option<Envelope<T>> = serde_json::from_str(&text).ok();
        match envelope {
            Some(Envelope {
                status: true,
                data: Some(data),
                meta,
                ..
            }) if status.is_success() => Ok((data, meta)),
            Some(envelope) if !status.is_success() || !envelope.status => {
                let message = envelope.message;
                if message.to_ascii_lowercase().contains("not found") && status.is_client_error() {
                    return Err(ProviderError::NotFound);
                }
                Err(classify_status(status, message))
            }
            _ if !status.is_success() => Err(classify_status(status, truncate(&text))),
            _ => Err(ProviderError::Protocol(format!(
                "unreadable answer to {path}: {}",
                truncate(&text)
            ))),
        }
    }

    async fn list_all(
        &self,
        path: &str,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        extra: &[(&str, String)],
    ) -> ProviderResult<Vec<Value>> {
        let mut records = Vec::new();
        for page in 1..=LIST_PAGES_MAX {
            let mut query = vec![
                ("from", from.to_rfc3339_opts(SecondsFormat::Millis, true)),
                ("to", to.to_rfc3339_opts(SecondsFormat::Millis, true)),
                ("perPage", "100".to_owned()),
                ("page", page.to_string()),
            ];
            query.extend(extra.iter().cloned());
            let (data, meta): (Vec<Value>, _) =
                self.call(reqwest::Method::GET, path, &query, None).await?;
            let count = data.len();
            records.extend(data);
            let page_count = meta
                .as_ref()
                .and_then(|m| m.get("pageCount"))
                .and_then(Value::as_u64)
                .unwrap_or(1);
            if count == 0 || u64::from(page) >= page_count {
                break;
            }
        }
        Ok(records)
    }
}

/// Whether a refusal says the reference was used before (Paystack: "Duplicate Transaction Reference").
fn is_duplicate_reference(message: &str) -> bool {
    message.to_ascii_lowercase().contains("duplicate")
}

impl Paystack {
    /// After "Duplicate Transaction Reference" on initialise: the reference's charge, looked up by reference, is
    /// our own earlier attempt whose answer was lost when it is the same payment (amount and currency) and still
    /// payable; its page is the answer. Anything else keeps the refusal.
    async fn recover_session(
        &self,
        init: &DepositInit,
        refusal: String,
    ) -> ProviderResult<DepositSession> {
        let charge = match self.verify(&init.reference).await {
            Ok(charge) => charge,
            Err(ProviderError::NotFound) => return Err(ProviderError::Declined(refusal)),
            Err(error) => return Err(error),
        };
        let same_payment = charge.amount_minor == init.amount_minor
            && charge.currency.eq_ignore_ascii_case(init.currency.code());
        match charge.authorization_url {
            Some(authorization_url) if same_payment && charge.status == ChargeStatus::Pending => {
                Ok(DepositSession {
                    access_code: authorization_url
                        .rsplit('/')
                        .next()
                        .unwrap_or_default()
                        .to_owned(),
                    authorization_url,
                })
            }
            _ => Err(ProviderError::Declined(refusal)),
        }
    }
}

fn truncate(text: &str) -> String {
    text.chars().take(300).collect()
}

fn charge_status(raw: &str) -> ChargeStatus {
    match raw {
        "success" => ChargeStatus::Success,
        "failed" | "reversed" => ChargeStatus::Failed,
        "abandoned" => ChargeStatus::Abandoned,
        _ => ChargeStatus::Pending,
    }
}

fn payout_status(raw: &str) -> PayoutStatus {
    match raw {
        "success" => PayoutStatus::Success,
        "failed" | "abandoned" | "blocked" | "rejected" => PayoutStatus::Failed,
        "reversed" => PayoutStatus::Reversed,
        _ => PayoutStatus::Pending,
    }
}

fn str_of(value: &Value, key: &str) -> Option<String> {
    value.get(key).and_then(Value::as_str).map(str::to_owned)
}

fn int_of(value: &Value, key: &str) -> Option<i64> {
    match value.get(key)? {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

fn payout_state(data: &Value) -> ProviderResult<PayoutState> {
    Ok(PayoutState {
        reference: str_of(data, "reference")
            .ok_or_else(|| ProviderError::Protocol("transfer without reference".into()))?,
        status: payout_status(&str_of(data, "status").unwrap_or_default()),
        amount_minor: int_of(data, "amount")
            .ok_or_else(|| ProviderError::Protocol("transfer without amount".into()))?,
        transfer_code: str_of(data, "transfer_code"),
        reason: str_of(data, "reason").or_else(|| str_of(data, "failures")),
    })
}

fn settlement(record: &Value) -> Option<SettlementRecord> {
    Some(SettlementRecord {
        reference: str_of(record, "reference")?,
        amount_minor: int_of(record, "amount")?,
        currency: str_of(record, "currency").unwrap_or_else(|| "NGN".into()),
        status: str_of(record, "status")?,
    })
}

impl PaymentGateway for Paystack {
    fn name(&self) -> ProviderName {
        ProviderName::Paystack
    }

    fn initialize(&self, init: &DepositInit) -> BoxFuture<'_, ProviderResult<DepositSession>> {
        let body = json!({
            "email": init.email,
            "amount": init.amount_minor,
            "currency": init.currency.code(),
            "reference": init.reference,
            "callback_url": init.callback_url,
            "channels": ["card", "bank", "ussd", "bank_transfer"],
        });
        let init = init.clone();
        Box::pin(async move {
            let answer: ProviderResult<(Value, _)> = self
                .call(
                    reqwest::Method::POST,
                    "/transaction/initialize",
                    &[],
                    Some(body),
                )
                .await;
            let data = match answer {
                Ok((data, _)) => data,
                // A retry after a lost answer: our earlier attempt started the charge. Look the reference up and
                // go on with that charge's page, if it is the same payment and still payable.
                Err(ProviderError::Declined(message)) if is_duplicate_reference(&message) => {
                    return self.recover_session(&init, message).await;
                }
                Err(error) => return Err(error),
            };
            Ok(DepositSession {
                authorization_url: str_of(&data, "authorization_url")
                    .ok_or_else(|| ProviderError::Protocol("no authorization_url".into()))?,
                access_code: str_of(&data, "access_code").unwrap_or_default(),
            })
        })
    }

    fn verify<'a>(&'a self, reference: &'a str) -> BoxFuture<'a, ProviderResult<Charge>> {
        Box::pin(async move {
            let path = format!("/transaction/verify/{}", urlencode(reference));
            let (data, _): (Value, _) = self.call(reqwest::Method::GET, &path, &[], None).await?;
            Ok(Charge {
                reference: str_of(&data, "reference").unwrap_or_else(|| reference.to_owned()),
                status: charge_status(&str_of(&data, "status").unwrap_or_default()),
                amount_minor: int_of(&data, "amount")
                    .ok_or_else(|| ProviderError::Protocol("charge without amount".into()))?,
                currency: str_of(&data, "currency").unwrap_or_else(|| "NGN".into()),
                channel: str_of(&data, "channel").unwrap_or_default(),
                receiver_account_number: data
                    .get("authorization")
                    .and_then(|a| str_of(a, "receiver_bank_account_number")),
                authorization_url: str_of(&data, "authorization_url"),
                gateway_response: str_of(&data, "gateway_response").unwrap_or_default(),
                paid_at: str_of(&data, "paid_at")
                    .and_then(|at| DateTime::parse_from_rfc3339(&at).ok())
                    .map(|at| at.with_timezone(&Utc)),
            })
        })
    }

    fn settled_charges(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> BoxFuture<'_, ProviderResult<Vec<SettlementRecord>>> {
        Box::pin(async move {
            let records = self
                .list_all("/transaction", from, to, &[("status", "success".into())])
                .await?;
            Ok(records.iter().filter_map(settlement).collect())
        })
    }
}

impl PayoutProvider for Paystack {
    fn name(&self) -> ProviderName {
        ProviderName::Paystack
    }

    fn banks(&self, currency: Currency) -> BoxFuture<'_, ProviderResult<Vec<Bank>>> {
        Box::pin(async move {
            let (data, _): (Vec<Value>, _) = self
                .call(
                    reqwest::Method::GET,
                    "/bank",
                    &[("currency", currency.code().to_owned())],
                    None,
                )
                .await?;
            Ok(data
                .iter()
                .filter(|b| b.get("active").and_then(Value::as_bool).unwrap_or(true))
                .filter_map(|b| {
                    Some(Bank {
                        name: str_of(b, "name")?,
                        code: str_of(b, "code")?,
                    })
                })
                .collect())
        })
    }

    fn resolve_account<'a>(
        &'a self,
        bank_code: &'a str,
        account_number: &'a str,
    ) -> BoxFuture<'a, ProviderResult<String>> {
        Box::pin(async move {
            let query = [
                ("account_number", account_number.to_owned()),
                ("bank_code", bank_code.to_owned()),
            ];
            let result: ProviderResult<(Value, _)> = self
                .call(reqwest::Method::GET, "/bank/resolve", &query, None)
                .await;
            let (data, _) = match result {
                Err(ProviderError::NotFound) => {
                    return Err(ProviderError::Declined(
                        "Could not resolve account name.".into(),
                    ))
                }
                other => other?,
            };
            str_of(&data, "account_name")
                .ok_or_else(|| ProviderError::Protocol("no account_name".into()))
        })
    }

    fn transfer<'a>(
        &'a self,
        instruction: &'a PayoutInstruction,
    ) -> BoxFuture<'a, ProviderResult<PayoutState>> {
        Box::pin(async move {
            let recipient_body = json!({
                "type": "nuban",
                "name": instruction.account_name,
                "account_number": instruction.account_number,
                "bank_code": instruction.bank_code,
                "currency": instruction.currency.code(),
            });
            let (recipient, _): (Value, _) = self
                .call(
                    reqwest::Method::POST,
                    "/transferrecipient",
                    &[],
                    Some(recipient_body),
                )
                .await?;
            let recipient_code = str_of(&recipient, "recipient_code")
                .ok_or_else(|| ProviderError::Protocol("no recipient_code".into()))?;
            let body = json!({
                "source": "balance",
                "amount": instruction.amount_minor,
                "currency": instruction.currency.code(),
                "recipient": recipient_code,
                "reference": instruction.reference,
                "reason": instruction.reason,
            });
            match self
                .call::<Value>(reqwest::Method::POST, "/transfer", &[], Some(body))
                .await
            {
                Ok((data, _)) => payout_state(&data),
                // Sent before (an earlier attempt timed out after the provider took it): report its state.
                Err(ProviderError::Declined(message))
                    if message.to_ascii_lowercase().contains("duplicate") =>
                {
                    self.transfer_status(&instruction.reference).await
                }
                Err(other) => Err(other),
            }
        })
    }

    fn transfer_status<'a>(
        &'a self,
        reference: &'a str,
    ) -> BoxFuture<'a, ProviderResult<PayoutState>> {
        Box::pin(async move {
            let path = format!("/transfer/verify/{}", urlencode(reference));
            let (data, _): (Value, _) = self.call(reqwest::Method::GET, &path, &[], None).await?;
            payout_state(&data)
        })
    }

    fn settled_transfers(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> BoxFuture<'_, ProviderResult<Vec<SettlementRecord>>> {
        Box::pin(async move {
            let records = self.list_all("/transfer", from, to, &[]).await?;
            Ok(records
                .iter()
                .filter_map(settlement)
                .filter(|r| r.status == "success" || r.status == "reversed")
                .collect())
        })
    }
}
