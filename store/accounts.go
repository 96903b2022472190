package store

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Account is a dashboard user.
type Account struct {
	User    string    `json:"user"`
	Hash    []byte    `json:"hash"` // bcrypt of the password
	Created time.Time `json:"created"`
	// Admin users see every site and manage sites, users and tokens.
	Admin bool `json:"admin"`
	// Sites are the sites a user who is not an admin may see.
	Sites []string `json:"sites,omitempty"`
	// ID is made when the account is, and Epoch anew with every new
	// password: a token holds the ID of its account, a session the
	// epoch, so a user deleted and made again under the same name gets
	// neither back, and a new password ends the old sessions. (Accounts
	// stored before these existed have neither, and match sessions and
	// tokens that have neither, until their next password.)
	ID    string `json:"id,omitempty"`
	Epoch string `json:"epoch,omitempty"`
}

// APIToken is an API token, stored under the SHA-256 of the token (so a
// copy of the bucket holds no usable token). It acts for its user.
type APIToken struct {
	Name    string    `json:"name"`
	User    string    `json:"user"`
	Created time.Time `json:"created"`
	// Account is the ID of the user's account (see Account.ID).
	Account string `json:"account,omitempty"`
	// ID is the stored key's hash, to name the token for revoking.
	ID string `json:"-"`
}

// Session is a login, stored under the SHA-256 of its cookie's token.
type Session struct {
	User    string    `json:"user"`
	Created time.Time `json:"created"`
	// Epoch is the account's at login (see Account.Epoch).
	Epoch string `json:"epoch,omitempty"`
}

// Accounts is the users bucket: accounts under their user name (which
// holds no '.'), API tokens, and the dashboards' shared secrets.
type Accounts struct{ kv jetstream.KeyValue }

// Account returns user's account, or ErrNotFound.
func (a *Accounts) Account(ctx context.Context, user string) (Account, error) {
	var acc Account
	err := getJSON(ctx, a.kv, user, &acc)
	return acc, err
}

// Create stores acc if there is no account of its user yet; ErrExists if
// there is.
func (a *Accounts) Create(ctx context.Context, acc Account) error {
	data, err := json.Marshal(acc)
	if err != nil {
		return fmt.Errorf("encode account %s: %w", acc.User, err)
	}
	_, err = a.kv.Create(ctx, acc.User, data)
	return storeErr("create account "+acc.User, err)
}

// Put stores acc.
func (a *Accounts) Put(ctx context.Context, acc Account) error {
	return putJSON(ctx, a.kv, acc.User, acc)
}

// Delete removes user's account.
func (a *Accounts) Delete(ctx context.Context, user string) error {
	return storeErr("delete account "+user, a.kv.Delete(ctx, user))
}

// List returns every account, by name.
func (a *Accounts) List(ctx context.Context) ([]Account, error) {
	var out []Account
	err := each(ctx, a.kv, func(key string, value []byte) {
		if strings.HasPrefix(key, tokenKeyPrefix) || strings.HasPrefix(key, secretKeyPrefix) {
			return
		}
		var acc Account
		if json.Unmarshal(value, &acc) == nil {
			out = append(out, acc)
		}
	})
	slices.SortFunc(out, func(x, y Account) int { return cmp.Compare(x.User, y.User) })
	return out, err
}

// Token returns the API token whose SHA-256 is hash, or ErrNotFound.
func (a *Accounts) Token(ctx context.Context, hash string) (APIToken, error) {
	var t APIToken
	err := getJSON(ctx, a.kv, tokenKey(hash), &t)
	t.ID = hash
	return t, err
}

// PutToken stores t under hash, the SHA-256 of the token.
func (a *Accounts) PutToken(ctx context.Context, hash string, t APIToken) error {
	return putJSON(ctx, a.kv, tokenKey(hash), t)
}

// DeleteToken revokes the token whose SHA-256 is hash.
func (a *Accounts) DeleteToken(ctx context.Context, hash string) error {
	return storeErr("delete token", a.kv.Delete(ctx, tokenKey(hash)))
}

// Tokens lists the API tokens of user, or every token for "", oldest
// first.
func (a *Accounts) Tokens(ctx context.Context, user string) ([]APIToken, error) {
	var out []APIToken
	err := each(ctx, a.kv, func(key string, value []byte) {
		id, ok := strings.CutPrefix(key, tokenKeyPrefix)
		if !ok {
			return
		}
		var t APIToken
		if json.Unmarshal(value, &t) == nil && (user == "" || t.User == user) {
			t.ID = id
			out = append(out, t)
		}
	})
	slices.SortFunc(out, func(x, y APIToken) int { return x.Created.Compare(y.Created) })
	return out, err
}

// Secret returns the dashboards' shared secret name, storing fresh as it
// if there is none yet: the first dashboard to start makes it, and a
// replica that loses the race reads the winner's.
func (a *Accounts) Secret(ctx context.Context, name string, fresh []byte) ([]byte, error) {
	key := secretKey(name)
	_, err := a.kv.Create(ctx, key, fresh)
	if err == nil {
		return fresh, nil
	}
	if !errors.Is(err, jetstream.ErrKeyExists) {
		return nil, storeErr("create secret "+name, err)
	}
	return get(ctx, a.kv, key)
}

// Sessions is the bucket of login sessions; they expire after SessionTTL.
type Sessions struct{ kv jetstream.KeyValue }

// Get returns the session whose token's SHA-256 is hash, or ErrNotFound.
func (s *Sessions) Get(ctx context.Context, hash string) (Session, error) {
	var sess Session
	err := getJSON(ctx, s.kv, hash, &sess)
	return sess, err
}

// Put stores sess under hash, the SHA-256 of its token.
func (s *Sessions) Put(ctx context.Context, hash string, sess Session) error {
	return putJSON(ctx, s.kv, hash, sess)
}

// Delete ends the session whose token's SHA-256 is hash.
func (s *Sessions) Delete(ctx context.Context, hash string) error {
	return storeErr("delete session", s.kv.Delete(ctx, hash))
}
