CREATE TABLE bids (
  auction BIGINT, bidder BIGINT, price BIGINT, channel VARCHAR, date_time TIMESTAMP(3)
) WITH ('connector' = 'filesystem', 'path' = 'bids.jsonl', 'format' = 'json');
CREATE TABLE out (auction BIGINT, price BIGINT)
WITH ('connector' = 'filesystem', 'path' = 'out', 'format' = 'json');

INSERT INTO out SELECT auction, price FROM bids WHERE price < 10;
INSERT INTO out SELECT auction, price FROM bids WHERE price > 1000;
