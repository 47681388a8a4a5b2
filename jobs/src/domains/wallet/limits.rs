//! Spending limits: a wallet's daily and monthly caps on what leaves it, over calendar windows that start at UTC
//! midnight and on the first of the month. Transfers, payouts and bill payments all check them here.

use chrono::{DateTime, Datelike, TimeZone, Utc};
use sqlx::PgConnection;

use super::WalletRow;
use crate::ledger::AccountId;

/// The start of `now`'s UTC day: the daily limit's window.
pub fn start_of_day(now: DateTime<Utc>) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(now.year(), now.month(), now.day(), 0, 0, 0)
        .single()
        .unwrap_or(now)
}

/// The start of `now`'s UTC month: the monthly limit's window.
pub fn start_of_month(now: DateTime<Utc>) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(now.year(), now.month(), 1, 0, 0, 0)
        .single()
        .unwrap_or(now)
}

/// Whether changing a limit from `old` to `new` (`None`: no limit) lets more money leave: raising or removing it.
/// Such a change needs the PIN (or the password), so a stolen session cannot lift the cap and then drain the
/// wallet; tightening needs nothing.
pub fn loosens(old: Option<i64>, new: Option<i64>) -> bool {
    match (old, new) {
        (Some(_), None) => true,
        (Some(old), Some(new)) => new > old,
        (None, _) => false,
    }
}

/// A spending limit a debit would exceed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpendLimit {
    Daily,
    Monthly,
}

/// The first of the wallet's daily and monthly limits that spending `total` more would exceed, if any (windows start
/// at UTC midnight and on the first of the month).
pub async fn exceeded_limit_tx(
    tx: &mut PgConnection,
    wallet: &WalletRow,
    total: i64,
) -> Result<Option<SpendLimit>, sqlx::Error> {
    let now = Utc::now();
    let windows = [
        (wallet.daily_limit, start_of_day(now), SpendLimit::Daily),
        (
            wallet.monthly_limit,
            start_of_month(now),
            SpendLimit::Monthly,
        ),
    ];
    for (limit, since, which) in windows {
        if let Some(limit) = limit {
            let spent = spent_since_tx(tx, wallet.account_id, since).await?;
            if spent.saturating_add(total) > limit {
                return Ok(Some(which));
            }
        }
    }
    Ok(None)
}

/// What the wallet has spent (moved out or holds) since `since`, in minor units: transfers, fees and holds that
/// were not voided.
pub async fn spent_since_tx(
    tx: &mut PgConnection,
    account_id: AccountId,
    since: DateTime<Utc>,
) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar!(
        r#"select coalesce(sum(t.amount), 0)::bigint as "spent!" from ledger_transfer t
         where t.debit_account_id = $1 and t.created_at >= $2 and t.flow in ('posted', 'pending')
           and not exists (select 1 from ledger_transfer v where v.pending_id = t.transfer_id and v.flow = 'void_pending')"#,
        account_id,
        since,
    )
    .fetch_one(&mut *tx)
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raising_or_removing_a_limit_loosens_it_and_lowering_or_setting_one_does_not() {
        assert!(loosens(Some(100), Some(101)));
        assert!(loosens(Some(100), None));
        assert!(!loosens(Some(100), Some(100)));
        assert!(!loosens(Some(100), Some(99)));
        assert!(!loosens(None, Some(1)));
        assert!(!loosens(None, None));
    }

    #[test]
    fn limit_windows_start_at_utc_midnight_and_the_first_of_the_month() {
        let now = Utc
            .with_ymd_and_hms(2026, 11, 21, 20, 15, 3)
            .single()
            .expect("time");
        assert_eq!(
            start_of_day(now),
            Utc.with_ymd_and_hms(2026, 11, 21, 0, 0, 0)
                .single()
                .expect("time")
        );
        assert_eq!(
            start_of_month(now),
            Utc.with_ymd_and_hms(2026, 11, 1, 0, 0, 0)
                .single()
                .expect("time")
        );
    }
}
