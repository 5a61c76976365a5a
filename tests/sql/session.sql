-- no-oracle: DataFusion has no batch SESSION window.
-- Session windows per bidder: a session ends after 2 s without bids.
CREATE TABLE bids (
  auction BIGINT, bidder BIGINT, price BIGINT, channel VARCHAR, date_time TIMESTAMP(3),
  WATERMARK FOR date_time AS date_time - INTERVAL '1' SECOND
) WITH ('connector' = 'filesystem', 'path' = '${DATA}/bids.jsonl', 'format' = 'json');

CREATE TABLE out (bidder BIGINT, window_start TIMESTAMP(3), window_end TIMESTAMP(3), bids BIGINT, spent BIGINT)
WITH (connector = 'filesystem', path = '${OUT}', format = 'json');

INSERT INTO out
SELECT bidder, window_start, window_end, count(*), sum(price)
FROM SESSION(bids, date_time, INTERVAL '2' SECOND)
GROUP BY bidder, window_start, window_end;
