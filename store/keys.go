package store

import (
	"fmt"
	"strings"
)

// The keys of every bucket and object store, in one place: what is stored
// under which key is decided here and nowhere else.

// Keys of bucketNodes: a part's status is under "KIND.ID" (kinds as
// NodeStatus names them), an aggregator slice's lease under
// "aggregator-slice.SofN".
const ingestStatusKeys = "ingest.*" // matches every ingest node's status

// statusKey is the key of the status of part id of kind.
func statusKey(kind, id string) string { return kind + "." + id }

// ingestOfStatusKey returns the ingest node a status key is of, if it is.
func ingestOfStatusKey(key string) (id string, ok bool) { return strings.CutPrefix(key, "ingest.") }

// sliceLeaseKey is the key of the lease of aggregator slice of slices.
func sliceLeaseKey(slice, slices int) string {
	return fmt.Sprintf("aggregator-slice.%dof%d", slice, slices)
}

// Keys of bucketViews: a site's panel is under "SITE.PANEL" (panels as
// event names them: overview, heat), the quotes panel under quotesViewKey.
const quotesViewKey = "quotes"

// viewKey is the key of a site's panel in the views bucket.
func viewKey(site, panel string) string { return site + "." + panel }

// Keys of bucketState: the sequence the aggregator's snapshot covers, one
// per slice of the partitions.
func snapshotSeqKey(slice, slices int) string {
	if slices == 1 {
		return "seq"
	}
	return fmt.Sprintf("seq.%dof%d", slice, slices)
}

// Names in bucketSnapshots: a site's snapshot, and the quotes state's.
const quotesSnapshotName = "quotes"

// siteSnapshotName is the name of a site's snapshot.
func siteSnapshotName(site string) string { return "site." + site }

// Keys of bucketQuotes: a symbol's latest quote, its fetch lease, and the
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

// Keys of bucketUsers: an account under its user name (which holds no
// '.'), an API token under TokenKey of its hash, and the dashboards'
// shared secrets under SecretKey.
const (
	tokenKeyPrefix  = "token."
	secretKeyPrefix = "secret."
)

// tokenKey is the key of an API token, by the hash of the token.
func tokenKey(hash string) string { return tokenKeyPrefix + hash }

// secretKey is the key of the dashboards' shared secret name.
func secretKey(name string) string { return secretKeyPrefix + name }

// Keys of bucketSessions: a login session under the hash of its cookie's
// token. Keys of bucketSites: a site under its key.
