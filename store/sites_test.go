package store_test

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pulse-analytics/pulse/natsutil/natstest"
	"github.com/pulse-analytics/pulse/store"
)

func TestSiteRegistry(t *testing.T) {
	ns := natstest.Run(t)
	ctx := context.Background()
	log := slog.New(slog.DiscardHandler)

	// The built-in default fills a gap only; a sites file overwrites.
	demo := store.Site{Key: "demo", Name: "Demo page"}
	if err := ns.Stores.Sites.Seed(ctx, []store.Site{demo}, false); err != nil {
		t.Fatal(err)
	}
	sites, err := store.LoadSitesFile(filepath.Join("testdata", "sites.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := ns.Stores.Sites.Seed(ctx, sites, true); err != nil {
		t.Fatal(err)
	}
	if err := ns.Stores.Sites.Seed(ctx, []store.Site{demo}, false); err != nil {
		t.Fatal(err)
	}
	reg, err := ns.Stores.Sites.Watch(ctx, log)
	if err != nil {
		t.Fatal(err)
	}
	defer reg.Stop()
	if s, ok := reg.Site("demo"); !ok || s.Name != "Demo, renamed" || !s.AllowsOrigin("https://anywhere.example") {
		t.Errorf("demo = %+v, %v; want the file's version", s, ok)
	}
	shop, ok := reg.Site("shop")
	if !ok || !shop.AllowsOrigin("http://localhost:3000") || shop.AllowsOrigin("https://evil.example") {
		t.Errorf("shop = %+v, %v", shop, ok)
	}

	// An edit reaches the registry without a restart.
	if err := ns.Stores.Sites.Put(ctx, store.Site{Key: "blog", Origins: []string{"https://blog.example"}}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		if _, ok := reg.Site("blog"); ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("new site not seen")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := ns.Stores.Sites.Delete(ctx, "blog"); err != nil {
		t.Fatal(err)
	}
	for {
		if _, ok := reg.Site("blog"); !ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("deleted site still seen")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestLoadSitesFileErrors(t *testing.T) {
	dir := t.TempDir()
	for name, tt := range map[string]struct{ body, want string }{
		"not json":   {`{`, "sites file"},
		"bad key":    {`[{"key":"Shop"}]`, "site 1: site key"},
		"bad origin": {`[{"key":"shop","origins":["shop.example"]}]`, "want scheme://host"},
	} {
		p := filepath.Join(dir, name+".json")
		_ = os.WriteFile(p, []byte(tt.body), 0o644)
		if _, err := store.LoadSitesFile(p); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: err %v, want %q", name, err, tt.want)
		}
	}
}
