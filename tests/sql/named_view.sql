-- A plain CREATE VIEW: a named query (with a mixed-case name), inlined
-- where it is read.
CREATE TABLE bids (
  auction BIGINT, bidder BIGINT, price BIGINT, channel VARCHAR, date_time TIMESTAMP(3),
  WATERMARK FOR date_time AS date_time - INTERVAL '1' SECOND
) WITH ('connector' = 'filesystem', 'path' = '${DATA}/bids.jsonl', 'format' = 'json');

CREATE VIEW bigBids AS
SELECT auction, bidder, price * 2 AS doubled, upper(channel) AS channel
FROM bids
WHERE price > 600;

CREATE TABLE out (auction BIGINT, bidder BIGINT, doubled BIGINT, channel VARCHAR)
WITH (connector = 'filesystem', path = '${OUT}', format = 'json');

INSERT INTO out
SELECT auction, bidder, doubled, channel FROM bigBids WHERE channel <> 'API' AND bidder % 3 = 0;
