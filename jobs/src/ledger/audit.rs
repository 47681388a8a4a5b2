//! The scheduled ledger audit: checks every invariant and records the result for the admin endpoint.

use serde::{Deserialize, Serialize};

use std::sync::Arc;

use crate::engine::{scheduler::ScheduleDef, Job, JobContext, JobError, Queue, Registry};
use crate::ledger;
use crate::platform::config::Config;
use crate::providers::Providers;

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

/// Adds the ledger's job kind: the audit.
pub fn register(registry: &mut Registry, _: &Arc<Config>, _: &Arc<Providers>) {
    registry.register::<AuditLedger, _, _>(run);
}

/// The ledger's schedules: the audit every five minutes.
pub fn schedules() -> Vec<ScheduleDef> {
    vec![ScheduleDef::of::<AuditLedger>(
        "ledger.audit",
        "0 */5 * * * *",
    )]
}
