#!/usr/bin/env bash
# Each stage's Kafka Secret in namespace katagate, made from the Strimzi User Operator's
# Secrets (one per KafkaUser of strimzi-users.yaml, in the Kafka's namespace, key `password`):
#   katagate-kafka-<principal>  client.properties: SCRAM-SHA-512 over TLS as that principal
#   katagate-kafka-ca           ca.crt: the Kafka's cluster CA (ssl.ca.location)
# A password goes from one kubectl to the next through a pipe: never a command line, a shell
# variable or an environment. Run it again after a password changes, then restart the stages.
#
#   deploy/k8s/kafka-secrets.sh [KAFKA_NAMESPACE [KAFKA_NAME]]      # default: kafka katagate
set -euo pipefail
kafka_namespace=${1:-kafka}
kafka_name=${2:-katagate}
namespace=katagate
# The principals of the pods in this folder: the setup Job (admin), the stages, the console
# and the audit checkpointer.
principals=(admin ingest scanner decider projector console audit)

apply() {  # a Secret from stdin: created, or replaced when it exists
  kubectl -n "$namespace" create secret generic "$1" --from-file="$2=/dev/stdin" \
    --dry-run=client -o yaml | kubectl apply -f -
}

# Each source must exist first: a pipe that broke halfway would still write a Secret.
for source in "$kafka_name-cluster-ca-cert" "${principals[@]}"; do
  kubectl -n "$kafka_namespace" get secret "$source" -o name
done
kubectl -n "$kafka_namespace" get secret "$kafka_name-cluster-ca-cert" \
  -o jsonpath='{.data.ca\.crt}' | base64 -d | apply katagate-kafka-ca ca.crt
for principal in "${principals[@]}"; do
  {
    printf '# katagate principal %s (deploy/k8s/kafka-secrets.sh)\n' "$principal"
    printf 'security.protocol=SASL_SSL\nsasl.mechanism=SCRAM-SHA-512\n'
    printf 'sasl.username=%s\nsasl.password=' "$principal"
    kubectl -n "$kafka_namespace" get secret "$principal" -o jsonpath='{.data.password}' \
      | base64 -d
    printf '\nssl.ca.location=/etc/katagate/kafka-ca/ca.crt\n'
  } | apply "katagate-kafka-$principal" client.properties
done
