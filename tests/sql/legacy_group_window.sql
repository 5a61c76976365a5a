-- Flink's legacy group windows: GROUP BY HOP(..) with HOP_START/HOP_END and a
-- HAVING on HOP_END. Same windows as hop.sql, so the same rows as hop.out
-- (the test below checks that), less the HAVING's.
CREATE TABLE bids (
  auction BIGINT, bidder BIGINT, price BIGINT, channel VARCHAR, date_time TIMESTAMP(3),
  WATERMARK FOR date_time AS date_time - INTERVAL '1' SECOND
) WITH ('connector' = 'filesystem', 'path' = '${DATA}/bids.jsonl', 'format' = 'json');

CREATE TABLE out (
  channel VARCHAR, window_start TIMESTAMP(3), window_end TIMESTAMP(3), bids BIGINT, big_bids BIGINT
) WITH (connector = 'filesystem', path = '${OUT}', format = 'json');

INSERT INTO out
SELECT b.channel,
  HOP_START(b.date_time, INTERVAL '5' SECOND, INTERVAL '10' SECOND) AS window_start,
  HOP_END(b.date_time, INTERVAL '5' SECOND, INTERVAL '10' SECOND) AS window_end,
  count(*), count(*) FILTER (WHERE price > 800)
FROM bids AS b
GROUP BY HOP(b.date_time, INTERVAL '5' SECOND, INTERVAL '10' SECOND), b.channel
HAVING HOP_END(b.date_time, INTERVAL '5' SECOND, INTERVAL '10' SECOND) > TIMESTAMP '2025-01-01 00:00:00';
