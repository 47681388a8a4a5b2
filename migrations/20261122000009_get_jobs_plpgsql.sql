-- apalis-postgres 1.0's fetch function `apalis.get_jobs` is a LANGUAGE sql function, which PostgreSQL parses and
-- plans again on every call: measured in the transfers benchmark, 0.96 ms per call of which its one statement took
-- 0.23 ms, and every busy fetch loop calls it several times per transfer. The same statement in PL/pgSQL keeps its
-- plan for the connection's lifetime. Same name, signature, locking and result as apalis's.
create or replace function apalis.get_jobs(
    worker_id text,
    v_job_type text,
    v_job_count integer default 5
)
returns setof apalis.jobs
language plpgsql
volatile
as $$
begin
    return query
    with jobs as (
        select id
        from apalis.jobs
        where (status = 'Pending' or (status = 'Failed' and attempts < max_attempts))
          and run_at < now()
          and job_type = v_job_type
        order by priority desc, run_at asc
        limit v_job_count
        for update skip locked
    )
    update apalis.jobs j
    set status = 'Queued', lock_by = worker_id, lock_at = now()
    from jobs
    where j.id = jobs.id
    returning j.*;
end
$$;
