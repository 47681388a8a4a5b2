//! Typed configuration, read once from the environment at start-up (12-factor).
//!
//! Every variable has a safe development default, except that `PAYCORE_ENV=production` refuses to start
//! without real secrets, an explicit database and an SMTP server (unless told, by
//! `ALLOW_DEV_MAILBOX_IN_PRODUCTION=true`, to keep mail in the development mailbox). Secrets are never printed:
//! `Debug` redacts them.

use std::{collections::BTreeMap, fmt, time::Duration};

use crate::engine::config::EngineConfig;
use crate::engine::queue::Queue;

/// The signing secret used in development when none is configured. Production refuses to run with it.
pub const DEVELOPMENT_JWT_SECRET: &str = "paycore-development-secret-do-not-use-in-production";

/// A secret value whose `Debug` and `Display` never reveal it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(**redacted**)")
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Environment {
    Development,
    Production,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("{name} is invalid: {reason}")]
    Invalid { name: &'static str, reason: String },
    #[error("{name} must be set when PAYCORE_ENV=production")]
    RequiredInProduction { name: &'static str },
    #[error(
        "SMTP_HOST must be set when PAYCORE_ENV=production: without it mail (password resets, sign-in codes) never \
         leaves the development mailbox. Set ALLOW_DEV_MAILBOX_IN_PRODUCTION=true to run without SMTP on purpose."
    )]
    SmtpRequiredInProduction,
}

/// Settings shared by every process.
#[derive(Debug, Clone)]
pub struct Config {
    pub environment: Environment,
    /// `None` means "provision a local PostgreSQL" (development and tests only).
    pub database_url: Option<Secret>,
    pub database_max_connections: u32,
    pub host: String,
    pub port: u16,
    pub jwt_secret: Secret,
    pub log_format: LogFormat,
    pub engine: EngineConfig,
    pub money: MoneyConfig,
    pub providers: ProvidersConfig,
    pub notifications: NotificationsConfig,
    pub security: SecurityConfig,
}

/// Who the api believes a request comes from, and the throttles that depend on it (docs/security.md).
#[derive(Debug, Clone)]
pub struct SecurityConfig {
    /// Addresses of the load balancers and proxies in front of the api. Only a request whose socket peer is one
    /// of them has its `X-Forwarded-For` believed; anyone else could write that header.
    pub trusted_proxies: Vec<std::net::IpAddr>,
    /// Registrations one client address may make in an hour (a NAT or office shares one address).
    pub registrations_per_address_per_hour: i32,
    /// Requests per minute in each route class, per user and per address (`RATE_LIMIT_<CLASS>`); the api reads
    /// them as `name -> (per user, per address)`.
    pub rate_limits: BTreeMap<String, (u32, u32)>,
    /// The bearer token `/metrics` requires (`METRICS_TOKEN`). Unset, `/metrics` is open in development and
    /// closed in production (docs/security.md §7).
    pub metrics_token: Option<Secret>,
}

/// E-mail, push and in-app notification settings.
#[derive(Debug, Clone)]
pub struct NotificationsConfig {
    /// `None`: mail goes to the development mailbox (`dev_mailbox`), readable by admins with codes hidden. In
    /// production only with `ALLOW_DEV_MAILBOX_IN_PRODUCTION=true`.
    pub smtp: Option<SmtpConfig>,
    /// The sender of every e-mail.
    pub mail_from: String,
    /// `None`: push notifications are recorded but not sent.
    pub fcm: Option<FcmConfig>,
    /// A debit that leaves a wallet's available balance below this (minor units) warns its owner.
    pub low_balance_threshold_minor: i64,
    /// In-app notifications older than this are deleted.
    pub retention_days: i64,
    /// One-time codes expire after this long.
    pub otp_ttl: Duration,
    /// Fewest seconds between two codes of one purpose for one user.
    pub otp_resend_interval: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmtpTls {
    /// Plain SMTP (a local relay or a test sink).
    None,
    /// STARTTLS on the submission port.
    StartTls,
    /// Implicit TLS (port 465).
    Tls,
}

#[derive(Debug, Clone)]
pub struct SmtpConfig {
    pub host: String,
    pub port: u16,
    pub tls: SmtpTls,
    pub username: Option<String>,
    pub password: Option<Secret>,
    pub timeout: Duration,
}

/// FCM HTTP v1 with a Google service account.
#[derive(Debug, Clone)]
pub struct FcmConfig {
    /// `https://fcm.googleapis.com` unless pointed elsewhere.
    pub base_url: String,
    pub project_id: String,
    pub client_email: String,
    pub private_key: Secret,
    /// The OAuth2 token endpoint (the service account's `token_uri`).
    pub token_uri: String,
}

/// Where the payment providers are and how PayCore talks to them.
#[derive(Debug, Clone)]
pub struct ProvidersConfig {
    /// Paystack-compatible gateway and payouts, e.g. `https://api.paystack.co`.
    pub paystack_base_url: String,
    pub paystack_secret_key: Secret,
    /// Flutterwave-compatible bills, e.g. `https://api.flutterwave.com/v3`.
    pub flutterwave_base_url: String,
    pub flutterwave_secret_key: Secret,
    /// Longest wait for one provider call before it counts as "no answer" (and is retried).
    pub timeout: Duration,
    /// How old a webhook's signed timestamp may be.
    pub webhook_tolerance: Duration,
    /// When not empty, webhooks are accepted only from these addresses.
    pub webhook_allowed_ips: Vec<std::net::IpAddr>,
    /// Payouts above this amount (minor units) wait for an admin's approval.
    pub payout_approval_threshold_minor: i64,
    /// Where the gateway sends the customer after the hosted payment page, when the request names none.
    pub deposit_return_url: Option<String>,
    /// Hosts a deposit's `return_url` may point at (`DEPOSIT_RETURN_HOSTS`, lowercase; `*.example.com` for its
    /// subdomains), and always the host of `DEPOSIT_RETURN_URL` (docs/security.md §9).
    pub deposit_return_hosts: Vec<String>,
    /// The sandbox providers' port in development (`paycore-dev` starts them).
    pub sandbox_port: u16,
    /// How soon a payout or bill the provider reports as pending is asked about again.
    pub status_poll: Duration,
}

/// The sandbox providers' default port; the default base URLs point at it.
pub const DEFAULT_SANDBOX_PORT: u16 = 8090;

/// Settings of accounts, wallets and transfers.
#[derive(Debug, Clone)]
pub struct MoneyConfig {
    /// Credited to every new NGN wallet from the subsidy account, in kobo; 0 disables it.
    pub initial_bonus_minor: i64,
    /// The platform's 3-digit CBN bank code, used to compute NUBAN check digits.
    pub bank_code: String,
    pub fees: crate::money::FeeSchedule,
    pub access_token_ttl: Duration,
    pub refresh_token_ttl: Duration,
    /// How long a recipient has to accept a transfer that needs acceptance.
    pub acceptance_ttl: Duration,
    /// The first admin, created at start-up when both are set.
    pub admin_email: Option<String>,
    pub admin_password: Option<Secret>,
}

/// ₦100,000 in kobo.
pub const DEFAULT_INITIAL_BONUS_MINOR: i64 = 10_000_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Json,
    Pretty,
}

/// Reads variables through a lookup function so tests can feed a map instead of the process environment.
pub struct Env<'a> {
    lookup: &'a dyn Fn(&str) -> Option<String>,
}

impl<'a> Env<'a> {
    pub fn new(lookup: &'a dyn Fn(&str) -> Option<String>) -> Self {
        Self { lookup }
    }

    fn get(&self, name: &str) -> Option<String> {
        (self.lookup)(name).filter(|value| !value.trim().is_empty())
    }

    fn parse<T: std::str::FromStr>(&self, name: &'static str, default: T) -> Result<T, ConfigError>
    where
        T::Err: fmt::Display,
    {
        match self.get(name) {
            None => Ok(default),
            Some(raw) => raw
                .trim()
                .parse()
                .map_err(|error: T::Err| ConfigError::Invalid {
                    name,
                    reason: error.to_string(),
                }),
        }
    }

    fn millis(&self, name: &'static str, default: Duration) -> Result<Duration, ConfigError> {
        let default_ms = u64::try_from(default.as_millis()).unwrap_or(u64::MAX);
        Ok(Duration::from_millis(self.parse(name, default_ms)?))
    }
}

impl Config {
    pub fn from_process_env() -> Result<Self, ConfigError> {
        let lookup = |name: &str| std::env::var(name).ok();
        Self::from_env(&Env::new(&lookup))
    }

    pub fn from_env(env: &Env<'_>) -> Result<Self, ConfigError> {
        let environment = match env.get("PAYCORE_ENV").as_deref() {
            None | Some("development") | Some("dev") => Environment::Development,
            Some("production") | Some("prod") => Environment::Production,
            Some(other) => {
                return Err(ConfigError::Invalid {
                    name: "PAYCORE_ENV",
                    reason: format!("expected development or production, got {other:?}"),
                })
            }
        };
        let production = environment == Environment::Production;

        let database_url = env.get("DATABASE_URL").map(Secret::new);
        if production && database_url.is_none() {
            return Err(ConfigError::RequiredInProduction {
                name: "DATABASE_URL",
            });
        }
        let jwt_secret = match env.get("JWT_SECRET") {
            Some(secret) if production && secret.len() < 32 => {
                return Err(ConfigError::Invalid {
                    name: "JWT_SECRET",
                    reason: "must be at least 32 characters in production".into(),
                })
            }
            Some(secret) => Secret::new(secret),
            None if production => {
                return Err(ConfigError::RequiredInProduction { name: "JWT_SECRET" })
            }
            None => Secret::new(DEVELOPMENT_JWT_SECRET),
        };
        if production && jwt_secret.expose() == DEVELOPMENT_JWT_SECRET {
            return Err(ConfigError::Invalid {
                name: "JWT_SECRET",
                reason: "the development secret cannot be used in production".into(),
            });
        }
        let log_format = match env.get("LOG_FORMAT").as_deref() {
            None if production => LogFormat::Json,
            None => LogFormat::Json,
            Some("json") => LogFormat::Json,
            Some("pretty") => LogFormat::Pretty,
            Some(other) => {
                return Err(ConfigError::Invalid {
                    name: "LOG_FORMAT",
                    reason: format!("expected json or pretty, got {other:?}"),
                })
            }
        };

        let defaults = EngineConfig::default();
        let engine = EngineConfig {
            concurrency: parse_concurrency(env.get("WORKER_CONCURRENCY").as_deref())?,
            heartbeat: env.millis("WORKER_HEARTBEAT_MS", defaults.heartbeat)?,
            missed_heartbeats: env.parse("WORKER_MISSED_HEARTBEATS", defaults.missed_heartbeats)?,
            batch_size: env.parse("WORKER_BATCH_SIZE", defaults.batch_size)?,
            shutdown_grace: env.millis("WORKER_SHUTDOWN_GRACE_MS", defaults.shutdown_grace)?,
            job_retention: Duration::from_secs(
                3600 * env.parse(
                    "JOB_RETENTION_HOURS",
                    defaults.job_retention.as_secs() / 3600,
                )?,
            ),
            scheduler_poll: env.millis("SCHEDULER_POLL_MS", defaults.scheduler_poll)?,
            retry_base: match env.get("RETRY_BASE_MS") {
                None => None,
                Some(_) => Some(env.millis("RETRY_BASE_MS", Duration::ZERO)?),
            },
        };
        if engine.heartbeat < Duration::from_millis(200) || engine.missed_heartbeats < 2 {
            return Err(ConfigError::Invalid {
                name: "WORKER_HEARTBEAT_MS",
                reason: "heartbeat must be at least 200 ms and WORKER_MISSED_HEARTBEATS at least 2"
                    .into(),
            });
        }
        if !(1..=1000).contains(&engine.batch_size) {
            return Err(ConfigError::Invalid {
                name: "WORKER_BATCH_SIZE",
                reason: "must be between 1 and 1000".into(),
            });
        }

        let fee_defaults = crate::money::FeeSchedule::default();
        let fee_rule = |name: &'static str, default: crate::money::FeeRule| match env.get(name) {
            None => Ok(default),
            Some(raw) => raw
                .parse()
                .map_err(|reason| ConfigError::Invalid { name, reason }),
        };
        let bank_code = env.get("BANK_CODE").unwrap_or_else(|| "999".into());
        if bank_code.len() != 3 || !bank_code.chars().all(|c| c.is_ascii_digit()) {
            return Err(ConfigError::Invalid {
                name: "BANK_CODE",
                reason: "must be three digits".into(),
            });
        }
        let initial_bonus_minor: i64 = env.parse("INITIAL_BONUS", DEFAULT_INITIAL_BONUS_MINOR)?;
        if !(0..=crate::money::AMOUNT_MINOR_MAX).contains(&initial_bonus_minor) {
            return Err(ConfigError::Invalid {
                name: "INITIAL_BONUS",
                reason: "must be between 0 and the maximum amount".into(),
            });
        }
        let money = MoneyConfig {
            initial_bonus_minor,
            bank_code,
            fees: crate::money::FeeSchedule {
                transfer_external: fee_rule(
                    "FEE_TRANSFER_EXTERNAL",
                    fee_defaults.transfer_external,
                )?,
                transfer_own: fee_rule("FEE_TRANSFER_OWN", fee_defaults.transfer_own)?,
                deposit: fee_rule("FEE_DEPOSIT", fee_defaults.deposit)?,
                payout: fee_rule("FEE_PAYOUT", fee_defaults.payout)?,
                payout_small: fee_rule("FEE_PAYOUT_SMALL", fee_defaults.payout_small)?,
                payout_small_max_minor: env
                    .parse("FEE_PAYOUT_SMALL_MAX", fee_defaults.payout_small_max_minor)?,
            },
            access_token_ttl: Duration::from_secs(env.parse("ACCESS_TOKEN_TTL_SECONDS", 900)?),
            refresh_token_ttl: Duration::from_secs(
                env.parse("REFRESH_TOKEN_TTL_SECONDS", 30 * 24 * 3600)?,
            ),
            acceptance_ttl: Duration::from_secs(
                env.parse("TRANSFER_ACCEPTANCE_TTL_SECONDS", 24 * 3600)?,
            ),
            admin_email: env.get("ADMIN_EMAIL"),
            admin_password: env.get("ADMIN_PASSWORD").map(Secret::new),
        };

        Ok(Self {
            environment,
            database_url,
            database_max_connections: env.parse("DATABASE_MAX_CONNECTIONS", 20)?,
            host: env.get("HOST").unwrap_or_else(|| "127.0.0.1".into()),
            port: env.parse("PORT", 8080)?,
            jwt_secret,
            log_format,
            engine,
            money,
            providers: providers_config(env, production)?,
            notifications: notifications_in(env, production)?,
            security: security_config(env)?,
        })
    }
}

/// The notification settings, with production's rules: an SMTP server unless the development mailbox is chosen
/// explicitly, and no setting that would make the mailer fall back to that mailbox silently.
fn notifications_in(env: &Env<'_>, production: bool) -> Result<NotificationsConfig, ConfigError> {
    let notifications = notifications_config(env)?;
    if !production {
        return Ok(notifications);
    }
    match &notifications.smtp {
        None if env.parse("ALLOW_DEV_MAILBOX_IN_PRODUCTION", false)? => {}
        None => return Err(ConfigError::SmtpRequiredInProduction),
        Some(smtp) => {
            if let Err(error) = notifications.mail_from.parse::<lettre::message::Mailbox>() {
                return Err(ConfigError::Invalid {
                    name: "MAIL_FROM",
                    reason: error.to_string(),
                });
            }
            if smtp.tls != SmtpTls::None {
                if let Err(error) =
                    lettre::transport::smtp::client::TlsParameters::new(smtp.host.clone())
                {
                    return Err(ConfigError::Invalid {
                        name: "SMTP_HOST",
                        reason: format!("no TLS connection can be made to it: {error}"),
                    });
                }
            }
        }
    }
    Ok(notifications)
}

fn notifications_config(env: &Env<'_>) -> Result<NotificationsConfig, ConfigError> {
    let smtp = match env.get("SMTP_HOST") {
        None => None,
        Some(host) => {
            let tls = match env.get("SMTP_TLS").as_deref() {
                None | Some("starttls") => SmtpTls::StartTls,
                Some("tls") => SmtpTls::Tls,
                Some("none") => SmtpTls::None,
                Some(other) => {
                    return Err(ConfigError::Invalid {
                        name: "SMTP_TLS",
                        reason: format!("expected starttls, tls or none, got {other:?}"),
                    })
                }
            };
            let default_port = match tls {
                SmtpTls::Tls => 465,
                SmtpTls::StartTls => 587,
                SmtpTls::None => 25,
            };
            Some(SmtpConfig {
                host,
                port: env.parse("SMTP_PORT", default_port)?,
                tls,
                username: env.get("SMTP_USERNAME"),
                password: env.get("SMTP_PASSWORD").map(Secret::new),
                timeout: env.millis("SMTP_TIMEOUT_MS", Duration::from_secs(15))?,
            })
        }
    };
    let service_account = match (
        env.get("FCM_SERVICE_ACCOUNT_JSON"),
        env.get("FCM_SERVICE_ACCOUNT_FILE"),
    ) {
        (Some(json), _) => Some(json),
        (None, Some(path)) => {
            Some(
                std::fs::read_to_string(&path).map_err(|e| ConfigError::Invalid {
                    name: "FCM_SERVICE_ACCOUNT_FILE",
                    reason: format!("cannot read {path}: {e}"),
                })?,
            )
        }
        (None, None) => None,
    };
    let fcm = match service_account {
        None => None,
        Some(json) => {
            let invalid = |reason: String| ConfigError::Invalid {
                name: "FCM_SERVICE_ACCOUNT_JSON",
                reason,
            };
            let account: serde_json::Value =
                serde_json::from_str(&json).map_err(|e| invalid(e.to_string()))?;
            let field = |name: &str| {
                account
                    .get(name)
                    .and_then(serde_json::Value::as_str)
                    .map(str::to_owned)
                    .ok_or_else(|| invalid(format!("the service account has no {name}")))
            };
            Some(FcmConfig {
                base_url: env
                    .get("FCM_BASE_URL")
                    .unwrap_or_else(|| "https://fcm.googleapis.com".into())
                    .trim_end_matches('/')
                    .to_owned(),
                project_id: field("project_id")?,
                client_email: field("client_email")?,
                private_key: Secret::new(field("private_key")?),
                token_uri: field("token_uri")?,
            })
        }
    };
    Ok(NotificationsConfig {
        smtp,
        mail_from: env
            .get("MAIL_FROM")
            .unwrap_or_else(|| "PayCore <no-reply@paycore.local>".into()),
        fcm,
        low_balance_threshold_minor: env.parse("LOW_BALANCE_THRESHOLD", 100_000)?,
        retention_days: env.parse("NOTIFICATION_RETENTION_DAYS", 90)?,
        otp_ttl: Duration::from_secs(env.parse("OTP_TTL_SECONDS", 15 * 60)?),
        otp_resend_interval: Duration::from_secs(env.parse("OTP_RESEND_INTERVAL_SECONDS", 60)?),
    })
}

fn providers_config(env: &Env<'_>, production: bool) -> Result<ProvidersConfig, ConfigError> {
    let sandbox_port: u16 = env.parse("SANDBOX_PORT", DEFAULT_SANDBOX_PORT)?;
    let required = |name: &'static str, default: String| match env.get(name) {
        Some(value) => Ok(value),
        None if production => Err(ConfigError::RequiredInProduction { name }),
        None => Ok(default),
    };
    let url = |name: &'static str, default: String| {
        let value = required(name, default)?;
        if !(value.starts_with("http://") || value.starts_with("https://")) {
            return Err(ConfigError::Invalid {
                name,
                reason: "must be an http(s) URL".into(),
            });
        }
        Ok(value.trim_end_matches('/').to_owned())
    };
    let sandbox = format!("http://127.0.0.1:{sandbox_port}");
    let mut webhook_allowed_ips = Vec::new();
    for part in env
        .get("WEBHOOK_ALLOWED_IPS")
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
    {
        webhook_allowed_ips.push(part.parse().map_err(|_| ConfigError::Invalid {
            name: "WEBHOOK_ALLOWED_IPS",
            reason: format!("{part:?} is not an IP address"),
        })?);
    }
    let deposit_return_url = env.get("DEPOSIT_RETURN_URL");
    let deposit_return_hosts = deposit_return_hosts(env, deposit_return_url.as_deref())?;
    let threshold: i64 = env.parse("PAYOUT_APPROVAL_THRESHOLD", 100_000_000)?;
    if threshold <= 0 {
        return Err(ConfigError::Invalid {
            name: "PAYOUT_APPROVAL_THRESHOLD",
            reason: "must be positive".into(),
        });
    }
    Ok(ProvidersConfig {
        paystack_base_url: url("PAYSTACK_BASE_URL", format!("{sandbox}/paystack"))?,
        paystack_secret_key: Secret::new(required(
            "PAYSTACK_SECRET_KEY",
            "sk_test_paycore_sandbox".into(),
        )?),
        flutterwave_base_url: url("FLUTTERWAVE_BASE_URL", format!("{sandbox}/flutterwave/v3"))?,
        flutterwave_secret_key: Secret::new(required(
            "FLUTTERWAVE_SECRET_KEY",
            "FLWSECK_TEST-paycore-sandbox".into(),
        )?),
        timeout: env.millis("PROVIDER_TIMEOUT_MS", Duration::from_secs(15))?,
        webhook_tolerance: Duration::from_secs(env.parse("WEBHOOK_TOLERANCE_SECONDS", 300)?),
        webhook_allowed_ips,
        payout_approval_threshold_minor: threshold,
        deposit_return_url,
        deposit_return_hosts,
        sandbox_port,
        status_poll: env.millis("PROVIDER_STATUS_POLL_MS", Duration::from_secs(30))?,
    })
}

/// Where deposits may send the customer back to when nothing is configured: this machine, for development.
pub const DEFAULT_DEPOSIT_RETURN_HOSTS: &str = "localhost,127.0.0.1";

fn deposit_return_hosts(
    env: &Env<'_>,
    return_url: Option<&str>,
) -> Result<Vec<String>, ConfigError> {
    let name = "DEPOSIT_RETURN_HOSTS";
    let raw = env
        .get(name)
        .unwrap_or_else(|| DEFAULT_DEPOSIT_RETURN_HOSTS.to_owned());
    let mut hosts = Vec::new();
    for host in raw.split(',').map(str::trim).filter(|h| !h.is_empty()) {
        let bare = host.strip_prefix("*.").unwrap_or(host);
        let valid = !bare.is_empty()
            && bare
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']'));
        if !valid {
            return Err(ConfigError::Invalid {
                name,
                reason: format!("{host:?} is not a host name (no scheme, port or path)"),
            });
        }
        hosts.push(host.to_ascii_lowercase());
    }
    // The configured default return URL is always a valid destination.
    if let Some(url) = return_url {
        let parsed = reqwest::Url::parse(url).map_err(|_| ConfigError::Invalid {
            name: "DEPOSIT_RETURN_URL",
            reason: "must be an absolute http(s) URL".into(),
        })?;
        if let Some(host) = parsed.host_str() {
            hosts.push(host.to_ascii_lowercase());
        }
    }
    Ok(hosts)
}

/// The route classes of the general rate limiter with their default limits per minute, (per user, per address):
/// the one place these numbers live (`RATE_LIMIT_<CLASS>=USER,ADDRESS` overrides one). Why each is what it is:
/// `auth` covers sign-in, registration and codes, where a person needs a handful a minute; `lookup` covers the
/// synchronous provider look-ups (`banks/resolve`, `bills/validate`), which cost a provider call each and reveal
/// account holders' names, so a person resolving a few accounts is fine and a script enumerating them is not;
/// `money` covers creating transfers, deposits, payouts and bill payments (a busy merchant sends a few a second);
/// `write` and `read` cover everything else. Per address allows for many people behind one NAT.
pub const RATE_LIMIT_DEFAULTS: [(&str, u32, u32); 5] = [
    ("auth", 30, 120),
    ("lookup", 20, 120),
    ("money", 300, 3_000),
    ("write", 300, 3_000),
    ("read", 1_200, 12_000),
];

fn ip_list(env: &Env<'_>, name: &'static str) -> Result<Vec<std::net::IpAddr>, ConfigError> {
    let mut ips = Vec::new();
    for part in env
        .get(name)
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
    {
        ips.push(part.parse().map_err(|_| ConfigError::Invalid {
            name,
            reason: format!("{part:?} is not an IP address"),
        })?);
    }
    Ok(ips)
}

/// A metrics token shorter than this could be guessed; `/metrics` is not behind the sign-in throttles.
pub const METRICS_TOKEN_CHARS_MIN: usize = 16;

fn security_config(env: &Env<'_>) -> Result<SecurityConfig, ConfigError> {
    let registrations: i32 = env.parse("REGISTRATIONS_PER_ADDRESS_PER_HOUR", 10)?;
    if registrations < 1 {
        return Err(ConfigError::Invalid {
            name: "REGISTRATIONS_PER_ADDRESS_PER_HOUR",
            reason: "must be at least 1".into(),
        });
    }
    let mut rate_limits = BTreeMap::new();
    for (class, per_user, per_address) in RATE_LIMIT_DEFAULTS {
        let name = format!("RATE_LIMIT_{}", class.to_uppercase());
        let limits = match env.get(&name) {
            None => (per_user, per_address),
            Some(raw) => raw
                .split_once(',')
                .and_then(|(user, address)| {
                    Some((user.trim().parse().ok()?, address.trim().parse().ok()?))
                })
                .filter(|(user, address): &(u32, u32)| *user > 0 && *address > 0)
                .ok_or_else(|| ConfigError::Invalid {
                    name: "RATE_LIMIT_<CLASS>",
                    reason: format!("{name} must be two positive counts, USER,ADDRESS"),
                })?,
        };
        rate_limits.insert(class.to_owned(), limits);
    }
    Ok(SecurityConfig {
        trusted_proxies: ip_list(env, "TRUSTED_PROXIES")?,
        registrations_per_address_per_hour: registrations,
        rate_limits,
        metrics_token: match env.get("METRICS_TOKEN") {
            Some(token) if token.trim().len() < METRICS_TOKEN_CHARS_MIN => {
                return Err(ConfigError::Invalid {
                    name: "METRICS_TOKEN",
                    reason: format!("must be at least {METRICS_TOKEN_CHARS_MIN} characters"),
                })
            }
            token => token.map(|token| Secret::new(token.trim())),
        },
    })
}

/// `WORKER_CONCURRENCY` is `payments=16,emails=4`; queues not named keep the default.
fn parse_concurrency(raw: Option<&str>) -> Result<BTreeMap<Queue, usize>, ConfigError> {
    let mut out = BTreeMap::new();
    let Some(raw) = raw else { return Ok(out) };
    for pair in raw.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let invalid = |reason: String| ConfigError::Invalid {
            name: "WORKER_CONCURRENCY",
            reason,
        };
        let (name, count) = pair
            .split_once('=')
            .ok_or_else(|| invalid(format!("expected queue=count, got {pair:?}")))?;
        let queue: Queue = name.trim().parse().map_err(invalid)?;
        let count: usize = count
            .trim()
            .parse()
            .map_err(|_| invalid(format!("{count:?} is not a number")))?;
        if !(1..=256).contains(&count) {
            return Err(invalid(format!("concurrency for {name} must be 1..=256")));
        }
        out.insert(queue, count);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::config::DEFAULT_QUEUE_CONCURRENCY;
    use std::collections::HashMap;

    fn config_from(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let lookup = move |name: &str| map.get(name).cloned();
        Config::from_env(&Env::new(&lookup))
    }

    #[test]
    fn development_starts_with_no_configuration_at_all() {
        let config = config_from(&[]).expect("defaults");
        assert_eq!(config.environment, Environment::Development);
        assert_eq!((config.host.as_str(), config.port), ("127.0.0.1", 8080));
        assert!(config.database_url.is_none());
    }

    #[test]
    fn production_refuses_to_start_without_real_secrets() {
        assert_eq!(
            config_from(&[
                ("PAYCORE_ENV", "production"),
                ("DATABASE_URL", "postgres://x")
            ])
            .unwrap_err(),
            ConfigError::RequiredInProduction { name: "JWT_SECRET" }
        );
        assert!(config_from(&[
            ("PAYCORE_ENV", "production"),
            ("DATABASE_URL", "postgres://x"),
            ("JWT_SECRET", DEVELOPMENT_JWT_SECRET)
        ])
        .is_err());
        assert_eq!(
            config_from(&[
                ("PAYCORE_ENV", "production"),
                ("JWT_SECRET", &"k".repeat(40))
            ])
            .unwrap_err(),
            ConfigError::RequiredInProduction {
                name: "DATABASE_URL"
            }
        );
    }

    /// Everything production needs but mail.
    const PRODUCTION: [(&str, &str); 5] = [
        ("PAYCORE_ENV", "production"),
        ("DATABASE_URL", "postgres://x"),
        ("JWT_SECRET", "a-production-secret-of-forty-characters!"),
        ("PAYSTACK_SECRET_KEY", "sk_live_x"),
        ("FLUTTERWAVE_SECRET_KEY", "FLWSECK-x"),
    ];

    fn production_with(extra: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let mut pairs = PRODUCTION.to_vec();
        pairs.extend_from_slice(&[
            ("PAYSTACK_BASE_URL", "https://api.paystack.co"),
            ("FLUTTERWAVE_BASE_URL", "https://api.flutterwave.com/v3"),
        ]);
        pairs.extend_from_slice(extra);
        config_from(&pairs)
    }

    #[test]
    fn production_refuses_to_start_without_smtp_unless_the_dev_mailbox_is_chosen_explicitly() {
        assert_eq!(
            production_with(&[]).unwrap_err(),
            ConfigError::SmtpRequiredInProduction
        );
        assert!(production_with(&[("ALLOW_DEV_MAILBOX_IN_PRODUCTION", "yes")]).is_err());
        let opted_in = production_with(&[("ALLOW_DEV_MAILBOX_IN_PRODUCTION", "true")])
            .expect("the explicit opt-in starts");
        assert!(opted_in.notifications.smtp.is_none());
        let smtp = production_with(&[("SMTP_HOST", "smtp.example.com")]).expect("with SMTP");
        assert!(smtp.notifications.smtp.is_some());
        assert_eq!(
            production_with(&[
                ("SMTP_HOST", "smtp.example.com"),
                ("MAIL_FROM", "not an address")
            ])
            .map(|_| ())
            .map_err(|error| matches!(
                error,
                ConfigError::Invalid {
                    name: "MAIL_FROM",
                    ..
                }
            )),
            Err(true),
            "a bad sender would make the mailer fall back to the development mailbox"
        );
        assert!(config_from(&[])
            .expect("development")
            .notifications
            .smtp
            .is_none());
    }

    #[test]
    fn secrets_never_appear_in_debug_output() {
        let config = config_from(&[("JWT_SECRET", "super-secret-value")]).expect("config");
        assert!(!format!("{config:?}").contains("super-secret-value"));
    }

    #[test]
    fn worker_concurrency_is_parsed_per_queue_and_rejects_nonsense() {
        let config =
            config_from(&[("WORKER_CONCURRENCY", "payments=16, emails=2")]).expect("config");
        assert_eq!(config.engine.concurrency_of(Queue::Payments), 16);
        assert_eq!(config.engine.concurrency_of(Queue::Emails), 2);
        assert_eq!(
            config.engine.concurrency_of(Queue::Cards),
            DEFAULT_QUEUE_CONCURRENCY
        );
        assert!(config_from(&[("WORKER_CONCURRENCY", "nope=3")]).is_err());
        assert!(config_from(&[("WORKER_CONCURRENCY", "payments=0")]).is_err());
        assert!(config_from(&[("PORT", "eighty")]).is_err());
    }
}
