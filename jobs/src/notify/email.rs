//! E-mail: rendered from `templates/email/` (minijinja; each template has `subject`, `text` and HTML `content`
//! blocks over `base.html`) and sent over SMTP with `lettre` (rustls), or, without SMTP configured, delivered to
//! the development mailbox (`dev_mailbox`) that admins read in the admin API.
//!
//! A one-time code arrives sealed (`notify::sealed`): it is opened only to render a message for SMTP. The
//! development mailbox stores its messages rendered with the code hidden, and the sealed code beside them.
//!
//! SMTP failures are classified by their reply: 4xx and connection problems are transient (retried with the
//! `emails` queue's backoff), 5xx (the mailbox does not exist, the message is refused) are permanent.

use std::sync::{Arc, LazyLock};

use lettre::{
    message::{header::ContentType, Mailbox, MultiPart, SinglePart},
    transport::smtp::{authentication::Credentials, client::Tls, client::TlsParameters},
    AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor,
};
use serde::{Deserialize, Serialize};
use sqlx::PgPool;

use super::sealed::{self, SealKey};
use crate::engine::{
    batch::{Completions, Effect},
    enqueue_many_tx, Job, JobContext, JobError, NewJob, Queue,
};
use crate::platform::config::{NotificationsConfig, SmtpTls};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SendEmail {
    pub to: String,
    /// A template in `templates/email/` (without `.html`).
    pub template: String,
    pub context: serde_json::Value,
}

impl Job for SendEmail {
    const KIND: &'static str = "email.send";
    const QUEUE: Queue = Queue::Emails;
}

/// Several e-mails of one committed event in one job: a settlement batch tells both sides of every transfer in
/// it. One job instead of one per message spares the job table a row, a fetch, a completion and an attempt record
/// per e-mail. A message that cannot be sent is not retried inside the batch: it is enqueued as its own
/// [`SendEmail`] job, with that kind's retries, backoff and dead letter, so one bad address neither holds up nor
/// resends the others.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SendEmails {
    pub messages: Vec<SendEmail>,
}

impl Job for SendEmails {
    const KIND: &'static str = "email.send_many";
    const QUEUE: Queue = Queue::Emails;
}

/// The most messages one [`SendEmails`] job carries.
pub const MESSAGES_PER_JOB: usize = 64;

/// SMTP sends in flight at once for one [`SendEmails`] job.
const SMTP_SENDS_IN_FLIGHT: usize = 8;

/// The templates are compiled in, so a running binary always has the set its code expects; a designer edits the
/// files under `templates/email/`.
static TEMPLATES: LazyLock<minijinja::Environment<'static>> = LazyLock::new(|| {
    let mut env = minijinja::Environment::new();
    env.set_auto_escape_callback(|name| {
        if name.ends_with(".html") {
            minijinja::AutoEscape::Html
        } else {
            minijinja::AutoEscape::None
        }
    });
    macro_rules! templates {
        ($($name:literal),* $(,)?) => {
            $(
                if let Err(error) = env.add_template(
                    concat!("email/", $name, ".html"),
                    include_str!(concat!("../../../templates/email/", $name, ".html")),
                ) {
                    tracing::error!(%error, template = $name, "an e-mail template does not compile");
                }
            )*
        };
    }
    templates!(
        "base",
        "email_verification",
        "login_code",
        "password_reset",
        "new_device",
        "password_changed",
        "registration_attempt",
        "transfer_sent",
        "transfer_received",
        "transfer_awaiting_acceptance",
        "deposit_credited",
        "payout_result",
        "bill_receipt",
        "low_balance",
    );
    env
});

/// A rendered e-mail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    pub subject: String,
    pub text: String,
    pub html: String,
}

pub fn render(template: &str, context: &serde_json::Value) -> Result<Rendered, minijinja::Error> {
    let tmpl = TEMPLATES.get_template(&format!("email/{template}.html"))?;
    let mut captured = tmpl.render_captured(context)?;
    let (subject, text) = captured.with_state_mut(|state| {
        Ok::<_, minijinja::Error>((state.render_block("subject")?, state.render_block("text")?))
    })?;
    let subject = subject.split_whitespace().collect::<Vec<_>>().join(" ");
    let text = text.trim().to_owned();
    let html = captured.into_output();
    Ok(Rendered {
        subject,
        text,
        html,
    })
}

/// Where mail goes.
#[derive(Clone)]
pub enum Mailer {
    Smtp {
        transport: Box<AsyncSmtpTransport<Tokio1Executor>>,
        from: Mailbox,
    },
    DevMailbox,
}

impl Mailer {
    pub fn from_config(config: &NotificationsConfig) -> Self {
        let Some(smtp) = &config.smtp else {
            return Mailer::DevMailbox;
        };
        let from: Mailbox = match config.mail_from.parse() {
            Ok(from) => from,
            Err(error) => {
                tracing::error!(%error, "MAIL_FROM is not an address; using the development mailbox");
                return Mailer::DevMailbox;
            }
        };
        let tls = match smtp.tls {
            SmtpTls::None => Tls::None,
            SmtpTls::StartTls | SmtpTls::Tls => match TlsParameters::new(smtp.host.clone()) {
                Ok(parameters) if smtp.tls == SmtpTls::Tls => Tls::Wrapper(parameters),
                Ok(parameters) => Tls::Required(parameters),
                Err(error) => {
                    tracing::error!(%error, "SMTP TLS parameters are invalid; using the development mailbox");
                    return Mailer::DevMailbox;
                }
            },
        };
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&smtp.host)
            .port(smtp.port)
            .tls(tls)
            .timeout(Some(smtp.timeout));
        if let (Some(user), Some(password)) = (&smtp.username, &smtp.password) {
            builder =
                builder.credentials(Credentials::new(user.clone(), password.expose().to_owned()));
        }
        Mailer::Smtp {
            transport: Box::new(builder.build()),
            from,
        }
    }
}

/// Renders `message` for where it goes: over SMTP with its sealed code opened, into the development mailbox with
/// the code hidden (admins read that mailbox).
fn render_for(mailer: &Mailer, key: &SealKey, message: &SendEmail) -> Result<Rendered, JobError> {
    let context = match mailer {
        Mailer::Smtp { .. } => sealed::reveal(key, &message.context)
            .map_err(|e| JobError::permanent("sealed_secret_invalid", e.to_string()))?,
        Mailer::DevMailbox => sealed::hide(&message.context).0,
    };
    render(&message.template, &context)
        .map_err(|e| JobError::permanent("template_error", e.to_string()))
}

/// The `email.send` handler.
pub async fn send(
    ctx: JobContext,
    job: SendEmail,
    mailer: Arc<Mailer>,
    key: Arc<SealKey>,
    completions: Arc<Completions>,
) -> Result<(), JobError> {
    let rendered = render_for(&mailer, &key, &job)?;
    match mailer.as_ref() {
        Mailer::DevMailbox => {
            let effect = dev_mailbox_effect(vec![(job, rendered)], Vec::new());
            completions.complete(ctx, Some(effect)).await
        }
        Mailer::Smtp { transport, from } => {
            smtp_send(transport, from, &job, rendered).await?;
            // Handed over: the run is done (in a batch with the other runs completing now).
            completions.complete(ctx, None).await
        }
    }
}

/// The `email.send_many` handler: renders and sends every message, and in the run's completion enqueues each one
/// that failed as its own `email.send` job.
pub async fn send_many(
    ctx: JobContext,
    job: SendEmails,
    mailer: Arc<Mailer>,
    key: Arc<SealKey>,
    completions: Arc<Completions>,
) -> Result<(), JobError> {
    let mut rendered = Vec::with_capacity(job.messages.len());
    let mut failed = Vec::new();
    for message in job.messages {
        match render_for(&mailer, &key, &message) {
            Ok(output) => rendered.push((message, output)),
            Err(error) => {
                tracing::warn!(%error, template = %message.template, "an e-mail does not render; sending it alone");
                failed.push(message);
            }
        }
    }
    let effect = match mailer.as_ref() {
        Mailer::DevMailbox => Some(dev_mailbox_effect(rendered, failed)),
        Mailer::Smtp { transport, from } => {
            use futures::StreamExt;
            let outcomes: Vec<(SendEmail, Result<(), JobError>)> =
                futures::stream::iter(rendered.into_iter().map(|(message, output)| async move {
                    let outcome = smtp_send(transport, from, &message, output).await;
                    (message, outcome)
                }))
                .buffer_unordered(SMTP_SENDS_IN_FLIGHT)
                .collect()
                .await;
            for (message, outcome) in outcomes {
                if let Err(error) = outcome {
                    tracing::info!(%error, "an e-mail of a batch was not sent; it is retried alone");
                    failed.push(message);
                }
            }
            enqueue_alone_effect(failed)
        }
    };
    completions.complete(ctx, effect).await
}

/// Sends one rendered message over SMTP, classifying a failure as `email.send` retries it.
async fn smtp_send(
    transport: &AsyncSmtpTransport<Tokio1Executor>,
    from: &Mailbox,
    job: &SendEmail,
    rendered: Rendered,
) -> Result<(), JobError> {
    let to: Mailbox = job
        .to
        .parse()
        .map_err(|e| JobError::permanent("invalid_recipient", format!("{e}")))?;
    let message = Message::builder()
        .from(from.clone())
        .to(to)
        .subject(rendered.subject)
        .multipart(
            MultiPart::alternative()
                .singlepart(
                    SinglePart::builder()
                        .header(ContentType::TEXT_PLAIN)
                        .body(rendered.text),
                )
                .singlepart(
                    SinglePart::builder()
                        .header(ContentType::TEXT_HTML)
                        .body(rendered.html),
                ),
        )
        .map_err(|e| JobError::permanent("invalid_message", e.to_string()))?;
    match transport.send(message).await {
        Ok(_) => Ok(()),
        Err(error) if error.is_permanent() => Err(JobError::permanent(
            "email_rejected",
            format!("the mail server refused the message: {error}"),
        )),
        Err(error) => Err(JobError::transient(format!("SMTP: {error}"))),
    }
}

/// Enqueues each of `failed` as its own `email.send` job, in the completing transaction; `None` when none failed.
fn enqueue_alone_effect(failed: Vec<SendEmail>) -> Option<Effect> {
    if failed.is_empty() {
        return None;
    }
    let failed = Arc::new(failed);
    Some(Arc::new(move |conn| {
        let failed = Arc::clone(&failed);
        Box::pin(async move { enqueue_alone_tx(conn, &failed).await })
    }))
}

async fn enqueue_alone_tx(
    conn: &mut sqlx::PgConnection,
    messages: &[SendEmail],
) -> Result<(), sqlx::Error> {
    if messages.is_empty() {
        return Ok(());
    }
    let jobs = messages
        .iter()
        .map(NewJob::new)
        .collect::<Result<Vec<_>, _>>()
        .map_err(crate::engine::enqueue_to_sqlx)?;
    enqueue_many_tx(conn, jobs)
        .await
        .map_err(crate::engine::enqueue_to_sqlx)?;
    Ok(())
}

/// Delivers rendered messages into the development mailbox (one statement), and enqueues `failed` alone, in the
/// transaction that completes the run.
fn dev_mailbox_effect(delivered: Vec<(SendEmail, Rendered)>, failed: Vec<SendEmail>) -> Effect {
    let delivered = Arc::new(delivered);
    let failed = Arc::new(failed);
    Arc::new(move |conn| {
        let (delivered, failed) = (Arc::clone(&delivered), Arc::clone(&failed));
        Box::pin(async move {
            let column = |f: fn(&(SendEmail, Rendered)) -> &str| {
                delivered.iter().map(f).collect::<Vec<&str>>()
            };
            // The bodies were rendered with the code hidden; the sealed code is kept for development's reveal.
            let codes_sealed: Vec<Option<&str>> = delivered
                .iter()
                .map(|(m, _)| {
                    m.context
                        .get(sealed::SEALED_CODE_FIELD)
                        .and_then(serde_json::Value::as_str)
                })
                .collect();
            // `as _`: the macro's check knows no array of `&str` or of nullable elements; the casts type them.
            sqlx::query!(
                "insert into dev_mailbox (to_address, subject, text_body, html_body, template, code_sealed)
                 select m.to_address, m.subject, m.text_body, m.html_body, m.template, m.code_sealed
                 from unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[])
                     as m(to_address, subject, text_body, html_body, template, code_sealed)",
                &column(|(m, _)| &m.to) as _,
                &column(|(_, r)| &r.subject) as _,
                &column(|(_, r)| &r.text) as _,
                &column(|(_, r)| &r.html) as _,
                &column(|(m, _)| &m.template) as _,
                &codes_sealed as _,
            )
            .execute(&mut *conn)
            .await?;
            enqueue_alone_tx(conn, &failed).await
        })
    })
}

/// A development-mailbox message, never with its `code_sealed`, which only the development reveal reads.
#[derive(Debug, Clone, sqlx::FromRow, Serialize)]
pub struct DevMessage {
    pub message_id: i64,
    pub to_address: String,
    pub subject: String,
    pub text_body: String,
    pub html_body: String,
    pub template: String,
    pub created_at: chrono::DateTime<chrono::Utc>,
}

/// The development mailbox, newest first, optionally for one address.
pub async fn dev_mailbox(
    pool: &PgPool,
    to: Option<&str>,
    limit: i64,
) -> Result<Vec<DevMessage>, sqlx::Error> {
    sqlx::query_as!(
        DevMessage,
        "select message_id, to_address, subject, text_body, html_body, template, created_at from dev_mailbox
         where ($1::text is null or lower(to_address) = lower($1))
         order by message_id desc limit $2",
        to,
        limit,
    )
    .fetch_all(pool)
    .await
}

/// The code of development-mailbox message `message_id`, opened: `None` when there is no such message or it
/// carries no code. Only the development-only route calls this (see docs/notifications.md).
pub async fn dev_mailbox_code(
    pool: &PgPool,
    key: &SealKey,
    message_id: i64,
) -> Result<Option<String>, sqlx::Error> {
    let sealed: Option<Option<String>> = sqlx::query_scalar!(
        "select code_sealed from dev_mailbox where message_id = $1",
        message_id,
    )
    .fetch_optional(pool)
    .await?;
    Ok(sealed
        .flatten()
        .and_then(|sealed| sealed::open(key, &sealed).ok()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_template_renders_a_subject_a_text_and_html() {
        let context = serde_json::json!({
            "name": "Ada <script>", "code": "123456", "minutes": 15, "amount": "NGN 5,000.00",
            "fee": "NGN 50.00", "credited": "NGN 4,925.00", "counterparty": "Bayo", "reference": "r",
            "status": "completed", "account_name": "JANE DOE", "bank_name": "GTBank", "reason": "x",
            "biller": "EKEDC Prepaid", "customer_id": "45000000001", "token": "1234-5678", "units": "5 kWh",
            "available": "NGN 10.00", "currency": "NGN", "threshold": "NGN 1,000.00", "ip": "127.0.0.1",
            "user_agent": "curl", "at": "now", "expires_at": "tomorrow", "how": "changed",
            "what": "e-mail address",
        });
        for template in [
            "email_verification",
            "login_code",
            "password_reset",
            "new_device",
            "password_changed",
            "registration_attempt",
            "transfer_sent",
            "transfer_received",
            "transfer_awaiting_acceptance",
            "deposit_credited",
            "payout_result",
            "bill_receipt",
            "low_balance",
        ] {
            let rendered = render(template, &context).expect(template);
            assert!(!rendered.subject.is_empty(), "{template}");
            assert!(
                rendered.text.contains("Ada <script>"),
                "{template}: plain text is not escaped"
            );
            assert!(
                rendered.html.contains("Ada &lt;script&gt;"),
                "{template}: HTML is escaped"
            );
            assert!(!rendered.subject.contains('\n'));
        }
        let receipt = render("bill_receipt", &context).expect("receipt");
        assert!(receipt.text.contains("Token: 1234-5678"));
    }
}
