CREATE TABLE rates (
  currency VARCHAR, rate DOUBLE, update_time TIMESTAMP(3),
  WATERMARK FOR update_time AS update_time - INTERVAL '1' SECOND
) WITH ('connector' = 'filesystem', 'path' = 'rates.jsonl', 'format' = 'json');

SELECT r.currency, r.rate
FROM rates FOR SYSTEM_TIME AS OF update_time AS r;
