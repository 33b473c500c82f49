-- The protobuf columns, converted to documents by version 3.
ALTER TABLE work_items DROP COLUMN template;
ALTER TABLE work_items DROP COLUMN final_read;
ALTER TABLE superseded_reads DROP COLUMN final_read;
