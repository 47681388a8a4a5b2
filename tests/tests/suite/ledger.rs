//! The ledger's invariants: the database refuses an overdraft whatever the code does, holds resolve exactly once,
//! and the audit notices every kind of corruption (introduced here behind the ledger's back).

use std::time::Duration;

use paycore_jobs::engine::{control, enqueue_tx, NewJob};
use paycore_jobs::ledger::audit::AuditLedger;
use paycore_jobs::ledger::{self, Flow, LedgerError, NewTransfer};
use paycore_jobs::money::{Amount, Currency};
use paycore_tests::{app::spawn_app, eventually, TestDb};
use serde_json::Value;

async fn wallet_account(db: &TestDb) -> i64 {
    let mut tx = db.pool.begin().await.expect("begin");
    let id = ledger::create_wallet_account_tx(&mut tx, Currency::Ngn)
        .await
        .expect("account");
    tx.commit().await.expect("commit");
    id
}

async fn fund(db: &TestDb, account: i64, minor: i64) {
    let mut tx = db.pool.begin().await.expect("begin");
    let subsidy = ledger::system_account_tx(&mut tx, ledger::SystemAccount::Subsidy, Currency::Ngn)
        .await
        .expect("subsidy");
    ledger::post_tx(
        &mut tx,
        &[NewTransfer {
            flow: Flow::Posted(Amount::new(minor).expect("amount")),
            debit: subsidy,
            credit: account,
            currency: Currency::Ngn,
            code: "welcome_bonus",
            operation_id: None,
        }],
    )
    .await
    .expect("fund");
    tx.commit().await.expect("commit");
}

fn hold(from: i64, to: i64, minor: i64) -> NewTransfer {
    NewTransfer {
        flow: Flow::Pending {
            amount: Amount::new(minor).expect("amount"),
            expires_at: None,
        },
        debit: from,
        credit: to,
        currency: Currency::Ngn,
        code: "transfer",
        operation_id: None,
    }
}

#[tokio::test]
async fn the_database_refuses_an_overdraft_even_from_a_direct_update() {
    let db = TestDb::new().await.expect("db");
    let account = wallet_account(&db).await;
    fund(&db, account, 1_000).await;
    let direct =
        sqlx::query("update ledger_account set debits_posted = 1001 where account_id = $1")
            .bind(account)
            .execute(&db.pool)
            .await;
    let constraint = match direct {
        Err(sqlx::Error::Database(db_error)) => db_error.constraint().map(str::to_owned),
        other => panic!("the overdraft went through: {other:?}"),
    };
    assert_eq!(constraint.as_deref(), Some("ledger_account_no_overdraft"));
    // Through the ledger, a hold beyond the balance is refused and nothing is written.
    let other = wallet_account(&db).await;
    let mut tx = db.pool.begin().await.expect("begin");
    let refused = ledger::post_tx(&mut tx, &[hold(account, other, 1_001)]).await;
    assert!(matches!(refused, Err(LedgerError::InsufficientFunds(id)) if id == account));
    tx.rollback().await.expect("rollback");
    assert!(ledger::audit(&db.pool).await.expect("audit").clean);
}

#[tokio::test]
async fn a_hold_is_posted_or_voided_exactly_once_and_never_for_more_than_it_held() {
    let db = TestDb::new().await.expect("db");
    let (from, to) = (wallet_account(&db).await, wallet_account(&db).await);
    fund(&db, from, 10_000).await;
    let mut tx = db.pool.begin().await.expect("begin");
    let pending = ledger::post_tx(&mut tx, &[hold(from, to, 4_000)])
        .await
        .expect("hold")[0];
    tx.commit().await.expect("commit");
    let balances = ledger::balances(&db.pool, from).await.expect("balances");
    assert_eq!(
        (balances.available, balances.pending, balances.posted),
        (6_000, 4_000, 10_000)
    );

    let post = |minor: i64| NewTransfer {
        flow: Flow::PostPending {
            pending_id: pending,
            amount: Amount::new(minor).expect("amount"),
        },
        ..hold(from, to, 1)
    };
    let mut tx = db.pool.begin().await.expect("begin");
    let too_much = ledger::post_tx(&mut tx, &[post(4_001)]).await;
    assert!(matches!(too_much, Err(LedgerError::PostExceedsHold { .. })));
    tx.rollback().await.expect("rollback");

    // Two resolutions race; exactly one wins.
    let attempts = futures::future::join_all((0..4).map(|i| {
        let pool = db.pool.clone();
        let transfer = if i % 2 == 0 {
            post(3_000)
        } else {
            NewTransfer {
                flow: Flow::VoidPending {
                    pending_id: pending,
                },
                ..hold(from, to, 1)
            }
        };
        async move {
            let mut tx = pool.begin().await.expect("begin");
            let result = ledger::post_tx(&mut tx, &[transfer]).await;
            if result.is_ok() {
                tx.commit().await.expect("commit");
            }
            result.is_ok()
        }
    }))
    .await;
    assert_eq!(attempts.iter().filter(|ok| **ok).count(), 1, "{attempts:?}");
    let balances = ledger::balances(&db.pool, from).await.expect("balances");
    assert_eq!(balances.pending, 0, "the hold is gone either way");
    assert!(
        balances.posted == 10_000 || balances.posted == 7_000,
        "posted 3,000 (releasing 1,000) or voided"
    );
    assert!(ledger::audit(&db.pool).await.expect("audit").clean);
}

#[tokio::test]
async fn the_audit_notices_every_kind_of_corruption() {
    let db = TestDb::new().await.expect("db");
    let (a, b) = (wallet_account(&db).await, wallet_account(&db).await);
    fund(&db, a, 10_000).await;
    assert!(ledger::audit(&db.pool).await.expect("audit").clean);

    // Counters moved without a transfer, balanced across two accounts: only the per-account check sees it.
    sqlx::query(
        "update ledger_account set credits_posted = credits_posted + 5 where account_id = $1",
    )
    .bind(b)
    .execute(&db.pool)
    .await
    .expect("corrupt");
    sqlx::query(
        "update ledger_account set debits_posted = debits_posted + 5 where account_id = $1",
    )
    .bind(a)
    .execute(&db.pool)
    .await
    .expect("corrupt");
    let report = ledger::audit(&db.pool).await.expect("audit");
    assert!(!report.clean);
    assert_eq!(
        report
            .findings
            .iter()
            .filter(|f| f.contains("counters differ"))
            .count(),
        2,
        "{:?}",
        report.findings
    );
    assert!(!report
        .findings
        .iter()
        .any(|f| f.contains("debits and credits differ")));

    // A one-sided change also unbalances the currency.
    sqlx::query(
        "update ledger_account set credits_posted = credits_posted + 1 where account_id = $1",
    )
    .bind(b)
    .execute(&db.pool)
    .await
    .expect("corrupt");
    let report = ledger::audit(&db.pool).await.expect("audit");
    assert!(
        report
            .findings
            .iter()
            .any(|f| f.starts_with("NGN: debits and credits differ")),
        "{:?}",
        report.findings
    );

    // A settled operation that still holds money.
    let db2 = TestDb::new().await.expect("db");
    let (c, d) = (wallet_account(&db2).await, wallet_account(&db2).await);
    fund(&db2, c, 10_000).await;
    let mut tx = db2.pool.begin().await.expect("begin");
    let operation_id =
        paycore_jobs::operation::insert_tx(&mut tx, "transfer", None, &serde_json::json!({}))
            .await
            .expect("op");
    ledger::post_tx(
        &mut tx,
        &[NewTransfer {
            operation_id: Some(operation_id),
            ..hold(c, d, 100)
        }],
    )
    .await
    .expect("hold");
    paycore_jobs::operation::succeed_tx(&mut tx, operation_id, &serde_json::json!({}))
        .await
        .expect("succeed");
    tx.commit().await.expect("commit");
    let report = ledger::audit(&db2.pool).await.expect("audit");
    assert!(
        report
            .findings
            .iter()
            .any(|f| f.contains("still holds funds")),
        "{:?}",
        report.findings
    );
}

#[tokio::test]
async fn the_scheduled_audit_job_records_its_result_for_the_admin_endpoint() {
    let app = spawn_app().await;
    app.register_user("ada").await;
    let mut tx = app.db.pool.begin().await.expect("begin");
    let id = enqueue_tx(&mut tx, NewJob::new(&AuditLedger {}).expect("job"))
        .await
        .expect("enqueue");
    tx.commit().await.expect("commit");
    eventually(
        Duration::from_secs(10),
        "the audit job to finish",
        || async {
            let job = control::get_job(&app.db.pool, &id).await.expect("job")?;
            (job.state == "done").then_some(())
        },
    )
    .await;
    let admin = app
        .admin_token(paycore_jobs::domains::identity::auth::Role::AdminReadonly)
        .await;
    let latest: Value = app.get_json("/api/v1/admin/ledger/audit", &admin).await;
    assert_eq!(latest["clean"], true);
    assert_eq!(latest["findings"].as_array().map(Vec::len), Some(0));
    let schedules: Vec<&str> = paycore_jobs::app::schedules()
        .iter()
        .map(|s| s.name)
        .collect();
    assert!(schedules.contains(&"ledger.audit"));
}
