package clientaddr

import (
	"net/http"
	"testing"
)

func TestKey(t *testing.T) {
	r, err := Parse("10.0.0.0/8, 192.0.2.7, 2001:db8:ffff::/48")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		remote string
		xff    []string
		want   string
	}{
		{"direct IPv4", "198.51.100.1:5000", nil, "198.51.100.1"},
		{"header from an untrusted peer is ignored", "198.51.100.1:5000", []string{"203.0.113.9"}, "198.51.100.1"},
		{"through a trusted proxy", "10.1.2.3:5000", []string{"203.0.113.9"}, "203.0.113.9"},
		{"a client's own header before the proxy's is not believed", "10.1.2.3:5000", []string{"1.2.3.4, 203.0.113.9"}, "203.0.113.9"},
		{"through two trusted proxies", "192.0.2.7:5000", []string{"203.0.113.9, 10.9.9.9"}, "203.0.113.9"},
		{"headers on several lines", "192.0.2.7:5000", []string{"1.2.3.4", "203.0.113.9", "10.9.9.9"}, "203.0.113.9"},
		{"all trusted: the farthest", "10.1.2.3:5000", []string{"10.7.7.7"}, "10.7.7.7"},
		{"garbage beyond the proxy: the proxy", "10.1.2.3:5000", []string{"not-an-address"}, "10.1.2.3"},
		{"trusted proxy without the header", "10.1.2.3:5000", nil, "10.1.2.3"},
		{"IPv6 by /64", "[2001:db8:1:2:3:4:5:6]:5000", nil, "2001:db8:1:2::/64"},
		{"IPv6 neighbours share a key", "[2001:db8:1:2:ffff::1]:5000", nil, "2001:db8:1:2::/64"},
		{"IPv6 behind a trusted IPv6 proxy", "[2001:db8:ffff::1]:443", []string{"2001:db8:9:8:7::1"}, "2001:db8:9:8::/64"},
		{"IPv4 mapped in IPv6", "[::ffff:198.51.100.1]:5000", nil, "198.51.100.1"},
		{"IPv6 with a zone", "[fe80::1%eth0]:5000", nil, "fe80::/64"},
	} {
		req := &http.Request{RemoteAddr: tc.remote, Header: http.Header{}}
		for _, v := range tc.xff {
			req.Header.Add("X-Forwarded-For", v)
		}
		if got := r.Key(req); got != tc.want {
			t.Errorf("%s: Key = %q, want %q", tc.name, got, tc.want)
		}
	}
	var none Resolver
	req := &http.Request{RemoteAddr: "10.1.2.3:5000", Header: http.Header{"X-Forwarded-For": {"203.0.113.9"}}}
	if got := none.Key(req); got != "10.1.2.3" {
		t.Errorf("no trusted proxies: %q", got)
	}
}

func TestParseRefusesGarbage(t *testing.T) {
	for _, list := range []string{"10.0.0.0/33", "nginx", "10.0.0.1/x"} {
		if _, err := Parse(list); err == nil {
			t.Errorf("Parse(%q) accepted", list)
		}
	}
}
