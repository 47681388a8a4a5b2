-- One-time codes used to travel in clear: in the arguments of `email.send` and `email.send_many` jobs (kept for
-- days and shown to every admin) and in the development mailbox. They are now sealed until the mailer renders a
-- message for SMTP, and the development mailbox stores its messages with the code hidden (docs/notifications.md).

-- The sealed code of a development-mailbox message, for the development-only reveal; admin views never read it.
alter table dev_mailbox add column code_sealed text;

-- Code mail stored in clear before this migration. Its codes live 15 minutes: deleting the messages loses nothing
-- a person still needs.
delete from dev_mailbox where template in ('email_verification', 'login_code', 'password_reset');

-- Finished e-mail jobs that carry a clear code lose it. Jobs still to run keep theirs, so a message enqueued before
-- the upgrade is still delivered; every listing hides `code` fields anyway.
update apalis.jobs
set job = convert_to(regexp_replace(convert_from(job, 'UTF8'), '"code":"[^"]*"', '"code":"[redacted]"', 'g'), 'UTF8')
where job_type = 'emails'
  and (status in ('Done', 'Killed') or (status = 'Failed' and attempts >= max_attempts))
  and job_envelope(job) is not null
  and position('"code":"' in convert_from(job, 'UTF8')) > 0;
