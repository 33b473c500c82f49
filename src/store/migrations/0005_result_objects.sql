-- The results catalogue: every object radassist made for a study (reports, measurement
-- reports, presentation states, summary images), whether or not a peer takes it; filled with
-- the SRs earlier versions queued for their peers (each once, in the order they were made).
CREATE TABLE result_objects (
    id BIGSERIAL PRIMARY KEY,
    study_instance_uid TEXT NOT NULL,
    sop_instance_uid TEXT NOT NULL UNIQUE,
    object TEXT NOT NULL
        CHECK (object IN ('report', 'measurements', 'presentation-state', 'summary-image')),
    kind TEXT NOT NULL CHECK (kind IN ('draft', 'final', 'amended')),
    sha256 TEXT NOT NULL,
    created_at BIGINT NOT NULL);
CREATE INDEX result_objects_by_study ON result_objects (study_instance_uid);
INSERT INTO result_objects (study_instance_uid, sop_instance_uid, object, kind, sha256, created_at)
    SELECT study_instance_uid, sop_instance_uid, 'report', kind, sha256, MIN(created_at)
    FROM outbox GROUP BY study_instance_uid, sop_instance_uid, kind, sha256 ORDER BY MIN(id);
