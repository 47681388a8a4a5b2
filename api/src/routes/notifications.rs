//! `/api/v1/notifications` (the in-app inbox and channel preferences), `/api/v1/devices` (push registration),
//! `/api/v1/events` (the real-time stream) and `/api/v1/admin/mailbox` (the development mailbox).

use std::time::Duration;

use futures::{stream::BoxStream, StreamExt};
use paycore_jobs::notify::email;
use poem::web::sse::Event as SseEvent;
use poem_openapi::{
    param::{Path, Query},
    payload::{EventStream, Json},
    ApiResponse, Object, OpenApi,
};
use uuid::Uuid;

use super::{list_limit, parse_id, ApiTag, NoContent};
use crate::payload::Body;
use crate::{
    error::{ApiError, ApiResult},
    security::BearerAuth,
    AppState,
};

pub struct NotificationsApi {
    pub state: AppState,
}

/// A silent comment line this often keeps proxies from closing an idle stream.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

#[derive(Debug, Clone, Object, sqlx::FromRow)]
pub struct NotificationBody {
    pub notification_id: Uuid,
    /// e.g. transfer_received, deposit_credited, payout_result, bill_receipt, low_balance, new_device.
    pub kind: String,
    pub title: String,
    pub body: String,
    pub data: serde_json::Value,
    #[oai(nullable)]
    pub operation_id: Option<Uuid>,
    #[oai(nullable)]
    pub read_at: Option<chrono::DateTime<chrono::Utc>>,
    pub created_at: chrono::DateTime<chrono::Utc>,
}

#[derive(Debug, Clone, Object)]
pub struct NotificationList {
    pub data: Vec<NotificationBody>,
    pub has_more: bool,
    pub unread_count: i64,
}

#[derive(Debug, Clone, Object)]
pub struct UnreadCount {
    pub unread_count: i64,
}

#[derive(Debug, Clone, Object)]
pub struct ReadAll {
    /// How many were marked read.
    pub marked: i64,
}

#[derive(Debug, Clone, Object)]
pub struct Preferences {
    pub email: bool,
    pub push: bool,
    pub in_app: bool,
}

#[derive(Debug, Clone, Object)]
pub struct PreferencesBody {
    pub email: bool,
    pub push: bool,
    pub in_app: bool,
    /// Security e-mail (codes, password resets, new-device sign-ins) is always sent.
    pub security_email_always_on: bool,
}

#[derive(Debug, Clone, Object)]
pub struct RegisterDeviceRequest {
    /// The FCM registration token.
    pub token: String,
    /// android, ios or web.
    pub platform: String,
}

#[derive(Debug, Clone, Object, sqlx::FromRow)]
pub struct DeviceBody {
    pub device_id: Uuid,
    pub platform: String,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub last_seen_at: chrono::DateTime<chrono::Utc>,
}

#[derive(Debug, Clone, Object)]
pub struct DeviceList {
    pub data: Vec<DeviceBody>,
}

#[derive(ApiResponse)]
pub enum DeviceRegistered {
    /// Registered (or refreshed, when the token was known).
    #[oai(status = 201)]
    Created(Json<DeviceBody>),
}

/// One event on the real-time stream.
#[derive(Debug, Clone, Object)]
pub struct StreamEvent {
    /// ready (the stream is live), operation or notification.
    #[oai(rename = "type")]
    pub kind: String,
    #[oai(nullable)]
    pub operation_id: Option<Uuid>,
    #[oai(nullable)]
    pub status: Option<String>,
    #[oai(nullable)]
    pub notification_id: Option<Uuid>,
    #[oai(nullable)]
    pub notification_kind: Option<String>,
}

#[derive(Debug, Clone, Object)]
pub struct MailBody {
    pub message_id: i64,
    pub to: String,
    pub subject: String,
    pub template: String,
    pub text_body: String,
    pub html_body: String,
    pub created_at: chrono::DateTime<chrono::Utc>,
}

#[derive(Debug, Clone, Object)]
pub struct MailList {
    pub data: Vec<MailBody>,
}

fn not_found() -> ApiError {
    ApiError::not_found("notification_not_found", "No such notification.")
}

#[OpenApi(prefix_path = "/api/v1", tag = "ApiTag::Notifications")]
impl NotificationsApi {
    /// The caller's in-app notifications, newest first (`unread=true` for unread only).
    #[oai(path = "/notifications", method = "get")]
    async fn list(
        &self,
        caller: BearerAuth,
        unread: Query<Option<bool>>,
        #[oai(validator(minimum(value = "1"), maximum(value = "100")))] limit: Query<Option<i64>>,
        #[oai(validator(
            pattern = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
        ))]
        starting_after: Query<Option<String>>,
    ) -> ApiResult<Json<NotificationList>> {
        let limit = list_limit(limit.0)?;
        let after = starting_after
            .0
            .as_deref()
            .map(|id| parse_id(id, "starting_after"))
            .transpose()?;
        let user_id = caller.0.user_id;
        let rows: Vec<NotificationBody> = sqlx::query_as!(
            NotificationBody,
            "select notification_id, kind, title, body, data, operation_id, read_at, created_at
             from notification where user_id = $1 and (not $2 or read_at is null)
               and ($3::uuid is null or (created_at, notification_id) <
                    (select created_at, notification_id from notification where notification_id = $3 and user_id = $1))
             order by created_at desc, notification_id desc limit $4",
            user_id,
            unread.0.unwrap_or(false),
            after,
            limit + 1,
        )
        .fetch_all(&self.state.pool)
        .await?;
        let has_more = rows.len() as i64 > limit;
        Ok(Json(NotificationList {
            data: rows.into_iter().take(limit as usize).collect(),
            has_more,
            unread_count: self.unread(user_id).await?,
        }))
    }

    /// How many of the caller's notifications are unread.
    #[oai(path = "/notifications/unread-count", method = "get")]
    async fn unread_count(&self, caller: BearerAuth) -> ApiResult<Json<UnreadCount>> {
        Ok(Json(UnreadCount {
            unread_count: self.unread(caller.0.user_id).await?,
        }))
    }

    /// Mark one notification read.
    #[oai(path = "/notifications/:notification_id/read", method = "post")]
    async fn mark_read(
        &self,
        caller: BearerAuth,
        #[oai(validator(
            pattern = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
        ))]
        notification_id: Path<String>,
    ) -> ApiResult<NoContent> {
        let id = parse_id(&notification_id, "notification_id").map_err(|_| not_found())?;
        let found = sqlx::query!(
            "update notification set read_at = coalesce(read_at, now()) where notification_id = $1 and user_id = $2",
            id,
            caller.0.user_id,
        )
        .execute(&self.state.pool)
        .await?
        .rows_affected();
        if found == 0 {
            return Err(not_found());
        }
        Ok(NoContent::Done)
    }

    /// Mark every notification read.
    #[oai(path = "/notifications/read-all", method = "post")]
    async fn mark_all_read(&self, caller: BearerAuth) -> ApiResult<Json<ReadAll>> {
        let marked = sqlx::query!(
            "update notification set read_at = now() where user_id = $1 and read_at is null",
            caller.0.user_id,
        )
        .execute(&self.state.pool)
        .await?
        .rows_affected();
        Ok(Json(ReadAll {
            marked: i64::try_from(marked).unwrap_or(i64::MAX),
        }))
    }

    /// Delete a notification.
    #[oai(path = "/notifications/:notification_id", method = "delete")]
    async fn delete(
        &self,
        caller: BearerAuth,
        #[oai(validator(
            pattern = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
        ))]
        notification_id: Path<String>,
    ) -> ApiResult<NoContent> {
        let id = parse_id(&notification_id, "notification_id").map_err(|_| not_found())?;
        let deleted = sqlx::query!(
            "delete from notification where notification_id = $1 and user_id = $2",
            id,
            caller.0.user_id,
        )
        .execute(&self.state.pool)
        .await?
        .rows_affected();
        if deleted == 0 {
            return Err(not_found());
        }
        Ok(NoContent::Done)
    }

    /// Which channels the caller receives notifications on.
    #[oai(path = "/notifications/preferences", method = "get")]
    async fn preferences(&self, caller: BearerAuth) -> ApiResult<Json<PreferencesBody>> {
        let chosen = sqlx::query!(
            "select notify_email, notify_push, notify_in_app from app_user where user_id = $1",
            caller.0.user_id,
        )
        .fetch_one(&self.state.pool)
        .await?;
        Ok(Json(PreferencesBody {
            email: chosen.notify_email,
            push: chosen.notify_push,
            in_app: chosen.notify_in_app,
            security_email_always_on: true,
        }))
    }

    /// Choose the channels (security e-mail cannot be switched off).
    #[oai(path = "/notifications/preferences", method = "put")]
    async fn set_preferences(
        &self,
        caller: BearerAuth,
        body: Body<Preferences>,
    ) -> ApiResult<Json<PreferencesBody>> {
        sqlx::query!(
            "update app_user set notify_email = $2, notify_push = $3, notify_in_app = $4, updated_at = now()
             where user_id = $1",
            caller.0.user_id,
            body.email,
            body.push,
            body.in_app,
        )
        .execute(&self.state.pool)
        .await?;
        Ok(Json(PreferencesBody {
            email: body.email,
            push: body.push,
            in_app: body.in_app,
            security_email_always_on: true,
        }))
    }

    /// Register a device for push notifications (an FCM registration token). A token registered by another
    /// account moves to this one.
    #[oai(path = "/devices", method = "post")]
    async fn register_device(
        &self,
        caller: BearerAuth,
        body: Body<RegisterDeviceRequest>,
    ) -> ApiResult<DeviceRegistered> {
        let token = body.token.trim();
        if token.is_empty()
            || token.len() > 4096
            || token.chars().any(|c| c.is_whitespace() || c.is_control())
        {
            return Err(ApiError::invalid(
                "invalid_token",
                "The device token must be 1 to 4096 visible characters.",
                Some("token"),
            ));
        }
        if !matches!(body.platform.as_str(), "android" | "ios" | "web") {
            return Err(ApiError::invalid(
                "invalid_platform",
                "The platform is android, ios or web.",
                Some("platform"),
            ));
        }
        let device: DeviceBody = sqlx::query_as!(
            DeviceBody,
            "insert into push_device (device_id, user_id, token, platform) values ($1, $2, $3, $4)
             on conflict (token) do update set user_id = excluded.user_id, platform = excluded.platform,
                 last_seen_at = now()
             returning device_id, platform, created_at, last_seen_at",
            Uuid::now_v7(),
            caller.0.user_id,
            token,
            body.platform,
        )
        .fetch_one(&self.state.pool)
        .await?;
        Ok(DeviceRegistered::Created(Json(device)))
    }

    /// The caller's registered devices.
    #[oai(path = "/devices", method = "get")]
    async fn devices(&self, caller: BearerAuth) -> ApiResult<Json<DeviceList>> {
        let data = sqlx::query_as!(
            DeviceBody,
            "select device_id, platform, created_at, last_seen_at from push_device where user_id = $1
             order by created_at desc",
            caller.0.user_id,
        )
        .fetch_all(&self.state.pool)
        .await?;
        Ok(Json(DeviceList { data }))
    }

    /// Unregister a device.
    #[oai(path = "/devices/:device_id", method = "delete")]
    async fn delete_device(
        &self,
        caller: BearerAuth,
        #[oai(validator(
            pattern = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
        ))]
        device_id: Path<String>,
    ) -> ApiResult<NoContent> {
        let missing = || ApiError::not_found("device_not_found", "No such device.");
        let id = parse_id(&device_id, "device_id").map_err(|_| missing())?;
        let deleted = sqlx::query!(
            "delete from push_device where device_id = $1 and user_id = $2",
            id,
            caller.0.user_id,
        )
        .execute(&self.state.pool)
        .await?
        .rows_affected();
        if deleted == 0 {
            return Err(missing());
        }
        Ok(NoContent::Done)
    }

    /// A server-sent-events stream of the caller's operation status changes and new notifications (never
    /// another user's). The first event, `ready`, says the stream is live. Works across api processes: the events
    /// come from PostgreSQL LISTEN/NOTIFY.
    #[oai(path = "/events", method = "get")]
    async fn events(
        &self,
        caller: BearerAuth,
    ) -> ApiResult<EventStream<BoxStream<'static, StreamEvent>>> {
        let user_id = caller.0.user_id;
        let operations = self.state.events.subscribe();
        let notifications = self.state.events.subscribe_notifications();
        let ready = StreamEvent {
            kind: "ready".into(),
            operation_id: None,
            status: None,
            notification_id: None,
            notification_kind: None,
        };
        let live = futures::stream::unfold(
            (operations, notifications),
            move |(mut operations, mut notifications)| async move {
                let next = loop {
                    tokio::select! {
                        // An operation's status before the notifications about it (they are announced together).
                        biased;
                        event = operations.recv() => match event {
                            Ok(event) if event.owner_id == Some(user_id) => {
                                break StreamEvent {
                                    kind: "operation".into(),
                                    operation_id: Some(event.operation_id),
                                    status: Some(event.status),
                                    notification_id: None,
                                    notification_kind: None,
                                };
                            }
                            Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                            Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
                        },
                        event = notifications.recv() => match event {
                            Ok(event) if event.user_id == user_id => {
                                break StreamEvent {
                                    kind: "notification".into(),
                                    operation_id: None,
                                    status: None,
                                    notification_id: Some(event.notification_id),
                                    notification_kind: Some(event.kind),
                                };
                            }
                            Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                            Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
                        },
                    }
                };
                Some((next, (operations, notifications)))
            },
        );
        let stream = futures::stream::once(async move { ready })
            .chain(live)
            .boxed();
        Ok(EventStream::new(stream)
            .keep_alive(KEEP_ALIVE)
            .to_event(|event| {
                let kind = event.kind.clone();
                SseEvent::message(poem_openapi::types::ToJSON::to_json_string(&event))
                    .event_type(kind)
            }))
    }

    /// The development mailbox: e-mail delivered while no SMTP server is configured (admins).
    #[oai(path = "/admin/mailbox", method = "get", tag = "ApiTag::Admin")]
    async fn mailbox(
        &self,
        caller: BearerAuth,
        to: Query<Option<String>>,
        #[oai(validator(minimum(value = "1"), maximum(value = "100")))] limit: Query<Option<i64>>,
    ) -> ApiResult<Json<MailList>> {
        caller.require_admin_read()?;
        let limit = list_limit(limit.0)?;
        let rows = email::dev_mailbox(&self.state.pool, to.0.as_deref(), limit).await?;
        Ok(Json(MailList {
            data: rows
                .into_iter()
                .map(|m| MailBody {
                    message_id: m.message_id,
                    to: m.to_address,
                    subject: m.subject,
                    template: m.template,
                    text_body: m.text_body,
                    html_body: m.html_body,
                    created_at: m.created_at,
                })
                .collect(),
        }))
    }
}

impl NotificationsApi {
    async fn unread(&self, user_id: Uuid) -> ApiResult<i64> {
        Ok(sqlx::query_scalar!(
            r#"select count(*) as "count!" from notification where user_id = $1 and read_at is null"#,
            user_id,
        )
        .fetch_one(&self.state.pool)
        .await?)
    }
}
