"""A calibrated model of the app's scaling on AWS, for sizes no laptop runs (scripts/simulate).

API -> SQS -> event source mapping -> Lambda -> proxy -> PostgreSQL as a SimPy discrete-event
simulation at batch granularity, under AWS's published rules (the mapping's ramp is the local
cloud's own `localcloud_ext.scaling_policy`), with per-batch durations fitted to the burst tool's
reports (`calibration`) and the AWS bill from a pricing table kept beside it (`costs`).
"""
