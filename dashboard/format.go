package dashboard

import (
	"cmp"
	"slices"
	"strconv"

	"github.com/pulse-analytics/pulse/event"
)

// count formats n with thin spaces between thousands: 1 234 567.
func count(n uint64) string {
	s := strconv.FormatUint(n, 10)
	if len(s) <= 3 {
		return s
	}
	out := make([]byte, 0, len(s)+len(s)/3*3)
	for i := range len(s) {
		if i > 0 && (len(s)-i)%3 == 0 {
			out = append(out, "\u2009"...)
		}
		out = append(out, s[i])
	}
	return string(out)
}

type kindCount struct {
	name string
	n    uint64
}

// kindsOf lists the kinds with events, most frequent first.
func kindsOf(ov event.Overview) []kindCount {
	ks := make([]kindCount, 0, len(ov.ByKind))
	for k, n := range ov.ByKind {
		if n > 0 {
			ks = append(ks, kindCount{k, n})
		}
	}
	slices.SortFunc(ks, func(a, b kindCount) int {
		if c := cmp.Compare(b.n, a.n); c != 0 {
			return c
		}
		return cmp.Compare(a.name, b.name)
	})
	return ks
}

// hasElements reports whether any page of ov names a clicked element.
func hasElements(ov event.Overview) bool {
	for _, p := range ov.Pages {
		if len(p.Elements) > 0 {
			return true
		}
	}
	return false
}
