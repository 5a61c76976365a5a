CREATE TABLE bids (
  auction BIGINT, bidder BIGINT, price BIGINT, channel VARCHAR, date_time TIMESTAMP(3)
) WITH ('connector' = 'filesystem', 'path' = 'bids.jsonl', 'format' = 'json');
CREATE TABLE out (auction BIGINT, price BIGINT) WITH ('connector' = 'print');

INSERT INTO out
SELECT auction, price FROM (
  SELECT *, ROW_NUMBER() OVER (PARTITION BY auction ORDER BY date_time DESC) AS rn FROM bids
) WHERE rn = 1;
