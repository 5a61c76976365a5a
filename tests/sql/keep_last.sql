-- Keep-last deduplication: each bidder's latest bid by event time, an
-- updating query (+I, then -U/+U as later bids arrive), with a filter after it.
CREATE TABLE bids (
  auction BIGINT, bidder BIGINT, price BIGINT, channel VARCHAR, date_time TIMESTAMP(3),
  WATERMARK FOR date_time AS date_time - INTERVAL '1' SECOND
) WITH ('connector' = 'filesystem', 'path' = '${DATA}/bids.jsonl', 'format' = 'json');

CREATE TABLE out (bidder BIGINT, auction BIGINT, price BIGINT, channel VARCHAR, date_time TIMESTAMP(3))
WITH ('connector' = 'print');

INSERT INTO out
SELECT bidder, auction, price, channel, date_time FROM (
  SELECT *, ROW_NUMBER() OVER (PARTITION BY bidder ORDER BY date_time DESC) AS rn FROM bids
) WHERE rn = 1 AND price > 100;
