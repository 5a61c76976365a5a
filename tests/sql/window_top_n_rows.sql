-- Flink's window top-N straight over a window function: per channel and
-- 10-second window sliding by 5 seconds, the two highest bids (ties broken
-- by bidder, then auction, then time); and Flink's window deduplication,
-- the last bid of each auction per window (`rn = 1`, ORDER BY time DESC).
CREATE TABLE bids (
  auction BIGINT, bidder BIGINT, price BIGINT, channel VARCHAR, date_time TIMESTAMP(3),
  WATERMARK FOR date_time AS date_time - INTERVAL '1' SECOND
) WITH ('connector' = 'filesystem', 'path' = '${DATA}/bids.jsonl', 'format' = 'json');

CREATE TABLE out (
  kind VARCHAR, window_start TIMESTAMP(3), window_end TIMESTAMP(3), part VARCHAR,
  bidder BIGINT, auction BIGINT, price BIGINT, date_time TIMESTAMP(3), rn BIGINT
) WITH (connector = 'filesystem', path = '${OUT}', format = 'json');

INSERT INTO out
SELECT 'top2', window_start, window_end, channel, bidder, auction, price, date_time, rn FROM (
  SELECT *, ROW_NUMBER() OVER (
      PARTITION BY window_start, window_end, channel
      ORDER BY price DESC, bidder, auction, date_time) AS rn
  FROM TABLE(HOP(TABLE bids, DESCRIPTOR(date_time), INTERVAL '5' SECOND, INTERVAL '10' SECOND)))
WHERE rn <= 2
UNION ALL
SELECT 'last', window_start, window_end, CAST(auction AS VARCHAR), bidder, auction, price, date_time, rn FROM (
  SELECT *, ROW_NUMBER() OVER (
      PARTITION BY auction, window_start, window_end
      ORDER BY date_time DESC, bidder DESC, price DESC) AS rn
  FROM TABLE(TUMBLE(TABLE bids, DESCRIPTOR(date_time), INTERVAL '10' SECOND)))
WHERE rn = 1;
