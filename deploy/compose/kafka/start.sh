#!/bin/sh
# One node of the compose cluster: the shared server.properties plus this node's id and address,
# the storage formatted on first start, then the broker. The image's own entry point is not
# used: it builds the configuration from KAFKA_* variables and, for a listener named SSL, reads
# the key store's password into its environment (where `ps e` shows it).
set -eu
config=/opt/kafka/config/katagate.properties
host=$(hostname)
{
  cat /etc/kafka/katagate/server.properties
  echo "node.id=${KAFKA_NODE_ID}"
  echo "advertised.listeners=CLIENT://${host}:9092,INTERNAL://${host}:9094"
} > "$config"
/opt/kafka/bin/kafka-storage.sh format --ignore-formatted --cluster-id "${CLUSTER_ID}" \
    --config "$config"
exec /opt/kafka/bin/kafka-server-start.sh "$config"
