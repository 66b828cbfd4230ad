// Runs KafkaShareConsumer instances (KIP-932 share groups) for tests/python/test_share_groups.py
// and reports what they receive as JSON lines on stdout, one object per line:
//
//   {"event":"configured","group":G}                      the group configs were set (Admin)
//   {"event":"started","consumer":I}                      consumer I subscribed
//   {"event":"assigned","members":N}                      await-members=N: DescribeShareGroups
//                                                         shows N members, each with an assignment
//   {"event":"record","consumer":I,"partition":P,"offset":O,"key":K,"value":V,
//    "deliveryCount":D,"ack":"ACCEPT|RELEASE|REJECT|NONE","lockMs":L}
//   {"event":"acked","consumer":I,"partition":P,"offsets":[...],"error":null|"Class: msg"}
//                                                         the broker's answer to acknowledgements
//                                                         (the acknowledgement commit callback)
//   {"event":"polled","consumer":I,"count":N}             a poll returned N > 0 records
//   {"event":"holding","consumer":I}                      hold=true: records kept unacknowledged
//   {"event":"error","consumer":I,"error":"Class","message":M}   poll threw; the consumer closes
//   {"event":"closed","consumer":I}                       close() returned
//
// Arguments are key=value:
//   bootstrap=, group=, topic=    required
//   consumers=N                   consumers, one thread each (default 1)
//   mode=implicit|explicit        share.acknowledgement.mode (default explicit)
//   group-config=k=v              (repeatable) set on the GROUP config resource with
//                                 IncrementalAlterConfigs before the consumers start
//   consumer-config=k=v           (repeatable) extra consumer settings
//   process-ms=N                  sleep N ms per record received ("processing")
//   release-below=K               explicit: RELEASE a record delivered fewer than K times
//   release=v1,v2                 explicit: RELEASE the records with these values, always
//   reject=v1,v2                  explicit: REJECT the records with these values
//                                 (every other record is ACCEPTed)
//   await-members=N               report "assigned" once the group has N members with assignments
//   hold=true                     acknowledge nothing: after the first poll that returns records
//                                 stop polling until told to stop
//   renew-for-ms=N                explicit: RENEW a record (AcknowledgeType.RENEW, KIP-1222)
//                                 until N ms after it was first received, then ACCEPT it;
//                                 after a poll with renewals sleep renew-every-ms (default 3000)
//
// It runs until stdin ends or reads a line "stop": then each consumer closes, and the process
// exits 0. Run it with the jars of scripts/kafka-dist.sh on the class path.

import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collection;
import java.util.HashMap;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.Set;
import java.util.TreeSet;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;

import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.clients.admin.AlterConfigOp;
import org.apache.kafka.clients.admin.ConfigEntry;
import org.apache.kafka.clients.admin.ShareGroupDescription;
import org.apache.kafka.clients.consumer.AcknowledgeType;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.ConsumerRecords;
import org.apache.kafka.clients.consumer.KafkaShareConsumer;
import org.apache.kafka.common.TopicIdPartition;
import org.apache.kafka.common.config.ConfigResource;
import org.apache.kafka.common.serialization.StringDeserializer;

public class ShareConsumers {
    static volatile boolean stopping = false;

    static synchronized void emit(String json) {
        System.out.println(json);
        System.out.flush();
    }

    static String q(String s) {
        if (s == null) {
            return "null";
        }
        StringBuilder b = new StringBuilder("\"");
        for (char c : s.toCharArray()) {
            switch (c) {
                case '"': b.append("\\\""); break;
                case '\\': b.append("\\\\"); break;
                case '\n': b.append("\\n"); break;
                case '\r': b.append("\\r"); break;
                case '\t': b.append("\\t"); break;
                default:
                    if (c < 0x20) {
                        b.append(String.format("\\u%04x", (int) c));
                    } else {
                        b.append(c);
                    }
            }
        }
        return b.append('"').toString();
    }

    static String describe(Throwable e) {
        return e == null ? "null" : q(e.getClass().getSimpleName() + ": " + e.getMessage());
    }

    static Set<String> csv(String s) {
        return s == null || s.isEmpty() ? Set.of() : new HashSet<>(Arrays.asList(s.split(",")));
    }

    static Map<String, String> pairs(List<String> kvs) {
        Map<String, String> out = new HashMap<>();
        for (String kv : kvs) {
            int i = kv.indexOf('=');
            out.put(kv.substring(0, i), kv.substring(i + 1));
        }
        return out;
    }

    public static void main(String[] argv) throws Exception {
        Map<String, String> args = new HashMap<>();
        List<String> groupConfigs = new ArrayList<>();
        List<String> consumerConfigs = new ArrayList<>();
        for (String a : argv) {
            int i = a.indexOf('=');
            String k = a.substring(0, i), v = a.substring(i + 1);
            if (k.equals("group-config")) {
                groupConfigs.add(v);
            } else if (k.equals("consumer-config")) {
                consumerConfigs.add(v);
            } else {
                args.put(k, v);
            }
        }
        String bootstrap = args.get("bootstrap"), group = args.get("group"), topic = args.get("topic");
        int n = Integer.parseInt(args.getOrDefault("consumers", "1"));

        if (!groupConfigs.isEmpty()) {
            Properties ap = new Properties();
            ap.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
            try (Admin admin = Admin.create(ap)) {
                List<AlterConfigOp> ops = new ArrayList<>();
                for (Map.Entry<String, String> e : pairs(groupConfigs).entrySet()) {
                    ops.add(new AlterConfigOp(new ConfigEntry(e.getKey(), e.getValue()),
                                              AlterConfigOp.OpType.SET));
                }
                ConfigResource res = new ConfigResource(ConfigResource.Type.GROUP, group);
                admin.incrementalAlterConfigs(Map.of(res, (Collection<AlterConfigOp>) ops))
                     .all().get(60, TimeUnit.SECONDS);
            }
            emit("{\"event\":\"configured\",\"group\":" + q(group) + "}");
        }

        List<Thread> threads = new ArrayList<>();
        for (int i = 0; i < n; i++) {
            final int index = i;
            Thread t = new Thread(() -> run(index, args, consumerConfigs), "share-consumer-" + i);
            t.start();
            threads.add(t);
        }
        if (args.containsKey("await-members")) {
            awaitMembers(bootstrap, group, Integer.parseInt(args.get("await-members")));
        }
        BufferedReader in = new BufferedReader(new InputStreamReader(System.in));
        String line;
        while ((line = in.readLine()) != null) {
            if (line.trim().equals("stop")) {
                break;
            }
        }
        stopping = true;
        for (Thread t : threads) {
            t.join();
        }
    }

    static void awaitMembers(String bootstrap, String group, int n) throws Exception {
        Properties ap = new Properties();
        ap.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        try (Admin admin = Admin.create(ap)) {
            while (!stopping) {
                try {
                    ShareGroupDescription d = admin.describeShareGroups(List.of(group))
                        .describedGroups().get(group).get(30, TimeUnit.SECONDS);
                    if (d.members().size() == n && d.members().stream()
                            .allMatch(m -> !m.assignment().topicPartitions().isEmpty())) {
                        emit("{\"event\":\"assigned\",\"members\":" + n + "}");
                        return;
                    }
                } catch (ExecutionException e) {
                    // Not there yet (GROUP_ID_NOT_FOUND before the first heartbeat): ask again.
                }
                Thread.sleep(200);
            }
        }
    }

    static void run(int index, Map<String, String> args, List<String> consumerConfigs) {
        String mode = args.getOrDefault("mode", "explicit");
        boolean explicit = mode.equals("explicit");
        int releaseBelow = Integer.parseInt(args.getOrDefault("release-below", "0"));
        Set<String> release = csv(args.get("release")), reject = csv(args.get("reject"));
        boolean hold = Boolean.parseBoolean(args.getOrDefault("hold", "false"));
        long processMs = Long.parseLong(args.getOrDefault("process-ms", "0"));
        long renewForMs = Long.parseLong(args.getOrDefault("renew-for-ms", "0"));
        long renewEveryMs = Long.parseLong(args.getOrDefault("renew-every-ms", "3000"));
        Map<String, Long> firstSeen = new HashMap<>();

        Properties p = new Properties();
        p.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, args.get("bootstrap"));
        p.put(ConsumerConfig.GROUP_ID_CONFIG, args.get("group"));
        p.put(ConsumerConfig.CLIENT_ID_CONFIG, args.getOrDefault("client-id", "share") + "-" + index);
        p.put(ConsumerConfig.SHARE_ACKNOWLEDGEMENT_MODE_CONFIG, mode);
        p.putAll(pairs(consumerConfigs));
        KafkaShareConsumer<String, String> c =
            new KafkaShareConsumer<>(p, new StringDeserializer(), new StringDeserializer());
        c.setAcknowledgementCommitCallback((Map<TopicIdPartition, Set<Long>> offsets, Exception e) -> {
            for (Map.Entry<TopicIdPartition, Set<Long>> entry : offsets.entrySet()) {
                emit("{\"event\":\"acked\",\"consumer\":" + index + ",\"partition\":"
                     + entry.getKey().partition() + ",\"offsets\":"
                     + new TreeSet<>(entry.getValue()).toString().replace(" ", "")
                     + ",\"error\":" + describe(e) + "}");
            }
        });
        try {
            c.subscribe(List.of(args.get("topic")));
            emit("{\"event\":\"started\",\"consumer\":" + index + "}");
            boolean holding = false;
            while (!stopping) {
                if (holding) {
                    Thread.sleep(50);
                    continue;
                }
                ConsumerRecords<String, String> records;
                try {
                    records = c.poll(Duration.ofMillis(200));
                } catch (Exception e) {
                    emit("{\"event\":\"error\",\"consumer\":" + index + ",\"error\":"
                         + q(e.getClass().getName()) + ",\"message\":" + q(e.getMessage()) + "}");
                    break;
                }
                String lock = c.acquisitionLockTimeoutMs().map(String::valueOf).orElse("null");
                if (!records.isEmpty()) {
                    emit("{\"event\":\"polled\",\"consumer\":" + index + ",\"count\":" + records.count() + "}");
                }
                boolean renewed = false;
                for (ConsumerRecord<String, String> r : records) {
                    AcknowledgeType ack;
                    long seen = firstSeen.computeIfAbsent(r.partition() + ":" + r.offset(),
                                                          k -> System.currentTimeMillis());
                    if (hold) {
                        ack = null;
                    } else if (!explicit) {
                        ack = AcknowledgeType.ACCEPT;  // implicitly, by the next poll
                    } else if (System.currentTimeMillis() < seen + renewForMs) {
                        ack = AcknowledgeType.RENEW;
                        renewed = true;
                    } else if (reject.contains(r.value())) {
                        ack = AcknowledgeType.REJECT;
                    } else if (release.contains(r.value())
                               || r.deliveryCount().orElse((short) 0) < releaseBelow) {
                        ack = AcknowledgeType.RELEASE;
                    } else {
                        ack = AcknowledgeType.ACCEPT;
                    }
                    emit("{\"event\":\"record\",\"consumer\":" + index + ",\"partition\":" + r.partition()
                         + ",\"offset\":" + r.offset() + ",\"key\":" + q(r.key())
                         + ",\"value\":" + q(r.value())
                         + ",\"deliveryCount\":" + r.deliveryCount().map(String::valueOf).orElse("null")
                         + ",\"ack\":" + q(ack == null ? "NONE" : ack.name()) + ",\"lockMs\":" + lock + "}");
                    if (processMs > 0) {
                        Thread.sleep(processMs);
                    }
                    if (explicit && ack != null) {
                        c.acknowledge(r, ack);
                    }
                }
                if (hold && !records.isEmpty()) {
                    holding = true;
                    emit("{\"event\":\"holding\",\"consumer\":" + index + "}");
                } else if (explicit && !records.isEmpty()) {
                    c.commitSync(Duration.ofSeconds(30));
                    if (renewed) {
                        Thread.sleep(renewEveryMs);
                    }
                }
            }
        } catch (Exception e) {
            emit("{\"event\":\"error\",\"consumer\":" + index + ",\"error\":"
                 + q(e.getClass().getName()) + ",\"message\":" + q(e.getMessage()) + "}");
        } finally {
            try {
                c.close(Duration.ofSeconds(30));
            } catch (Exception e) {
                emit("{\"event\":\"error\",\"consumer\":" + index + ",\"error\":"
                     + q(e.getClass().getName()) + ",\"message\":" + q("close: " + e.getMessage()) + "}");
            }
            emit("{\"event\":\"closed\",\"consumer\":" + index + "}");
        }
    }
}
