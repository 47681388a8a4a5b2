-- Throttles for secrets a user may guess (passwords) and for registrations: one row per key (for example
-- 'login:account-origin:<email>|<address>'). An attempt is counted *before* the secret is checked, by one upsert
-- that refuses while the key is blocked, so parallel guesses can never exceed the allowance (issue 23). After the
-- free attempts each further one doubles the delay; a key quiet for its window starts again (docs/security.md).
create table auth_throttle (
    throttle_key text primary key,
    attempts integer not null,
    blocked_until timestamptz not null,
    updated_at timestamptz not null,
    -- The count only grows from 1; a key is deleted, never set to zero.
    constraint auth_throttle_attempts_positive check (attempts >= 1)
);
-- For pruning keys that have been quiet longer than any window.
create index auth_throttle_updated_idx on auth_throttle (updated_at);

-- Counted after the password check, which let parallel attempts past the limit; replaced by auth_throttle.
drop table login_failure;
