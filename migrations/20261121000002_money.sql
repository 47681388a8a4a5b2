-- Users, sessions, wallets and the double-entry ledger.

-- People who use PayCore. Emails are unique case-insensitively (the index is on lower(email)).
create table app_user (
    user_id       uuid primary key,
    email         text        not null,
    phone         text,
    full_name     text        not null,
    password_hash text        not null,
    role          text        not null default 'user',
    created_at    timestamptz not null default now(),
    updated_at    timestamptz not null default now(),
    constraint app_user_role_known check (role in ('user', 'admin', 'admin_readonly')),
    constraint app_user_email_length check (length(email) between 3 and 254),
    constraint app_user_full_name_length check (length(full_name) between 1 and 100)
);
create unique index app_user_email_unique on app_user (lower(email));
create unique index app_user_phone_unique on app_user (phone) where phone is not null;

-- A session is one sign-in on one device: the family of its refresh tokens. Access tokens name their session, so
-- revoking it (logout, logout-all, password change, refresh-token reuse) refuses them at once.
create table session (
    session_id     uuid primary key,
    user_id        uuid        not null references app_user (user_id),
    created_at     timestamptz not null default now(),
    last_used_at   timestamptz not null default now(),
    expires_at     timestamptz not null,
    revoked_at     timestamptz,
    revoked_reason text,
    ip             text,
    user_agent     text
);
create index session_user_idx on session (user_id) where revoked_at is null;

-- Refresh tokens, stored as SHA-256 hashes. Each may be used once; a second use means it was stolen, and the
-- whole session (family) is revoked.
create table refresh_token (
    token_hash text primary key,
    session_id uuid        not null references session (session_id),
    created_at timestamptz not null default now(),
    expires_at timestamptz not null,
    used_at    timestamptz
);
create index refresh_token_session_idx on refresh_token (session_id);

-- Failed sign-ins, for throttling per account and per IP address.
create table login_failure (
    login_failure_id bigserial primary key,
    scope            text        not null,
    subject          text        not null,
    created_at       timestamptz not null default now(),
    constraint login_failure_scope_known check (scope in ('account', 'ip'))
);
create index login_failure_lookup_idx on login_failure (scope, subject, created_at);

-- Ledger accounts, in the TigerBeetle model: four counters in minor units, changed only together with an
-- immutable ledger_transfer row in the same transaction.
create table ledger_account (
    account_id      bigserial primary key,
    currency        text        not null,
    -- 'wallet' for users' money (a liability of the platform); 'system' for the platform's own accounts.
    kind            text        not null,
    -- System accounts are named, e.g. 'subsidy', 'fee_income'; hot ones are split into shards.
    code            text,
    shard           integer     not null default 0,
    debits_pending  bigint      not null default 0,
    debits_posted   bigint      not null default 0,
    credits_pending bigint      not null default 0,
    credits_posted  bigint      not null default 0,
    -- A wallet can never spend more than was posted to it, pending holds included. This CHECK, not application
    -- code, is what makes an overdraft impossible under any race.
    debits_must_not_exceed_credits boolean not null default false,
    created_at      timestamptz not null default now(),
    constraint ledger_account_kind_known check (kind in ('wallet', 'system')),
    constraint ledger_account_currency_known check (currency in ('NGN', 'USD', 'EUR', 'GBP', 'KES', 'GHS')),
    constraint ledger_account_counters_not_negative check
        (debits_pending >= 0 and debits_posted >= 0 and credits_pending >= 0 and credits_posted >= 0),
    constraint ledger_account_no_overdraft check
        (not debits_must_not_exceed_credits or debits_pending + debits_posted <= credits_posted),
    constraint ledger_account_system_has_code check ((kind = 'system') = (code is not null))
);
create unique index ledger_account_system_unique on ledger_account (code, currency, shard) where kind = 'system';

-- Immutable movements. A 'posted' transfer moves money at once; a 'pending' one reserves it (a hold) and is later
-- resolved by exactly one 'post_pending' (of at most its amount) or 'void_pending' transfer naming it.
create table ledger_transfer (
    transfer_id       uuid primary key,
    flow              text        not null,
    debit_account_id  bigint      not null references ledger_account (account_id),
    credit_account_id bigint      not null references ledger_account (account_id),
    amount            bigint      not null,
    currency          text        not null,
    pending_id        uuid references ledger_transfer (transfer_id),
    -- What the movement is for: 'transfer', 'fee', 'welcome_bonus', …
    code              text        not null,
    operation_id      uuid references operation (operation_id),
    -- A hold that is not resolved by this time is voided by the expiry job.
    expires_at        timestamptz,
    -- Posted balances of both accounts right after this transfer, for statements.
    debit_balance_after  bigint   not null,
    credit_balance_after bigint   not null,
    created_at        timestamptz not null default now(),
    constraint ledger_transfer_flow_known check (flow in ('posted', 'pending', 'post_pending', 'void_pending')),
    constraint ledger_transfer_amount_positive check (amount > 0 or flow = 'void_pending'),
    constraint ledger_transfer_distinct_accounts check (debit_account_id <> credit_account_id),
    constraint ledger_transfer_resolution_names_pending check
        ((flow in ('post_pending', 'void_pending')) = (pending_id is not null))
);
-- A hold is resolved exactly once.
create unique index ledger_transfer_resolved_once on ledger_transfer (pending_id) where pending_id is not null;
create index ledger_transfer_debit_idx on ledger_transfer (debit_account_id, created_at);
create index ledger_transfer_credit_idx on ledger_transfer (credit_account_id, created_at);
create index ledger_transfer_operation_idx on ledger_transfer (operation_id);
create index ledger_transfer_open_holds_idx on ledger_transfer (expires_at) where flow = 'pending';

-- A user's wallet: one per currency per user, backed by one ledger account, reachable by a NUBAN.
create table wallet (
    wallet_id      uuid primary key,
    user_id        uuid        not null references app_user (user_id),
    currency       text        not null,
    account_id     bigint      not null unique references ledger_account (account_id),
    account_number text        not null,
    status         text        not null default 'active',
    daily_limit    bigint,
    monthly_limit  bigint,
    pin_hash       text,
    pin_failed_attempts integer not null default 0,
    pin_locked_until timestamptz,
    created_at     timestamptz not null default now(),
    updated_at     timestamptz not null default now(),
    constraint wallet_one_per_currency unique (user_id, currency),
    constraint wallet_account_number_unique unique (account_number),
    constraint wallet_status_known check (status in ('active', 'frozen')),
    constraint wallet_limits_positive check
        ((daily_limit is null or daily_limit > 0) and (monthly_limit is null or monthly_limit > 0)),
    constraint wallet_account_number_is_nuban check (account_number ~ '^[0-9]{10}$')
);

-- Wallet-to-wallet transfers; the operation with the same id carries the lifecycle.
create table transfer (
    transfer_id      uuid primary key references operation (operation_id),
    from_wallet_id   uuid        not null references wallet (wallet_id),
    to_wallet_id     uuid        not null references wallet (wallet_id),
    amount           bigint      not null,
    fee              bigint      not null,
    currency         text        not null,
    narration        text        not null default '',
    -- 'instant' settles at once; 'acceptance' waits for the recipient to accept or reject.
    mode             text        not null,
    status           text        not null,
    hold_id          uuid        not null references ledger_transfer (transfer_id),
    fee_hold_id      uuid references ledger_transfer (transfer_id),
    expires_at       timestamptz,
    decided_at       timestamptz,
    created_at       timestamptz not null default now(),
    updated_at       timestamptz not null default now(),
    constraint transfer_amount_positive check (amount > 0 and fee >= 0),
    constraint transfer_mode_known check (mode in ('instant', 'acceptance')),
    constraint transfer_status_known check
        (status in ('processing', 'awaiting_acceptance', 'accepted', 'rejected', 'expired', 'completed',
                    'failed')),
    constraint transfer_narration_length check (length(narration) <= 140)
);
create index transfer_from_idx on transfer (from_wallet_id, created_at desc);
create index transfer_to_idx on transfer (to_wallet_id, created_at desc);
create index transfer_awaiting_idx on transfer (expires_at) where status = 'awaiting_acceptance';

-- Idempotency keys (Stripe semantics), per user. The response of the first request is stored and replayed.
create table idempotency_key (
    user_id         uuid        not null references app_user (user_id),
    idempotency_key text        not null,
    request_hash    text        not null,
    response_status integer,
    response_body   jsonb,
    created_at      timestamptz not null default now(),
    expires_at      timestamptz not null,
    primary key (user_id, idempotency_key),
    constraint idempotency_key_length check (length(idempotency_key) between 1 and 255)
);
create index idempotency_key_expiry_idx on idempotency_key (expires_at);

-- Results of the ledger audit job: every invariant of ARCHITECTURE §3, checked over the whole ledger.
create table ledger_audit (
    ledger_audit_id bigserial primary key,
    ran_at          timestamptz not null default now(),
    clean           boolean     not null,
    findings        jsonb       not null
);
