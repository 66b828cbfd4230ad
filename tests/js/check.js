#!/usr/bin/env node
// kafkajs compatibility check, run by tests/python/test_go_js_clients.py.
//
//   node check.js BOOTSTRAP TOPIC
//
// Creates a 6-partition topic with the admin client; produces 1,000 keyed records with an
// idempotent producer and gzip compression (the only codec kafkajs ships); consumes them in a
// consumer group with run() and checks each record arrives exactly once, with per-key order,
// key->partition stickiness, the producer's offsets and a producer id intact; commits; checks the
// committed offsets with the admin client; checks a second member of the same group finds nothing
// left; lists and describes groups. Exits non-zero with a FAIL: line on any mismatch.
//
// Env: CLIENTCHECK_DEBUG=1 logs kafkajs at debug level (default: info).
// CLIENTCHECK_TIMEOUT_MS (default 150000) bounds the whole run.
'use strict'

const { Kafka, logLevel, CompressionTypes, Partitioners } = require('kafkajs')

const PARTITIONS = 6
const TOTAL = 1000
const KEYS = 20
const SEND_CHUNK = 100
const IDLE_CHECK_MS = 5000

class CheckFailure extends Error {}

function fail(msg) {
  throw new CheckFailure(msg)
}

function step(msg) {
  console.log(`[${new Date().toISOString().slice(11, 23)}] ${msg}`)
}

const sleep = ms => new Promise(resolve => setTimeout(resolve, ms))

const keyOf = i => `key-${String(i % KEYS).padStart(2, '0')}`
const valueOf = i => `${i}|${'gregor-'.repeat(28)}`

function indexOf(value) {
  const s = value === null ? '' : value.toString()
  const bar = s.indexOf('|')
  const i = bar < 0 ? NaN : Number(s.slice(0, bar))
  if (!Number.isInteger(i) || i < 0 || i >= TOTAL) fail(`value ${JSON.stringify(s.slice(0, 40))} has no valid index`)
  if (s !== valueOf(i)) fail(`value of record ${i} is corrupted: ${JSON.stringify(s.slice(0, 60))}`)
  return i
}

async function withDeadline(what, ms, fn) {
  let timer
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new CheckFailure(`${what}: timed out after ${ms} ms`)), ms)
  })
  try {
    return await Promise.race([fn(), timeout])
  } finally {
    clearTimeout(timer)
  }
}

async function main(bootstrap, topic) {
  const groupId = `${topic}-group`
  const kafka = new Kafka({
    clientId: 'clientcheck-kafkajs',
    brokers: [bootstrap],
    logLevel: process.env.CLIENTCHECK_DEBUG ? logLevel.DEBUG : logLevel.INFO,
    connectionTimeout: 5000,
    requestTimeout: 30000,
    retry: { retries: 8 },
  })
  const cleanup = []
  try {
    // --- admin: create the topic ------------------------------------------------------------
    const admin = kafka.admin()
    cleanup.push(() => admin.disconnect())
    await admin.connect()
    step(`admin.createTopics ${topic} (${PARTITIONS} partitions, rf 1)`)
    const created = await admin.createTopics({
      topics: [{ topic, numPartitions: PARTITIONS, replicationFactor: 1 }],
      waitForLeaders: true,
      timeout: 30000,
    })
    if (created !== true) fail(`admin.createTopics returned ${created}: topic ${topic} already existed?`)
    const md = await admin.fetchTopicMetadata({ topics: [topic] })
    const parts = md.topics[0].partitions
    if (parts.length !== PARTITIONS) fail(`metadata lists ${parts.length} partitions, want ${PARTITIONS}`)
    for (const p of parts) {
      if (p.partitionErrorCode !== 0 || p.leader < 0) fail(`partition ${p.partitionId}: leader ${p.leader}, error ${p.partitionErrorCode}`)
    }
    step(`metadata: ${PARTITIONS} partitions with leaders`)

    // --- produce ------------------------------------------------------------------------------
    const producer = kafka.producer({
      idempotent: true,
      maxInFlightRequests: 1,
      // kafkajs's idempotent default (any fewer warns "may invalidate EoS"); the watchdog bounds it
      retry: { retries: Number.MAX_SAFE_INTEGER },
      createPartitioner: Partitioners.DefaultPartitioner,
    })
    cleanup.push(() => producer.disconnect())
    await producer.connect()
    const where = new Array(TOTAL) // i -> {partition, offset}
    for (let from = 0; from < TOTAL; from += SEND_CHUNK) {
      const idx = []
      for (let i = from; i < Math.min(from + SEND_CHUNK, TOTAL); i++) idx.push(i)
      const meta = await producer.send({
        topic,
        acks: -1,
        compression: CompressionTypes.GZIP,
        messages: idx.map(i => ({ key: keyOf(i), value: valueOf(i) })),
      })
      // One send is one batch per partition: each message's offset is the partition's base
      // offset plus its position among this send's messages to that partition.
      const base = new Map()
      for (const m of meta) {
        if (m.errorCode !== 0) fail(`producer.send: partition ${m.partition} error ${m.errorCode}`)
        base.set(m.partition, Number(m.baseOffset))
      }
      // The consumer checks each record's offset against its send's base offset for the
      // partition it arrives on.
      for (const i of idx) where[i] = { chunk: from, base }
    }
    step(`producer: ${TOTAL} records acknowledged in ${TOTAL / SEND_CHUNK} gzip sends`)

    const topicOffsets = await admin.fetchTopicOffsets(topic)
    const ends = new Map(topicOffsets.map(o => [o.partition, Number(o.high)]))
    const sumEnds = [...ends.values()].reduce((a, b) => a + b, 0)
    if (sumEnds !== TOTAL) fail(`high watermarks add up to ${sumEnds}, want ${TOTAL} (duplicates or losses): ${JSON.stringify(topicOffsets)}`)
    step(`admin.fetchTopicOffsets: high watermarks ${JSON.stringify(Object.fromEntries(ends))}`)

    // --- consume in a group -------------------------------------------------------------------
    const consumer = kafka.consumer({ groupId, maxWaitTimeInMs: 500 })
    cleanup.push(() => consumer.disconnect())
    await consumer.connect()
    await consumer.subscribe({ topics: [topic], fromBeginning: true })
    const seen = new Array(TOTAL).fill(false)
    const lastOfKey = new Map()
    const partOfKey = new Map()
    const nextOffset = new Map() // partition -> last consumed offset + 1
    const posInChunk = new Map() // `${chunk}/${partition}` -> messages of that send seen so far
    let count = 0
    let problem = null
    let done
    const allSeen = new Promise(resolve => { done = resolve })
    step(`consumer-1 joining group ${groupId}`)
    await consumer.run({
      autoCommit: false,
      eachMessage: async ({ topic: t, partition, message }) => {
        if (problem) return
        try {
          const i = indexOf(message.value)
          if (seen[i]) fail(`record ${i} arrived twice (second time at ${t}[${partition}]@${message.offset})`)
          seen[i] = true
          count++
          const key = message.key === null ? null : message.key.toString()
          if (key !== keyOf(i)) fail(`record ${i} has key ${key}, want ${keyOf(i)}`)
          if (partOfKey.has(key) && partOfKey.get(key) !== partition) fail(`key ${key} seen in partitions ${partOfKey.get(key)} and ${partition}`)
          partOfKey.set(key, partition)
          if (lastOfKey.has(key) && i < lastOfKey.get(key)) fail(`key ${key} out of order: record ${i} after record ${lastOfKey.get(key)}`)
          lastOfKey.set(key, i)
          const offset = Number(message.offset)
          const w = where[i]
          if (!w.base.has(partition)) fail(`record ${i} consumed from partition ${partition}, but its send got no offset for that partition`)
          const slot = `${w.chunk}/${partition}`
          const k = posInChunk.get(slot) || 0
          posInChunk.set(slot, k + 1)
          if (offset !== w.base.get(partition) + k) fail(`record ${i} at ${partition}@${offset}, but its send's base offset ${w.base.get(partition)} puts it at ${w.base.get(partition) + k}`)
          const pid = message.batchContext && message.batchContext.producerId
          if (pid === undefined || Number(pid) < 0) fail(`record ${i} at ${partition}@${offset} has producer id ${pid} (batch not idempotent)`)
          nextOffset.set(partition, offset + 1)
          if (count === TOTAL) done()
        } catch (e) {
          problem = e
          done()
        }
      },
    })
    await withDeadline(`consumer-1 waiting for ${TOTAL} records (have ${count})`, 60000, () => allSeen)
    if (problem) throw problem
    step(`consumer-1: all ${TOTAL} records arrived exactly once, per-key order kept`)
    for (const [p, end] of ends) {
      if ((nextOffset.get(p) || 0) !== end) fail(`consumer-1 stopped at ${nextOffset.get(p)} on partition ${p}, high watermark ${end}`)
    }
    await consumer.commitOffsets([...nextOffset].map(([partition, offset]) => ({ topic, partition, offset: String(offset) })))
    step(`consumer-1: committed ${JSON.stringify(Object.fromEntries(nextOffset))}`)
    await consumer.disconnect() // leaves the group

    // --- admin: committed offsets equal the high watermarks --------------------------------
    const committed = await admin.fetchOffsets({ groupId, topics: [topic] })
    for (const { partition, offset } of committed[0].partitions) {
      const want = ends.get(partition)
      if (Number(offset) !== want && !(want === 0 && Number(offset) === -1)) {
        fail(`admin.fetchOffsets: partition ${partition} committed ${offset}, want ${want}`)
      }
    }
    step('admin.fetchOffsets: committed offsets equal the high watermarks')

    // --- a second member of the same group finds nothing left ------------------------------
    const consumer2 = kafka.consumer({ groupId, maxWaitTimeInMs: 500 })
    cleanup.push(() => consumer2.disconnect())
    await consumer2.connect()
    await consumer2.subscribe({ topics: [topic], fromBeginning: true }) // would re-read all without commits
    let joined
    const join = new Promise(resolve => { joined = resolve })
    consumer2.on(consumer2.events.GROUP_JOIN, e => joined(e.payload))
    let got = 0
    step(`consumer-2 joining group ${groupId}`)
    await consumer2.run({
      autoCommit: false,
      eachMessage: async ({ partition, message }) => {
        got++
        if (got <= 5) console.error(`consumer-2 got ${topic}[${partition}]@${message.offset} key ${message.key}`)
      },
    })
    const payload = await withDeadline(`consumer-2 joining group ${groupId}`, 45000, () => join)
    const assigned = (payload.memberAssignment && payload.memberAssignment[topic]) || []
    step(`consumer-2: joined, assigned ${JSON.stringify(payload.memberAssignment)}`)
    if (assigned.length !== PARTITIONS) fail(`consumer-2 assigned ${assigned.length} partitions, want ${PARTITIONS}`)
    await sleep(IDLE_CHECK_MS)
    if (got !== 0) fail(`consumer-2 got ${got} records after the group committed everything (committed offsets ignored?)`)
    step(`consumer-2: nothing left to consume after ${IDLE_CHECK_MS} ms`)
    await consumer2.disconnect()

    // --- admin: list / describe groups --------------------------------------------------------
    const { groups } = await admin.listGroups()
    const listed = groups.find(g => g.groupId === groupId)
    if (!listed) fail(`admin.listGroups: ${groupId} not listed (got ${JSON.stringify(groups)})`)
    if (listed.protocolType !== 'consumer') fail(`admin.listGroups: protocol type ${listed.protocolType}, want consumer`)
    const described = await admin.describeGroups([groupId])
    const dg = described.groups.find(g => g.groupId === groupId)
    if (!dg) fail(`admin.describeGroups: ${groupId} missing`)
    if (dg.errorCode !== 0) fail(`admin.describeGroups: ${groupId} error ${dg.errorCode}`)
    step(`admin: group ${groupId} listed; described state ${dg.state}, ${dg.members.length} members`)
  } finally {
    for (const f of cleanup.reverse()) {
      try { await f() } catch (e) { console.error(`cleanup: ${e}`) }
    }
  }
}

if (process.argv.length !== 4) {
  console.error('usage: node check.js BOOTSTRAP TOPIC')
  process.exit(2)
}
const overall = Number(process.env.CLIENTCHECK_TIMEOUT_MS || 150000)
const watchdog = setTimeout(() => {
  console.error(`FAIL: the whole check took longer than ${overall} ms`)
  process.exit(1)
}, overall)
main(process.argv[2], process.argv[3]).then(
  () => {
    clearTimeout(watchdog)
    console.log('OK: kafkajs check passed')
    process.exit(0)
  },
  e => {
    clearTimeout(watchdog)
    console.error(e instanceof CheckFailure ? `FAIL: ${e.message}` : `FAIL: ${e.stack || e}`)
    process.exit(1)
  }
)
