-- Filters: comparisons, IN, LIKE, arithmetic and boolean logic.
CREATE TABLE bids (
  auction BIGINT, bidder BIGINT, price BIGINT, channel VARCHAR, date_time TIMESTAMP(3),
  WATERMARK FOR date_time AS date_time - INTERVAL '1' SECOND
) WITH ('connector' = 'filesystem', 'path' = '${DATA}/bids.jsonl', 'format' = 'json');

CREATE TABLE out (auction BIGINT, bidder BIGINT, price BIGINT, channel VARCHAR)
WITH (connector = 'filesystem', path = '${OUT}', format = 'json');

INSERT INTO out
SELECT auction, bidder, price, channel
FROM bids
WHERE (price > 700 AND channel IN ('web', 'app')) OR (bidder % 7 = 0 AND channel LIKE 'pa%');
