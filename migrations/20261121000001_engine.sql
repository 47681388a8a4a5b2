-- The job engine's own tables, beside apalis-postgres's `apalis` schema.
--
-- apalis owns `apalis.jobs` (the queue rows) and `apalis.workers` (heartbeats). PayCore adds what apalis 1.0
-- lacks: durable operations (the intents a client submitted), a per-attempt history of every job run with its
-- error, cron schedules whose ticks are claimed exactly once across scheduler replicas, and the counter table
-- used by the engine's synthetic probe job.

-- An operation is a durable intent recorded by the API in the same transaction as its job.
create table operation (
    operation_id   uuid primary key,
    kind           text        not null,
    -- The user (or system principal) that owns the operation; every read is authorised against it.
    owner_id       uuid,
    status         text        not null default 'pending',
    -- The parsed request, kept so a handler needs only the operation id as its job argument.
    request        jsonb       not null default '{}'::jsonb,
    result         jsonb,
    failure_code   text,
    failure_message text,
    created_at     timestamptz not null default now(),
    updated_at     timestamptz not null default now(),
    settled_at     timestamptz,
    -- The state machine: pending -> processing -> succeeded | failed | cancelled, with requires_action
    -- (and requires_approval) as waiting states. Terminal statuses carry a settlement time.
    constraint operation_status_known check (status in
        ('pending', 'processing', 'requires_action', 'requires_approval', 'succeeded', 'failed', 'cancelled')),
    constraint operation_failure_has_code check ((status = 'failed') = (failure_code is not null)),
    constraint operation_terminal_is_settled check
        ((status in ('succeeded', 'failed', 'cancelled')) = (settled_at is not null))
);
create index operation_owner_created_idx on operation (owner_id, created_at desc);
create index operation_open_idx on operation (status, created_at) where status in ('pending', 'processing');

-- One row per run of a job: who ran it, when, and how it ended. apalis keeps only the last result; the
-- dashboard and the audit need every error.
create table job_attempt (
    job_attempt_id bigserial primary key,
    job_id         text        not null,
    queue          text        not null,
    kind           text        not null,
    attempt        integer     not null,
    worker         text        not null,
    outcome        text        not null,
    error          text,
    started_at     timestamptz not null,
    finished_at    timestamptz not null default now(),
    -- When the next attempt may run (transient failures and retry-after), for the record.
    retry_at       timestamptz,
    constraint job_attempt_outcome_known check
        (outcome in ('succeeded', 'transient', 'retry_after', 'permanent', 'lease_lost', 'undecodable')),
    constraint job_attempt_error_length check (length(error) <= 4000)
);
create index job_attempt_job_idx on job_attempt (job_id, job_attempt_id);
create index job_attempt_finished_idx on job_attempt (finished_at);

-- Lifecycle actions taken on jobs by people or the engine (retry, cancel, discard, rescue), append-only.
create table job_event (
    job_event_id bigserial primary key,
    job_id       text        not null,
    action       text        not null,
    actor        text        not null,
    detail       text,
    created_at   timestamptz not null default now(),
    constraint job_event_action_known check (action in ('retry', 'cancel', 'discard', 'rescue', 'handback'))
);
create index job_event_job_idx on job_event (job_id, job_event_id);

-- Cron schedules. The scheduler claims a tick by compare-and-set on next_tick_at in the same transaction that
-- enqueues the tick's job, so any number of scheduler replicas fire each tick exactly once.
create table cron_schedule (
    name          text primary key,
    cron_expr     text        not null,
    queue         text        not null,
    kind          text        not null,
    args          jsonb       not null default '{}'::jsonb,
    missed_policy text        not null,
    -- Schedules declared in code are synchronised at scheduler start; others were added by an admin.
    origin        text        not null default 'code',
    enabled       boolean     not null default true,
    next_tick_at  timestamptz not null,
    last_tick_at  timestamptz,
    last_fired_at timestamptz,
    created_at    timestamptz not null default now(),
    updated_at    timestamptz not null default now(),
    constraint cron_schedule_missed_policy_known check
        (missed_policy in ('catch_up_once', 'every_tick', 'skip')),
    constraint cron_schedule_origin_known check (origin in ('code', 'admin'))
);

-- Effects of the engine's synthetic probe job: one counter per key. Used to prove exactly-once effects in
-- tests, and by operators as a canary through a real queue.
create table engine_probe (
    probe_key  text primary key,
    runs       bigint      not null default 0,
    updated_at timestamptz not null default now()
);

-- A job row's payload as JSON, or null when it is not valid JSON (a corrupted or hand-written row). Filters and
-- the dashboard read kinds, operation ids and arguments through it, so one bad row cannot break a listing.
create function job_envelope(payload bytea) returns jsonb
language plpgsql immutable
as $$
begin
    return convert_from(payload, 'UTF8')::jsonb;
exception when others then
    return null;
end;
$$;

-- The state a person sees, derived from apalis's status, attempts and schedule.
create function job_state(status text, attempts integer, max_attempts integer, run_at timestamptz,
                          last_result jsonb) returns text
language sql stable
as $$
    select case
        when status = 'Done' then 'done'
        when status in ('Queued', 'Running') then 'running'
        when status = 'Killed' and last_result ? 'Cancelled' then 'cancelled'
        when status = 'Killed' then 'dead'
        when status = 'Failed' and attempts >= max_attempts then 'dead'
        when status = 'Failed' then 'retrying'
        when run_at > now() then 'scheduled'
        else 'pending'
    end
$$;

-- apalis decodes a job's payload before any PayCore code runs, and a payload that is not JSON ends the worker
-- that fetched it. No such row may exist: the payload must be a JSON object (a failed conversion rejects the
-- insert just like a false check).
alter table apalis.jobs add constraint jobs_payload_is_json_object
    check (jsonb_typeof(convert_from(job, 'UTF8')::jsonb) = 'object');

-- apalis re-queues a dead worker's jobs (rescue) and a stopping worker's unstarted jobs (hand-back) by rewriting
-- the row; this trigger keeps a record of each, for the job's history and the rescue metrics.
create function record_job_requeue() returns trigger
language plpgsql
as $$
begin
    if new.status = 'Pending' and old.status in ('Queued', 'Running') then
        if new.last_result ->> 'Err' like 'Re-enqueued due to worker heartbeat timeout%' then
            insert into job_event (job_id, action, actor, detail) values (new.id, 'rescue', 'engine', old.lock_by);
        elsif new.last_result ->> 'Err' like 'Re-enqueued due to worker shutdown%' then
            insert into job_event (job_id, action, actor, detail) values (new.id, 'handback', 'engine', old.lock_by);
        end if;
    end if;
    return new;
end;
$$;

create trigger jobs_record_requeue after update of status on apalis.jobs
    for each row when (old.status is distinct from new.status) execute function record_job_requeue();
