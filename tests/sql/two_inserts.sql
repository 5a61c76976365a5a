-- Two INSERTs into one table (a Flink statement set): the table's one sink
-- writes the union of both queries' rows, each exactly once.
CREATE TABLE bids (
  auction BIGINT, bidder BIGINT, price BIGINT, channel VARCHAR, date_time TIMESTAMP(3),
  WATERMARK FOR date_time AS date_time - INTERVAL '1' SECOND
) WITH ('connector' = 'filesystem', 'path' = '${DATA}/bids.jsonl', 'format' = 'json');

CREATE TABLE out (auction BIGINT, price BIGINT, kind VARCHAR)
WITH ('connector' = 'filesystem', 'path' = '${OUT}', 'format' = 'json');

INSERT INTO out SELECT auction, price, 'cheap' FROM bids WHERE price < 50;

INSERT INTO out
SELECT auction, max(price), 'top of 10 s'
FROM TABLE(TUMBLE(TABLE bids, DESCRIPTOR(date_time), INTERVAL '10' SECOND))
GROUP BY window_start, window_end, auction;
