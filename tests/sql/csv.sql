-- A CSV source with a header line.
CREATE TABLE bids (
  auction BIGINT, bidder BIGINT, price BIGINT, channel VARCHAR, date_time TIMESTAMP(3),
  WATERMARK FOR date_time AS date_time - INTERVAL '1' SECOND
) WITH (
  connector = 'filesystem', 'path' = '${DATA}/bids.csv', format = 'csv',
  csv.ignore-first-line = 'true'
);

CREATE TABLE out (channel VARCHAR, window_end TIMESTAMP(3), bids BIGINT, top BIGINT)
WITH (connector = 'filesystem', path = '${OUT}', format = 'json');

INSERT INTO out
SELECT channel, window_end, count(*), max(price)
FROM TUMBLE(bids, date_time, INTERVAL '20' SECOND)
GROUP BY channel, window_end;
