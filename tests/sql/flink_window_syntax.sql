-- Flink's form of the window functions: TABLE(TUMBLE(TABLE t, DESCRIPTOR(ts), size)).
CREATE TABLE bids (
  auction BIGINT, bidder BIGINT, price BIGINT, channel VARCHAR, date_time TIMESTAMP(3),
  WATERMARK FOR date_time AS date_time - INTERVAL '1' SECOND
) WITH ('connector' = 'filesystem', 'path' = '${DATA}/bids.jsonl', 'format' = 'json');

CREATE TABLE out (window_start TIMESTAMP(3), window_end TIMESTAMP(3), bids BIGINT, revenue BIGINT)
WITH (connector = 'filesystem', path = '${OUT}', format = 'json');

INSERT INTO out
SELECT window_start, window_end, count(*), sum(price)
FROM TABLE(TUMBLE(TABLE bids, DESCRIPTOR(date_time), INTERVAL '15' SECOND))
GROUP BY window_start, window_end;
