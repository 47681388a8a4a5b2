-- A compliance restriction (a sanctions match pending review, a compliance decision): while set, no money leaves
-- the account. Lifted only by a compliance decision.
alter table app_user add column restricted_at timestamptz;
alter table app_user add column restricted_reason text;
alter table app_user add constraint app_user_restriction_explained
    check ((restricted_at is null and restricted_reason is null) or (restricted_at is not null and restricted_reason is not null));
