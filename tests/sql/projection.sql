-- Projections and scalar functions: CASE, CAST, string, math and date functions.
CREATE TABLE bids (
  auction BIGINT, bidder BIGINT, price BIGINT, channel VARCHAR, date_time TIMESTAMP(3),
  WATERMARK FOR date_time AS date_time - INTERVAL '1' SECOND
) WITH ('connector' = 'filesystem', 'path' = '${DATA}/bids.jsonl', 'format' = 'json');

CREATE TABLE out (
  auction BIGINT, bidder BIGINT, band VARCHAR, channel VARCHAR, cents DECIMAL(12, 2),
  root DOUBLE, minute TIMESTAMP(3), hour_of_day BIGINT, tag VARCHAR
) WITH (connector = 'filesystem', path = '${OUT}', format = 'json');

INSERT INTO out
SELECT
  auction,
  bidder,
  CASE WHEN price >= 900 THEN 'high' WHEN price >= 300 THEN 'mid' ELSE 'low' END,
  upper(substr(channel, 1, 3)),
  CAST(price AS DECIMAL(12, 2)) / 100,
  round(sqrt(CAST(price AS DOUBLE)), 3),
  date_trunc('minute', date_time),
  CAST(extract(hour FROM date_time) AS BIGINT),
  concat(channel, '-', CAST(abs(price - 500) % 7 AS VARCHAR))
FROM bids;
