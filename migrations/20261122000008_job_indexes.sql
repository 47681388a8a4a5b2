-- apalis-postgres 1.0 leaves duplicate indexes on apalis.jobs: its first migration's `LIdx` (lock_by) was never
-- dropped by its later "streamline" migration, which added `idx_apalis_jobs_lock_by` beside it, and
-- `unique_job_id` repeats the primary key. Every enqueue and every status change paid for all of them.
--
-- Worse, a full index on lock_by invites the planner to answer apalis's acknowledgement query (`... join on id
-- where lock_by = $worker`) by walking every job the worker ever locked, done ones included, so each
-- acknowledgement grew with the table (≈ 90–240 buffer reads per call after a few thousand jobs). The only queries
-- that need lock_by as an entry point look for a dead worker's *active* jobs, so a partial index over active
-- jobs serves them and leaves the others on the primary key.
drop index if exists apalis.lidx;
drop index if exists apalis.unique_job_id;
drop index if exists apalis.idx_apalis_jobs_lock_by;
create index if not exists jobs_active_lock_by on apalis.jobs (lock_by)
    where status = 'Running' or status = 'Queued';
