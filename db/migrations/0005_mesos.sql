-- The Mesos framework's memory: its framework id (a restarted or standby
-- instance subscribes with the same one) and every task it launched, with the
-- last state Mesos reported, so reconciliation knows what to ask about.
CREATE TABLE mesos_frameworks (
    name          text PRIMARY KEY,
    framework_id  text NOT NULL,
    updated_at    timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE mesos_tasks (
    task_id            text PRIMARY KEY,
    framework          text NOT NULL,
    agent_id           text,
    hostname           text,
    state              text NOT NULL,
    reason             text,
    message            text,
    launched_at        timestamptz NOT NULL DEFAULT now(),
    running_at         timestamptz,
    kill_requested_at  timestamptz,
    ended_at           timestamptz,
    updated_at         timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX mesos_tasks_live ON mesos_tasks (framework) WHERE ended_at IS NULL;
CREATE INDEX mesos_tasks_recent ON mesos_tasks (framework, ended_at);

-- What the scaler reads every few seconds: jobs finished and urgent jobs
-- arrived in the last minutes, without scanning the whole queue history.
CREATE INDEX jobs_done_at ON jobs (updated_at) WHERE state = 'done';
CREATE INDEX jobs_urgent_created ON jobs (created_at) WHERE priority > 0;
