"""The Spark engine (`engine: spark`): the stages' work on a cluster, the driver holding only
samples and aggregates."""
