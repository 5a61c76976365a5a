-- no-oracle: the batch reader stops at the first bad line.
-- Bad lines are skipped (and counted) under 'decode-error' = 'skip'.
CREATE TABLE bids (
  auction BIGINT, bidder BIGINT, price BIGINT, channel VARCHAR, date_time TIMESTAMP(3),
  WATERMARK FOR date_time AS date_time - INTERVAL '1' SECOND
) WITH (
  'connector' = 'filesystem', 'path' = '${DATA}/bad_bids.jsonl', 'format' = 'json',
  'decode-error' = 'skip'
);

CREATE TABLE out (auction BIGINT, bids BIGINT, window_start TIMESTAMP(3))
WITH (connector = 'filesystem', path = '${OUT}', format = 'json');

INSERT INTO out
SELECT auction, count(*), window_start
FROM TUMBLE(bids, date_time, INTERVAL '30' SECOND)
GROUP BY auction, window_start;
