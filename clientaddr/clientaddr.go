// Package clientaddr finds the address a request came from, for limits
// kept per client address. X-Forwarded-For is believed only from proxies
// the operator names: anyone can send the header, so trusting it from
// everyone would let a client pick the address it is limited as, and not
// trusting it behind a proxy would put every client under the proxy's
// address, one limit for all. IPv6 clients are counted by their /64, the
// block one subscriber usually gets, so that one host cannot take fresh
// addresses to escape a limit.
package clientaddr

import (
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strings"
)

// Resolver finds requests' client addresses. The zero Resolver trusts no
// proxy: the client is the peer of the connection.
type Resolver struct {
	trusted []netip.Prefix
}

// Parse returns a Resolver that trusts X-Forwarded-For from the proxies
// in list: comma-separated addresses or CIDR prefixes, like
// "10.0.0.0/8, 192.0.2.7". An empty list trusts none.
func Parse(list string) (*Resolver, error) {
	r := &Resolver{}
	for _, item := range strings.Split(list, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		if strings.Contains(item, "/") {
			p, err := netip.ParsePrefix(item)
			if err != nil {
				return nil, fmt.Errorf("trusted proxy %q: %w", item, err)
			}
			r.trusted = append(r.trusted, p.Masked())
			continue
		}
		a, err := netip.ParseAddr(item)
		if err != nil {
			return nil, fmt.Errorf("trusted proxy %q: want an address or a prefix like 10.0.0.0/8: %w", item, err)
		}
		a = a.Unmap()
		r.trusted = append(r.trusted, netip.PrefixFrom(a, a.BitLen()))
	}
	return r, nil
}

// Trusts reports whether a is one of the trusted proxies.
func (r *Resolver) Trusts(a netip.Addr) bool {
	for _, p := range r.trusted {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// Addr returns the client's address: the connection's peer, or, when the
// peer is a trusted proxy, the nearest address in X-Forwarded-For that is
// not one (read from the right, since each proxy appends the address it
// saw). It is invalid only if RemoteAddr is not an address (as in tests
// that make requests by hand).
func (r *Resolver) Addr(req *http.Request) netip.Addr {
	addr := peer(req)
	if !addr.IsValid() || len(r.trusted) == 0 || !r.Trusts(addr) {
		return addr
	}
	hops := req.Header.Values("X-Forwarded-For")
	for i := len(hops) - 1; i >= 0; i-- {
		list := strings.Split(hops[i], ",")
		for j := len(list) - 1; j >= 0; j-- {
			hop, err := netip.ParseAddr(strings.TrimSpace(list[j]))
			if err != nil {
				return addr // garbage from beyond the last trusted proxy
			}
			addr = hop.Unmap()
			if !r.Trusts(addr) {
				return addr
			}
		}
	}
	return addr
}

// Key is the name limits count the request's client by: its IPv4
// address, or its IPv6 address's /64.
func (r *Resolver) Key(req *http.Request) string {
	a := r.Addr(req)
	if !a.IsValid() {
		return req.RemoteAddr
	}
	return KeyOf(a)
}

// KeyOf is Key for an address.
func KeyOf(a netip.Addr) string {
	a = a.Unmap()
	if a.Is4() {
		return a.String()
	}
	return netip.PrefixFrom(a.WithZone(""), 64).Masked().String()
}

func peer(req *http.Request) netip.Addr {
	host, _, err := net.SplitHostPort(req.RemoteAddr)
	if err != nil {
		host = req.RemoteAddr
	}
	a, err := netip.ParseAddr(host)
	if err != nil {
		return netip.Addr{}
	}
	return a.Unmap()
}
