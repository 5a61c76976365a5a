-- SELECT DISTINCT without a window: an updating query, each distinct row once.
CREATE TABLE bids (
  auction BIGINT, bidder BIGINT, price BIGINT, channel VARCHAR, date_time TIMESTAMP(3),
  WATERMARK FOR date_time AS date_time - INTERVAL '1' SECOND
) WITH ('connector' = 'filesystem', 'path' = '${DATA}/bids.jsonl', 'format' = 'json');

CREATE TABLE out (channel VARCHAR, bucket BIGINT) WITH ('connector' = 'print');

INSERT INTO out
SELECT DISTINCT channel, auction % 4 AS bucket FROM bids WHERE price > 500;
