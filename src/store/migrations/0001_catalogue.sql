-- radassist's catalogue on PostgreSQL, version 1: the same tables as the embedded SQLite store.
-- Times are milliseconds since the Unix epoch (BIGINT), as in every radassist API. The blobs
-- themselves (DICOM instances, SRs) live in the blob store, named by their SHA-256 (hex).

-- One row per stored instance.
CREATE TABLE instances (
    sop_instance_uid    TEXT PRIMARY KEY,
    study_instance_uid  TEXT NOT NULL,
    series_instance_uid TEXT NOT NULL,
    sha256              TEXT NOT NULL,
    size                BIGINT NOT NULL,
    received_at         BIGINT NOT NULL);
CREATE INDEX instances_by_study ON instances (study_instance_uid, received_at);

-- Instances whose UID was stored before with other bytes (kept for review).
CREATE TABLE conflicts (
    id                  BIGSERIAL PRIMARY KEY,
    sop_instance_uid    TEXT NOT NULL,
    sha256              TEXT NOT NULL,
    received_at         BIGINT NOT NULL);

CREATE TABLE studies (
    study_instance_uid  TEXT PRIMARY KEY,
    patient_id          TEXT NOT NULL,
    accession_number    TEXT NOT NULL,
    study_date          TEXT NOT NULL,
    state               TEXT NOT NULL CHECK (state IN
        ('RECEIVING', 'QUEUED', 'ANALYZING', 'DRAFT_READY', 'FAILED', 'SIGNED', 'PRIOR')),
    last_instance_at    BIGINT NOT NULL,
    failure_reason      TEXT NOT NULL DEFAULT '');
CREATE INDEX studies_by_patient ON studies (patient_id, study_date);
CREATE INDEX studies_receiving ON studies (last_instance_at) WHERE state = 'RECEIVING';

-- One analysis job per study. A running job belongs to the process named in lease_owner until
-- lease_until; a job whose lease ran out (its worker died) is taken again.
CREATE TABLE jobs (
    study_instance_uid  TEXT PRIMARY KEY,
    state               TEXT NOT NULL CHECK (state IN ('queued', 'running', 'done', 'failed')),
    attempts            INTEGER NOT NULL DEFAULT 0,
    last_error          TEXT NOT NULL DEFAULT '',
    completions         INTEGER NOT NULL DEFAULT 0,
    updated_at          BIGINT NOT NULL,
    lease_owner         TEXT,
    lease_until         BIGINT);
CREATE INDEX jobs_queue ON jobs (state, updated_at);

-- A study's one current work item: its draft, then its signed read.
CREATE TABLE work_items (
    study_instance_uid  TEXT PRIMARY KEY,
    status              TEXT NOT NULL CHECK (status IN ('UNCLAIMED', 'CLAIMED', 'SIGNED')),
    critical            BOOLEAN NOT NULL,
    priority            BIGINT NOT NULL,
    claimed_by          TEXT,
    created_at          BIGINT NOT NULL,
    template            BYTEA NOT NULL,
    analysis_json       TEXT NOT NULL,
    model_version       TEXT NOT NULL,
    final_read          BYTEA,
    signed_at           BIGINT,
    comparison          TEXT,
    report_json         TEXT);
CREATE INDEX work_items_in_worklist_order
    ON work_items (status, critical DESC, priority DESC, created_at);

-- SRs waiting for (or sent to) a DICOM peer.
CREATE TABLE outbox (
    id                  BIGSERIAL PRIMARY KEY,
    study_instance_uid  TEXT NOT NULL,
    sop_instance_uid    TEXT NOT NULL,
    kind                TEXT NOT NULL CHECK (kind IN ('draft', 'final', 'amended')),
    peer                TEXT NOT NULL,
    sha256              TEXT NOT NULL,
    state               TEXT NOT NULL CHECK (state IN ('pending', 'sent')),
    attempts            INTEGER NOT NULL DEFAULT 0,
    last_error          TEXT NOT NULL DEFAULT '',
    created_at          BIGINT NOT NULL,
    next_attempt_at     BIGINT NOT NULL,
    sent_at             BIGINT,
    UNIQUE (sop_instance_uid, peer));
CREATE INDEX outbox_due ON outbox (state, next_attempt_at);

-- The signed report of a prior study, from an SR retrieved with it.
CREATE TABLE prior_reports (
    study_instance_uid  TEXT PRIMARY KEY,
    sop_instance_uid    TEXT NOT NULL,
    sha256              TEXT NOT NULL,
    content_date_time   TEXT NOT NULL,
    text                TEXT NOT NULL,
    received_at         BIGINT NOT NULL);

-- Priors being retrieved by C-MOVE now: their instances, received by any front end's DICOM
-- listener, are kept as priors (not analysed) until the retrieval ends or until_ms passes.
CREATE TABLE expected_priors (
    id                  BIGSERIAL PRIMARY KEY,
    study_instance_uid  TEXT NOT NULL,
    until_ms            BIGINT NOT NULL);
CREATE INDEX expected_priors_by_study ON expected_priors (study_instance_uid);

CREATE TABLE audit (
    id                  BIGSERIAL PRIMARY KEY,
    at_ms               BIGINT NOT NULL,
    who                 TEXT NOT NULL,
    role                TEXT NOT NULL,
    action              TEXT NOT NULL,
    resource            TEXT NOT NULL,
    peer                TEXT NOT NULL);
CREATE INDEX audit_by_time ON audit (at_ms);

-- The web reading room: people, failed logins, sessions (by the SHA-256 of their token),
-- reads an amendment replaced, and drafts as their radiologist edits them.
CREATE TABLE users (
    name                TEXT PRIMARY KEY,
    role                TEXT NOT NULL,
    password_hash       TEXT NOT NULL,
    disabled            BOOLEAN NOT NULL DEFAULT FALSE,
    created_at          BIGINT NOT NULL);
CREATE TABLE login_failures (
    username            TEXT PRIMARY KEY,
    failures            INTEGER NOT NULL,
    last_failure_at     BIGINT NOT NULL);
CREATE TABLE web_sessions (
    token_sha256        TEXT PRIMARY KEY,
    user_name           TEXT NOT NULL,
    csrf_token          TEXT NOT NULL,
    created_at          BIGINT NOT NULL,
    last_seen_at        BIGINT NOT NULL,
    peer                TEXT NOT NULL);
CREATE TABLE superseded_reads (
    study_instance_uid  TEXT NOT NULL,
    final_read          BYTEA NOT NULL,
    signed_at           BIGINT NOT NULL,
    superseded_at       BIGINT NOT NULL);
CREATE TABLE draft_edits (
    study_instance_uid  TEXT PRIMARY KEY,
    radiologist         TEXT NOT NULL,
    text                TEXT NOT NULL,
    agreements          TEXT NOT NULL,
    saved_at            BIGINT NOT NULL);
