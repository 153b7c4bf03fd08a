-- Webhook intake at load (issue 10): each stored delivery takes the next `seq` from
-- MAX(seq), which without an index scans the whole table on every insert.
-- Since the forge seam, `payload` holds the event as the forge's extractor parsed it (a JSON
-- forge::Delivery), not the request body. Keep in step with ../postgres/0003_intake.sql.
CREATE INDEX deliveries_seq ON deliveries (seq);
