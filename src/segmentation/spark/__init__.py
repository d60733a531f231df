"""The stages that run on a Spark cluster (`engine: spark`): the same config, the same outputs."""
