-- A tumbling window per auction: count, sum, min, max, avg, count distinct.
CREATE TABLE bids (
  auction BIGINT, bidder BIGINT, price BIGINT, channel VARCHAR, date_time TIMESTAMP(3),
  WATERMARK FOR date_time AS date_time - INTERVAL '1' SECOND
) WITH ('connector' = 'filesystem', 'path' = '${DATA}/bids.jsonl', 'format' = 'json');

CREATE TABLE out (
  auction BIGINT, window_start TIMESTAMP(3), window_end TIMESTAMP(3),
  bids BIGINT, total BIGINT, lowest BIGINT, highest BIGINT, mean DOUBLE, bidders BIGINT
) WITH (connector = 'filesystem', path = '${OUT}', format = 'json');

INSERT INTO out
SELECT auction, window_start, window_end,
  count(*), sum(price), min(price), max(price), avg(price), count(DISTINCT bidder)
FROM TUMBLE(bids, date_time, INTERVAL '10' SECOND)
WHERE channel <> 'api'
GROUP BY auction, window_start, window_end;
