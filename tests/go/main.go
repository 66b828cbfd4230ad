// clientcheck drives franz-go (kgo + kadm) against a Kafka-compatible broker and exits non-zero
// with a clear message on any mismatch. It is run by tests/python/test_go_js_clients.py.
//
// Usage:
//
//	clientcheck produce-consume BOOTSTRAP TOPIC
//	    create a 6-partition topic with kadm; produce 1,000 keyed records with the default
//	    (idempotent) producer in four compression variants (lz4, zstd, snappy, gzip; 250 records
//	    each); consume them in a consumer group and check each record arrives exactly once, with
//	    per-key order, key->partition stickiness, the producer's offsets, an idempotent producer id
//	    and the batch codec intact; commit; check that a second member of the same group finds
//	    nothing left; list and describe groups, committed offsets and lag with kadm.
//	clientcheck versions BOOTSTRAP
//	    print the API versions the broker advertises next to the ones franz-go would use.
//	clientcheck copy [-aborts F] [-txn-records N] [-seed S] BOOTSTRAP SRC DST GROUP TXNID COUNT
//	    the exactly-once copy loop (consume-transform-produce) of a kgo.GroupTransactSession: a
//	    read_committed member of GROUP polls up to N records of SRC, copies each to the same
//	    partition of DST in a transaction of TXNID, and ends the transaction, which commits the
//	    consumed offsets with it (TxnOffsetCommit with the group's generation, KIP-447) or, for a
//	    fraction F of them picked at random, aborts it after the copies were written, rewinding
//	    to the committed offsets. After each transaction it prints a status line,
//	    {"totalProcessed": records copied in committed transactions, "remaining": ...,
//	    "transactions": ..., "aborted": ...}, the format of Kafka's TransactionalMessageCopier,
//	    and once COUNT records are committed it leaves the group and prints a last one with
//	    "stage": "ShutdownComplete".
//
// Env: CLIENTCHECK_DEBUG=1 logs franz-go at debug level to stderr (default: info).
// CLIENTCHECK_TIMEOUT (Go duration, default 150s) bounds the whole run.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/twmb/franz-go/pkg/kversion"
)

const (
	partitions    = 6
	totalRecords  = 1000
	keyCount      = 20
	valuePadding  = 200 // repetitive bytes so that every codec actually shrinks the batch
	idleCheckTime = 5 * time.Second
)

type codecVariant struct {
	name  string
	codec kgo.CompressionCodec
	attr  uint8 // the codec bits a consumer sees in the batch attributes
}

var variants = []codecVariant{
	{"lz4", kgo.Lz4Compression(), 3},
	{"zstd", kgo.ZstdCompression(), 4},
	{"snappy", kgo.SnappyCompression(), 2},
	{"gzip", kgo.GzipCompression(), 1},
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: clientcheck produce-consume BOOTSTRAP TOPIC | clientcheck versions BOOTSTRAP\n"+
		"       clientcheck copy [-aborts F] [-txn-records N] [-seed S] BOOTSTRAP SRC DST GROUP TXNID COUNT")
	os.Exit(2)
}

func fail(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "FAIL: "+format+"\n", args...)
	os.Exit(1)
}

func step(format string, args ...any) {
	fmt.Printf("[%s] %s\n", time.Now().Format("15:04:05.000"), fmt.Sprintf(format, args...))
}

func logger(name string) kgo.Opt {
	level := kgo.LogLevelInfo
	if os.Getenv("CLIENTCHECK_DEBUG") != "" {
		level = kgo.LogLevelDebug
	}
	return kgo.WithLogger(kgo.BasicLogger(os.Stderr, level, func() string {
		return time.Now().Format("15:04:05.000") + " [" + name + "] "
	}))
}

func baseOpts(bootstrap, name string) []kgo.Opt {
	return []kgo.Opt{
		kgo.SeedBrokers(strings.Split(bootstrap, ",")...),
		kgo.ClientID("clientcheck-" + name),
		logger(name),
	}
}

func newClient(bootstrap, name string, opts ...kgo.Opt) *kgo.Client {
	base := append(baseOpts(bootstrap, name), kgo.RequestRetries(10))
	cl, err := kgo.NewClient(append(base, opts...)...)
	if err != nil {
		fail("%s: kgo.NewClient: %v", name, err)
	}
	return cl
}

func main() {
	if len(os.Args) < 3 {
		usage()
	}
	timeout := 150 * time.Second
	if s := os.Getenv("CLIENTCHECK_TIMEOUT"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil {
			fail("CLIENTCHECK_TIMEOUT=%q: %v", s, err)
		}
		timeout = d
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()

	switch os.Args[1] {
	case "produce-consume":
		if len(os.Args) != 4 {
			usage()
		}
		produceConsume(ctx, os.Args[2], os.Args[3])
		fmt.Println("OK: franz-go produce-consume passed")
	case "versions":
		if len(os.Args) != 3 {
			usage()
		}
		versions(ctx, os.Args[2])
	case "copy":
		copyLoop(ctx, os.Args[2:])
	default:
		usage()
	}
}

// versions prints, per API key the broker advertises, its range and franz-go's newest version.
func versions(ctx context.Context, bootstrap string) {
	cl := newClient(bootstrap, "versions")
	defer cl.Close()
	adm := kadm.NewClient(cl)
	resp, err := adm.ApiVersions(ctx)
	if err != nil {
		fail("ApiVersions: %v", err)
	}
	client := kversion.Stable()
	resp.Each(func(v kadm.BrokerApiVersions) {
		if v.Err != nil {
			fail("ApiVersions from node %d: %v", v.NodeID, v.Err)
		}
		fmt.Printf("node %d (guess: %s)\n", v.NodeID, v.VersionGuess())
		v.EachKeySorted(func(key, min, max int16) {
			cmax, _ := client.LookupMaxKeyVersion(key)
			fmt.Printf("  %3d %-32s broker %2d-%-2d  franz-go max %2d  -> uses %d\n",
				key, kmsg.NameForKey(key), min, max, cmax, min16(max, cmax))
		})
	})
}

func min16(a, b int16) int16 {
	if a < b {
		return a
	}
	return b
}

type produced struct {
	partition int32
	offset    int64
	variant   int
}

func keyOf(i int) string   { return fmt.Sprintf("key-%02d", i%keyCount) }
func valueOf(i int) string { return fmt.Sprintf("%d|%s", i, strings.Repeat("gregor-", valuePadding/7)) }

func indexOf(value []byte) (int, error) {
	s := string(value)
	bar := strings.IndexByte(s, '|')
	if bar < 0 {
		return 0, fmt.Errorf("value %.40q has no index", s)
	}
	i, err := strconv.Atoi(s[:bar])
	if err != nil || i < 0 || i >= totalRecords {
		return 0, fmt.Errorf("value %.40q has a bad index", s)
	}
	if s != valueOf(i) {
		return 0, fmt.Errorf("value of record %d is corrupted: %.60q", i, s)
	}
	return i, nil
}

func produceConsume(ctx context.Context, bootstrap, topic string) {
	group := topic + "-group"

	// --- admin: create the topic and wait for leaders ------------------------------------
	admCl := newClient(bootstrap, "admin")
	defer admCl.Close()
	adm := kadm.NewClient(admCl)

	step("kadm CreateTopic %s (%d partitions, rf 1)", topic, partitions)
	if _, err := adm.CreateTopic(ctx, partitions, 1, nil, topic); err != nil {
		fail("kadm CreateTopic %s: %v", topic, err)
	}
	waitForLeaders(ctx, adm, topic)

	// --- produce ---------------------------------------------------------------------------
	per := totalRecords / len(variants)
	where := make([]produced, totalRecords)
	for vi, v := range variants {
		produceVariant(ctx, bootstrap, topic, vi, v, vi*per, (vi+1)*per, where)
	}
	ends := make(map[int32]int64)
	for i, w := range where {
		if w.offset+1 > ends[w.partition] {
			ends[w.partition] = w.offset + 1
		}
		_ = i
	}
	step("produced %d records; highest offset+1 per partition: %v", totalRecords, ends)

	listed, err := adm.ListEndOffsets(ctx, topic)
	if err != nil {
		fail("kadm ListEndOffsets: %v", err)
	}
	if err := listed.Error(); err != nil {
		fail("kadm ListEndOffsets: %v", err)
	}
	var sumEnds int64
	for p := int32(0); p < partitions; p++ {
		o, ok := listed.Lookup(topic, p)
		if !ok {
			fail("kadm ListEndOffsets: no answer for partition %d", p)
		}
		if o.Offset != ends[p] {
			fail("kadm ListEndOffsets: partition %d end offset %d, but the producer's highest offset+1 is %d", p, o.Offset, ends[p])
		}
		sumEnds += o.Offset
	}
	if sumEnds != totalRecords {
		fail("end offsets add up to %d, want %d (duplicates or losses in the log)", sumEnds, totalRecords)
	}

	// --- consume in a group ------------------------------------------------------------------
	consumeAll(ctx, bootstrap, topic, group, where)

	// --- kadm: the group's committed offsets equal the end offsets ---------------------------
	checkCommitted(ctx, adm, topic, group, ends)

	// --- a second member of the same group finds nothing left ------------------------------
	consumeNothing(ctx, bootstrap, topic, group)

	// --- kadm: list / describe groups, lag ---------------------------------------------------
	checkGroupAdmin(ctx, adm, topic, group)
}

func waitForLeaders(ctx context.Context, adm *kadm.Client, topic string) {
	deadline := time.Now().Add(30 * time.Second)
	for {
		td, err := adm.ListTopics(ctx, topic)
		var why string
		if err != nil {
			why = err.Error()
		} else if t, ok := td[topic]; !ok {
			why = "topic missing from metadata"
		} else if t.Err != nil {
			why = t.Err.Error()
		} else if len(t.Partitions) != partitions {
			why = fmt.Sprintf("%d partitions in metadata, want %d", len(t.Partitions), partitions)
		} else {
			why = ""
			for _, p := range t.Partitions {
				if p.Err != nil || p.Leader < 0 {
					why = fmt.Sprintf("partition %d: leader %d err %v", p.Partition, p.Leader, p.Err)
					break
				}
			}
			if why == "" {
				step("metadata: %d partitions with leaders", partitions)
				return
			}
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			fail("topic %s never got leaders for all partitions: %s", topic, why)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func produceVariant(ctx context.Context, bootstrap, topic string, vi int, v codecVariant, from, to int, where []produced) {
	cl := newClient(bootstrap, "producer-"+v.name,
		kgo.DefaultProduceTopic(topic),
		kgo.ProducerBatchCompression(v.codec),
		kgo.ProducerLinger(5*time.Millisecond),
	)
	defer cl.Close()

	var (
		mu   sync.Mutex
		errs []string
		wg   sync.WaitGroup
	)
	for i := from; i < to; i++ {
		i := i
		wg.Add(1)
		r := &kgo.Record{Key: []byte(keyOf(i)), Value: []byte(valueOf(i))}
		cl.Produce(ctx, r, func(r *kgo.Record, err error) {
			defer wg.Done()
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, fmt.Sprintf("record %d: %v", i, err))
				return
			}
			if r.ProducerID < 0 {
				errs = append(errs, fmt.Sprintf("record %d: produced without a producer id (not idempotent)", i))
			}
			where[i] = produced{partition: r.Partition, offset: r.Offset, variant: vi}
		})
	}
	if err := cl.Flush(ctx); err != nil {
		fail("producer %s: Flush: %v", v.name, err)
	}
	wg.Wait()
	if len(errs) > 0 {
		sort.Strings(errs)
		if len(errs) > 10 {
			errs = append(errs[:10], fmt.Sprintf("... and %d more", len(errs)-10))
		}
		fail("producer %s: %d of %d records failed:\n  %s", v.name, len(errs), to-from, strings.Join(errs, "\n  "))
	}
	step("producer %s: records %d..%d acknowledged", v.name, from, to-1)
}

func consumeAll(ctx context.Context, bootstrap, topic, group string, where []produced) {
	cl := newClient(bootstrap, "consumer-1",
		kgo.ConsumeTopics(topic),
		kgo.ConsumerGroup(group),
		kgo.DisableAutoCommit(),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchMaxWait(500*time.Millisecond),
	)
	seen := make([]bool, totalRecords)
	lastOfKey := make(map[string]int)
	partOfKey := make(map[string]int32)
	count := 0
	deadline := time.Now().Add(60 * time.Second)
	step("consumer-1 joining group %s", group)
	for count < totalRecords {
		if time.Now().After(deadline) {
			missing := []int{}
			for i, s := range seen {
				if !s {
					missing = append(missing, i)
				}
			}
			if len(missing) > 20 {
				missing = missing[:20]
			}
			fail("consumer-1: only %d of %d records arrived within 60s; first missing: %v", count, totalRecords, missing)
		}
		pctx, pcancel := context.WithTimeout(ctx, 2*time.Second)
		fetches := cl.PollFetches(pctx)
		pcancel()
		if fetches.IsClientClosed() {
			fail("consumer-1: client closed")
		}
		fetches.EachError(func(t string, p int32, err error) {
			if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
				return
			}
			fail("consumer-1: fetch error on %s[%d]: %v", t, p, err)
		})
		fetches.EachRecord(func(r *kgo.Record) {
			i, err := indexOf(r.Value)
			if err != nil {
				fail("consumer-1: %s[%d]@%d: %v", r.Topic, r.Partition, r.Offset, err)
			}
			if seen[i] {
				fail("consumer-1: record %d arrived twice (second time at %s[%d]@%d)", i, r.Topic, r.Partition, r.Offset)
			}
			seen[i] = true
			count++
			key := string(r.Key)
			if key != keyOf(i) {
				fail("consumer-1: record %d has key %q, want %q", i, key, keyOf(i))
			}
			if p, ok := partOfKey[key]; ok && p != r.Partition {
				fail("consumer-1: key %s seen in partitions %d and %d", key, p, r.Partition)
			}
			partOfKey[key] = r.Partition
			if last, ok := lastOfKey[key]; ok && i < last {
				fail("consumer-1: key %s out of order: record %d after record %d", key, i, last)
			}
			lastOfKey[key] = i
			w := where[i]
			if r.Partition != w.partition || r.Offset != w.offset {
				fail("consumer-1: record %d consumed at partition %d offset %d, but produced to partition %d offset %d",
					i, r.Partition, r.Offset, w.partition, w.offset)
			}
			if r.ProducerID < 0 {
				fail("consumer-1: record %d at %d@%d has no producer id (batch not idempotent)", i, r.Partition, r.Offset)
			}
			want := variants[w.variant]
			if got := r.Attrs.CompressionType(); got != want.attr {
				fail("consumer-1: record %d (produced with %s) came in a batch with codec %d, want %d",
					i, want.name, got, want.attr)
			}
		})
	}
	step("consumer-1: all %d records arrived exactly once, per-key order kept", totalRecords)

	if err := cl.CommitUncommittedOffsets(ctx); err != nil {
		fail("consumer-1: CommitUncommittedOffsets: %v", err)
	}
	step("consumer-1: offsets committed")
	// Close leaves the group (LeaveGroup), so the second member need not wait out a session.
	cl.Close()
}

func checkCommitted(ctx context.Context, adm *kadm.Client, topic, group string, ends map[int32]int64) {
	offs, err := adm.FetchOffsets(ctx, group)
	if err != nil {
		fail("kadm FetchOffsets %s: %v", group, err)
	}
	if err := offs.Error(); err != nil {
		fail("kadm FetchOffsets %s: %v", group, err)
	}
	for p := int32(0); p < partitions; p++ {
		o, ok := offs.Lookup(topic, p)
		if !ok {
			if ends[p] == 0 {
				continue
			}
			fail("kadm FetchOffsets %s: no committed offset for partition %d (end %d)", group, p, ends[p])
		}
		if o.At != ends[p] {
			fail("kadm FetchOffsets %s: partition %d committed %d, want end offset %d", group, p, o.At, ends[p])
		}
	}
	step("kadm FetchOffsets: committed offsets equal the end offsets %v", ends)
}

func consumeNothing(ctx context.Context, bootstrap, topic, group string) {
	assigned := make(chan map[string][]int32, 4)
	cl := newClient(bootstrap, "consumer-2",
		kgo.ConsumeTopics(topic),
		kgo.ConsumerGroup(group),
		kgo.DisableAutoCommit(),
		// Without committed offsets this member would re-read everything from the start.
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchMaxWait(500*time.Millisecond),
		kgo.OnPartitionsAssigned(func(_ context.Context, _ *kgo.Client, m map[string][]int32) {
			assigned <- m
		}),
	)
	defer cl.Close()
	step("consumer-2 joining group %s", group)

	got := 0
	var assignment map[string][]int32
	var idleUntil time.Time
	deadline := time.Now().Add(45 * time.Second)
	for {
		select {
		case m := <-assigned:
			assignment = m
			idleUntil = time.Now().Add(idleCheckTime)
			step("consumer-2: assigned %v", m)
		default:
		}
		if assignment != nil && time.Now().After(idleUntil) {
			break
		}
		if time.Now().After(deadline) {
			fail("consumer-2: never got an assignment in group %s within 45s", group)
		}
		pctx, pcancel := context.WithTimeout(ctx, time.Second)
		fetches := cl.PollFetches(pctx)
		pcancel()
		fetches.EachError(func(t string, p int32, err error) {
			if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
				return
			}
			fail("consumer-2: fetch error on %s[%d]: %v", t, p, err)
		})
		fetches.EachRecord(func(r *kgo.Record) {
			got++
			if got <= 5 {
				fmt.Fprintf(os.Stderr, "consumer-2 got %s[%d]@%d key %s\n", r.Topic, r.Partition, r.Offset, r.Key)
			}
		})
	}
	if n := len(assignment[topic]); n != partitions {
		fail("consumer-2: assigned %d partitions of %s, want all %d", n, topic, partitions)
	}
	if got != 0 {
		fail("consumer-2: got %d records after the group committed everything (committed offsets ignored?)", got)
	}
	step("consumer-2: nothing left to consume after %s with all %d partitions assigned", idleCheckTime, partitions)
}

func checkGroupAdmin(ctx context.Context, adm *kadm.Client, topic, group string) {
	groups, err := adm.ListGroups(ctx)
	if err != nil {
		fail("kadm ListGroups: %v", err)
	}
	lg, ok := groups[group]
	if !ok {
		fail("kadm ListGroups: group %s not listed (got %v)", group, groups.Groups())
	}
	if lg.ProtocolType != "consumer" {
		fail("kadm ListGroups: group %s protocol type %q, want consumer", group, lg.ProtocolType)
	}
	step("kadm ListGroups: %s listed (state %q, protocol type %q)", group, lg.State, lg.ProtocolType)

	described, err := adm.DescribeGroups(ctx, group)
	if err != nil {
		fail("kadm DescribeGroups: %v", err)
	}
	dg, ok := described[group]
	if !ok {
		fail("kadm DescribeGroups: group %s missing from the answer", group)
	}
	if dg.Err != nil {
		fail("kadm DescribeGroups %s: %v %s", group, dg.Err, dg.ErrMessage)
	}
	step("kadm DescribeGroups: %s state %q protocol %q, %d members", group, dg.State, dg.Protocol, len(dg.Members))

	lags, err := adm.Lag(ctx, group)
	if err != nil {
		fail("kadm Lag: %v", err)
	}
	if err := lags.Error(); err != nil {
		fail("kadm Lag: %v", err)
	}
	l, ok := lags[group]
	if !ok {
		fail("kadm Lag: group %s missing", group)
	}
	if total := l.Lag.Total(); total != 0 {
		fail("kadm Lag: group %s lags by %d records, want 0", group, total)
	}
	step("kadm Lag: group %s lag 0", group)
}

// copyStatus is one status line of the copy mode, in the fields of Kafka's
// TransactionalMessageCopier (totalProcessed, remaining, stage) and a few of its own.
type copyStatus struct {
	// "ShutdownComplete" on the last line only.
	Stage string `json:"stage,omitempty"`
	// Records copied in committed transactions; what the tests wait on.
	TotalProcessed int `json:"totalProcessed"`
	Remaining      int `json:"remaining"`
	// Transactions ended, committed or not.
	Transactions int `json:"transactions"`
	// Transactions aborted on purpose.
	Aborted int `json:"aborted"`
	// Transactions meant to commit that did not (a produce error, a rebalance): redone.
	Failed int `json:"failed"`
}

func (s copyStatus) print() {
	line, err := json.Marshal(s)
	if err != nil {
		fail("status line: %v", err)
	}
	fmt.Println(string(line))
}

// copyLoop is the copy mode (see the package comment). Every transaction that does not commit,
// whether aborted on purpose or failed (a produce error, a rebalance, a coordinator that moved),
// is redone from the committed offsets, which GroupTransactSession.End rewinds to. An error from
// End itself (franz-go gives up on a transaction coordinator it cannot dial: one killed, and
// not yet fenced, is still named by FindCoordinator) leaves the transaction's outcome to the
// broker: the copier then does what a restarted application does, a new session, whose
// producer's InitProducerId ends the old transaction and whose group member reads the offsets
// the broker really committed (require_stable waits for that outcome).
func copyLoop(ctx context.Context, args []string) {
	fs := flag.NewFlagSet("copy", flag.ExitOnError)
	aborts := fs.Float64("aborts", 0, "fraction of the transactions aborted on purpose")
	txnRecords := fs.Int("txn-records", 100, "most records copied in one transaction")
	seed := fs.Uint64("seed", 1, "seed of the random aborts")
	_ = fs.Parse(args)
	if fs.NArg() != 6 {
		usage()
	}
	bootstrap, src, dst, group, txnID := fs.Arg(0), fs.Arg(1), fs.Arg(2), fs.Arg(3), fs.Arg(4)
	count, err := strconv.Atoi(fs.Arg(5))
	if err != nil || count <= 0 {
		fail("copy: COUNT %q is not a positive number", fs.Arg(5))
	}
	rng := rand.New(rand.NewPCG(*seed, 0))

	opts := append(baseOpts(bootstrap, "copier"),
		kgo.TransactionalID(txnID),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.ConsumerGroup(group),
		kgo.ConsumeTopics(src),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.RecordPartitioner(kgo.ManualPartitioner()),
		kgo.FetchMaxWait(500*time.Millisecond),
		kgo.ProducerLinger(5*time.Millisecond),
	)
	newSession := func() *kgo.GroupTransactSession {
		sess, err := kgo.NewGroupTransactSession(opts...)
		if err != nil {
			fail("copy: kgo.NewGroupTransactSession: %v", err)
		}
		return sess
	}
	sess := newSession()
	status := copyStatus{Remaining: count}
	step("copier %s: copying %d records of %s to %s in group %s", txnID, count, src, dst, group)
	for status.TotalProcessed < count {
		if ctx.Err() != nil {
			sess.Close()
			fail("copy: timed out with %d of %d records copied", status.TotalProcessed, count)
		}
		pctx, pcancel := context.WithTimeout(ctx, time.Second)
		fetches := sess.PollRecords(pctx, *txnRecords)
		pcancel()
		if fetches.IsClientClosed() {
			fail("copy: client closed")
		}
		for _, fe := range fetches.Errors() {
			if errors.Is(fe.Err, context.DeadlineExceeded) || errors.Is(fe.Err, context.Canceled) {
				continue
			}
			// Errors a client shows the application while retrying (a leader moving, a
			// broker gone) are logged; the transactions decide what is copied.
			fmt.Fprintf(os.Stderr, "%s copy: fetch error on %s[%d]: %v\n",
				time.Now().Format("15:04:05.000"), fe.Topic, fe.Partition, fe.Err)
		}
		records := fetches.Records()
		if len(records) == 0 {
			continue
		}

		if err := sess.Begin(); err != nil {
			fail("copy: Begin: %v", err)
		}
		copies := make([]*kgo.Record, len(records))
		for i, r := range records {
			copies[i] = &kgo.Record{Topic: dst, Partition: r.Partition, Key: r.Key, Value: r.Value}
		}
		// Produced before End, so that an aborted transaction leaves its copies in the log
		// (read_uncommitted readers see them; read_committed ones must not).
		produceErr := sess.ProduceSync(ctx, copies...).FirstErr()
		commit := produceErr == nil && rng.Float64() >= *aborts
		if produceErr != nil {
			fmt.Fprintf(os.Stderr, "%s copy: produce failed, aborting: %v\n",
				time.Now().Format("15:04:05.000"), produceErr)
		}
		committed, err := sess.End(ctx, kgo.TransactionEndTry(commit))
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, kgo.ErrClientClosed) {
				fail("copy: End (commit %v) after %d records: %v", commit, status.TotalProcessed, err)
			}
			fmt.Fprintf(os.Stderr, "%s copy: End (commit %v) failed, starting a new session: %v\n",
				time.Now().Format("15:04:05.000"), commit, err)
			// The old session leaves the group first (its partitions go to the new one at
			// once), for as long as the dead broker lets it.
			closed := make(chan struct{})
			go func(old *kgo.GroupTransactSession) { old.Close(); close(closed) }(sess)
			select {
			case <-closed:
			case <-time.After(10 * time.Second):
			}
			sess = newSession()
			status.Transactions++
			status.Failed++
			status.print()
			continue
		}
		status.Transactions++
		switch {
		case committed:
			status.TotalProcessed += len(records)
			status.Remaining = count - status.TotalProcessed
		case commit:
			status.Failed++
		default:
			status.Aborted++
		}
		status.print()
	}
	// Close leaves the group, so that a later member need not wait out this one's session.
	sess.Close()
	status.Stage = "ShutdownComplete"
	status.print()
}
