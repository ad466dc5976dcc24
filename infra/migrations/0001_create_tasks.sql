-- The task store: one row per task accepted by the API, updated by the workers as it runs.
-- Applied once by infra/deployment/migrations.py, inside one transaction with its record in
-- schema_migrations. Never edit this file once applied anywhere: add 0002_....sql instead.

CREATE TABLE tasks (
    id uuid PRIMARY KEY,                    -- the id the API answers POST with
    type text NOT NULL,
    payload jsonb NOT NULL,
    -- Where the task is in its life; done and failed are final.
    status text NOT NULL CHECK (status IN ('queued', 'running', 'retrying', 'done', 'failed')),
    attempts integer NOT NULL DEFAULT 0,    -- times a worker started it (SQS may redeliver)
    -- The client's Idempotency-Key: a repeated POST finds the task it created the first time.
    -- UNIQUE allows many NULLs, so tasks sent without a key never collide.
    idempotency_key text UNIQUE,
    correlation_id text,                    -- ties the API's and the workers' log lines together
    accepted_at timestamptz NOT NULL,
    started_at timestamptz,
    finished_at timestamptz,
    worker_request_id text,                 -- Lambda request id of the worker that last ran it
    result jsonb,
    error text
);

-- GET /status: how many tasks are queued / running / done / failed.
CREATE INDEX tasks_status_idx ON tasks (status);
-- The dashboard's time ranges: tasks accepted between two instants.
CREATE INDEX tasks_accepted_at_idx ON tasks (accepted_at);
-- Throughput: tasks finished in the last minute. Partial, since unfinished tasks are never
-- looked up by finish time and would only make the index larger.
CREATE INDEX tasks_finished_at_idx ON tasks (finished_at) WHERE finished_at IS NOT NULL;
