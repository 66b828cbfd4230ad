"""The seed article's example, nearly verbatim: kafka-python producer and consumer."""

from kafka import KafkaConsumer, KafkaProducer


def test_seed_hello_kafka(bootstrap):
    producer = KafkaProducer(bootstrap_servers=[bootstrap])
    future = producer.send('test', b'Hello, Kafka!')
    producer.flush()
    metadata = future.get(timeout=30)  # raises if the broker refused the record
    producer.close()
    assert metadata.topic == 'test'

    consumer = KafkaConsumer(
        'test',
        group_id='my-group',
        bootstrap_servers=[bootstrap],
        auto_offset_reset='earliest',
        consumer_timeout_ms=10000,
    )
    received = []
    for message in consumer:
        print(message.value)
        received.append((message.partition, message.offset, message.value))
        if message.partition == metadata.partition and message.offset >= metadata.offset:
            break
    consumer.close()

    assert (metadata.partition, metadata.offset, b'Hello, Kafka!') in received
