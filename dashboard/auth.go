package dashboard

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/pulse-analytics/pulse/store"
	"golang.org/x/crypto/bcrypt"
	"golang.org/x/time/rate"
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

// auth checks logins, sessions and API tokens against the accounts and
// sessions stores, which every dashboard replica shares.
type auth struct {
	users    *store.Accounts
	sessions *store.Sessions
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
		return "", a.putAccount(ctx, store.Account{User: adminUser, Admin: true}, password)
	}
	if password == "" {
		password = randomToken(12)
		generated = password
	}
	acc, err := newAccount(store.Account{User: adminUser, Admin: true}, password, a.cost)
	if err != nil {
		return "", err
	}
	if err := a.users.Create(ctx, acc); err != nil {
		if errors.Is(err, store.ErrExists) {
			return "", nil
		}
		return "", fmt.Errorf("create admin account: %w", err)
	}
	return generated, nil
}

// newAccount is acc with a hash of password, and a new epoch (and ID and
// creation time, if it has none).
func newAccount(acc store.Account, password string, cost int) (store.Account, error) {
	hash, err := bcrypt.GenerateFromPassword([]byte(password), cost)
	if err != nil {
		return acc, fmt.Errorf("hash password: %w", err)
	}
	acc.Hash = hash
	if acc.Created.IsZero() {
		acc.Created = time.Now().UTC()
	}
	if acc.ID == "" {
		acc.ID = randomToken(12)
	}
	acc.Epoch = randomToken(12)
	return acc, nil
}

// putAccount stores acc. An existing account keeps its ID and creation
// time; with a password it gets a new hash (and epoch, ending its
// sessions), without one it keeps the stored hash.
func (a *auth) putAccount(ctx context.Context, acc store.Account, password string) error {
	old, gerr := a.users.Account(ctx, acc.User)
	if gerr == nil {
		acc.ID, acc.Created = old.ID, old.Created
	}
	if password != "" {
		var err error
		if acc, err = newAccount(acc, password, a.cost); err != nil {
			return err
		}
	} else {
		if gerr != nil {
			return fmt.Errorf("a new user needs a password: %w", gerr)
		}
		acc.Hash, acc.Epoch = old.Hash, old.Epoch
	}
	return a.users.Put(ctx, acc)
}

// createToken makes an API token for user and returns it; only its hash is
// stored, so it is shown once.
func (a *auth) createToken(ctx context.Context, name string, acc store.Account) (string, error) {
	token := "pulse_" + randomToken(24)
	t := store.APIToken{Name: name, User: acc.User, Account: acc.ID, Created: time.Now().UTC()}
	if err := a.users.PutToken(ctx, hashOf(token), t); err != nil {
		return "", err
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
	acc, err := a.users.Account(ctx, user)
	if errors.Is(err, store.ErrNotFound) {
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
	if err := a.sessions.Put(ctx, hashOf(token), store.Session{User: user, Created: time.Now().UTC(), Epoch: acc.Epoch}); err != nil {
		return "", err
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
		t, err := a.users.Token(ctx, hashOf(tok))
		if err != nil {
			return nil, storeFailure(err)
		}
		return a.principalFor(ctx, t.User, func(acc *store.Account) bool { return acc.ID == t.Account })
	}
	c, err := r.Cookie(cookieName)
	if err != nil || c.Value == "" || len(c.Value) > 64 {
		return nil, nil
	}
	s, err := a.sessions.Get(ctx, hashOf(c.Value))
	if err != nil {
		return nil, storeFailure(err)
	}
	return a.principalFor(ctx, s.User, func(acc *store.Account) bool { return acc.Epoch == s.Epoch })
}

// principalFor loads user's rights, if the account is still the one that
// valid says the session or token was made for; a deleted user has none.
func (a *auth) principalFor(ctx context.Context, user string, valid func(*store.Account) bool) (*principal, error) {
	acc, err := a.users.Account(ctx, user)
	if err != nil {
		return nil, storeFailure(err)
	}
	if !valid(&acc) {
		return nil, nil
	}
	return &principal{User: acc.User, Admin: acc.Admin, Sites: acc.Sites}, nil
}

// storeFailure is err if it says the stores could not be read, and nil if
// it is a refusal: no such session, token or account, or one that does not
// decode.
func storeFailure(err error) error {
	if errors.Is(err, store.ErrNotFound) || errors.Is(err, store.ErrMalformed) {
		return nil
	}
	return err
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
