package aggregator

import (
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/pulse-analytics/pulse/event"
)

// BenchmarkApplyBatch measures the aggregator's cost per event: decoding a
// 50-event tracker batch as it arrives from the stream, and applying it
// (counts, windows, heatmaps, scroll depth, rage clicks), for 1,000
// sessions on 20 pages, with the batch in the binary form ingest writes and
// in the JSON form earlier versions wrote.
// `go test -run '^$' -bench ApplyBatch -benchmem ./aggregator`.
func BenchmarkApplyBatch(b *testing.B) {
	b.Run("binary", func(b *testing.B) {
		benchmarkApplyBatch(b, func(batch *event.Batch) []byte { return batch.AppendBinary(nil) })
	})
	b.Run("json", func(b *testing.B) {
		benchmarkApplyBatch(b, func(batch *event.Batch) []byte { data, _ := json.Marshal(batch); return data })
	})
}

func benchmarkApplyBatch(b *testing.B, encode func(*event.Batch) []byte) {
	const perBatch = 50
	now := time.Now().UnixMilli()
	payloads := make([][]byte, 1000)
	kinds := []event.Kind{event.KindMove, event.KindMove, event.KindMove, event.KindClick, event.KindScroll}
	for i := range payloads {
		batch := event.Batch{Site: "demo", Session: fmt.Sprintf("s%04d", i), Visitor: fmt.Sprintf("v%04d", i), Seq: 1, Received: now}
		for j := range perBatch {
			batch.Events = append(batch.Events, event.Event{
				Kind: kinds[j%len(kinds)], T: now - int64(j*20), X: int32(j * 13 % 1280), Y: int32(j * 29 % 3000),
				VW: 1280, VH: 800, PH: 4000, Path: fmt.Sprintf("/page/%d", i%20),
			})
		}
		payloads[i] = encode(&batch)
	}
	s := newSite()
	b.ReportAllocs()
	var batch event.Batch // reused, as Aggregator.handle does
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := event.DecodeBatch(payloads[i%len(payloads)], &batch); err != nil {
			b.Fatal(err)
		}
		// Each round over the sessions is their next batch.
		batch.Seq = uint64(i/len(payloads) + 1)
		if !s.applyBatch(&batch) {
			b.Fatal("batch counted as a duplicate")
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*perBatch), "ns/event")
	b.ReportMetric(float64(b.N*perBatch)/b.Elapsed().Seconds(), "events/s")
}
