//! `paycore-dev`: the whole system in one process for development — api, workers on every queue, the scheduler
//! and the sandbox providers — against the local PostgreSQL that is provisioned when `DATABASE_URL` is unset.
//!
//! It is its own crate so that the sandbox is linked into this binary only, never into the production ones.

use paycore_jobs::app;
use paycore_jobs::engine::{
    scheduler::run_scheduler,
    worker::{run_workers, WorkerOptions},
    Queue,
};
use paycore_jobs::platform::config::Config;
use tokio::sync::watch;

use paycore_api::AppState;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = Config::from_process_env()?;
    paycore_jobs::platform::telemetry::init(config.log_format);
    let pool = app::connect_and_migrate(&config).await?;
    app::seed_demo_data(&pool, &config).await?;

    // One signal stops all three parts.
    let (stop_tx, stop_rx) = watch::channel(false);
    let stopped = move || {
        let mut rx = stop_rx.clone();
        async move {
            let _ = rx.wait_for(|stop| *stop).await;
        }
    };
    tokio::spawn(async move {
        app::shutdown_signal().await;
        let _ = stop_tx.send(true);
    });

    let base = format!("http://{}:{}", config.host, config.port);
    // The sandbox providers, when the adapters point at them (the default).
    let sandbox_address = format!("127.0.0.1:{}", config.providers.sandbox_port);
    let sandbox_line = if config
        .providers
        .paystack_base_url
        .contains(&sandbox_address)
        || config
            .providers
            .flutterwave_base_url
            .contains(&sandbox_address)
    {
        let options = paycore_sandbox::SandboxOptions {
            paystack_secret_key: config.providers.paystack_secret_key.expose().to_owned(),
            flutterwave_secret_key: config.providers.flutterwave_secret_key.expose().to_owned(),
            ..paycore_sandbox::SandboxOptions::default()
        };
        let (sandbox, sandbox_base) =
            paycore_sandbox::start(options, config.providers.sandbox_port).await?;
        sandbox.set_paystack_webhook_url(&format!("{base}/api/v1/webhooks/paystack"));
        format!("  Sandbox:   {sandbox_base}/paystack  {sandbox_base}/flutterwave/v3  (magic values: docs/sandbox.md)\n")
    } else {
        String::new()
    };
    let mut accounts = format!(
        "  admin      {} / {}\n",
        app::DEMO_ADMIN.0,
        app::DEMO_ADMIN.1
    );
    for (email, password, _) in app::DEMO_USERS {
        accounts.push_str(&format!("  user       {email} / {password}\n"));
    }
    println!(
        "\nPayCore is starting.\n  API:       {base}/api/v1\n  API docs:  {base}/docs\n  OpenAPI:   {base}/openapi.json\n  Health:    {base}/healthz  {base}/readyz  {base}/metrics\n  Dashboard: {base}/admin\n{sandbox_line}\nDemo accounts (email / password; users start with the NGN 100,000 welcome bonus):\n{accounts}"
    );

    let workers = tokio::spawn(run_workers(
        pool.clone(),
        app::registry(&config),
        WorkerOptions::new(Queue::ALL.to_vec(), config.engine.clone()),
        stopped(),
    ));
    let scheduler = tokio::spawn(run_scheduler(
        pool.clone(),
        app::schedules(),
        config.engine.scheduler_poll,
        stopped(),
    ));
    let api = paycore_api::serve(AppState::new(pool, config), stopped());
    let (api, workers, scheduler) = tokio::join!(api, workers, scheduler);
    api?;
    workers??;
    scheduler??;
    Ok(())
}
