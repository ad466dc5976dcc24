-- A request's tasks are stored `pending` until all of them are enqueued, then committed to
-- `queued` together: a request the API cannot finish is withdrawn whole (chalicelib/model.py).
-- `requeued_at`: when the reconciler last sent a task's message again (its queue lost it).
-- `stage`: the stage whose API accepted it. Stages share this table (and the database) but not
-- their queues: each stage's reconciler looks only at its own tasks. Rows from before this
-- migration have none, and no reconciler touches them.

ALTER TABLE tasks DROP CONSTRAINT tasks_status_check;
ALTER TABLE tasks ADD CONSTRAINT tasks_status_check
    CHECK (status IN ('pending', 'queued', 'running', 'retrying', 'done', 'failed'));
ALTER TABLE tasks ALTER COLUMN status SET DEFAULT 'pending';
ALTER TABLE tasks ADD COLUMN requeued_at timestamptz;
ALTER TABLE tasks ADD COLUMN stage text;

-- The reconciler's scan: unfinished tasks, oldest first. Partial: finished tasks, nearly all of
-- the table, are never scanned.
CREATE INDEX tasks_unfinished_idx ON tasks (stage, accepted_at)
    WHERE status NOT IN ('done', 'failed');
