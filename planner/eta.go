package planner

import (
	"fmt"
	"math"
	"strings"

	"mailferry/inventory"
)

// eta projects how long the moves take. Three things bound it, and the
// slowest wins:
//
//   - each cluster: the bytes it reads (as a source) plus the bytes it
//     writes (as a target) over its bandwidth, which is its
//     limits.bytes_per_sec or, if lower, its streams times the per-stream
//     rate, where streams is Parallelism capped by limits.connections; plus
//     the per-message overhead spread over its streams; and no faster than
//     limits.messages_per_sec allows;
//   - the copier: all bytes over Parallelism streams, plus overhead;
//   - the largest move: one mailbox is copied by one stream.
//
// It also returns the total message count and whether any was estimated.
func (e *engine) eta(t Throughput) (ETA, int64, bool) {
	type work struct {
		read, write int64
		msgs        int64
	}
	w := make([]work, len(e.cs))
	var (
		totalB, totalM int64
		estimated      bool
		bigI           = int32(-1)
		bigSecs        float64
	)
	stream := float64(t.StreamBytesPerSec)
	for _, i := range e.log {
		m := &e.mbs[i]
		msgs := m.Messages
		if msgs == 0 && m.Bytes > 0 {
			msgs = (m.Bytes + t.AvgMessageBytes - 1) / t.AvgMessageBytes
			estimated = true
		}
		from, to := e.home[i], e.to[i]
		w[from].read += m.Bytes
		w[from].msgs += msgs
		w[to].write += m.Bytes
		w[to].msgs += msgs
		totalB += m.Bytes
		totalM += msgs
		if s := float64(m.Bytes)/stream + float64(msgs)*t.MessageOverhead; s > bigSecs {
			bigI, bigSecs = i, s
		}
	}
	eta := ETA{}
	if len(e.log) == 0 {
		return eta, 0, false
	}
	P := float64(t.Parallelism)
	eta.Seconds = float64(totalB)/(P*stream) + float64(totalM)*t.MessageOverhead/P
	eta.Bottleneck, eta.BottleneckKind = "parallelism", "parallelism"
	eta.Detail = fmt.Sprintf("%d parallel streams at %s/s each", t.Parallelism, inventory.FormatBytes(t.StreamBytesPerSec))
	for ci := range e.cs {
		c := &e.cs[ci]
		cw := w[ci]
		if cw.read == 0 && cw.write == 0 {
			continue
		}
		streams := t.Parallelism
		if c.Limits.Connections > 0 {
			streams = min(streams, c.Limits.Connections)
		}
		bw := float64(streams) * stream
		why := fmt.Sprintf("%d streams at %s/s", streams, inventory.FormatBytes(t.StreamBytesPerSec))
		if c.Limits.BytesPerSec > 0 && float64(c.Limits.BytesPerSec) < bw {
			bw = float64(c.Limits.BytesPerSec)
			why = fmt.Sprintf("limits.bytes_per_sec %s/s", inventory.FormatBytes(c.Limits.BytesPerSec))
		}
		secs := float64(cw.read+cw.write)/bw + float64(cw.msgs)*t.MessageOverhead/float64(streams)
		if mps := c.Limits.MessagesPerSec; mps > 0 && float64(cw.msgs)/mps > secs {
			secs = float64(cw.msgs) / mps
			why = fmt.Sprintf("limits.messages_per_sec %s", fmtLoad(mps))
		}
		eta.Clusters = append(eta.Clusters, ClusterETA{
			Cluster: c.Name, ReadBytes: cw.read, WriteBytes: cw.write, Messages: cw.msgs,
			Streams: streams, BytesPerSec: math.Round(bw), Seconds: math.Round(secs),
		})
		if secs > eta.Seconds {
			eta.Seconds = secs
			eta.Bottleneck, eta.BottleneckKind = c.Name, "cluster"
			var rw []string
			if cw.read > 0 {
				rw = append(rw, "reads "+inventory.FormatBytes(cw.read))
			}
			if cw.write > 0 {
				rw = append(rw, "writes "+inventory.FormatBytes(cw.write))
			}
			eta.Detail = fmt.Sprintf("%s %s, bound by %s", c.Name, strings.Join(rw, " and "), why)
		}
	}
	if bigSecs > eta.Seconds {
		m := &e.mbs[bigI]
		eta.Seconds = bigSecs
		eta.Bottleneck, eta.BottleneckKind = m.Name, "mailbox"
		eta.Detail = fmt.Sprintf("mailbox %s (%s) is copied by one stream at %s/s", m.Name,
			inventory.FormatBytes(m.Bytes), inventory.FormatBytes(t.StreamBytesPerSec))
	}
	eta.Seconds = math.Round(eta.Seconds)
	return eta, totalM, estimated
}
