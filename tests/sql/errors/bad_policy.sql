CREATE TABLE t (a BIGINT) WITH ('connector' = 'filesystem', 'path' = 'x', 'format' = 'json', 'decode-error' = 'explode');
CREATE TABLE o (a BIGINT) WITH ('connector' = 'print');
INSERT INTO o SELECT a FROM t;
