package natsutil

import (
	"fmt"
	"strings"
)

// The keys of every bucket and object store, in one place: what is stored
// under which key is decided here and nowhere else.

// Keys of BucketNodes: a part's status is under "KIND.ID" (kinds as
// event.NodeStatus names them), an aggregator slice's lease under
// "aggregator-slice.SofN".
const IngestStatusKeys = "ingest.*" // matches every ingest node's status

// StatusKey is the key of the status of part id of kind.
func StatusKey(kind, id string) string { return kind + "." + id }

// IngestOfStatusKey returns the ingest node a status key is of, if it is.
func IngestOfStatusKey(key string) (id string, ok bool) { return strings.CutPrefix(key, "ingest.") }

// SliceLeaseKey is the key of the lease of aggregator slice of slices.
func SliceLeaseKey(slice, slices int) string {
	return fmt.Sprintf("aggregator-slice.%dof%d", slice, slices)
}

// Keys of BucketViews: a site's panel is under "SITE.PANEL" (panels as
// event names them: overview, heat), the quotes panel under QuotesViewKey.
const QuotesViewKey = "quotes"

// ViewKey is the key of a site's panel in the views bucket.
func ViewKey(site, panel string) string { return site + "." + panel }

// Keys of BucketState: the sequence the aggregator's snapshot covers, one
// per slice of the partitions.
func SnapshotSeqKey(slice, slices int) string {
	if slices == 1 {
		return "seq"
	}
	return fmt.Sprintf("seq.%dof%d", slice, slices)
}

// Names in BucketSnapshots: a site's snapshot, and the quotes state's.
const QuotesSnapshotName = "quotes"

// SiteSnapshotName is the name of a site's snapshot.
func SiteSnapshotName(site string) string { return "site." + site }

// Keys of BucketQuotes: a symbol's latest quote, its fetch lease, and the
// upstream call budget of a source. A symbol's '.' (BRK.B) would split
// the key's token, so it is stored as '_'.
const QuoteKeys = "q.*" // matches every symbol's quote

// QuoteKey is the key of a symbol's latest quote.
func QuoteKey(symbol string) string { return "q." + symbolToken(symbol) }

// SymbolOfQuoteKey returns the symbol a QuoteKey names.
func SymbolOfQuoteKey(key string) string {
	return strings.ReplaceAll(strings.TrimPrefix(key, "q."), "_", ".")
}

// LeaseKey is the key of a symbol's fetch lease.
func LeaseKey(symbol string) string { return "lease." + symbolToken(symbol) }

// BudgetKey is the key of a source's upstream call budget.
func BudgetKey(source string) string { return "budget." + source }

func symbolToken(symbol string) string { return strings.ReplaceAll(symbol, ".", "_") }

// Keys of BucketUsers: an account under its user name (which holds no
// '.'), an API token under TokenKey of its hash, and the dashboards'
// shared secrets under SecretKey.
const (
	TokenKeyPrefix  = "token."
	SecretKeyPrefix = "secret."
)

// TokenKey is the key of an API token, by the hash of the token.
func TokenKey(hash string) string { return TokenKeyPrefix + hash }

// SecretKey is the key of the dashboards' shared secret name.
func SecretKey(name string) string { return SecretKeyPrefix + name }

// Keys of BucketSessions: a login session under the hash of its cookie's
// token. Keys of BucketSites: a site under its key.
