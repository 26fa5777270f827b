-- 6: what forwarding uploads and serving cached analytics need beyond the tables of schema 2.

-- Upload order: jobs of one trigger go upstream in the order they were uploaded, and created_at (seconds) can
-- tie. Rows written before this step (none are expected) are numbered by their creation time.
ALTER TABLE job ADD COLUMN seq INTEGER;
UPDATE job SET seq = (SELECT COUNT(*) FROM job AS earlier
                      WHERE earlier.created_at < job.created_at
                         OR (earlier.created_at = job.created_at AND earlier.job_id <= job.job_id));
CREATE UNIQUE INDEX job_seq ON job (seq);
-- Failed tries to send the upload, and the last reason, for the status of a job that waits.
ALTER TABLE job ADD COLUMN attempts INTEGER NOT NULL DEFAULT 0;
ALTER TABLE job ADD COLUMN last_error TEXT;
ALTER TABLE job ADD COLUMN forwarded_at INTEGER;

-- The Content-Type upstream answered with (templates are XLSX, dashboards JSON); bodies are stored as BLOBs.
ALTER TABLE cached_response ADD COLUMN content_type TEXT;
