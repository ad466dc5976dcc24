"""`scripts/burst`: an open-model load generator for the deployed app, and the report of what
the system did with the load: acceptance, latency, the drain, how many worker batches ran at
once, and an integrity check that every accepted task became exactly one row.

Modules: settings (options and their bounds), schedule (arrival times and task bodies), sender
(open-model sending on a bounded thread pool), cloud (SQS, PostgreSQL, Lambda and CloudWatch
reads), analysis (pure figures: percentiles, batch overlap, timeline, integrity), report (JSON,
terminal summary), chart (the PNG), progress (the stderr bar), run (one burst end to end), cli.
"""
