-- A work item's draft and signed read as JSON documents (radassist's own record, see
-- src/store/documents.rs) instead of the gRPC messages' protobuf bytes. radassist converts every
-- stored one in the same transaction (src/store/legacy.rs); version 4 then drops the old columns.
ALTER TABLE work_items ADD COLUMN content TEXT NOT NULL DEFAULT '';
ALTER TABLE work_items ADD COLUMN signed_read TEXT;
ALTER TABLE superseded_reads ADD COLUMN signed_read TEXT NOT NULL DEFAULT '';
