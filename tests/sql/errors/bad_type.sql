CREATE TABLE t (a BIGINT, b MAP<STRING, STRING>) WITH ('connector' = 'print');
