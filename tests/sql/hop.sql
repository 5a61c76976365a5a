-- Hopping windows of 10 s every 5 s, per channel, with a filtered aggregate.
CREATE TABLE bids (
  auction BIGINT, bidder BIGINT, price BIGINT, channel VARCHAR, date_time TIMESTAMP(3),
  WATERMARK FOR date_time AS date_time - INTERVAL '1' SECOND
) WITH ('connector' = 'filesystem', 'path' = '${DATA}/bids.jsonl', 'format' = 'json');

CREATE TABLE out (
  channel VARCHAR, window_start TIMESTAMP(3), window_end TIMESTAMP(3), bids BIGINT, big_bids BIGINT
) WITH (connector = 'filesystem', path = '${OUT}', format = 'json');

INSERT INTO out
SELECT channel, window_start, window_end, count(*), count(*) FILTER (WHERE price > 800)
FROM HOP(bids, date_time, INTERVAL '5' SECOND, INTERVAL '10' SECOND)
GROUP BY channel, window_start, window_end;
