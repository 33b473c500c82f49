-- The archive's searchable attributes of each instance received and each result object made
-- (DICOM JSON, PS3.18 F.2; empty for rows catalogued before, filled from their blobs when first
-- searched), and the study columns a DICOMweb search narrows by, indexed.
ALTER TABLE instances ADD COLUMN attributes TEXT NOT NULL DEFAULT '';
ALTER TABLE result_objects ADD COLUMN attributes TEXT NOT NULL DEFAULT '';
CREATE INDEX studies_by_accession ON studies (accession_number);
CREATE INDEX studies_by_date ON studies (study_date);
