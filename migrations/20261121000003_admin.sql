-- What admins did: every action taken through the dashboard or the admin API. Append-only.
create table admin_audit (
    admin_audit_id bigserial primary key,
    actor_user_id  uuid        not null references app_user (user_id),
    actor_email    text        not null,
    -- e.g. 'jobs.retry', 'jobs.cancel', 'jobs.discard', 'schedule.run', 'wallet.freeze'
    action         text        not null,
    -- The jobs, schedule or other objects acted on.
    targets        jsonb       not null default '[]'::jsonb,
    detail         jsonb       not null default '{}'::jsonb,
    ip             text,
    created_at     timestamptz not null default now()
);
create index admin_audit_created_idx on admin_audit (created_at desc);

-- Append-only: a record of what admins did must not be editable by an admin (or by a bug).
create function admin_audit_is_append_only() returns trigger
language plpgsql
as $$
begin
    raise exception 'admin_audit is append-only';
end;
$$;

create trigger admin_audit_no_update before update or delete on admin_audit
    for each row execute function admin_audit_is_append_only();

-- Worker processes, as operators think of them: one row per running `paycore-worker` (apalis registers one
-- worker per queue inside it), with its queues and concurrency, refreshed every heartbeat.
create table worker_process (
    instance    text primary key,
    host        text        not null,
    pid         integer     not null,
    queues      jsonb       not null,
    concurrency jsonb       not null,
    started_at  timestamptz not null default now(),
    last_seen   timestamptz not null default now()
);

-- Dashboard sign-ins are sessions too, reached through an HttpOnly cookie instead of a bearer token. The cookie
-- holds a random secret whose SHA-256 is stored here, beside the session's CSRF token.
alter table session add column cookie_hash text, add column csrf_token text;
create unique index session_cookie_unique on session (cookie_hash) where cookie_hash is not null;
