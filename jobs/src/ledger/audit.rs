//! The scheduled ledger audit: checks every invariant and records the result for the admin endpoint.

use serde::{Deserialize, Serialize};

use crate::{
    engine::{Job, JobContext, JobError, Queue},
    ledger,
};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AuditLedger {}

impl Job for AuditLedger {
    const KIND: &'static str = "ledger.audit";
    const QUEUE: Queue = Queue::Reconciliation;
}

pub async fn run(ctx: JobContext, _: AuditLedger) -> Result<(), JobError> {
    let report = ledger::audit_and_record(&ctx.pool).await?;
    tracing::info!(
        clean = report.clean,
        accounts = report.accounts,
        transfers = report.transfers,
        "ledger audited"
    );
    Ok(())
}
