#!/bin/sh
# Runs a Kafka main class with every jar in /opt/kafka/libs, as apache/kafka's script of the
# same name does for the options this image supports: KAFKA_HEAP_OPTS, KAFKA_JVM_PERFORMANCE_OPTS,
# KAFKA_LOG4J_OPTS, KAFKA_OPTS and KAFKA_DEBUG-free plain runs. Usage: kafka-run-class.sh CLASS [ARGS]
base=/opt/kafka
[ -n "${KAFKA_HEAP_OPTS-}" ] || KAFKA_HEAP_OPTS="-Xms256m -Xmx256m"
[ -n "${KAFKA_JVM_PERFORMANCE_OPTS-}" ] || KAFKA_JVM_PERFORMANCE_OPTS="-XX:+UseSerialGC -XX:-UsePerfData"
if [ -z "${KAFKA_LOG4J_OPTS-}" ]; then
  case "$1" in
    kafka.Kafka) KAFKA_LOG4J_OPTS="-Dlog4j2.configurationFile=$base/config/log4j2.yaml" ;;
    *) KAFKA_LOG4J_OPTS="-Dlog4j2.configurationFile=$base/config/tools-log4j2.yaml" ;;
  esac
fi
# shellcheck disable=SC2086 # the options are word lists, as in apache/kafka's script
exec /opt/java/openjdk/bin/java $KAFKA_HEAP_OPTS $KAFKA_JVM_PERFORMANCE_OPTS $KAFKA_LOG4J_OPTS \
  ${KAFKA_OPTS-} -cp "$base/libs/*" "$@"
