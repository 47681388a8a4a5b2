//! Sandbox payment providers: real HTTP servers that speak the Paystack API (deposits through a hosted page,
//! payouts, bank lists, account resolution, settlement lists, signed webhooks) and the Flutterwave v3 bills API
//! (catalogue, customer validation, vending, status). Development, the demo and the tests reach them through the
//! real adapters in `paycore_jobs::providers`.
//!
//! Outcomes are chosen by magic values, documented in `docs/sandbox.md`: payout account numbers
//! `0000000000`…`0000000008`, bill customer ids ending in `9999`, `0002`, `0003`, `0005`, `0006`, and deposit
//! amounts whose minor part is `01` (declined). State lives in memory.

pub mod fcm;
pub mod smtp;

use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicI64, Ordering},
        Arc, Mutex, RwLock,
    },
    time::Duration,
};

use chrono::{DateTime, SecondsFormat, Utc};
use paycore_jobs::domains::bills::catalogue::{self, Category};
use paycore_jobs::money::Currency;
use paycore_jobs::providers::http::{major_to_minor, minor_to_major_string, parse_exact};
use paycore_jobs::providers::signature::hmac_sha512_hex;
use poem::{
    handler,
    http::StatusCode,
    web::{Data, Html, Json, Path, Query},
    EndpointExt, IntoResponse, Request, Response, Route,
};
use serde::Deserialize;
use serde_json::{json, Value};

/// Payout account numbers with special outcomes (everything else succeeds, confirmed by webhook).
pub mod magic {
    /// The account name cannot be resolved.
    pub const ACCOUNT_UNRESOLVABLE: &str = "0000000000";
    /// Accepted, then fails (`transfer.failed`).
    pub const ACCOUNT_FAILS: &str = "0000000002";
    /// Succeeds, then is reversed by the receiving bank (`transfer.success`, later `transfer.reversed`).
    pub const ACCOUNT_REVERSED: &str = "0000000003";
    /// The transfer is taken but the answer comes after the client's timeout; no webhook (status query only).
    pub const ACCOUNT_TIMEOUT: &str = "0000000004";
    /// The first two transfer calls answer 500 without taking the transfer.
    pub const ACCOUNT_FLAKY: &str = "0000000005";
    /// Stays pending until its status has been asked twice, then succeeds; no webhook.
    pub const ACCOUNT_SLOW: &str = "0000000006";
    /// Succeeds at once, but no webhook is ever sent.
    pub const ACCOUNT_SILENT: &str = "0000000007";
    /// Declined at once (400): the receiving bank refuses.
    pub const ACCOUNT_DECLINED: &str = "0000000008";
    /// Bill customers (phone, meter, smart card) ending in these digits: validation fails / the vend fails /
    /// the vend answer comes after the client's timeout / two 503s first / pending until asked twice.
    pub const CUSTOMER_INVALID: &str = "9999";
    pub const CUSTOMER_VEND_FAILS: &str = "0002";
    pub const CUSTOMER_VEND_TIMEOUT: &str = "0003";
    pub const CUSTOMER_VEND_FLAKY: &str = "0005";
    pub const CUSTOMER_VEND_SLOW: &str = "0006";
    /// Deposits whose amount in minor units ends in `01` are declined by the card issuer.
    pub const DEPOSIT_DECLINED_MINOR_SUFFIX: i64 = 1;
}

#[derive(Debug, Clone)]
pub struct SandboxOptions {
    pub paystack_secret_key: String,
    pub flutterwave_secret_key: String,
    /// Delay before a webhook is sent (and between a success and a reversal).
    pub webhook_delay: Duration,
    /// How long a "timeout" magic value holds its answer (longer than the client's timeout).
    pub hang: Duration,
}

impl Default for SandboxOptions {
    fn default() -> Self {
        Self {
            paystack_secret_key: "sk_test_paycore_sandbox".into(),
            flutterwave_secret_key: "FLWSECK_TEST-paycore-sandbox".into(),
            webhook_delay: Duration::from_millis(500),
            hang: Duration::from_secs(20),
        }
    }
}

#[derive(Debug, Clone)]
struct ChargeRec {
    id: i64,
    reference: String,
    amount: i64,
    currency: String,
    email: String,
    status: String,
    channel: String,
    receiver_account: Option<String>,
    callback_url: Option<String>,
    gateway_response: String,
    created_at: DateTime<Utc>,
    paid_at: Option<DateTime<Utc>>,
    /// The hosted page of a charge started by `/transaction/initialize`.
    authorization_url: Option<String>,
}

#[derive(Debug, Clone)]
struct TransferRec {
    id: i64,
    reference: String,
    amount: i64,
    currency: String,
    status: String,
    transfer_code: String,
    account_number: String,
    reason: Option<String>,
    status_queries: u32,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone)]
struct VendRec {
    reference: String,
    tx_ref: String,
    biller_code: String,
    customer: String,
    amount: i64,
    status: String,
    token: Option<String>,
    units: Option<String>,
    status_queries: u32,
    created_at: DateTime<Utc>,
}

#[derive(Default)]
struct State {
    charges: HashMap<String, ChargeRec>,
    access_codes: HashMap<String, String>,
    recipients: HashMap<String, (String, String)>,
    transfers: HashMap<String, TransferRec>,
    vends: HashMap<String, VendRec>,
    calls: HashMap<String, u32>,
}

struct Inner {
    options: SandboxOptions,
    state: Mutex<State>,
    public_url: RwLock<String>,
    paystack_webhook_url: RwLock<Option<String>>,
    next_id: AtomicI64,
    /// The current webhook delay in milliseconds (starts as the options' value).
    webhook_delay_ms: std::sync::atomic::AtomicU64,
    http: reqwest::Client,
}

/// The sandbox providers; clone freely.
#[derive(Clone)]
pub struct Sandbox {
    inner: Arc<Inner>,
}

impl Sandbox {
    pub fn new(options: SandboxOptions) -> Self {
        Self {
            inner: Arc::new(Inner {
                options: options.clone(),
                state: Mutex::new(State::default()),
                public_url: RwLock::new("http://127.0.0.1:8090".into()),
                paystack_webhook_url: RwLock::new(None),
                next_id: AtomicI64::new(4_000_000_000 + i64::from(rand::random::<u16>()) * 1000),
                webhook_delay_ms: std::sync::atomic::AtomicU64::new(
                    u64::try_from(options.webhook_delay.as_millis()).unwrap_or(u64::MAX),
                ),
                http: reqwest::Client::builder()
                    .timeout(Duration::from_secs(10))
                    .build()
                    .unwrap_or_default(),
            }),
        }
    }

    /// The address the sandbox is reached at (for hosted-page links).
    pub fn set_public_url(&self, url: &str) {
        if let Ok(mut slot) = self.inner.public_url.write() {
            *slot = url.trim_end_matches('/').to_owned();
        }
    }

    /// Changes the delay before webhooks are sent (0: at once, racing the API's own answer).
    pub fn set_webhook_delay(&self, delay: Duration) {
        self.inner.webhook_delay_ms.store(
            u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
    }

    fn webhook_delay(&self) -> Duration {
        Duration::from_millis(self.inner.webhook_delay_ms.load(Ordering::Relaxed))
    }

    /// Where Paystack-style webhooks are delivered (PayCore's `/api/v1/webhooks/paystack`).
    pub fn set_paystack_webhook_url(&self, url: &str) {
        if let Ok(mut slot) = self.inner.paystack_webhook_url.write() {
            *slot = Some(url.to_owned());
        }
    }

    pub fn routes(&self) -> impl poem::Endpoint {
        let paystack = Route::new()
            .at("/transaction/initialize", poem::post(ps_initialize))
            .at("/transaction/verify/:reference", poem::get(ps_verify))
            .at("/transaction", poem::get(ps_list_transactions))
            .at("/checkout/:access_code", poem::get(ps_checkout_page))
            .at(
                "/checkout/:access_code/:action",
                poem::post(ps_checkout_action),
            )
            .at("/bank", poem::get(ps_banks))
            .at("/bank/resolve", poem::get(ps_resolve))
            .at("/transferrecipient", poem::post(ps_recipient))
            .at("/transfer", poem::post(ps_transfer).get(ps_list_transfers))
            .at("/transfer/verify/:reference", poem::get(ps_transfer_verify))
            .at(
                "/_sandbox/charges/:reference/:action",
                poem::post(ps_charge_action),
            )
            .at("/_sandbox/bank_transfer", poem::post(ps_bank_transfer))
            .at("/_sandbox/tamper", poem::post(tamper));
        let flutterwave = Route::new()
            .at("/bill-categories", poem::get(fw_catalogue))
            .at("/bill-items/:item/validate", poem::get(fw_validate))
            .at("/billers/:biller/items/:item/payment", poem::post(fw_vend))
            .at("/bills/:reference", poem::get(fw_status))
            .at("/bills", poem::get(fw_list))
            .at("/_sandbox/tamper", poem::post(tamper));
        Route::new()
            .nest("/paystack", paystack)
            .nest("/flutterwave/v3", flutterwave)
            .data(self.clone())
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        match self.inner.state.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    fn next_id(&self) -> i64 {
        self.inner.next_id.fetch_add(1, Ordering::Relaxed)
    }

    fn count_call(&self, key: String) -> u32 {
        let mut state = self.state();
        let count = state.calls.entry(key).or_insert(0);
        *count += 1;
        *count
    }

    fn public_url(&self) -> String {
        self.inner
            .public_url
            .read()
            .map(|url| url.clone())
            .unwrap_or_default()
    }

    /// Sends a signed Paystack-style webhook after `delay`, retrying a few times like the real one.
    fn send_paystack_webhook(&self, event: &str, data: Value, delay: Duration) {
        let Some(url) = self
            .inner
            .paystack_webhook_url
            .read()
            .ok()
            .and_then(|u| u.clone())
        else {
            return;
        };
        let sandbox = self.clone();
        let event = event.to_owned();
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            let body = json!({"event": event, "data": data}).to_string();
            let signature =
                hmac_sha512_hex(&sandbox.inner.options.paystack_secret_key, body.as_bytes());
            for attempt in 0..4u64 {
                let sent = sandbox
                    .inner
                    .http
                    .post(&url)
                    .header("content-type", "application/json")
                    .header("x-paystack-signature", &signature)
                    .body(body.clone())
                    .send()
                    .await;
                match sent {
                    Ok(response) if response.status().is_success() => return,
                    Ok(response) => {
                        tracing::warn!(status = %response.status(), %event, "sandbox webhook refused")
                    }
                    Err(error) => tracing::warn!(%error, %event, "sandbox webhook not delivered"),
                }
                tokio::time::sleep(Duration::from_millis(300 * (attempt + 1))).await;
            }
        });
    }
}

/// Starts the sandbox on `127.0.0.1:port` (0 for any); returns it with its base URL.
pub async fn start(options: SandboxOptions, port: u16) -> anyhow::Result<(Sandbox, String)> {
    use poem::listener::{Acceptor, Listener, TcpListener};
    let acceptor = TcpListener::bind(format!("127.0.0.1:{port}"))
        .into_acceptor()
        .await?;
    let address = acceptor
        .local_addr()
        .first()
        .and_then(|addr| addr.as_socket_addr().copied())
        .ok_or_else(|| anyhow::anyhow!("the sandbox listener has no address"))?;
    let base = format!("http://{address}");
    let sandbox = Sandbox::new(options);
    sandbox.set_public_url(&base);
    let app = sandbox.routes();
    tokio::spawn(async move {
        if let Err(error) = poem::Server::new_with_acceptor(acceptor).run(app).await {
            tracing::error!(%error, "sandbox providers stopped");
        }
    });
    Ok((sandbox, base))
}

fn rfc3339(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Millis, true)
}

// --------------------------------------------------------------------------------------------------------------
// Paystack

fn ps_ok(message: &str, data: Value) -> Response {
    Json(json!({"status": true, "message": message, "data": data})).into_response()
}

fn ps_error(status: StatusCode, message: &str) -> Response {
    Json(json!({"status": false, "message": message}))
        .with_status(status)
        .into_response()
}

fn ps_authorised(sandbox: &Sandbox, request: &Request) -> bool {
    let expected = format!("Bearer {}", sandbox.inner.options.paystack_secret_key);
    request
        .header("authorization")
        .is_some_and(|value| value == expected)
}

macro_rules! require_key {
    ($sandbox:expr, $request:expr, $check:ident) => {
        if !$check($sandbox, $request) {
            return ps_error(StatusCode::UNAUTHORIZED, "Invalid key");
        }
    };
}

#[derive(Deserialize)]
struct InitializeBody {
    email: String,
    amount: Value,
    currency: Option<String>,
    reference: Option<String>,
    callback_url: Option<String>,
}

fn int_value(value: &Value) -> Option<i64> {
    match value {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

#[handler]
fn ps_initialize(
    Data(sandbox): Data<&Sandbox>,
    request: &Request,
    body: poem::Result<Json<InitializeBody>>,
) -> Response {
    require_key!(sandbox, request, ps_authorised);
    let Ok(Json(body)) = body else {
        return ps_error(StatusCode::BAD_REQUEST, "Invalid request body");
    };
    let Some(amount) = int_value(&body.amount).filter(|a| *a > 0) else {
        return ps_error(StatusCode::BAD_REQUEST, "Invalid amount sent");
    };
    if !body.email.contains('@') {
        return ps_error(StatusCode::BAD_REQUEST, "Invalid Email Address Passed");
    }
    let reference = body
        .reference
        .unwrap_or_else(|| format!("T{}", sandbox.next_id()));
    let access_code = format!("ac_{}", uuid::Uuid::new_v4().simple());
    let authorization_url = format!("{}/paystack/checkout/{access_code}", sandbox.public_url());
    let mut state = sandbox.state();
    // Like Paystack, a reference is initialised once: a second initialisation is refused whatever it asks, and
    // the caller looks the reference up (`/transaction/verify/{reference}`) to find the first one's page.
    if state.charges.contains_key(&reference) {
        return ps_error(StatusCode::BAD_REQUEST, "Duplicate Transaction Reference");
    }
    state.charges.insert(
        reference.clone(),
        ChargeRec {
            id: sandbox.next_id(),
            reference: reference.clone(),
            amount,
            currency: body.currency.unwrap_or_else(|| "NGN".into()),
            email: body.email,
            status: "ongoing".into(),
            channel: "card".into(),
            receiver_account: None,
            callback_url: body.callback_url,
            gateway_response: "Pending".into(),
            created_at: Utc::now(),
            paid_at: None,
            authorization_url: Some(authorization_url.clone()),
        },
    );
    state
        .access_codes
        .insert(access_code.clone(), reference.clone());
    drop(state);
    ps_ok(
        "Authorization URL created",
        json!({
            "authorization_url": authorization_url,
            "access_code": access_code,
            "reference": reference,
        }),
    )
}

fn charge_json(charge: &ChargeRec) -> Value {
    json!({
        "id": charge.id,
        "domain": "test",
        "status": charge.status,
        "reference": charge.reference,
        "amount": charge.amount,
        "currency": charge.currency,
        "channel": charge.channel,
        "gateway_response": charge.gateway_response,
        "paid_at": charge.paid_at.map(rfc3339),
        "created_at": rfc3339(charge.created_at),
        "updated_at": rfc3339(charge.paid_at.unwrap_or(charge.created_at)),
        "customer": {"email": charge.email},
        "authorization": {"receiver_bank_account_number": charge.receiver_account, "channel": charge.channel},
        "authorization_url": charge.authorization_url,
    })
}

#[handler]
fn ps_verify(
    Data(sandbox): Data<&Sandbox>,
    request: &Request,
    Path(reference): Path<String>,
) -> Response {
    require_key!(sandbox, request, ps_authorised);
    match sandbox.state().charges.get(&reference) {
        Some(charge) => ps_ok("Verification successful", charge_json(charge)),
        None => ps_error(StatusCode::BAD_REQUEST, "Transaction reference not found"),
    }
}

#[derive(Deserialize)]
struct ListQuery {
    from: Option<String>,
    to: Option<String>,
    status: Option<String>,
    #[serde(rename = "perPage")]
    per_page: Option<usize>,
    page: Option<usize>,
}

fn in_period(at: DateTime<Utc>, query: &ListQuery) -> bool {
    let parse = |raw: &Option<String>| {
        raw.as_deref()
            .and_then(|r| DateTime::parse_from_rfc3339(r).ok())
            .map(|d| d.with_timezone(&Utc))
    };
    parse(&query.from).is_none_or(|from| at >= from) && parse(&query.to).is_none_or(|to| at < to)
}

fn page_of(mut rows: Vec<Value>, query: &ListQuery, message: &str) -> Response {
    rows.sort_by(|a, b| a["reference"].as_str().cmp(&b["reference"].as_str()));
    let per_page = query.per_page.unwrap_or(50).clamp(1, 100);
    let page = query.page.unwrap_or(1).max(1);
    let total = rows.len();
    let page_count = total.div_ceil(per_page).max(1);
    let data: Vec<Value> = rows
        .into_iter()
        .skip((page - 1) * per_page)
        .take(per_page)
        .collect();
    Json(json!({
        "status": true, "message": message, "data": data,
        "meta": {"total": total, "perPage": per_page, "page": page, "pageCount": page_count},
    }))
    .into_response()
}

#[handler]
fn ps_list_transactions(
    Data(sandbox): Data<&Sandbox>,
    request: &Request,
    Query(query): Query<ListQuery>,
) -> Response {
    require_key!(sandbox, request, ps_authorised);
    let rows: Vec<Value> = sandbox
        .state()
        .charges
        .values()
        .filter(|c| in_period(c.paid_at.unwrap_or(c.created_at), &query))
        .filter(|c| query.status.as_deref().is_none_or(|s| s == c.status))
        .map(charge_json)
        .collect();
    page_of(rows, &query, "Transactions retrieved")
}

#[handler]
fn ps_checkout_page(Data(sandbox): Data<&Sandbox>, Path(access_code): Path<String>) -> Response {
    let state = sandbox.state();
    let Some(charge) = state
        .access_codes
        .get(&access_code)
        .and_then(|r| state.charges.get(r))
    else {
        return Html("<h1>This payment link is not valid.</h1>")
            .with_status(StatusCode::NOT_FOUND)
            .into_response();
    };
    let amount = minor_to_major_string(charge.amount, Currency::Ngn);
    let body = if charge.status == "ongoing" {
        format!(
            "<form method=post action=\"{access_code}/pay\"><button id=pay>Pay</button></form>\
             <form method=post action=\"{access_code}/cancel\"><button id=cancel>Cancel payment</button></form>"
        )
    } else {
        format!("<p id=status>This payment is {}.</p>", charge.status)
    };
    Html(format!(
        "<!doctype html><html><head><meta charset=utf-8><title>Sandbox checkout</title></head><body>\
         <h1>PayCore sandbox checkout</h1><p>{} pays {} {amount} (reference {}).</p>{body}</body></html>",
        html_escape(&charge.email),
        charge.currency,
        html_escape(&charge.reference)
    ))
    .into_response()
}

fn html_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Completes (`pay`) or abandons (`cancel`/`abandon`) a charge; the first outcome sticks.
fn settle_charge(sandbox: &Sandbox, reference: &str, action: &str) -> Option<ChargeRec> {
    let mut state = sandbox.state();
    let charge = state.charges.get_mut(reference)?;
    if charge.status == "ongoing" {
        match action {
            "pay" if charge.amount % 100 == magic::DEPOSIT_DECLINED_MINOR_SUFFIX => {
                charge.status = "failed".into();
                charge.gateway_response = "Declined by the card issuer".into();
            }
            "pay" => {
                charge.status = "success".into();
                charge.gateway_response = "Successful".into();
                charge.paid_at = Some(Utc::now());
            }
            _ => {
                charge.status = "abandoned".into();
                charge.gateway_response = "The customer abandoned the payment".into();
            }
        }
        if charge.status == "success" {
            let data = charge_json(charge);
            drop(state);
            sandbox.send_paystack_webhook("charge.success", data, sandbox.webhook_delay());
            return sandbox.state().charges.get(reference).cloned();
        }
    }
    Some(charge.clone())
}

#[handler]
fn ps_checkout_action(
    Data(sandbox): Data<&Sandbox>,
    Path((access_code, action)): Path<(String, String)>,
) -> Response {
    let reference = sandbox.state().access_codes.get(&access_code).cloned();
    let Some(charge) = reference.and_then(|r| settle_charge(sandbox, &r, &action)) else {
        return Html("<h1>This payment link is not valid.</h1>")
            .with_status(StatusCode::NOT_FOUND)
            .into_response();
    };
    if let Some(callback) = charge.callback_url.filter(|u| u.starts_with("http")) {
        let separator = if callback.contains('?') { '&' } else { '?' };
        return Response::builder()
            .status(StatusCode::SEE_OTHER)
            .header(
                "location",
                format!("{callback}{separator}reference={}", charge.reference),
            )
            .finish();
    }
    Html(format!(
        "<!doctype html><p id=status>This payment is {}.</p>",
        charge.status
    ))
    .into_response()
}

#[handler]
fn ps_charge_action(
    Data(sandbox): Data<&Sandbox>,
    Path((reference, action)): Path<(String, String)>,
) -> Response {
    if !matches!(action.as_str(), "pay" | "abandon") {
        return ps_error(StatusCode::NOT_FOUND, "Unknown action");
    }
    match settle_charge(sandbox, &reference, &action) {
        Some(charge) => ps_ok("Charge updated", charge_json(&charge)),
        None => ps_error(StatusCode::NOT_FOUND, "Transaction reference not found"),
    }
}

#[derive(Deserialize)]
struct BankTransferBody {
    account_number: String,
    amount: i64,
    #[serde(default)]
    sender_name: String,
}

/// Simulates a customer's bank transfer into a dedicated (virtual) account: a successful `dedicated_nuban` charge
/// and its `charge.success` webhook.
#[handler]
fn ps_bank_transfer(
    Data(sandbox): Data<&Sandbox>,
    body: poem::Result<Json<BankTransferBody>>,
) -> Response {
    let Ok(Json(body)) = body else {
        return ps_error(StatusCode::BAD_REQUEST, "Invalid request body");
    };
    if body.amount <= 0 {
        return ps_error(StatusCode::BAD_REQUEST, "Invalid amount sent");
    }
    let now = Utc::now();
    let charge = ChargeRec {
        id: sandbox.next_id(),
        reference: format!("VA-{}", uuid::Uuid::new_v4().simple()),
        amount: body.amount,
        currency: "NGN".into(),
        email: if body.sender_name.is_empty() {
            "sender@bank.test".into()
        } else {
            format!(
                "{}@bank.test",
                body.sender_name.replace(' ', ".").to_lowercase()
            )
        },
        status: "success".into(),
        channel: "dedicated_nuban".into(),
        receiver_account: Some(body.account_number),
        callback_url: None,
        gateway_response: "Approved".into(),
        authorization_url: None,
        created_at: now,
        paid_at: Some(now),
    };
    let data = charge_json(&charge);
    sandbox
        .state()
        .charges
        .insert(charge.reference.clone(), charge);
    sandbox.send_paystack_webhook("charge.success", data.clone(), sandbox.webhook_delay());
    ps_ok("Bank transfer received", data)
}

const BANKS: [(&str, &str); 10] = [
    ("Access Bank", "044"),
    ("Guaranty Trust Bank", "058"),
    ("First Bank of Nigeria", "011"),
    ("Zenith Bank", "057"),
    ("United Bank For Africa", "033"),
    ("Ecobank Nigeria", "050"),
    ("Fidelity Bank", "070"),
    ("Union Bank of Nigeria", "032"),
    ("Stanbic IBTC Bank", "221"),
    ("Sterling Bank", "232"),
];

#[handler]
fn ps_banks(Data(sandbox): Data<&Sandbox>, request: &Request) -> Response {
    require_key!(sandbox, request, ps_authorised);
    let banks: Vec<Value> = BANKS
        .iter()
        .enumerate()
        .map(|(i, (name, code))| {
            json!({"id": i + 1, "name": name, "slug": name.to_lowercase().replace(' ', "-"), "code": code,
                   "longcode": format!("{code}150149"), "active": true, "country": "Nigeria",
                   "currency": "NGN", "type": "nuban"})
        })
        .collect();
    ps_ok("Banks retrieved", Value::Array(banks))
}

/// A deterministic name for an account number (like the seed's internal provider).
fn account_name(account_number: &str) -> String {
    const FIRST: [&str; 6] = ["JOHN", "JANE", "MICHAEL", "SARAH", "DAVID", "MARY"];
    const LAST: [&str; 6] = ["DOE", "SMITH", "JOHNSON", "WILLIAMS", "BROWN", "JONES"];
    let seed: usize = account_number.bytes().fold(0usize, |acc, b| {
        acc.wrapping_mul(31).wrapping_add(b as usize)
    });
    format!("{} {}", FIRST[seed % 6], LAST[(seed / 6) % 6])
}

#[derive(Deserialize)]
struct ResolveQuery {
    account_number: Option<String>,
    bank_code: Option<String>,
}

#[handler]
fn ps_resolve(
    Data(sandbox): Data<&Sandbox>,
    request: &Request,
    Query(query): Query<ResolveQuery>,
) -> Response {
    require_key!(sandbox, request, ps_authorised);
    let (Some(number), Some(bank)) = (query.account_number, query.bank_code) else {
        return ps_error(
            StatusCode::BAD_REQUEST,
            "account_number and bank_code are required",
        );
    };
    if !BANKS.iter().any(|(_, code)| *code == bank) {
        return ps_error(StatusCode::UNPROCESSABLE_ENTITY, "Unknown bank code");
    }
    if number.len() != 10 || number == magic::ACCOUNT_UNRESOLVABLE {
        return ps_error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Could not resolve account name. Check parameters or try again.",
        );
    }
    ps_ok(
        "Account number resolved",
        json!({"account_number": number, "account_name": account_name(&number), "bank_id": 1}),
    )
}

#[derive(Deserialize)]
struct RecipientBody {
    name: Option<String>,
    account_number: String,
    bank_code: String,
}

#[handler]
fn ps_recipient(
    Data(sandbox): Data<&Sandbox>,
    request: &Request,
    body: poem::Result<Json<RecipientBody>>,
) -> Response {
    require_key!(sandbox, request, ps_authorised);
    let Ok(Json(body)) = body else {
        return ps_error(StatusCode::BAD_REQUEST, "Invalid request body");
    };
    if !BANKS.iter().any(|(_, code)| *code == body.bank_code) {
        return ps_error(StatusCode::BAD_REQUEST, "Unknown bank code");
    }
    let code = format!("RCP_{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
    sandbox.state().recipients.insert(
        code.clone(),
        (body.account_number.clone(), body.bank_code.clone()),
    );
    ps_ok(
        "Transfer recipient created successfully",
        json!({"recipient_code": code, "type": "nuban", "name": body.name,
               "details": {"account_number": body.account_number, "bank_code": body.bank_code}}),
    )
}

fn transfer_json(transfer: &TransferRec) -> Value {
    json!({
        "id": transfer.id,
        "reference": transfer.reference,
        "amount": transfer.amount,
        "currency": transfer.currency,
        "status": transfer.status,
        "transfer_code": transfer.transfer_code,
        "reason": transfer.reason,
        "recipient": {"details": {"account_number": transfer.account_number}},
        "created_at": rfc3339(transfer.created_at),
        "updated_at": rfc3339(transfer.updated_at),
        "createdAt": rfc3339(transfer.created_at),
        "updatedAt": rfc3339(transfer.updated_at),
    })
}

#[derive(Deserialize)]
struct TransferBody {
    amount: Value,
    recipient: String,
    reference: String,
    currency: Option<String>,
}

/// Moves a transfer to `status` and sends its webhook.
fn finish_transfer(
    sandbox: &Sandbox,
    reference: &str,
    status: &str,
    reason: Option<&str>,
    delay: Duration,
) {
    let data = {
        let mut state = sandbox.state();
        let Some(transfer) = state.transfers.get_mut(reference) else {
            return;
        };
        transfer.status = status.into();
        transfer.reason = reason.map(str::to_owned);
        transfer.updated_at = Utc::now();
        transfer_json(transfer)
    };
    sandbox.send_paystack_webhook(&format!("transfer.{status}"), data, delay);
}

#[handler]
async fn ps_transfer(
    Data(sandbox): Data<&Sandbox>,
    request: &Request,
    body: poem::Result<Json<TransferBody>>,
) -> Response {
    require_key!(sandbox, request, ps_authorised);
    let Ok(Json(body)) = body else {
        return ps_error(StatusCode::BAD_REQUEST, "Invalid request body");
    };
    let Some(amount) = int_value(&body.amount).filter(|a| *a > 0) else {
        return ps_error(StatusCode::BAD_REQUEST, "Invalid amount");
    };
    let Some((account_number, _bank)) = sandbox.state().recipients.get(&body.recipient).cloned()
    else {
        return ps_error(StatusCode::BAD_REQUEST, "Recipient specified is invalid");
    };
    let account = account_number.as_str();
    if account == magic::ACCOUNT_FLAKY
        && sandbox.count_call(format!("transfer:{}", body.reference)) <= 2
    {
        return ps_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Something went wrong, please try again",
        );
    }
    if account == magic::ACCOUNT_DECLINED {
        return ps_error(
            StatusCode::BAD_REQUEST,
            "The receiving bank declined the transfer",
        );
    }
    let now = Utc::now();
    let immediate = matches!(account, magic::ACCOUNT_TIMEOUT | magic::ACCOUNT_SILENT);
    let record = TransferRec {
        id: sandbox.next_id(),
        reference: body.reference.clone(),
        amount,
        currency: body.currency.unwrap_or_else(|| "NGN".into()),
        status: if immediate { "success" } else { "pending" }.into(),
        transfer_code: format!("TRF_{}", &uuid::Uuid::new_v4().simple().to_string()[..12]),
        account_number: account_number.clone(),
        reason: None,
        status_queries: 0,
        created_at: now,
        updated_at: now,
    };
    {
        let mut state = sandbox.state();
        if state.transfers.contains_key(&body.reference) {
            return ps_error(StatusCode::BAD_REQUEST, "Duplicate Transfer Reference");
        }
        state
            .transfers
            .insert(body.reference.clone(), record.clone());
    }
    let delay = sandbox.webhook_delay();
    match account {
        magic::ACCOUNT_FAILS => {
            let s = sandbox.clone();
            let reference = body.reference.clone();
            tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                finish_transfer(
                    &s,
                    &reference,
                    "failed",
                    Some("Account is dormant"),
                    Duration::ZERO,
                );
            });
        }
        magic::ACCOUNT_REVERSED => {
            let s = sandbox.clone();
            let reference = body.reference.clone();
            tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                finish_transfer(&s, &reference, "success", None, Duration::ZERO);
                tokio::time::sleep(delay * 2).await;
                finish_transfer(
                    &s,
                    &reference,
                    "reversed",
                    Some("Returned by the receiving bank"),
                    Duration::ZERO,
                );
            });
        }
        magic::ACCOUNT_TIMEOUT => {
            tokio::time::sleep(sandbox.inner.options.hang).await;
        }
        magic::ACCOUNT_SLOW | magic::ACCOUNT_SILENT => {}
        _ => {
            let s = sandbox.clone();
            let reference = body.reference.clone();
            tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                finish_transfer(&s, &reference, "success", None, Duration::ZERO);
            });
        }
    }
    ps_ok("Transfer has been queued", transfer_json(&record))
}

#[handler]
fn ps_transfer_verify(
    Data(sandbox): Data<&Sandbox>,
    request: &Request,
    Path(reference): Path<String>,
) -> Response {
    require_key!(sandbox, request, ps_authorised);
    let mut state = sandbox.state();
    let Some(transfer) = state.transfers.get_mut(&reference) else {
        return ps_error(StatusCode::BAD_REQUEST, "Transfer not found");
    };
    transfer.status_queries += 1;
    if transfer.account_number == magic::ACCOUNT_SLOW
        && transfer.status == "pending"
        && transfer.status_queries > 2
    {
        transfer.status = "success".into();
        transfer.updated_at = Utc::now();
    }
    ps_ok("Transfer retrieved", transfer_json(transfer))
}

#[handler]
fn ps_list_transfers(
    Data(sandbox): Data<&Sandbox>,
    request: &Request,
    Query(query): Query<ListQuery>,
) -> Response {
    require_key!(sandbox, request, ps_authorised);
    let rows: Vec<Value> = sandbox
        .state()
        .transfers
        .values()
        .filter(|t| in_period(t.created_at, &query))
        .filter(|t| query.status.as_deref().is_none_or(|s| s == t.status))
        .map(transfer_json)
        .collect();
    page_of(rows, &query, "Transfers retrieved")
}

#[derive(Deserialize)]
struct TamperBody {
    /// charge, transfer or vend.
    kind: String,
    reference: String,
    /// forget (the provider loses the record), amount (it reports another amount) or add (a record we never
    /// made).
    action: String,
    amount: Option<i64>,
}

/// Test control: makes the provider's records disagree with PayCore's, for reconciliation.
#[handler]
fn tamper(Data(sandbox): Data<&Sandbox>, body: poem::Result<Json<TamperBody>>) -> Response {
    let Ok(Json(body)) = body else {
        return ps_error(StatusCode::BAD_REQUEST, "Invalid request body");
    };
    let mut state = sandbox.state();
    let now = Utc::now();
    let ok = match (body.kind.as_str(), body.action.as_str()) {
        ("charge", "forget") => state.charges.remove(&body.reference).is_some(),
        ("transfer", "forget") => state.transfers.remove(&body.reference).is_some(),
        ("vend", "forget") => state.vends.remove(&body.reference).is_some(),
        ("charge", "amount") => state
            .charges
            .get_mut(&body.reference)
            .map(|c| c.amount = body.amount.unwrap_or(c.amount))
            .is_some(),
        ("transfer", "amount") => state
            .transfers
            .get_mut(&body.reference)
            .map(|t| t.amount = body.amount.unwrap_or(t.amount))
            .is_some(),
        ("vend", "amount") => state
            .vends
            .get_mut(&body.reference)
            .map(|v| v.amount = body.amount.unwrap_or(v.amount))
            .is_some(),
        ("transfer", "add") => {
            let id = sandbox.next_id();
            state.transfers.insert(
                body.reference.clone(),
                TransferRec {
                    id,
                    reference: body.reference.clone(),
                    amount: body.amount.unwrap_or(100_000),
                    currency: "NGN".into(),
                    status: "success".into(),
                    transfer_code: format!("TRF_extra{id}"),
                    account_number: "0123456789".into(),
                    reason: None,
                    status_queries: 0,
                    created_at: now,
                    updated_at: now,
                },
            );
            true
        }
        _ => false,
    };
    if ok {
        ps_ok(
            "Sandbox record changed",
            json!({"reference": body.reference}),
        )
    } else {
        ps_error(StatusCode::NOT_FOUND, "No such record or action")
    }
}

// --------------------------------------------------------------------------------------------------------------
// Flutterwave bills

fn fw_ok(message: &str, data: Value) -> Response {
    Json(json!({"status": "success", "message": message, "data": data})).into_response()
}

fn fw_error(status: StatusCode, message: &str) -> Response {
    Json(json!({"status": "error", "message": message, "data": null}))
        .with_status(status)
        .into_response()
}

fn fw_authorised(sandbox: &Sandbox, request: &Request) -> bool {
    let expected = format!("Bearer {}", sandbox.inner.options.flutterwave_secret_key);
    request
        .header("authorization")
        .is_some_and(|value| value == expected)
}

macro_rules! require_fw_key {
    ($sandbox:expr, $request:expr) => {
        if !fw_authorised($sandbox, $request) {
            return fw_error(StatusCode::UNAUTHORIZED, "Invalid authorization key");
        }
    };
}

fn naira(minor: i64) -> Value {
    minor_to_major_string(minor, Currency::Ngn)
        .parse::<serde_json::Number>()
        .map(Value::Number)
        .unwrap_or(Value::Null)
}

#[handler]
fn fw_catalogue(Data(sandbox): Data<&Sandbox>, request: &Request) -> Response {
    require_fw_key!(sandbox, request);
    let mut items = Vec::new();
    for biller in catalogue::BILLERS {
        if let Some(item) = biller.item_code {
            items.push(
                json!({"biller_code": biller.code, "item_code": item, "biller_name": biller.name,
                              "name": biller.name, "amount": 0, "country": "NG",
                              "is_airtime": biller.category == Category::Airtime}),
            );
        }
        for package in biller.packages {
            items.push(json!({"biller_code": biller.code, "item_code": package.code, "biller_name": package.name,
                              "name": package.name, "amount": naira(package.amount_minor), "country": "NG",
                              "is_airtime": false}));
        }
    }
    fw_ok("Bill categories retrieved", Value::Array(items))
}

fn catalogue_item(biller_code: &str, item: &str) -> Option<(&'static catalogue::Biller, i64)> {
    let biller = catalogue::biller(biller_code)?;
    if biller.item_code == Some(item) {
        return Some((biller, 0));
    }
    biller.package(item).map(|p| (biller, p.amount_minor))
}

#[derive(Deserialize)]
struct ValidateQuery {
    code: Option<String>,
    customer: Option<String>,
}

#[handler]
fn fw_validate(
    Data(sandbox): Data<&Sandbox>,
    request: &Request,
    Path(item): Path<String>,
    Query(query): Query<ValidateQuery>,
) -> Response {
    require_fw_key!(sandbox, request);
    let (Some(code), Some(customer)) = (query.code, query.customer) else {
        return fw_error(StatusCode::BAD_REQUEST, "code and customer are required");
    };
    let Some((biller, _)) = catalogue_item(&code, &item) else {
        return fw_error(StatusCode::BAD_REQUEST, "Invalid biller or item code");
    };
    if customer.ends_with(magic::CUSTOMER_INVALID) {
        return fw_error(
            StatusCode::BAD_REQUEST,
            "Customer not found for this biller",
        );
    }
    let name = account_name(&customer);
    let address =
        (biller.category == Category::Electricity).then(|| "12 Marina Road, Lagos".to_owned());
    fw_ok(
        "Item validated successfully",
        json!({"response_code": "00", "response_message": "Successful", "name": name,
               "customer": customer, "biller_code": code, "product_code": item, "address": address,
               "meter_type": biller.meter_type, "fee": 0, "minimum": 0, "maximum": 0}),
    )
}

fn vend_json(vend: &VendRec) -> Value {
    let biller = catalogue::biller(&vend.biller_code);
    // A token exists only once the vend succeeded.
    let (token, units) = if vend.status == "successful" {
        (vend.token.clone(), vend.units.clone())
    } else {
        (None, None)
    };
    json!({
        "reference": vend.reference,
        "tx_ref": vend.tx_ref,
        "customer_id": vend.customer,
        "phone_number": vend.customer,
        "amount": naira(vend.amount),
        "currency": "NGN",
        "product_name": biller.map(|b| b.name),
        "network": biller.map(|b| b.name),
        "status": vend.status,
        "recharge_token": token,
        "units": units,
        "extra": token.as_ref().map(|t| json!({"token": t, "units": units})),
        "transaction_date": rfc3339(vend.created_at),
        "code": "200",
        "fee": 0,
    })
}

#[derive(Deserialize)]
struct VendBody {
    customer_id: String,
    amount: Value,
    reference: String,
}

#[handler]
async fn fw_vend(
    Data(sandbox): Data<&Sandbox>,
    request: &Request,
    Path((biller_code, item)): Path<(String, String)>,
    body: String,
) -> Response {
    require_fw_key!(sandbox, request);
    // Like a careful provider, the amount is read from its exact text, never through an f64.
    let Ok(body) = parse_exact(&body).and_then(serde_json::from_value::<VendBody>) else {
        return fw_error(StatusCode::BAD_REQUEST, "Invalid request body");
    };
    let Some((biller, price)) = catalogue_item(&biller_code, &item) else {
        return fw_error(StatusCode::BAD_REQUEST, "Invalid biller or item code");
    };
    let Some(amount) = major_to_minor(&body.amount, Currency::Ngn).filter(|a| *a > 0) else {
        return fw_error(StatusCode::BAD_REQUEST, "Invalid amount");
    };
    if price > 0 && amount != price {
        return fw_error(
            StatusCode::BAD_REQUEST,
            "Amount does not match the package price",
        );
    }
    let customer = body.customer_id.clone();
    if customer.ends_with(magic::CUSTOMER_VEND_FLAKY)
        && sandbox.count_call(format!("vend:{}", body.reference)) <= 2
    {
        return fw_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "Service temporarily unavailable",
        );
    }
    let fails = customer.ends_with(magic::CUSTOMER_VEND_FAILS);
    let slow = customer.ends_with(magic::CUSTOMER_VEND_SLOW);
    let token = (biller.category == Category::Electricity && biller.meter_type == Some("prepaid"))
        .then(|| {
            let digits: String = (0..20)
                .map(|_| char::from(b'0' + rand::random::<u8>() % 10))
                .collect();
            digits
                .as_bytes()
                .chunks(4)
                .map(|c| String::from_utf8_lossy(c).into_owned())
                .collect::<Vec<_>>()
                .join("-")
        });
    let units = token
        .as_ref()
        .map(|_| format!("{} kWh", minor_to_major_string(amount, Currency::Ngn)));
    let record = VendRec {
        reference: body.reference.clone(),
        tx_ref: format!("CF-FLYAPI-{}", sandbox.next_id()),
        biller_code: biller_code.clone(),
        customer,
        amount,
        status: if fails {
            "failed"
        } else if slow {
            "pending"
        } else {
            "successful"
        }
        .into(),
        token: if fails { None } else { token },
        units: if fails { None } else { units },
        status_queries: 0,
        created_at: Utc::now(),
    };
    {
        let mut state = sandbox.state();
        if state.vends.contains_key(&body.reference) {
            return fw_error(StatusCode::BAD_REQUEST, "Duplicate reference");
        }
        state.vends.insert(body.reference.clone(), record.clone());
    }
    if fails {
        return fw_error(
            StatusCode::BAD_REQUEST,
            "Biller unavailable: the vend failed",
        );
    }
    if record.customer.ends_with(magic::CUSTOMER_VEND_TIMEOUT) {
        tokio::time::sleep(sandbox.inner.options.hang).await;
    }
    let message = if slow {
        "Bill payment is processing"
    } else {
        "Bill payment successful"
    };
    fw_ok(message, vend_json(&record))
}

#[handler]
fn fw_status(
    Data(sandbox): Data<&Sandbox>,
    request: &Request,
    Path(reference): Path<String>,
) -> Response {
    require_fw_key!(sandbox, request);
    let mut state = sandbox.state();
    let Some(vend) = state.vends.get_mut(&reference) else {
        return fw_error(StatusCode::NOT_FOUND, "No transaction found");
    };
    vend.status_queries += 1;
    if vend.status == "pending" && vend.status_queries > 2 {
        vend.status = "successful".into();
    }
    fw_ok("Bill status fetch successful", vend_json(vend))
}

#[derive(Deserialize)]
struct BillsListQuery {
    from: Option<String>,
    to: Option<String>,
}

#[handler]
fn fw_list(
    Data(sandbox): Data<&Sandbox>,
    request: &Request,
    Query(query): Query<BillsListQuery>,
) -> Response {
    require_fw_key!(sandbox, request);
    let period = ListQuery {
        from: query.from,
        to: query.to,
        status: None,
        per_page: None,
        page: None,
    };
    let details: Vec<Value> = sandbox
        .state()
        .vends
        .values()
        .filter(|v| in_period(v.created_at, &period))
        .map(vend_json)
        .collect();
    let total: i64 = sandbox.state().vends.values().map(|v| v.amount).sum();
    fw_ok(
        "Bill payments fetched",
        json!({"summary": {"count": details.len(), "total_amount": naira(total)}, "details": details}),
    )
}
