-- When images of a signed study arrived after its read was signed and were analysed (ms since
-- the epoch): the signed read stands until an amendment, which clears it.
ALTER TABLE work_items ADD COLUMN images_after_signing BIGINT;
