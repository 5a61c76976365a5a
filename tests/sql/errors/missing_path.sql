CREATE TABLE t (a BIGINT) WITH ('connector' = 'filesystem', 'format' = 'json');
CREATE TABLE o (a BIGINT) WITH ('connector' = 'print');
INSERT INTO o SELECT a FROM t;
