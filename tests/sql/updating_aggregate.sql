-- A GROUP BY without a window: an updating aggregate. The print sink shows
-- its changes (+I, -U, +U); the test applies them and checks the final rows.
CREATE TABLE bids (
  auction BIGINT, bidder BIGINT, price BIGINT, channel VARCHAR, date_time TIMESTAMP(3),
  WATERMARK FOR date_time AS date_time - INTERVAL '1' SECOND
) WITH ('connector' = 'filesystem', 'path' = '${DATA}/bids.jsonl', 'format' = 'json');

CREATE TABLE out (channel VARCHAR, bids BIGINT, top BIGINT, total BIGINT, mean DOUBLE)
WITH ('connector' = 'print');

INSERT INTO out
SELECT channel, count(*), max(price), sum(price), avg(price)
FROM bids
WHERE price > 100
GROUP BY channel;
