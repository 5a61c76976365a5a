-- Cumulating windows: every 5 s, the total so far of the 20 s window.
CREATE TABLE bids (
  auction BIGINT, bidder BIGINT, price BIGINT, channel VARCHAR, date_time TIMESTAMP(3),
  WATERMARK FOR date_time AS date_time - INTERVAL '1' SECOND
) WITH ('connector' = 'filesystem', 'path' = '${DATA}/bids.jsonl', 'format' = 'json');

CREATE TABLE out (auction BIGINT, window_start TIMESTAMP(3), window_end TIMESTAMP(3), total BIGINT)
WITH (connector = 'filesystem', path = '${OUT}', format = 'json');

INSERT INTO out
SELECT auction, window_start, window_end, sum(price)
FROM CUMULATE(bids, date_time, INTERVAL '5' SECOND, INTERVAL '20' SECOND)
GROUP BY auction, window_start, window_end;
