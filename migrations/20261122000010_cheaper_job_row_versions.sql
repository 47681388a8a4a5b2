-- Every run of a job writes two new versions of its row (fetched, then done; status is in the partial indexes'
-- predicates, so neither update is HOT) and one job_attempt row, and each pays for every index and row trigger on
-- its table. Three of these did work for nearly no row:
--
-- 1. apalis's unique index on (job_type, idempotency_key) took an entry for every version of every job, although
--    only scheduler ticks carry a key. NULL keys never conflict, so an index over keyed jobs only enforces the
--    same rule. apalis's insert names no conflict target; a duplicate key is still a unique violation.
-- 2. The requeue trigger ran its PL/pgSQL function on every status change (fetch, success, failure) to act on
--    one transition only: an active job put back to Pending by a rescue or a hand-back.
drop index if exists apalis.idx_jobs_idempotency_key;
create unique index idx_jobs_idempotency_key on apalis.jobs (job_type, idempotency_key)
    where idempotency_key is not null;

drop trigger if exists jobs_record_requeue on apalis.jobs;
create trigger jobs_record_requeue after update of status on apalis.jobs
    for each row when (new.status = 'Pending' and old.status in ('Queued', 'Running'))
    execute function record_job_requeue();

-- 3. job_attempt's index on finished_at served no query (the metrics aggregate the whole table, the prune finds
--    attempts by job id) and took an entry for every run.
drop index if exists job_attempt_finished_idx;
