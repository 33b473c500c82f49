-- When the attempt to send a result that is under way began (NULL between attempts): one a
-- crash cut off is still set when the result is next taken, and the peer is asked first.
ALTER TABLE outbox ADD COLUMN attempt_started_at BIGINT;
