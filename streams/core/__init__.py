"""The pure domain core: identity normalisation, validation, points and stock rules.

Nothing here imports faust, confluent_kafka, redis or clickhouse_connect, and every
function takes the time it needs as an argument.
"""
