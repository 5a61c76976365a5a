-- Flink's window top-N over a window aggregate: per 10-second window, the
-- three auctions with the most bids (ties broken by the higher auction
-- number), with their rank.
CREATE TABLE bids (
  auction BIGINT, bidder BIGINT, price BIGINT, channel VARCHAR, date_time TIMESTAMP(3),
  WATERMARK FOR date_time AS date_time - INTERVAL '1' SECOND
) WITH ('connector' = 'filesystem', 'path' = '${DATA}/bids.jsonl', 'format' = 'json');

CREATE TABLE out (
  window_start TIMESTAMP(3), window_end TIMESTAMP(3), auction BIGINT, bids BIGINT, rn BIGINT
) WITH (connector = 'filesystem', path = '${OUT}', format = 'json');

INSERT INTO out
SELECT window_start, window_end, auction, bids, rn FROM (
  SELECT *, ROW_NUMBER() OVER (
      PARTITION BY window_start, window_end ORDER BY bids DESC, auction DESC) AS rn
  FROM (
    SELECT auction, window_start, window_end, count(*) AS bids
    FROM TABLE(TUMBLE(TABLE bids, DESCRIPTOR(date_time), INTERVAL '10' SECOND))
    GROUP BY auction, window_start, window_end))
WHERE rn <= 3;
