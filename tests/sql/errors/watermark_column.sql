CREATE TABLE t (a BIGINT, ts TIMESTAMP(3),
  WATERMARK FOR tz AS tz - INTERVAL '1' SECOND
) WITH ('connector' = 'filesystem', 'path' = 'x', 'format' = 'json');
