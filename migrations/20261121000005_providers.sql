-- Money in and out through payment providers: deposits, payouts, bill payments, their webhooks and the daily
-- reconciliation against each provider's own records.

-- Ledger movements gain provider clearing accounts: 'clearing_paystack' (money the gateway owes us or we sent
-- through it) and 'clearing_flutterwave' (bills vended); both are system accounts created on first use.

-- A deposit: money in through the gateway's hosted page (channel 'card') or by bank transfer into the user's
-- account number (channel 'bank_transfer', created by the gateway's webhook). The operation with the same id
-- carries the lifecycle; `reference` is what the gateway knows it by.
create table deposit (
    deposit_id       uuid primary key references operation (operation_id),
    user_id          uuid        not null references app_user (user_id),
    wallet_id        uuid        not null references wallet (wallet_id),
    provider         text        not null,
    channel          text        not null,
    reference        text        not null,
    amount           bigint      not null,
    fee              bigint      not null default 0,
    currency         text        not null,
    status           text        not null,
    authorization_url text,
    return_url       text,
    provider_status  text,
    failure_reason   text,
    credit_id        uuid references ledger_transfer (transfer_id),
    created_at       timestamptz not null default now(),
    updated_at       timestamptz not null default now(),
    completed_at     timestamptz,
    constraint deposit_amount_positive check (amount > 0 and fee >= 0 and fee < amount),
    constraint deposit_channel_known check (channel in ('card', 'bank_transfer')),
    constraint deposit_status_known check (status in ('initializing', 'requires_action', 'completed', 'failed')),
    constraint deposit_reference_unique unique (provider, reference)
);
create index deposit_user_idx on deposit (user_id, created_at desc);
create index deposit_open_idx on deposit (created_at) where status in ('initializing', 'requires_action');

-- A payout to a bank account. The amount and fee are held from the wallet when it is requested; the hold is
-- posted when the provider confirms, voided when it declines; a reversal after success refunds with new
-- transfers. `reference` (the operation id) is the provider-side idempotency key.
create table payout (
    payout_id        uuid primary key references operation (operation_id),
    user_id          uuid        not null references app_user (user_id),
    wallet_id        uuid        not null references wallet (wallet_id),
    provider         text        not null,
    reference        text        not null unique,
    amount           bigint      not null,
    fee              bigint      not null,
    currency         text        not null,
    bank_code        text        not null,
    bank_name        text        not null,
    account_number   text        not null,
    account_name     text        not null,
    narration        text        not null default '',
    status           text        not null,
    hold_id          uuid        not null references ledger_transfer (transfer_id),
    fee_hold_id      uuid references ledger_transfer (transfer_id),
    refund_id        uuid references ledger_transfer (transfer_id),
    provider_transfer_code text,
    provider_status  text,
    failure_reason   text,
    decided_by       uuid references app_user (user_id),
    decided_at       timestamptz,
    submitted_at     timestamptz,
    created_at       timestamptz not null default now(),
    updated_at       timestamptz not null default now(),
    completed_at     timestamptz,
    constraint payout_amount_positive check (amount > 0 and fee >= 0),
    constraint payout_status_known check
        (status in ('requires_approval', 'processing', 'completed', 'failed', 'rejected', 'reversed')),
    constraint payout_account_number_is_nuban check (account_number ~ '^[0-9]{10}$')
);
create index payout_user_idx on payout (user_id, created_at desc);
create index payout_open_idx on payout (created_at) where status in ('requires_approval', 'processing');

-- A bill payment (airtime, data, electricity, cable TV): held, vended through the bills provider with the
-- payment id as reference, then posted (or voided when the vend fails).
create table bill_payment (
    payment_id       uuid primary key references operation (operation_id),
    user_id          uuid        not null references app_user (user_id),
    wallet_id        uuid        not null references wallet (wallet_id),
    provider         text        not null,
    biller_code      text        not null,
    category         text        not null,
    package_code     text,
    customer_id      text        not null,
    customer_name    text,
    amount           bigint      not null,
    fee              bigint      not null,
    currency         text        not null,
    status           text        not null,
    hold_id          uuid        not null references ledger_transfer (transfer_id),
    fee_hold_id      uuid references ledger_transfer (transfer_id),
    provider_reference text,
    token            text,
    token_units      text,
    failure_reason   text,
    created_at       timestamptz not null default now(),
    updated_at       timestamptz not null default now(),
    completed_at     timestamptz,
    constraint bill_payment_amount_positive check (amount > 0 and fee >= 0),
    constraint bill_payment_status_known check (status in ('processing', 'completed', 'failed')),
    constraint bill_payment_category_known check (category in ('airtime', 'data', 'electricity', 'cable_tv'))
);
create index bill_payment_user_idx on bill_payment (user_id, created_at desc);

-- Saved bill beneficiaries, one per user, biller and customer.
create table bill_beneficiary (
    beneficiary_id   uuid primary key,
    user_id          uuid        not null references app_user (user_id),
    biller_code      text        not null,
    customer_id      text        not null,
    nickname         text        not null,
    customer_name    text,
    usage_count      integer     not null default 0,
    last_used_at     timestamptz,
    created_at       timestamptz not null default now(),
    constraint bill_beneficiary_unique unique (user_id, biller_code, customer_id),
    constraint bill_beneficiary_nickname_length check (length(nickname) between 1 and 60)
);

-- Inbound provider webhooks that passed verification. The event id is unique per provider: a replayed or
-- duplicated delivery finds its row and changes nothing.
create table webhook_event (
    webhook_event_id bigserial primary key,
    provider         text        not null,
    event_id         text        not null,
    event_type       text        not null,
    payload          jsonb       not null,
    received_at      timestamptz not null default now(),
    processed_at     timestamptz,
    outcome          text,
    constraint webhook_event_unique unique (provider, event_id)
);

-- Provider reconciliation: the provider's settlement records for a period compared with our ledger.
create table reconciliation_report (
    report_id        uuid primary key,
    provider         text        not null,
    period_from      timestamptz not null,
    period_to        timestamptz not null,
    status           text        not null default 'running',
    requested_by     uuid references app_user (user_id),
    matched          integer     not null default 0,
    mismatches       jsonb       not null default '[]',
    error            text,
    created_at       timestamptz not null default now(),
    finished_at      timestamptz,
    constraint reconciliation_status_known check (status in ('running', 'clean', 'mismatched', 'failed')),
    constraint reconciliation_period_ordered check (period_from < period_to)
);
create index reconciliation_report_created_idx on reconciliation_report (created_at desc);
