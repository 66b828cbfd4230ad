"""confluent-kafka (librdkafka) as a KafkaUser's application runs it, for the operator's tests.

Usage: kafka_client.py produce|consume CONFIG_JSON TOPIC [COUNT]

CONFIG_JSON is a librdkafka configuration (the PEM strings of a TLS user's Secret go in
`ssl.certificate.pem`, `ssl.key.pem`, `ssl.ca.pem`); its `oauth.token` entry, when present,
is handed out by an `oauth_cb` as the OAUTHBEARER token. Prints one JSON object:
produce: {"delivered": n, "errors": [names], "throttled_ms": [times]}
consume: {"values": [...], "error": name or null}
"""

import json
import sys
import time

import confluent_kafka


def config(text: str, throttled: list) -> dict:
    conf = json.loads(text)
    token = conf.pop("oauth.token", None)
    if token is not None:
        conf["oauth_cb"] = lambda _config: (token, time.time() + 300)
    conf["throttle_cb"] = lambda event: throttled.append(int(event.throttle_time * 1000))
    conf.setdefault("ssl.endpoint.identification.algorithm", "none")
    return conf


def produce(text: str, topic: str, count: int) -> dict:
    throttled: list = []
    conf = config(text, throttled)
    conf.setdefault("message.timeout.ms", 20000)
    conf.setdefault("acks", "all")
    producer = confluent_kafka.Producer(conf)
    errors, delivered = [], []

    def done(err, _msg):
        if err:
            errors.append(err.name())
        else:
            delivered.append(1)

    for i in range(count):
        while True:
            try:
                producer.produce(topic, value=b"%d-" % i + b"x" * 1000, on_delivery=done)
                break
            except BufferError:
                producer.poll(0.1)
        producer.poll(0)
    producer.flush(60)
    return {"delivered": len(delivered), "errors": sorted(set(errors)), "throttled_ms": throttled}


def consume(text: str, topic: str, count: int) -> dict:
    throttled: list = []
    conf = config(text, throttled)
    conf.setdefault("auto.offset.reset", "earliest")
    consumer = confluent_kafka.Consumer(conf)
    consumer.subscribe([topic])
    values, error = [], None
    deadline = time.time() + 30
    while len(values) < count and time.time() < deadline and error is None:
        msg = consumer.poll(0.5)
        if msg is None:
            continue
        if msg.error():
            error = msg.error().name()
        else:
            values.append(msg.value().decode())
    consumer.close()
    return {"values": values, "error": error}


def main() -> None:
    mode, text, topic = sys.argv[1:4]
    count = int(sys.argv[4]) if len(sys.argv) > 4 else 1
    result = produce(text, topic, count) if mode == "produce" else consume(text, topic, count)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
