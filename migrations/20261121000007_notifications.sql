-- Notifications: per-user channel preferences, one-time codes, the in-app inbox, push devices and the
-- development mailbox.

alter table app_user
    add column email_verified_at timestamptz,
    add column two_step_login    boolean not null default false,
    add column notify_email      boolean not null default true,
    add column notify_push       boolean not null default true,
    add column notify_in_app     boolean not null default true;

-- One-time codes (e-mail verification, password reset, two-step login). Only an HMAC of the code is stored; a code
-- is used at most once, expires, and locks after too many wrong tries.
create table otp_code (
    otp_id      uuid primary key,
    user_id     uuid        not null references app_user (user_id),
    purpose     text        not null,
    code_hash   text        not null,
    attempts    integer     not null default 0,
    created_at  timestamptz not null default now(),
    expires_at  timestamptz not null,
    used_at     timestamptz,
    constraint otp_code_purpose_known check (purpose in ('email_verification', 'password_reset', 'login'))
);
create index otp_code_user_idx on otp_code (user_id, purpose, created_at desc);

-- The in-app inbox. `announced_at` records that the real-time stream was told.
create table notification (
    notification_id uuid primary key,
    user_id      uuid        not null references app_user (user_id),
    kind         text        not null,
    title        text        not null,
    body         text        not null,
    data         jsonb       not null default '{}',
    operation_id uuid,
    read_at      timestamptz,
    announced_at timestamptz,
    created_at   timestamptz not null default now()
);
create index notification_user_idx on notification (user_id, created_at desc, notification_id desc);
create index notification_unread_idx on notification (user_id) where read_at is null;
create index notification_unannounced_idx on notification (operation_id) where announced_at is null;

-- Push devices (FCM registration tokens).
create table push_device (
    device_id    uuid primary key,
    user_id      uuid        not null references app_user (user_id),
    token        text        not null unique,
    platform     text        not null,
    created_at   timestamptz not null default now(),
    last_seen_at timestamptz not null default now(),
    constraint push_device_platform_known check (platform in ('android', 'ios', 'web')),
    constraint push_device_token_length check (length(token) between 1 and 4096)
);
create index push_device_user_idx on push_device (user_id);

-- Without SMTP configured, mail is delivered here for admins to read.
create table dev_mailbox (
    message_id  bigserial primary key,
    to_address  text        not null,
    subject     text        not null,
    text_body   text        not null,
    html_body   text        not null,
    template    text        not null,
    created_at  timestamptz not null default now()
);
