-- KYC tiers (docs/compliance.md): every user has one, 0 (registered) to 3 (proof of address). A tier may expire;
-- every change is recorded with its source, so a tier can always be explained. Compliance officers get a role of
-- their own: they read what admins read and decide reviews, and change nothing else.
alter table app_user add column kyc_tier smallint not null default 0;
alter table app_user add column kyc_tier_expires_at timestamptz;
alter table app_user add constraint app_user_kyc_tier_known check (kyc_tier between 0 and 3);

alter table app_user drop constraint app_user_role_known;
alter table app_user add constraint app_user_role_known
    check (role in ('user', 'admin', 'admin_readonly', 'compliance'));

create table kyc_tier_change (
    kyc_tier_change_id bigint generated always as identity primary key,
    user_id            uuid        not null references app_user (user_id),
    from_tier          smallint    not null,
    to_tier            smallint    not null,
    -- verification: a provider's check; review: a compliance decision; admin: a manual grant; expiry: the daily job.
    source             text        not null,
    reason             text,
    actor_user_id      uuid references app_user (user_id),
    expires_at         timestamptz,
    created_at         timestamptz not null default now(),
    constraint kyc_tier_change_source_known check (source in ('verification', 'review', 'admin', 'expiry', 'seed')),
    constraint kyc_tier_change_tiers_known check (from_tier between 0 and 3 and to_tier between 0 and 3)
);
create index kyc_tier_change_user on kyc_tier_change (user_id, created_at);
