-- Two INSERTs into one print table, one updating and one append-only: the
-- sink reads one changelog, where the append-only rows are inserts.
CREATE TABLE bids (
  auction BIGINT, bidder BIGINT, price BIGINT, channel VARCHAR, date_time TIMESTAMP(3),
  WATERMARK FOR date_time AS date_time - INTERVAL '1' SECOND
) WITH ('connector' = 'filesystem', 'path' = '${DATA}/bids.jsonl', 'format' = 'json');

CREATE TABLE out (channel VARCHAR, n BIGINT)
WITH ('connector' = 'print');

INSERT INTO out SELECT channel, count(*) FROM bids GROUP BY channel;

INSERT INTO out SELECT 'high bid of ' || channel, price FROM bids WHERE price > 990;
