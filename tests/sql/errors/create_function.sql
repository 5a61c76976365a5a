CREATE TABLE bids (auction BIGINT, price BIGINT)
WITH ('connector' = 'filesystem', 'path' = 'bids.jsonl', 'format' = 'json');

CREATE TEMPORARY FUNCTION price_band AS 'com.example.PriceBand';

SELECT auction, price_band(price) FROM bids;
