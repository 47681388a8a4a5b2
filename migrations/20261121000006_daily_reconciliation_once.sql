-- The daily schedule reconciles each provider's day once, even when two runs of it overlap.
create unique index reconciliation_report_daily_once on reconciliation_report (provider, period_from, period_to)
    where requested_by is null;
