-- apalis-postgres notifies workers from a trigger on every inserted job. A transaction that has called NOTIFY takes
-- an exclusive lock at commit and holds it until its commit record is flushed, so every transaction that enqueues a
-- job committed one at a time, fsync included (measured: transfers stuck at ~160/s whatever the concurrency).
-- PayCore wakes the queue's workers right after the enqueuing transaction commits instead (`engine::wake`), in a
-- transaction that writes nothing; workers still poll on every heartbeat, so a missed wake-up only delays.
drop trigger if exists notify_workers on apalis.jobs;
