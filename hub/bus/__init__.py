"""Kafka plumbing shared by connectors, fusion and the stack (kafka-python)."""
