//! `/api/v1/bills`: the catalogue (airtime, data, electricity, cable TV), customer validation, payments and saved
//! beneficiaries.

use paycore_jobs::domains::bills::catalogue::{self, Biller, Category};
use paycore_jobs::domains::bills::{self, Beneficiary, BillPaymentRow, BillRequest};
use paycore_jobs::money::Amount;
use paycore_jobs::operation::{self, Operation};
use poem_openapi::{
    param::{Header, Path, Query},
    payload::Json,
    ApiResponse, Object, OpenApi,
};
use sqlx::PgConnection;
use uuid::Uuid;

use super::{
    amount_of, list_limit, parse_id, provider_error, spend_error, transfers::Money, ApiTag,
    NoContent,
};
use crate::payload::Body;
use crate::schema::{IdText, MinorUnits};
use crate::{
    error::{ApiError, ApiResult},
    idempotent::{self, CreateAction, CreateError, Created, Finished},
    security::BearerAuth,
    AppState,
};

pub struct BillsApi {
    pub state: AppState,
}

const NICKNAME_CHARS_MAX: usize = 60;

#[derive(Debug, Clone, Object)]
pub struct PackageBody {
    pub code: String,
    pub name: String,
    pub amount: Money,
    pub validity: String,
}

#[derive(Debug, Clone, Object)]
pub struct BillerBody {
    pub code: String,
    pub name: String,
    /// airtime, data, electricity or cable_tv.
    pub category: String,
    /// prepaid or postpaid, for electricity.
    #[oai(nullable)]
    pub meter_type: Option<String>,
    /// Any-amount range (minor units); absent for package-only billers.
    #[oai(nullable)]
    pub min_amount: Option<i64>,
    #[oai(nullable)]
    pub max_amount: Option<i64>,
    /// How PayCore charges: e.g. "₦20 flat" or "1 %, at most ₦100".
    pub fee: String,
    pub requires_validation: bool,
    /// What `customer_id` is for this biller.
    pub customer_id_format: String,
    pub packages: Vec<PackageBody>,
}

fn naira(minor: i64) -> String {
    paycore_jobs::providers::http::minor_to_major_string(minor, paycore_jobs::money::Currency::Ngn)
        .trim_end_matches(".00")
        .to_owned()
}

/// Basis points as a percentage without floating point: 100 → "1", 150 → "1.5".
fn percent(bps: u32) -> String {
    let fraction = format!("{:02}", bps % 100);
    let fraction = fraction.trim_end_matches('0');
    if fraction.is_empty() {
        (bps / 100).to_string()
    } else {
        format!("{}.{fraction}", bps / 100)
    }
}

impl BillerBody {
    fn new(biller: &Biller) -> Self {
        let fee = &biller.fee;
        let fee_text = match (fee.percent_bps, fee.cap_minor) {
            (0, _) => format!("₦{} flat", naira(fee.fixed_minor)),
            (bps, Some(cap)) => format!("{} %, at most ₦{}", percent(bps), naira(cap)),
            (bps, None) => format!("{} %", percent(bps)),
        };
        let any_amount = biller.item_code.is_some();
        Self {
            code: biller.code.into(),
            name: biller.name.into(),
            category: biller.category.as_str().into(),
            meter_type: biller.meter_type.map(str::to_owned),
            min_amount: any_amount.then_some(biller.min_minor),
            max_amount: any_amount.then_some(biller.max_minor),
            fee: fee_text,
            requires_validation: biller.requires_validation,
            customer_id_format: biller.customer_id_description().into(),
            packages: biller
                .packages
                .iter()
                .map(|p| PackageBody {
                    code: p.code.into(),
                    name: p.name.into(),
                    amount: Money {
                        amount: p.amount_minor,
                        currency: "NGN".into(),
                    },
                    validity: p.validity.into(),
                })
                .collect(),
        }
    }
}

#[derive(Debug, Clone, Object)]
pub struct BillerList {
    pub data: Vec<BillerBody>,
}

#[derive(Debug, Clone, Object, serde::Serialize)]
pub struct ValidateRequest {
    pub biller_code: String,
    pub customer_id: String,
    /// For package billers, the package to validate against (the first one otherwise).
    #[oai(nullable)]
    pub package_code: Option<String>,
}

#[derive(Debug, Clone, Object)]
pub struct ValidateBody {
    pub valid: bool,
    pub biller_code: String,
    pub customer_id: String,
    pub customer_name: String,
    #[oai(nullable)]
    pub address: Option<String>,
}

#[derive(Debug, Clone, Object, serde::Serialize)]
pub struct CreateBillPaymentRequest {
    /// An NGN wallet of the caller.
    pub wallet_id: IdText,
    pub biller_code: String,
    /// Phone number, meter number or smart card number.
    pub customer_id: String,
    /// Minor units, for any-amount billers (airtime, electricity).
    #[oai(nullable)]
    pub amount: Option<MinorUnits>,
    /// For package billers (data, cable TV); the package sets the amount.
    #[oai(nullable)]
    pub package_code: Option<String>,
    /// Required when the wallet has a PIN.
    #[oai(nullable)]
    pub pin: Option<String>,
    /// Save the customer as a beneficiary under this nickname.
    #[oai(nullable)]
    pub beneficiary_nickname: Option<String>,
}

#[derive(Debug, Clone, Object)]
pub struct BillPaymentBody {
    pub payment_id: String,
    pub operation_id: String,
    /// processing, completed or failed.
    pub status: String,
    pub operation_status: String,
    #[oai(nullable)]
    pub failure_code: Option<String>,
    #[oai(nullable)]
    pub failure_message: Option<String>,
    pub wallet_id: String,
    pub biller_code: String,
    pub biller_name: String,
    pub category: String,
    #[oai(nullable)]
    pub package_code: Option<String>,
    pub customer_id: String,
    #[oai(nullable)]
    pub customer_name: Option<String>,
    pub amount: Money,
    pub fee: Money,
    /// The electricity token, once vended.
    #[oai(nullable)]
    pub token: Option<String>,
    #[oai(nullable)]
    pub token_units: Option<String>,
    #[oai(nullable)]
    pub provider_reference: Option<String>,
    pub created_at: chrono::DateTime<chrono::Utc>,
    #[oai(nullable)]
    pub completed_at: Option<chrono::DateTime<chrono::Utc>>,
}

impl BillPaymentBody {
    fn new(row: &BillPaymentRow, op: Option<&Operation>) -> Self {
        let money = |amount| Money {
            amount,
            currency: row.currency.clone(),
        };
        Self {
            payment_id: row.payment_id.to_string(),
            operation_id: row.payment_id.to_string(),
            status: row.status.clone(),
            operation_status: op
                .map(|o| o.status.clone())
                .unwrap_or_else(|| "processing".into()),
            failure_code: op.and_then(|o| o.failure_code.clone()),
            failure_message: op
                .and_then(|o| o.failure_message.clone())
                .or_else(|| row.failure_reason.clone()),
            wallet_id: row.wallet_id.to_string(),
            biller_code: row.biller_code.clone(),
            biller_name: catalogue::biller(&row.biller_code)
                .map(|b| b.name.to_owned())
                .unwrap_or_default(),
            category: row.category.clone(),
            package_code: row.package_code.clone(),
            customer_id: row.customer_id.clone(),
            customer_name: row.customer_name.clone(),
            amount: money(row.amount),
            fee: money(row.fee),
            token: row.token.clone(),
            token_units: row.token_units.clone(),
            provider_reference: row.provider_reference.clone(),
            created_at: row.created_at,
            completed_at: row.completed_at,
        }
    }
}

#[derive(Debug, Clone, Object)]
pub struct BillPaymentList {
    pub data: Vec<BillPaymentBody>,
    pub has_more: bool,
}

#[derive(ApiResponse)]
pub enum BillPaymentResponse {
    /// Settled while the client waited.
    #[oai(status = 201)]
    Created(Json<BillPaymentBody>),
    /// Accepted: the amount and fee are held and the vend is on its way.
    #[oai(status = 202)]
    Accepted(Json<BillPaymentBody>),
}

#[derive(Debug, Clone, Object, serde::Serialize)]
pub struct CreateBeneficiaryRequest {
    pub biller_code: String,
    pub customer_id: String,
    pub nickname: String,
}

#[derive(Debug, Clone, Object)]
pub struct BeneficiaryBody {
    pub beneficiary_id: String,
    pub biller_code: String,
    pub customer_id: String,
    pub nickname: String,
    #[oai(nullable)]
    pub customer_name: Option<String>,
    pub usage_count: i32,
    #[oai(nullable)]
    pub last_used_at: Option<chrono::DateTime<chrono::Utc>>,
    pub created_at: chrono::DateTime<chrono::Utc>,
}

impl From<Beneficiary> for BeneficiaryBody {
    fn from(b: Beneficiary) -> Self {
        Self {
            beneficiary_id: b.beneficiary_id.to_string(),
            biller_code: b.biller_code,
            customer_id: b.customer_id,
            nickname: b.nickname,
            customer_name: b.customer_name,
            usage_count: b.usage_count,
            last_used_at: b.last_used_at,
            created_at: b.created_at,
        }
    }
}

#[derive(Debug, Clone, Object)]
pub struct BeneficiaryList {
    pub data: Vec<BeneficiaryBody>,
}

#[derive(ApiResponse)]
pub enum BeneficiaryCreated {
    #[oai(status = 201)]
    Created(Json<BeneficiaryBody>),
}

fn biller_of(code: &str) -> Result<&'static Biller, ApiError> {
    catalogue::biller(code.trim()).ok_or_else(|| {
        ApiError::invalid(
            "unknown_biller",
            "No biller has this code.",
            Some("biller_code"),
        )
    })
}

fn customer_of(biller: &Biller, raw: &str) -> Result<String, ApiError> {
    let customer = raw.trim().to_owned();
    if !biller.customer_id_shape_ok(&customer) {
        return Err(ApiError::invalid(
            "invalid_customer_id",
            format!(
                "The customer id must be {}.",
                biller.customer_id_description()
            ),
            Some("customer_id"),
        ));
    }
    Ok(customer)
}

fn nickname_of(raw: Option<&str>) -> Result<Option<String>, ApiError> {
    match raw.map(str::trim) {
        None | Some("") => Ok(None),
        Some(name)
            if name.chars().count() <= NICKNAME_CHARS_MAX
                && !name.chars().any(char::is_control) =>
        {
            Ok(Some(name.to_owned()))
        }
        Some(_) => Err(ApiError::invalid(
            "invalid_nickname",
            "A nickname is 1 to 60 printable characters.",
            Some("beneficiary_nickname"),
        )),
    }
}

struct CreateBillPayment {
    user_id: Uuid,
    request: BillRequest,
}

impl CreateAction for CreateBillPayment {
    async fn run(&self, tx: &mut PgConnection) -> Result<Result<Created, ApiError>, CreateError> {
        Ok(
            match bills::create_tx(tx, self.user_id, &self.request).await? {
                Ok(row) => Ok(Created {
                    operation_id: row.payment_id,
                    wake: crate::idempotent::PAYMENTS_AND_EMAILS,
                    body: poem_openapi::types::ToJSON::to_json(&BillPaymentBody::new(&row, None))
                        .unwrap_or_default(),
                }),
                Err(rejection) => Err(spend_error(&rejection)),
            },
        )
    }
}

impl BillsApi {
    async fn validate_customer(
        &self,
        biller: &Biller,
        item_code: &str,
        customer: &str,
    ) -> ApiResult<paycore_jobs::providers::BillCustomer> {
        self.state
            .providers()
            .bills
            .validate(biller.code, item_code, customer)
            .await
            .map_err(|e| provider_error(e, "customer_validation_failed"))
    }

    async fn body_of(&self, row: &BillPaymentRow) -> ApiResult<BillPaymentBody> {
        let op = operation::get(&self.state.pool, row.payment_id).await?;
        Ok(BillPaymentBody::new(row, op.as_ref()))
    }
}

#[OpenApi(prefix_path = "/api/v1/bills", tag = "ApiTag::Bills")]
impl BillsApi {
    /// The billers PayCore sells, optionally of one category.
    #[oai(path = "/billers", method = "get")]
    async fn billers(
        &self,
        _caller: BearerAuth,
        category: Query<Option<String>>,
    ) -> ApiResult<Json<BillerList>> {
        let category = match category.0.as_deref() {
            None => None,
            Some(raw) => Some(Category::parse(raw).ok_or_else(|| {
                ApiError::invalid(
                    "invalid_category",
                    "The category is airtime, data, electricity or cable_tv.",
                    Some("category"),
                )
            })?),
        };
        Ok(Json(BillerList {
            data: catalogue::BILLERS
                .iter()
                .filter(|b| category.is_none_or(|c| b.category == c))
                .map(BillerBody::new)
                .collect(),
        }))
    }

    /// One biller with its packages.
    #[oai(path = "/billers/:biller_code", method = "get")]
    async fn biller(
        &self,
        _caller: BearerAuth,
        biller_code: Path<String>,
    ) -> ApiResult<Json<BillerBody>> {
        let biller = catalogue::biller(biller_code.0.trim())
            .ok_or_else(|| ApiError::not_found("biller_not_found", "No such biller."))?;
        Ok(Json(BillerBody::new(biller)))
    }

    /// Check a customer (phone, meter or smart card) with the biller before paying.
    #[oai(path = "/validate", method = "post")]
    async fn validate(
        &self,
        _caller: BearerAuth,
        body: Body<ValidateRequest>,
    ) -> ApiResult<Json<ValidateBody>> {
        let biller = biller_of(&body.biller_code)?;
        let customer = customer_of(biller, &body.customer_id)?;
        let item = match body.package_code.as_deref() {
            Some(code) => biller.package(code.trim()).map(|p| p.code).ok_or_else(|| {
                ApiError::invalid(
                    "unknown_package",
                    "This biller has no such package.",
                    Some("package_code"),
                )
            })?,
            None => biller
                .item_code
                .or_else(|| biller.packages.first().map(|p| p.code))
                .unwrap_or_default(),
        };
        let found = self.validate_customer(biller, item, &customer).await?;
        Ok(Json(ValidateBody {
            valid: true,
            biller_code: biller.code.into(),
            customer_id: customer,
            customer_name: found.name,
            address: found.address,
        }))
    }

    /// Pay a bill. The amount and fee are held, the biller is paid as a job, and the holds are posted (or
    /// released if the biller declines). Electricity purchases carry their token once vended.
    #[oai(path = "/payments", method = "post")]
    async fn pay(
        &self,
        caller: BearerAuth,
        #[oai(name = "Idempotency-Key", validator(min_length = 1, max_length = 255))]
        idempotency_key: Header<String>,
        #[oai(name = "Prefer")] prefer: Header<Option<String>>,
        body: Body<CreateBillPaymentRequest>,
    ) -> ApiResult<BillPaymentResponse> {
        let key = idempotent::check_key(&idempotency_key)?;
        let wallet_id = parse_id(&body.wallet_id, "wallet_id")?;
        let biller = biller_of(&body.biller_code)?;
        let customer = customer_of(biller, &body.customer_id)?;
        let (package, amount) = match (&body.package_code, body.amount, biller.item_code) {
            (Some(code), None, _) => {
                let package = biller.package(code.trim()).ok_or_else(|| {
                    ApiError::invalid(
                        "unknown_package",
                        "This biller has no such package.",
                        Some("package_code"),
                    )
                })?;
                (Some(package), amount_of(package.amount_minor)?)
            }
            (None, Some(amount), Some(_)) => {
                let amount: Amount = amount_of(amount.0)?;
                if amount.minor() < biller.min_minor || amount.minor() > biller.max_minor {
                    return Err(ApiError::invalid(
                        "amount_out_of_range",
                        format!(
                            "The amount must be between ₦{} and ₦{}.",
                            naira(biller.min_minor),
                            naira(biller.max_minor)
                        ),
                        Some("amount"),
                    ));
                }
                (None, amount)
            }
            (None, _, None) => {
                return Err(ApiError::invalid(
                    "package_required",
                    "This biller sells packages: give package_code.",
                    Some("package_code"),
                ))
            }
            _ => {
                return Err(ApiError::invalid(
                    "amount_or_package_required",
                    "Give the amount for this biller (and no package).",
                    Some("amount"),
                ))
            }
        };
        let save_as = nickname_of(body.beneficiary_nickname.as_deref())?;
        if body.pin.as_ref().is_some_and(|pin| pin.len() > 12) {
            return Err(ApiError::invalid(
                "invalid_pin_format",
                "The PIN is 4 to 6 digits.",
                Some("pin"),
            ));
        }
        let hash = idempotent::request_hash("bills/payments", &body.0)?;
        let request = BillRequest {
            wallet_id,
            biller,
            package,
            amount,
            customer_name: None,
            customer_id: customer,
            pin: body.pin.clone(),
            save_as,
        };
        let customer_name = if biller.requires_validation {
            Some(
                self.validate_customer(biller, request.item_code(), &request.customer_id)
                    .await?
                    .name,
            )
        } else {
            None
        };
        let action = CreateBillPayment {
            user_id: caller.0.user_id,
            request: BillRequest {
                customer_name,
                ..request
            },
        };
        let outcome =
            idempotent::create(&self.state, caller.0.user_id, &key, &hash, &action).await?;
        let id = match idempotent::finish(
            &self.state,
            outcome,
            prefer.0.as_deref(),
            BillPaymentResponse::Accepted,
        )
        .await?
        {
            Finished::Created(id) => id,
            Finished::Replayed(response) => return Ok(response),
        };
        let row = bills::get(&self.state.pool, id)
            .await?
            .ok_or_else(|| ApiError::internal(anyhow::anyhow!("bill payment vanished")))?;
        let body = self.body_of(&row).await?;
        Ok(if row.status == "processing" {
            BillPaymentResponse::Accepted(Json(body))
        } else {
            BillPaymentResponse::Created(Json(body))
        })
    }

    /// A bill payment of the caller's.
    #[oai(path = "/payments/:payment_id", method = "get")]
    async fn payment(
        &self,
        caller: BearerAuth,
        #[oai(validator(
            pattern = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
        ))]
        payment_id: Path<String>,
    ) -> ApiResult<Json<BillPaymentBody>> {
        let not_found = || ApiError::not_found("bill_payment_not_found", "No such bill payment.");
        let id = parse_id(&payment_id, "payment_id").map_err(|_| not_found())?;
        let row = bills::get(&self.state.pool, id)
            .await?
            .filter(|p| p.user_id == caller.0.user_id)
            .ok_or_else(not_found)?;
        Ok(Json(self.body_of(&row).await?))
    }

    /// The caller's bill payments, newest first, optionally of one category or status.
    #[oai(path = "/payments", method = "get")]
    async fn payments(
        &self,
        caller: BearerAuth,
        category: Query<Option<String>>,
        status: Query<Option<String>>,
        #[oai(validator(minimum(value = "1"), maximum(value = "100")))] limit: Query<Option<i64>>,
        #[oai(validator(
            pattern = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
        ))]
        starting_after: Query<Option<String>>,
    ) -> ApiResult<Json<BillPaymentList>> {
        let limit = list_limit(limit.0)?;
        if let Some(c) = category.0.as_deref() {
            Category::parse(c).ok_or_else(|| {
                ApiError::invalid(
                    "invalid_category",
                    "The category is airtime, data, electricity or cable_tv.",
                    Some("category"),
                )
            })?;
        }
        if let Some(s) = status.0.as_deref() {
            if !matches!(s, "processing" | "completed" | "failed") {
                return Err(ApiError::invalid(
                    "invalid_status",
                    "The status is processing, completed or failed.",
                    Some("status"),
                ));
            }
        }
        let after = starting_after
            .0
            .as_deref()
            .map(|id| parse_id(id, "starting_after"))
            .transpose()?;
        let rows: Vec<BillPaymentRow> = sqlx::query_as!(
            BillPaymentRow,
            "select payment_id, user_id, wallet_id, provider, biller_code, category, package_code, customer_id,
                 customer_name, amount, fee, currency, status, hold_id, fee_hold_id, provider_reference, token,
                 token_units, failure_reason, created_at, updated_at, completed_at
             from bill_payment where user_id = $1
               and ($2::text is null or category = $2) and ($3::text is null or status = $3)
               and ($4::uuid is null or (created_at, payment_id) <
                    (select created_at, payment_id from bill_payment where payment_id = $4 and user_id = $1))
             order by created_at desc, payment_id desc limit $5",
            caller.0.user_id,
            category.0.as_deref(),
            status.0.as_deref(),
            after,
            limit + 1,
        )
        .fetch_all(&self.state.pool)
        .await?;
        let has_more = rows.len() as i64 > limit;
        let rows: Vec<_> = rows.into_iter().take(limit as usize).collect();
        let ids: Vec<Uuid> = rows.iter().map(|row| row.payment_id).collect();
        let ops = operation::get_many(&self.state.pool, &ids).await?;
        let data: Vec<_> = rows
            .iter()
            .map(|row| BillPaymentBody::new(row, ops.get(&row.payment_id)))
            .collect();
        Ok(Json(BillPaymentList { data, has_more }))
    }

    /// The caller's saved beneficiaries, most recently used first.
    #[oai(path = "/beneficiaries", method = "get")]
    async fn beneficiaries(&self, caller: BearerAuth) -> ApiResult<Json<BeneficiaryList>> {
        let rows = bills::beneficiaries(&self.state.pool, caller.0.user_id).await?;
        Ok(Json(BeneficiaryList {
            data: rows.into_iter().map(Into::into).collect(),
        }))
    }

    /// Save a beneficiary (a biller's customer under a nickname); saving one again renames it.
    #[oai(path = "/beneficiaries", method = "post")]
    async fn save_beneficiary(
        &self,
        caller: BearerAuth,
        body: Body<CreateBeneficiaryRequest>,
    ) -> ApiResult<BeneficiaryCreated> {
        let biller = biller_of(&body.biller_code)?;
        let customer = customer_of(biller, &body.customer_id)?;
        let nickname = nickname_of(Some(&body.nickname))?.ok_or_else(|| {
            ApiError::invalid(
                "invalid_nickname",
                "A nickname is 1 to 60 printable characters.",
                Some("nickname"),
            )
        })?;
        let mut tx = self.state.pool.begin().await?;
        let saved = bills::save_beneficiary_tx(
            &mut tx,
            caller.0.user_id,
            biller.code,
            &customer,
            &nickname,
            None,
        )
        .await?;
        tx.commit().await?;
        Ok(BeneficiaryCreated::Created(Json(saved.into())))
    }

    /// Delete a saved beneficiary.
    #[oai(path = "/beneficiaries/:beneficiary_id", method = "delete")]
    async fn delete_beneficiary(
        &self,
        caller: BearerAuth,
        #[oai(validator(
            pattern = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
        ))]
        beneficiary_id: Path<String>,
    ) -> ApiResult<NoContent> {
        let not_found = || ApiError::not_found("beneficiary_not_found", "No such beneficiary.");
        let id = parse_id(&beneficiary_id, "beneficiary_id").map_err(|_| not_found())?;
        if bills::delete_beneficiary(&self.state.pool, caller.0.user_id, id).await? {
            Ok(NoContent::Done)
        } else {
            Err(not_found())
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn basis_points_read_as_percentages() {
        assert_eq!(super::percent(100), "1");
        assert_eq!(super::percent(150), "1.5");
        assert_eq!(super::percent(5), "0.05");
        assert_eq!(super::percent(1000), "10");
    }
}
