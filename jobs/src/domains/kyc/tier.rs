//! A user's KYC tier: stored on the user, changed only through [`set_tx`], which records every change with its
//! source (a verification, a compliance review, an admin's grant, expiry) in `kyc_tier_change`.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgConnection;
use uuid::Uuid;

/// The tiers of the CBN three-tier framework, plus 0 for a registered user who proved nothing yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub enum Tier {
    /// Registered: nothing proved.
    Zero,
    /// Name, date of birth, phone and a national identity number checked.
    One,
    /// An identity document and a selfie verified.
    Two,
    /// Proof of address verified.
    Three,
}

impl Tier {
    pub const ALL: [Tier; 4] = [Tier::Zero, Tier::One, Tier::Two, Tier::Three];

    pub fn number(self) -> i16 {
        match self {
            Tier::Zero => 0,
            Tier::One => 1,
            Tier::Two => 2,
            Tier::Three => 3,
        }
    }

    pub fn from_number(number: i16) -> Option<Tier> {
        Tier::ALL.into_iter().find(|tier| tier.number() == number)
    }
}

/// Why a tier changed (`kyc_tier_change.source`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// An identity provider's clear result.
    Verification,
    /// A compliance officer's decision on a submission in review.
    Review,
    /// An admin's manual grant (with a reason).
    Admin,
    /// The daily expiry job.
    Expiry,
    /// Demo data.
    Seed,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Verification => "verification",
            Source::Review => "review",
            Source::Admin => "admin",
            Source::Expiry => "expiry",
            Source::Seed => "seed",
        }
    }
}

/// A user's tier as it stands, with its expiry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Standing {
    pub tier: Tier,
    pub expires_at: Option<DateTime<Utc>>,
}

/// The user's current tier; `None` when no such user.
pub async fn current(
    conn: &mut PgConnection,
    user_id: Uuid,
) -> Result<Option<Standing>, sqlx::Error> {
    let row = sqlx::query!(
        "select kyc_tier, kyc_tier_expires_at from app_user where user_id = $1",
        user_id
    )
    .fetch_optional(&mut *conn)
    .await?;
    Ok(row.map(|row| Standing {
        tier: Tier::from_number(row.kyc_tier).unwrap_or(Tier::Zero),
        expires_at: row.kyc_tier_expires_at,
    }))
}

/// A change of tier to record.
#[derive(Debug, Clone)]
pub struct Change<'a> {
    pub user_id: Uuid,
    pub to: Tier,
    pub expires_at: Option<DateTime<Utc>>,
    pub source: Source,
    pub reason: Option<&'a str>,
    pub actor_user_id: Option<Uuid>,
}

/// Sets the user's tier inside the caller's transaction (locking the user's row) and records the change.
/// Returns the tier it replaced; `None` when no such user.
pub async fn set_tx(
    tx: &mut PgConnection,
    change: &Change<'_>,
) -> Result<Option<Tier>, sqlx::Error> {
    let Some(from) = sqlx::query_scalar!(
        "select kyc_tier from app_user where user_id = $1 for update",
        change.user_id
    )
    .fetch_optional(&mut *tx)
    .await?
    else {
        return Ok(None);
    };
    sqlx::query!(
        "update app_user set kyc_tier = $2, kyc_tier_expires_at = $3, updated_at = now() where user_id = $1",
        change.user_id,
        change.to.number(),
        change.expires_at,
    )
    .execute(&mut *tx)
    .await?;
    sqlx::query!(
        "insert into kyc_tier_change (user_id, from_tier, to_tier, source, reason, actor_user_id, expires_at)
         values ($1, $2, $3, $4, $5, $6, $7)",
        change.user_id,
        from,
        change.to.number(),
        change.source.as_str(),
        change.reason,
        change.actor_user_id,
        change.expires_at,
    )
    .execute(&mut *tx)
    .await?;
    Ok(Some(Tier::from_number(from).unwrap_or(Tier::Zero)))
}
