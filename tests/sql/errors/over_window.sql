CREATE TABLE bids (
  auction BIGINT, bidder BIGINT, price BIGINT, channel VARCHAR, date_time TIMESTAMP(3)
) WITH ('connector' = 'filesystem', 'path' = 'bids.jsonl', 'format' = 'json');
CREATE TABLE out (auction BIGINT, n BIGINT) WITH ('connector' = 'print');

INSERT INTO out SELECT auction, sum(price) OVER (PARTITION BY auction ORDER BY date_time) FROM bids;
