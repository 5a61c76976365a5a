-- no-oracle: rows behind the watermark are dropped by the stream and kept by a batch query.
-- parallelism: 1 (which rows are late depends on how far every source subtask has read)
-- The file has 12000 rows on time and 10 rows 200 s behind, read after the first batch
-- of 8192 rows: those are late and not counted (the windows' bids add up to 12000).
CREATE TABLE bids (
  auction BIGINT, bidder BIGINT, price BIGINT, channel VARCHAR, date_time TIMESTAMP(3),
  WATERMARK FOR date_time AS date_time - INTERVAL '1' SECOND
) WITH ('connector' = 'filesystem', 'path' = '${DATA}/late_bids.jsonl', 'format' = 'json');

CREATE TABLE out (window_start TIMESTAMP(3), window_end TIMESTAMP(3), bids BIGINT, total BIGINT)
WITH (connector = 'filesystem', path = '${OUT}', format = 'json');

INSERT INTO out
SELECT window_start, window_end, count(*), sum(price)
FROM TUMBLE(bids, date_time, INTERVAL '5' SECOND)
GROUP BY window_start, window_end;
