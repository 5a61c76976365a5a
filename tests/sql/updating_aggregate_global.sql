-- An updating aggregate over the whole stream (no key), at parallelism 1.
CREATE TABLE bids (
  auction BIGINT, bidder BIGINT, price BIGINT, channel VARCHAR, date_time TIMESTAMP(3),
  WATERMARK FOR date_time AS date_time - INTERVAL '1' SECOND
) WITH ('connector' = 'filesystem', 'path' = '${DATA}/bids.jsonl', 'format' = 'json');

CREATE TABLE out (bids BIGINT, bidders BIGINT, lowest BIGINT) WITH ('connector' = 'print');

INSERT INTO out SELECT count(*), count(DISTINCT bidder), min(price) FROM bids;
