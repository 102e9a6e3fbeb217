"""A real single-node Apache Kafka broker, fetched from Maven Central and run without Docker."""

from katagate.eventlog.broker.launcher import (
    BrokerStatus,
    LocalBroker,
    default_data_dir,
    free_port,
    free_port_run,
)

__all__ = ["BrokerStatus", "LocalBroker", "default_data_dir", "free_port", "free_port_run"]
