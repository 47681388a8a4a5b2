//! `paycore-sandbox`: the sandbox payment providers on their own (`paycore-dev` also starts them in-process).
//! Environment: `SANDBOX_PORT` (8090), `PAYSTACK_SECRET_KEY`, `FLUTTERWAVE_SECRET_KEY`,
//! `SANDBOX_WEBHOOK_URL` (where Paystack-style webhooks go), `SANDBOX_WEBHOOK_DELAY_MS` (500).

use std::time::Duration;

use paycore_sandbox::SandboxOptions;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = paycore_jobs::platform::config::Config::from_process_env()?;
    paycore_jobs::platform::telemetry::init(config.log_format);
    let delay_ms: u64 = std::env::var("SANDBOX_WEBHOOK_DELAY_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(500);
    let options = SandboxOptions {
        paystack_secret_key: config.providers.paystack_secret_key.expose().to_owned(),
        flutterwave_secret_key: config.providers.flutterwave_secret_key.expose().to_owned(),
        webhook_delay: Duration::from_millis(delay_ms),
        ..SandboxOptions::default()
    };
    let (sandbox, base) = paycore_sandbox::start(options, config.providers.sandbox_port).await?;
    let webhook = std::env::var("SANDBOX_WEBHOOK_URL").unwrap_or_else(|_| {
        format!(
            "http://{}:{}/api/v1/webhooks/paystack",
            config.host, config.port
        )
    });
    sandbox.set_paystack_webhook_url(&webhook);
    println!("Sandbox providers on {base} (Paystack {base}/paystack, Flutterwave {base}/flutterwave/v3); webhooks to {webhook}");
    paycore_jobs::app::shutdown_signal().await;
    Ok(())
}
