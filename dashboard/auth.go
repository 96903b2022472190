package dashboard

import (
	"cmp"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/crypto/bcrypt"
	"golang.org/x/time/rate"

	"github.com/pulse-analytics/pulse/natsutil"
)

const (
	adminUser  = "admin"
	cookieName = "pulse_session"
	// maxFormBytes bounds a form; the largest lists a few dozen sites.
	maxFormBytes = 16 << 10
	// maxPasswordLen is bcrypt's limit.
	maxPasswordLen = 72
	// minPasswordLen keeps new passwords from being guessable in the few
	// tries the login limit allows.
	minPasswordLen = 10
)

// account is a dashboard user as stored in the users bucket.
type account struct {
	User    string    `json:"user"`
	Hash    []byte    `json:"hash"`
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

// principal is who a request acts for: a logged-in user or an API token.
type principal struct {
	User  string
	Admin bool
	Sites []string
}

// canSee reports whether p may see site.
func (p *principal) canSee(site string) bool {
	return p.Admin || slices.Contains(p.Sites, site)
}

// session is a login as stored in the sessions bucket, under the SHA-256
// of the cookie's token, so a copy of the bucket holds no usable cookie.
type session struct {
	User    string    `json:"user"`
	Created time.Time `json:"created"`
	// Epoch is the account's at login (see account.Epoch).
	Epoch string `json:"epoch,omitempty"`
}

// apiToken is an API token as stored in the users bucket, under
// "token." and the SHA-256 of the token. It acts for its user.
type apiToken struct {
	Name    string    `json:"name"`
	User    string    `json:"user"`
	Created time.Time `json:"created"`
	// Account is the ID of the user's account (see account.ID).
	Account string `json:"account,omitempty"`
	// ID is the stored key's hash, to name the token for revoking.
	ID string `json:"-"`
}

// auth keeps accounts, API tokens and sessions in NATS KV, so every
// dashboard replica sees the same logins.
type auth struct {
	users    jetstream.KeyValue
	sessions jetstream.KeyValue
	// apiToken, when set, is one more token, acting as an admin.
	apiToken string
	limiter  *loginLimiter
	// cost is bcrypt's cost for new password hashes.
	cost int
}

// ensureAdmin makes sure the admin account exists. A first start creates
// it, with password if one is given, else with a random password that it
// returns, to be printed once. Later starts (and other replicas) leave the
// account as it is, so a password changed in the dashboard stays changed,
// unless reset is set: then the account gets password.
func (a *auth) ensureAdmin(ctx context.Context, password string, reset bool) (generated string, err error) {
	if len(password) > maxPasswordLen {
		return "", fmt.Errorf("admin password longer than %d bytes", maxPasswordLen)
	}
	if reset {
		if password == "" {
			return "", errors.New("resetting the admin password needs a password")
		}
		return "", a.putAccount(ctx, account{User: adminUser, Admin: true}, password)
	}
	if password == "" {
		password = randomToken(12)
		generated = password
	}
	acc, err := newAccount(account{User: adminUser, Admin: true}, password, a.cost)
	if err != nil {
		return "", err
	}
	if _, err := a.users.Create(ctx, adminUser, acc); err != nil {
		if errors.Is(err, jetstream.ErrKeyExists) {
			return "", nil
		}
		return "", fmt.Errorf("create admin account: %w", err)
	}
	return generated, nil
}

// newAccount encodes acc with a hash of password, and a new epoch (and ID
// and creation time, if it has none).
func newAccount(acc account, password string, cost int) ([]byte, error) {
	hash, err := bcrypt.GenerateFromPassword([]byte(password), cost)
	if err != nil {
		return nil, fmt.Errorf("hash password: %w", err)
	}
	acc.Hash = hash
	if acc.Created.IsZero() {
		acc.Created = time.Now().UTC()
	}
	if acc.ID == "" {
		acc.ID = randomToken(12)
	}
	acc.Epoch = randomToken(12)
	return json.Marshal(acc)
}

// putAccount stores acc. An existing account keeps its ID and creation
// time; with a password it gets a new hash (and epoch, ending its
// sessions), without one it keeps the stored hash.
func (a *auth) putAccount(ctx context.Context, acc account, password string) error {
	old, gerr := a.account(ctx, acc.User)
	if gerr == nil {
		acc.ID, acc.Created = old.ID, old.Created
	}
	var data []byte
	var err error
	if password != "" {
		data, err = newAccount(acc, password, a.cost)
	} else {
		if gerr != nil {
			return fmt.Errorf("a new user needs a password: %w", gerr)
		}
		acc.Hash, acc.Epoch = old.Hash, old.Epoch
		data, err = json.Marshal(acc)
	}
	if err != nil {
		return err
	}
	if _, err := a.users.Put(ctx, acc.User, data); err != nil {
		return fmt.Errorf("store account %s: %w", acc.User, err)
	}
	return nil
}

func (a *auth) account(ctx context.Context, user string) (account, error) {
	var acc account
	e, err := a.users.Get(ctx, user)
	if err != nil {
		return acc, err
	}
	err = json.Unmarshal(e.Value(), &acc)
	return acc, err
}

// accounts lists every account, by name.
func (a *auth) accounts(ctx context.Context) ([]account, error) {
	var out []account
	err := a.each(ctx, func(key string, value []byte) {
		if strings.HasPrefix(key, natsutil.TokenKeyPrefix) || strings.HasPrefix(key, natsutil.SecretKeyPrefix) {
			return
		}
		var acc account
		if json.Unmarshal(value, &acc) == nil {
			out = append(out, acc)
		}
	})
	slices.SortFunc(out, func(x, y account) int { return cmp.Compare(x.User, y.User) })
	return out, err
}

// tokens lists the API tokens of user, or every token for "".
func (a *auth) tokens(ctx context.Context, user string) ([]apiToken, error) {
	var out []apiToken
	err := a.each(ctx, func(key string, value []byte) {
		id, ok := strings.CutPrefix(key, natsutil.TokenKeyPrefix)
		if !ok {
			return
		}
		var t apiToken
		if json.Unmarshal(value, &t) == nil && (user == "" || t.User == user) {
			t.ID = id
			out = append(out, t)
		}
	})
	slices.SortFunc(out, func(x, y apiToken) int { return x.Created.Compare(y.Created) })
	return out, err
}

// each calls fn for every entry of the users bucket.
func (a *auth) each(ctx context.Context, fn func(key string, value []byte)) error {
	return kvEach(ctx, a.users, fn)
}

// kvEach calls fn for every entry of kv, once per key.
func kvEach(ctx context.Context, kv jetstream.KeyValue, fn func(key string, value []byte)) error {
	keys, err := kv.ListKeys(ctx)
	if err != nil {
		return fmt.Errorf("list %s: %w", kv.Bucket(), err)
	}
	seen := make(map[string]bool)
	for k := range keys.Keys() {
		if seen[k] {
			continue // a key written during listing may be listed twice
		}
		seen[k] = true
		e, err := kv.Get(ctx, k)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			continue // deleted or expired meanwhile
		}
		if err != nil {
			return fmt.Errorf("load %s: %w", k, err)
		}
		fn(k, e.Value())
	}
	return nil
}

// createToken makes an API token for user and returns it; only its hash is
// stored, so it is shown once.
func (a *auth) createToken(ctx context.Context, name string, acc account) (string, error) {
	token := "pulse_" + randomToken(24)
	data, _ := json.Marshal(apiToken{Name: name, User: acc.User, Account: acc.ID, Created: time.Now().UTC()})
	if _, err := a.users.Put(ctx, natsutil.TokenKey(hashOf(token)), data); err != nil {
		return "", fmt.Errorf("store token: %w", err)
	}
	return token, nil
}

// errBadLogin is the one answer to a wrong user or a wrong password, so
// that the answer does not tell which.
var errBadLogin = errors.New("wrong username or password")

// login checks a user's password and returns a new session token.
func (a *auth) login(ctx context.Context, user, password string) (string, error) {
	if !validUser(user) || len(password) > maxPasswordLen {
		return "", errBadLogin
	}
	acc, err := a.account(ctx, user)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		// Spend the time a hash comparison takes, so timing does not tell
		// which users exist.
		_ = bcrypt.CompareHashAndPassword(dummyHash, []byte(password))
		return "", errBadLogin
	}
	if err != nil {
		return "", fmt.Errorf("load account: %w", err)
	}
	if bcrypt.CompareHashAndPassword(acc.Hash, []byte(password)) != nil {
		return "", errBadLogin
	}
	token := randomToken(32)
	s, _ := json.Marshal(session{User: user, Created: time.Now().UTC(), Epoch: acc.Epoch})
	if _, err := a.sessions.Put(ctx, hashOf(token), s); err != nil {
		return "", fmt.Errorf("store session: %w", err)
	}
	return token, nil
}

var dummyHash, _ = bcrypt.GenerateFromPassword([]byte("pulse"), bcrypt.DefaultCost)

// validUser reports whether u can name a user: 1 to 64 of a-z, 0-9, '-'
// and '_' (a KV key token).
func validUser(u string) bool {
	if u == "" || len(u) > 64 || strings.HasPrefix(u, "token") {
		return false
	}
	for _, r := range u {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
			return false
		}
	}
	return true
}

func (a *auth) logout(ctx context.Context, token string) error {
	return a.sessions.Delete(ctx, hashOf(token))
}

// principalOf returns who a request acts for: by session cookie, or by API
// token when allowBearer is set; nil for nobody.
func (a *auth) principalOf(r *http.Request, allowBearer bool) *principal {
	p, _ := a.resolve(r, allowBearer)
	return p
}

// resolve is principalOf that also says whether a nil principal is
// because the stores could not be read (err), rather than a refusal.
func (a *auth) resolve(r *http.Request, allowBearer bool) (*principal, error) {
	ctx := r.Context()
	if tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); ok && allowBearer && tok != "" {
		if a.apiToken != "" && subtle.ConstantTimeCompare([]byte(tok), []byte(a.apiToken)) == 1 {
			return &principal{User: "api", Admin: true}, nil
		}
		var t apiToken
		if ok, err := getJSON(ctx, a.users, natsutil.TokenKey(hashOf(tok)), &t); !ok {
			return nil, err
		}
		return a.principalFor(ctx, t.User, func(acc *account) bool { return acc.ID == t.Account })
	}
	c, err := r.Cookie(cookieName)
	if err != nil || c.Value == "" || len(c.Value) > 64 {
		return nil, nil
	}
	var s session
	if ok, err := getJSON(ctx, a.sessions, hashOf(c.Value), &s); !ok {
		return nil, err
	}
	return a.principalFor(ctx, s.User, func(acc *account) bool { return acc.Epoch == s.Epoch })
}

// principalFor loads user's rights, if the account is still the one that
// valid says the session or token was made for; a deleted user has none.
func (a *auth) principalFor(ctx context.Context, user string, valid func(*account) bool) (*principal, error) {
	var acc account
	if ok, err := getJSON(ctx, a.users, user, &acc); !ok || !valid(&acc) {
		return nil, err
	}
	return &principal{User: acc.User, Admin: acc.Admin, Sites: acc.Sites}, nil
}

// getJSON decodes key's value into v; ok is false if there is none (err
// nil: the key is missing, or holds something else) or it could not be
// read (err).
func getJSON(ctx context.Context, kv jetstream.KeyValue, key string, v any) (ok bool, err error) {
	e, err := kv.Get(ctx, key)
	switch {
	case errors.Is(err, jetstream.ErrKeyNotFound), errors.Is(err, jetstream.ErrKeyDeleted):
		return false, nil
	case err != nil:
		return false, fmt.Errorf("load %s: %w", key, err)
	}
	return json.Unmarshal(e.Value(), v) == nil, nil
}

// hashOf is the hex SHA-256 of a secret: what the buckets store.
func hashOf(secret string) string {
	sum := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(sum[:])
}

func randomToken(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// sessionCookie carries token for maxAge seconds; a negative maxAge
// deletes the cookie.
func sessionCookie(r *http.Request, token string, maxAge int) *http.Cookie {
	return &http.Cookie{
		Name:     cookieName,
		Value:    token,
		Path:     "/",
		MaxAge:   maxAge,
		HttpOnly: true,
		SameSite: http.SameSiteLaxMode,
		// Secure behind TLS, directly or through a proxy that says so.
		Secure: r.TLS != nil || r.Header.Get("X-Forwarded-Proto") == "https",
	}
}

// loginLimiter bounds login attempts per client address: a burst, then one
// attempt per interval. It is per replica, and bounded: addresses idle for
// 10 minutes are forgotten.
type loginLimiter struct {
	burst int
	every time.Duration

	mu    sync.Mutex
	seen  map[string]*limited
	sweep time.Time
}

type limited struct {
	lim  *rate.Limiter
	last time.Time
}

func newLoginLimiter(burst int, every time.Duration) *loginLimiter {
	return &loginLimiter{burst: burst, every: every, seen: make(map[string]*limited)}
}

func (l *loginLimiter) allow(addr string, now time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if now.Sub(l.sweep) > time.Minute {
		for k, v := range l.seen {
			if now.Sub(v.last) > 10*time.Minute {
				delete(l.seen, k)
			}
		}
		l.sweep = now
	}
	e := l.seen[addr]
	if e == nil {
		e = &limited{lim: rate.NewLimiter(rate.Every(l.every), l.burst)}
		l.seen[addr] = e
	}
	e.last = now
	return e.lim.AllowN(now, 1)
}
