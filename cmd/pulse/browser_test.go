package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/input"
	"github.com/chromedp/chromedp"

	"github.com/pulse-analytics/pulse/event"
)

// browser starts headless Chromium for a test. Without Chromium the test is
// skipped with a note on how to run it, except in CI (CI set), where a
// missing browser is a failure: .ci/run installs it.
func browser(t testing.TB) context.Context {
	t.Helper()
	var path string
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			path = p
			break
		}
	}
	if path == "" {
		if os.Getenv("CI") != "" {
			t.Fatal("Chromium not found; .ci/run must install Debian's chromium package")
		}
		t.Skip("Chromium not found: install it (apt-get install chromium) to run the browser tests")
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-quic", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 900),
	)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	ctx, cancelTimeout := context.WithTimeout(ctx, 90*time.Second)
	t.Cleanup(func() {
		cancelTimeout()
		cancel()
		cancelAlloc()
	})
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	return ctx
}

// screenshot saves the page to PULSE_ARTIFACTS (default: the test's temp
// dir) so a person can look at what the test saw.
func screenshot(t testing.TB, ctx context.Context, name string) {
	t.Helper()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Errorf("screenshot %s: %v", name, err)
		return
	}
	savePNG(t, name, png)
}

// screenshotOf saves one element of the page, as screenshot does the page.
func screenshotOf(t *testing.T, ctx context.Context, name, sel string) {
	t.Helper()
	if err := chromedp.Do(ctx, chromedp.ScrollIntoView(sel)); err != nil {
		t.Errorf("screenshot %s: %v", name, err)
		return
	}
	png, err := chromedp.Run(ctx, chromedp.Screenshot(sel, chromedp.NodeVisible))
	if err != nil {
		t.Errorf("screenshot %s: %v", name, err)
		return
	}
	savePNG(t, name, png)
}

func savePNG(t testing.TB, name string, png []byte) {
	t.Helper()
	dir := os.Getenv("PULSE_ARTIFACTS")
	if dir == "" {
		dir = t.TempDir()
	}
	err := os.MkdirAll(dir, 0o755)
	if err == nil {
		err = os.WriteFile(filepath.Join(dir, name+".png"), png, 0o644)
	}
	if err != nil {
		t.Errorf("save screenshot: %v", err)
	}
}

func moveMouse(ctx context.Context, from, n int) error {
	for i := range n {
		x, y := float64(200+(from+i)*7%600), float64(200+(from+i)*13%300)
		// Moves closer together than the sampling interval are dropped
		// by the tracker, so pace them.
		if err := chromedp.Do(ctx, chromedp.MouseEvent(input.DispatchMouseEventTypeMouseMoved, x, y), chromedp.Sleep(60*time.Millisecond)); err != nil {
			return err
		}
	}
	return nil
}

// textOf reads an element's text in one evaluation: SSE replaces fragments
// every second, so a node found by one call may be gone by the next.
func textOf(ctx context.Context, sel string) (string, error) {
	return chromedp.Run(ctx, chromedp.Evaluate[string](`(document.querySelector(`+strconv.Quote(sel)+`) || {}).textContent || ''`))
}

func textInt(ctx context.Context, sel string) (int, error) {
	s, err := textOf(ctx, sel)
	if err != nil {
		return 0, err
	}
	return strconv.Atoi(strings.Map(func(r rune) rune {
		if r >= '0' && r <= '9' {
			return r
		}
		return -1
	}, s))
}

// TestBrowserDemoMovesDashboard is what a new user does: open the demo page,
// move the mouse, log into the dashboard, and see the counters rise live.
func TestBrowserDemoMovesDashboard(t *testing.T) {
	ctx := browser(t)
	m := startPulse(t, t.TempDir(), nil)

	demo := ctx
	openDemo(t, demo, m)
	if err := moveMouse(demo, 0, 30); err != nil {
		t.Fatal(err)
	}
	// Four quick clicks on one spot (a rage click), and a scroll down.
	for range 4 {
		if err := chromedp.Do(demo, chromedp.MouseClickXY(400, 300)); err != nil {
			t.Fatal(err)
		}
	}
	if err := chromedp.Do(demo, chromedp.Evaluate[chromedp.Void](`window.scrollTo(0, document.body.scrollHeight)`)); err != nil {
		t.Fatal(err)
	}
	if _, err := chromedp.Run(demo, chromedp.Poll[bool](`+document.querySelector('[data-testid=acked]').textContent > 30`, chromedp.WithPollingTimeout(15*time.Second))); err != nil {
		t.Fatalf("events not acked on the demo page: %v", err)
	}
	if err := chromedp.Do(demo, chromedp.Evaluate[chromedp.Void](`window.scrollTo(0, 0)`)); err != nil {
		t.Fatal(err)
	}
	screenshot(t, demo, "demo")

	dash := siteTab(t, demo, m, true)
	before, err := textInt(dash, `[data-testid=events-total]`)
	if err != nil {
		t.Fatal(err)
	}
	if err := moveMouse(demo, 30, 30); err != nil {
		t.Fatal(err)
	}
	// The counter must rise without a reload: the SSE stream updates it.
	expr := `+document.querySelector('[data-testid=events-total]').textContent.replace(/\D/g, '') > ` + strconv.Itoa(before)
	if _, err := chromedp.Run(dash, chromedp.Poll[bool](expr, chromedp.WithPollingTimeout(15*time.Second))); err != nil {
		t.Fatalf("events counter did not rise above %d: %v", before, err)
	}
	// Live panels, between the overviews, move the counters and the
	// events-per-second chart. A batch that an overview shows first gets
	// no live panel, nor does one that a newer overview replaces in a slow
	// page's mailbox (a loaded machine), so the visitor moves on until one
	// comes.
	var liveErr error
	for try := range 10 {
		if err := moveMouse(demo, 60+10*try, 10); err != nil {
			t.Fatal(err)
		}
		if _, liveErr = chromedp.Run(dash, chromedp.Poll[bool](`!!document.querySelector('[data-sse]').dataset.liveAt`, chromedp.WithPollingTimeout(3*time.Second))); liveErr == nil {
			break
		}
	}
	if liveErr != nil {
		t.Errorf("no live panel reached the page: %v", liveErr)
	}
	visitors, err := textInt(dash, `[data-testid=visitors]`)
	if err != nil || visitors < 1 {
		t.Errorf("visitors now = %d, %v; want at least 1", visitors, err)
	}
	// The rage click and the click heatmap of the demo page arrive live.
	if _, err := chromedp.Run(dash, chromedp.Poll[bool](`+document.querySelector('[data-testid=rage-clicks]').textContent >= 1`, chromedp.WithPollingTimeout(15*time.Second))); err != nil {
		t.Errorf("no rage click shown: %v", err)
	}
	// Every chart is drawn by echarts from the server's option objects.
	for _, id := range []string{"events-per-second", "events-per-minute", "arrivals-departures", "events-day", "click-heat", "move-heat", "scroll-depth"} {
		if ok, err := chromedp.Run(dash, chromedp.Evaluate[bool](`!!echarts.getInstanceByDom(document.getElementById('`+id+`'))`)); err != nil || !ok {
			t.Errorf("chart %s not drawn: %v", id, err)
		}
	}
	clicks, err := chromedp.Run(dash, chromedp.Evaluate[int](`echarts.getInstanceByDom(document.getElementById('click-heat')).getOption().series[0].data.reduce((n, d) => n + (d.value || d)[2], 0)`))
	if err != nil || clicks < 4 {
		t.Errorf("click heatmap holds %d clicks, %v; want at least 4", clicks, err)
	}
	screenshot(t, dash, "site")
	if err := chromedp.Do(dash, chromedp.Navigate(m.DashboardURL+"/"), chromedp.WaitVisible(chromedp.CSS(`[data-testid=snippet-demo]`))); err != nil {
		t.Fatalf("sites page: %v", err)
	}
	screenshot(t, dash, "sites")

	// An admin adds a site with the form; an origin that is not
	// scheme://host is refused with a message, and nothing is saved.
	form := `[data-testid=site-form] `
	if err := chromedp.Do(dash,
		chromedp.SendKeys(chromedp.CSS(form+`input[name=key]`), "shop2"),
		chromedp.SendKeys(chromedp.CSS(form+`textarea[name=origins]`), "shop.example"),
		chromedp.Submit(chromedp.CSS(`[data-testid=site-form]`)),
		chromedp.WaitVisible(chromedp.CSS(`[data-testid=site-error]`)),
	); err != nil {
		t.Fatalf("a bad origin: %v", err)
	}
	if msg, _ := textOf(dash, `[data-testid=site-error]`); !strings.Contains(msg, "scheme://host") {
		t.Errorf("error for a bad origin = %q, want it to name scheme://host", msg)
	}
	if n, err := chromedp.Run(dash, chromedp.Evaluate[int](`document.querySelectorAll('[data-testid=snippet-shop2]').length`)); err != nil || n != 0 {
		t.Errorf("a site with a bad origin was listed (%d, %v)", n, err)
	}
	// The form is filled and submitted in one evaluation: the page that
	// answered the bad origin may still be settling, and a node chromedp
	// found a moment before can be gone ("No node with given id").
	if err := chromedp.Do(dash,
		chromedp.WaitVisible(chromedp.CSS(form+`input[name=key]`)),
		chromedp.Evaluate[chromedp.Void](`(() => {
			const f = document.querySelector('[data-testid=site-form]'), field = n => f.elements.namedItem(n);
			field('key').value = 'shop';
			field('name').value = 'Our shop';
			field('origins').value = 'https://shop.example';
			f.requestSubmit();
		})()`),
		chromedp.WaitVisible(chromedp.CSS(`[data-testid=snippet-shop]`)),
	); err != nil {
		t.Fatalf("add a site with the form: %v", err)
	}
	if snippet, _ := textOf(dash, `[data-testid=snippet-shop]`); !strings.Contains(snippet, "shop") {
		t.Errorf("new site's snippet = %q, want it to name the site", snippet)
	}
	screenshot(t, dash, "site-added")
}

// openDemo opens the demo page in tab and waits for its tracker to connect.
func openDemo(t *testing.T, tab context.Context, m *Main) {
	t.Helper()
	if err := chromedp.Do(tab,
		chromedp.Navigate(m.IngestURL+"/demo"),
		chromedp.Poll[chromedp.Void](`document.querySelector('[data-testid=tracker-status]').textContent.includes('open')`, chromedp.WithPollingTimeout(15*time.Second)),
	); err != nil {
		t.Fatalf("demo page did not connect: %v", err)
	}
}

// siteTab opens the demo site's dashboard page in a second tab of the
// browser, logging in on the way (see logInToSite).
func siteTab(t *testing.T, browser context.Context, m *Main, shots bool) context.Context {
	t.Helper()
	dash, cancel := chromedp.NewContext(browser)
	t.Cleanup(cancel)
	logInToSite(t, dash, m.DashboardURL, shots)
	return dash
}

// logInToSite opens the demo site's page of the dashboard at dashURL in
// tab, logs in as the admin, and waits for the page's stream; shots takes
// a screenshot of the login page.
func logInToSite(t testing.TB, tab context.Context, dashURL string, shots bool) {
	t.Helper()
	if err := chromedp.Do(tab,
		chromedp.Navigate(dashURL+"/sites/demo"),
		chromedp.WaitVisible(chromedp.CSS(`[data-testid=login-form]`)),
	); err != nil {
		t.Fatalf("login page: %v", err)
	}
	if shots {
		screenshot(t, tab, "login")
	}
	if err := chromedp.Do(tab,
		chromedp.SendKeys(chromedp.CSS(`input[name=password]`), testPassword),
		chromedp.Submit(chromedp.CSS(`[data-testid=login-form]`)),
		chromedp.WaitVisible(chromedp.CSS(`[data-testid=events-total]`)),
		chromedp.Poll[chromedp.Void](`document.querySelector('[data-testid=live-status]').textContent.startsWith('live')`, chromedp.WithPollingTimeout(15*time.Second)),
	); err != nil {
		t.Fatalf("log in and open the site: %v", err)
	}
	if loc, _ := chromedp.Run(tab, chromedp.Location()); !strings.HasSuffix(loc, "/sites/demo") {
		t.Errorf("after login at %s, want /sites/demo", loc)
	}
}

// TestBrowserDeadClicks: on the demo page, a click on a button that does
// nothing is counted as a dead click of that element, live on the
// dashboard; a click on a button that shows a note, and on a link, are
// counted as clicks and not dead.
func TestBrowserDeadClicks(t *testing.T) {
	ctx := browser(t)
	m := startPulse(t, t.TempDir(), nil)
	demo := ctx
	openDemo(t, demo, m)
	dash := siteTab(t, demo, m, false)
	// One click at a time, each judged alone: the note's button has its
	// 2.5 s before the link is clicked (whose scroll would count as any
	// pending click's effect). The link scrolls the page to the pad; it
	// goes back to the top, and settles, before the button that does
	// nothing is clicked, so that neither that scroll nor chromedp's
	// scrolling into view is taken as that click's effect.
	if err := chromedp.Do(demo,
		chromedp.Click(chromedp.CSS(`[data-testid=toggle]`)),
		chromedp.Sleep(2700*time.Millisecond),
		chromedp.Click(chromedp.CSS(`[data-testid=to-pad]`)),
		chromedp.Evaluate[chromedp.Void](`window.scrollTo(0, 0)`),
		chromedp.Sleep(500*time.Millisecond),
		chromedp.Click(chromedp.CSS(`[data-testid=noop]`)),
	); err != nil {
		t.Fatal(err)
	}
	row := func(sel, cell string) string {
		return `(document.querySelector('[data-testid=elements] tr[data-selector="` + sel + `"] [data-testid=element-` + cell + `]') || {}).textContent`
	}
	if _, err := chromedp.Run(dash, chromedp.Poll[bool](row("button#noop", "dead")+` === '1'`, chromedp.WithPollingTimeout(20*time.Second))); err != nil {
		html, _ := chromedp.Run(dash, chromedp.Evaluate[string](`(document.querySelector('[data-fragment=elements]') || {}).innerHTML`))
		t.Fatalf("no dead click of button#noop on the dashboard: %v; elements: %s", err, html)
	}
	for _, sel := range []string{"button#toggle", "a#to-pad", "button#noop"} {
		clicks, _ := chromedp.Run(dash, chromedp.Evaluate[string](row(sel, "clicks")))
		dead, _ := chromedp.Run(dash, chromedp.Evaluate[string](row(sel, "dead")))
		want := "0"
		if sel == "button#noop" {
			want = "1"
		}
		if clicks != "1" || dead != want {
			t.Errorf("%s: %q clicks, %q dead; want 1 and %s", sel, clicks, dead, want)
		}
	}
	screenshotOf(t, dash, "elements", `[data-fragment=elements]`)
}

// TestBrowserTabsAreOneVisitor: two tabs of the demo page in one browser
// are two connections of one visitor, and the dashboard counts one.
func TestBrowserTabsAreOneVisitor(t *testing.T) {
	ctx := browser(t)
	m := startPulse(t, t.TempDir(), nil)
	open := func(tab context.Context) string {
		t.Helper()
		openDemo(t, tab, m)
		vid, err := chromedp.Run(tab, chromedp.Evaluate[string](`JSON.parse(localStorage.getItem('pulse.vid')).id`))
		if err != nil {
			t.Fatalf("visitor id: %v", err)
		}
		return vid
	}
	first := open(ctx)
	second, cancel := chromedp.NewContext(ctx)
	defer cancel()
	if vid := open(second); vid != first {
		t.Fatalf("the second tab's visitor %q, the first's %q: want one", vid, first)
	}
	// Each tab sends moves; both tabs' events are the one visitor's.
	for _, tab := range []context.Context{ctx, second} {
		if err := moveMouse(tab, 0, 10); err != nil {
			t.Fatal(err)
		}
		if _, err := chromedp.Run(tab, chromedp.Poll[bool](`+document.querySelector('[data-testid=acked]').textContent > 0`, chromedp.WithPollingTimeout(15*time.Second))); err != nil {
			t.Fatalf("a tab's events were not acked: %v", err)
		}
	}
	dash := siteTab(t, ctx, m, false)
	checkFor(t, 15*time.Second, 100*time.Millisecond, func() error {
		ov, err := stats(m.DashboardURL, "demo")
		if err == nil && (len(ov.TopVisitors) != 1 || ov.Visitors != 1) {
			err = fmt.Errorf("visitors now %d, visitors with events %v; want one", ov.Visitors, ov.TopVisitors)
		}
		return err
	})
	if n, err := textInt(dash, `[data-testid=visitors]`); err != nil || n != 1 {
		t.Errorf("the dashboard shows %d visitors now (%v), want 1", n, err)
	}
}

// TestBrowserVisitorPageLive: from the most active visitors, an admin
// opens the demo page's visitor, sees the moves made before (the replay),
// and the cursor's path grows while the visitor moves the mouse.
func TestBrowserVisitorPageLive(t *testing.T) {
	ctx := browser(t)
	m := startPulse(t, t.TempDir(), nil)
	demo := ctx
	openDemo(t, demo, m)
	vid, err := chromedp.Run(demo, chromedp.Evaluate[string](`JSON.parse(localStorage.getItem('pulse.vid')).id`))
	if err != nil {
		t.Fatalf("visitor id: %v", err)
	}
	if err := moveMouse(demo, 0, 20); err != nil {
		t.Fatal(err)
	}
	if _, err := chromedp.Run(demo, chromedp.Poll[bool](`+document.querySelector('[data-testid=acked]').textContent > 10`, chromedp.WithPollingTimeout(15*time.Second))); err != nil {
		t.Fatalf("events not acked on the demo page: %v", err)
	}
	dash := siteTab(t, demo, m, false)
	href, err := chromedp.Run(dash, chromedp.Poll[string](`(document.querySelector('[data-testid=visitor-link]') || {}).href`, chromedp.WithPollingTimeout(15*time.Second)))
	if err != nil || !strings.HasSuffix(href, "/sites/demo/visitors/"+vid) {
		t.Fatalf("link to the visitor %q: %q, %v", vid, href, err)
	}
	if err := chromedp.Do(dash, chromedp.Click(chromedp.CSS(`[data-testid=visitor-link]`)), chromedp.WaitVisible(chromedp.CSS(`[data-testid=trail]`))); err != nil {
		t.Fatalf("open the visitor page: %v", err)
	}
	if id, _ := textOf(dash, `[data-testid=visitor-id]`); id != vid {
		t.Errorf("visitor page of %q, want %q", id, vid)
	}
	points := func() int {
		n, _ := chromedp.Run(dash, chromedp.Evaluate[int](`+document.querySelector('[data-testid=trail]').dataset.points`))
		return n
	}
	if _, err := chromedp.Run(dash, chromedp.Poll[bool](`+document.querySelector('[data-testid=trail]').dataset.points >= 10`, chromedp.WithPollingTimeout(15*time.Second))); err != nil {
		t.Fatalf("the replay drew %d cursor points, want the moves made before: %v", points(), err)
	}
	replayed := points()
	// Live: the visitor moves and clicks; the path grows, the click counts.
	if err := moveMouse(demo, 20, 20); err != nil {
		t.Fatal(err)
	}
	if err := chromedp.Do(demo, chromedp.Click(chromedp.CSS(`[data-testid=toggle]`))); err != nil {
		t.Fatal(err)
	}
	expr := `+document.querySelector('[data-testid=trail]').dataset.points > ` + strconv.Itoa(replayed+10)
	if _, err := chromedp.Run(dash, chromedp.Poll[bool](expr, chromedp.WithPollingTimeout(15*time.Second))); err != nil {
		t.Fatalf("the cursor path stayed at %d points (%d replayed) while the visitor moved: %v", points(), replayed, err)
	}
	if _, err := chromedp.Run(dash, chromedp.Poll[bool](`+document.querySelector('[data-testid=visitor-clicks]').textContent >= 1`, chromedp.WithPollingTimeout(15*time.Second))); err != nil {
		t.Errorf("the visitor's click is not counted: %v", err)
	}
	if ok, err := chromedp.Run(dash, chromedp.Evaluate[bool](`!!echarts.getInstanceByDom(document.getElementById('visitor-activity'))`)); err != nil || !ok {
		t.Errorf("the visitor's events per second not drawn: %v", err)
	}
	screenshot(t, dash, "visitor")
	// Replay from the start draws fewer points, then returns to live.
	if err := chromedp.Do(dash, chromedp.SetValue(`[data-testid=trail-scrub]`, "0"),
		chromedp.Evaluate[chromedp.Void](`document.querySelector('[data-testid=trail-scrub]').dispatchEvent(new Event('input'))`)); err != nil {
		t.Fatal(err)
	}
	if n := points(); n >= replayed+10 {
		t.Errorf("at the replay's start the path has %d points, want fewer than live", n)
	}
	if err := chromedp.Do(dash, chromedp.Click(chromedp.CSS(`[data-testid=trail-play]`))); err != nil {
		t.Fatal(err)
	}
	if _, err := chromedp.Run(dash, chromedp.Poll[bool](`document.querySelector('[data-trail-time]').textContent.includes('live')`, chromedp.WithPollingTimeout(30*time.Second))); err != nil {
		t.Errorf("the replay did not run to live: %v", err)
	}
}

// TestBrowserHeatmapOverlay: from the site page, an admin opens the demo
// page with its heatmap drawn over it; the overlay grows while a visitor
// clicks in another tab, and the admin's own tab is not tracked.
func TestBrowserHeatmapOverlay(t *testing.T) {
	ctx := browser(t)
	m := startPulse(t, t.TempDir(), nil)
	visitor := ctx
	openDemo(t, visitor, m)
	click := func(n int) {
		t.Helper()
		for i := range n {
			if err := chromedp.Do(visitor, chromedp.MouseClickXY(float64(300+40*i), 300), chromedp.Sleep(400*time.Millisecond)); err != nil {
				t.Fatal(err)
			}
		}
	}
	click(3)
	dash := siteTab(t, visitor, m, false)
	href, err := chromedp.Run(dash, chromedp.Poll[string](`(document.querySelector('[data-testid=overlay-link]') || {}).href`, chromedp.WithPollingTimeout(15*time.Second)))
	if err != nil || !strings.Contains(href, "/sites/demo/overlay?path=%2Fdemo") {
		t.Fatalf("overlay link of /demo: %q, %v", href, err)
	}
	overlay, cancel := chromedp.NewContext(visitor)
	defer cancel()
	clicksDrawn := `(+(document.querySelector('[data-testid=pulse-overlay]') || {dataset: {}}).dataset.clicks || 0)`
	if err := chromedp.Do(overlay, chromedp.Navigate(href)); err != nil {
		t.Fatal(err)
	}
	if _, err := chromedp.Run(overlay, chromedp.Poll[bool](clicksDrawn+` >= 3`, chromedp.WithPollingTimeout(15*time.Second))); err != nil {
		summary, _ := textOf(overlay, `[data-testid=pulse-overlay]`)
		t.Fatalf("the overlay does not draw the visitor's clicks: %q: %v", summary, err)
	}
	// The clicks are also drawn where they fell on the clicked element (the
	// pad), from their offsets within its box.
	if _, err := chromedp.Run(overlay, chromedp.Poll[bool](`+document.querySelector('[data-testid=pulse-overlay]').dataset.spots >= 3`, chromedp.WithPollingTimeout(15*time.Second))); err != nil {
		t.Errorf("the overlay draws no clicks on their element: %v", err)
	}
	if loc, _ := chromedp.Run(overlay, chromedp.Location()); !strings.HasPrefix(loc, m.IngestURL+"/demo#") || !strings.Contains(loc, "pulse-heatmap=") {
		t.Errorf("overlay opened at %s, want the demo page with the token", loc)
	}
	if tracked, _ := chromedp.Run(overlay, chromedp.Evaluate[bool](`typeof window.pulse !== 'undefined'`)); tracked {
		t.Error("the admin's overlay tab runs the tracker")
	}
	before, _ := chromedp.Run(overlay, chromedp.Evaluate[int](clicksDrawn))
	click(3)
	if _, err := chromedp.Run(overlay, chromedp.Poll[bool](clicksDrawn+` >= `+strconv.Itoa(before+3), chromedp.WithPollingTimeout(15*time.Second))); err != nil {
		now, _ := chromedp.Run(overlay, chromedp.Evaluate[int](clicksDrawn))
		t.Errorf("the overlay stayed at %d clicks (%d before) while the visitor clicked 3 more times: %v", now, before, err)
	}
	screenshot(t, overlay, "overlay")
}

// TestBrowserTrackerObeysRate: an ingest node over its capacity tells the
// real pulse.js to slow down, the tracker obeys, and the node stays
// responsive.
func TestBrowserTrackerObeysRate(t *testing.T) {
	ctx := browser(t)
	m := startPulse(t, t.TempDir(), func(c *Config) { c.IngestCapacity = 5 })
	if err := chromedp.Do(ctx,
		chromedp.Navigate(m.IngestURL+"/demo"),
		chromedp.Poll[chromedp.Void](`window.pulse && window.pulse.status.state === 'open'`, chromedp.WithPollingTimeout(15*time.Second)),
	); err != nil {
		t.Fatalf("demo page did not connect: %v", err)
	}
	sample, err := chromedp.Run(ctx, chromedp.Evaluate[int](`window.pulse.status.rates.sampleMs`))
	if err != nil || sample != 50 {
		t.Fatalf("initial sampling %d ms, %v; want 50", sample, err)
	}
	if err := moveMouse(ctx, 0, 40); err != nil {
		t.Fatal(err)
	}
	slowed, err := chromedp.Run(ctx, chromedp.Poll[int](`window.pulse.status.rates.sampleMs > 50 && window.pulse.status.rates.sampleMs`, chromedp.WithPollingTimeout(15*time.Second)))
	if err != nil {
		t.Fatalf("tracker was not slowed down: %v", err)
	}
	// Obeyed: moves closer together than the new interval are not recorded.
	before, _ := chromedp.Run(ctx, chromedp.Evaluate[int](`window.pulse.status.acked + window.pulse.status.pending`))
	if err := moveMouse(ctx, 100, 10); err != nil { // 10 moves in ~600 ms
		t.Fatal(err)
	}
	after, _ := chromedp.Run(ctx, chromedp.Evaluate[int](`window.pulse.status.acked + window.pulse.status.pending`))
	if max := 600/slowed + 2; after-before > max {
		t.Errorf("tracker recorded %d moves in 600 ms at a %d ms interval; want at most %d", after-before, slowed, max)
	}
	if body := get(t, m.IngestURL+"/healthz"); body != "ok\n" {
		t.Errorf("healthz under load: %q", body)
	}
}

// TestBrowserQuotes: the demo page's widgets show live quotes and obey
// callIn; a widget stops on an unknown symbol; the dashboard's quotes page
// shows the movers, the price line, the candles and the poll statistics.
func TestBrowserQuotes(t *testing.T) {
	ctx := browser(t)
	m := startPulse(t, t.TempDir(), func(c *Config) { c.QuoteInterval = time.Second })
	if err := chromedp.Do(ctx,
		chromedp.Navigate(m.IngestURL+"/demo"),
		chromedp.Poll[chromedp.Void](`/\d/.test(document.querySelector('[data-testid=quote-ibm] [data-testid=quote-price]').textContent)`, chromedp.WithPollingTimeout(15*time.Second)),
	); err != nil {
		t.Fatalf("IBM quote not shown: %v", err)
	}
	// The widget polls again after callIn: its quote's time moves on.
	first, err := textOf(ctx, `[data-testid=quote-ibm] [data-testid=quote-meta]`)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := chromedp.Run(ctx, chromedp.Poll[bool](`document.querySelector('[data-testid=quote-ibm] [data-testid=quote-meta]').textContent !== `+strconv.Quote(first), chromedp.WithPollingTimeout(10*time.Second))); err != nil {
		t.Errorf("IBM widget did not update after callIn: %v", err)
	}
	// The picker: an unknown symbol stops the widget, a known one shows.
	if err := chromedp.Do(ctx,
		chromedp.SendKeys(chromedp.CSS(`[data-testid=quote-input]`), "zzzz\n"),
		chromedp.Poll[chromedp.Void](`document.querySelector('[data-testid=quote-pick] [data-testid=quote-meta]').textContent === 'stopped'`, chromedp.WithPollingTimeout(10*time.Second)),
	); err != nil {
		t.Errorf("unknown symbol did not stop the widget: %v", err)
	}
	if msg, _ := textOf(ctx, `[data-testid=quote-pick] [data-testid=quote-error]`); !strings.Contains(msg, "unknown symbol ZZZZ") {
		t.Errorf("error shown: %q", msg)
	}
	if err := chromedp.Do(ctx,
		chromedp.Evaluate[chromedp.Void](`document.querySelector('[data-testid=quote-input]').value = ''`),
		chromedp.SendKeys(chromedp.CSS(`[data-testid=quote-input]`), "msft\n"),
		chromedp.Poll[chromedp.Void](`/\d/.test(document.querySelector('[data-testid=quote-pick] [data-testid=quote-price]').textContent)`, chromedp.WithPollingTimeout(10*time.Second)),
	); err != nil {
		t.Errorf("picked symbol not shown: %v", err)
	}
	screenshot(t, ctx, "demo-quotes")
	// Some activity on the demo site, for the attention chart below.
	if err := moveMouse(ctx, 0, 10); err != nil {
		t.Fatal(err)
	}
	if _, err := chromedp.Run(ctx, chromedp.Poll[bool](`+document.querySelector('[data-testid=acked]').textContent > 0`, chromedp.WithPollingTimeout(15*time.Second))); err != nil {
		t.Fatalf("moves not acked on the demo page: %v", err)
	}

	// The dashboard's quotes page, once the aggregator has the quotes.
	waitQuotes := func() error {
		if err := chromedp.Do(ctx, chromedp.Navigate(m.DashboardURL+"/quotes?symbol=IBM")); err != nil {
			return err
		}
		_, err := chromedp.Run(ctx, chromedp.Poll[bool](`!!document.querySelector('[data-testid=movers]')`, chromedp.WithPollingTimeout(time.Second)))
		return err
	}
	if err := chromedp.Do(ctx,
		chromedp.Navigate(m.DashboardURL+"/login"),
		chromedp.SendKeys(chromedp.CSS(`input[name=password]`), testPassword),
		chromedp.Submit(chromedp.CSS(`[data-testid=login-form]`)),
		chromedp.WaitVisible(chromedp.CSS(`[data-testid=user]`)),
	); err != nil {
		t.Fatalf("log in: %v", err)
	}
	checkFor(t, 20*time.Second, 200*time.Millisecond, waitQuotes)
	// The movers table is a fragment SSE replaces; read it in one go.
	moversHave := `(() => { const m = document.querySelector('[data-testid=movers]'); return !!m && ['IBM', 'AAPL', 'NVDA', 'MSFT'].every(s => m.textContent.includes(s)); })()`
	if _, err := chromedp.Run(ctx, chromedp.Poll[bool](moversHave, chromedp.WithPollingTimeout(15*time.Second))); err != nil {
		movers, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`(document.querySelector('[data-testid=movers]') || {}).textContent || ''`))
		t.Errorf("movers lack a symbol of the demo page: %q: %v", movers, err)
	}
	for _, id := range []string{"price", "candles", "polls", "callin"} {
		if ok, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`!!echarts.getInstanceByDom(document.getElementById('`+id+`'))`)); err != nil || !ok {
			t.Errorf("chart %s not drawn: %v", id, err)
		}
	}
	// The price line grows live as quotes arrive.
	n0, _ := chromedp.Run(ctx, chromedp.Evaluate[int](`echarts.getInstanceByDom(document.getElementById('price')).getOption().series[0].data.length`))
	if _, err := chromedp.Run(ctx, chromedp.Poll[bool](`echarts.getInstanceByDom(document.getElementById('price')).getOption().series[0].data.length > `+strconv.Itoa(n0), chromedp.WithPollingTimeout(15*time.Second))); err != nil {
		t.Errorf("price line did not grow from %d points: %v", n0, err)
	}
	// IBM beside the demo site's activity, on the quotes page and on the
	// site page: one chart, both series.
	series := func(id string) string {
		return `((echarts.getInstanceByDom(document.getElementById('price-attention')) || {getOption: () => ({series: []})}).getOption().series.find(s => s.id === '` + id + `') || {data: []}).data`
	}
	both := series("att-price") + `.length > 0 && ` + series("att-moves") + `.some(d => d[1] > 0)`
	if _, err := chromedp.Run(ctx, chromedp.Poll[bool](both, chromedp.WithPollingTimeout(15*time.Second))); err != nil {
		t.Errorf("the quotes page's attention chart lacks the price or the demo site's moves: %v", err)
	}
	if site, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`document.querySelector('[data-testid=beside-site]').value`)); site != "demo" {
		t.Errorf("the quotes page shows IBM beside %q, want demo", site)
	}
	screenshot(t, ctx, "quotes")
	href, err := chromedp.Run(ctx, chromedp.Evaluate[string](`document.querySelector('[data-testid=beside-sites] a').href`))
	if err != nil || !strings.Contains(href, "/sites/demo?symbol=IBM") {
		t.Fatalf("link to the demo site beside IBM: %q, %v", href, err)
	}
	if err := chromedp.Do(ctx,
		chromedp.Navigate(href),
		chromedp.Poll[chromedp.Void](`document.querySelector('[data-testid=live-status]').textContent.startsWith('live')`, chromedp.WithPollingTimeout(15*time.Second)),
	); err != nil {
		t.Fatalf("open the demo site beside IBM: %v", err)
	}
	if sym, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`document.querySelector('[data-testid=attention-symbol]').value`)); sym != "IBM" {
		t.Errorf("attention chart of %q, want IBM from the link", sym)
	}
	if _, err := chromedp.Run(ctx, chromedp.Poll[bool](both, chromedp.WithPollingTimeout(15*time.Second))); err != nil {
		t.Errorf("the site page's attention chart lacks the price or the site's moves: %v", err)
	}
	screenshotOf(t, ctx, "attention", `#attention`)
}

// TestBrowserClosedMarketQuotesAreStale: while the market is closed, the
// last quote is older than its source's interval allows; the widget and the
// dashboard's movers say it is stale.
func TestBrowserClosedMarketQuotesAreStale(t *testing.T) {
	ctx := browser(t)
	// An hour of trading that is not now.
	hours := "13:00-14:00 UTC"
	if h := time.Now().UTC().Hour(); h >= 12 && h < 15 {
		hours = "02:00-03:00 UTC"
	}
	m := startPulse(t, t.TempDir(), func(c *Config) { c.QuoteInterval = time.Second; c.MarketHours = hours })
	if err := chromedp.Do(ctx,
		chromedp.Navigate(m.IngestURL+"/demo"),
		chromedp.Poll[chromedp.Void](`document.querySelector('[data-testid=quote-ibm]').dataset.stale === 'true'`, chromedp.WithPollingTimeout(15*time.Second)),
	); err != nil {
		meta, _ := textOf(ctx, `[data-testid=quote-ibm] [data-testid=quote-meta]`)
		t.Fatalf("IBM widget not stale with the market closed (%q): %v", meta, err)
	}
	if meta, _ := textOf(ctx, `[data-testid=quote-ibm] [data-testid=quote-meta]`); !strings.HasPrefix(meta, "stale · as of ") {
		t.Errorf("widget says %q, want it to say stale and as of when", meta)
	}
	screenshot(t, ctx, "demo-quotes-stale")
	if err := chromedp.Do(ctx,
		chromedp.Navigate(m.DashboardURL+"/login?next=/quotes"),
		chromedp.SendKeys(chromedp.CSS(`input[name=password]`), testPassword),
		chromedp.Submit(chromedp.CSS(`[data-testid=login-form]`)),
		chromedp.WaitVisible(chromedp.CSS(`[data-testid=user]`)),
	); err != nil {
		t.Fatalf("log in: %v", err)
	}
	checkFor(t, 20*time.Second, 500*time.Millisecond, func() error {
		if err := chromedp.Do(ctx, chromedp.Navigate(m.DashboardURL+"/quotes?symbol=IBM")); err != nil {
			return err
		}
		_, err := chromedp.Run(ctx, chromedp.Poll[bool](`!!document.querySelector('[data-testid=movers] [data-testid=stale]')`, chromedp.WithPollingTimeout(2*time.Second)))
		return err
	})
}

// TestBrowserDashboardProduct: log in, watch the site page through a
// network cut (the SSE stream resumes and the numbers catch up with
// nothing missing), visit every page, switch theme, log out. Screenshots
// of every page go to PULSE_ARTIFACTS.
func TestBrowserDashboardProduct(t *testing.T) {
	ctx := browser(t)
	m := startPulse(t, t.TempDir(), nil)
	proxy := startCutProxy(t, m.DashboardURL)
	dash := proxy.URL()

	logInToSite(t, ctx, dash, false)
	// An empty site says what to do next.
	if txt, _ := textOf(ctx, `[data-fragment=stats] .empty`); !strings.Contains(txt, "snippet") {
		t.Errorf("empty state: %q", txt)
	}
	tc := dialTracker(t, m.IngestURL, "demo", "")
	tc.sendBatch(t, 1, "click", 5)
	waitText := func(want int) {
		t.Helper()
		expr := `+document.querySelector('[data-testid=events-total]').textContent.replace(/\D/g, '') === ` + strconv.Itoa(want)
		if _, err := chromedp.Run(ctx, chromedp.Poll[bool](expr, chromedp.WithPollingTimeout(15*time.Second))); err != nil {
			got, _ := textInt(ctx, `[data-testid=events-total]`)
			t.Fatalf("events counter shows %d, want %d: %v", got, want, err)
		}
	}
	waitText(5)

	// Cut the network; events keep coming meanwhile.
	proxy.cut()
	if _, err := chromedp.Run(ctx, chromedp.Poll[bool](`document.querySelector('[data-testid=live-status]').textContent.startsWith('reconnecting')`, chromedp.WithPollingTimeout(10*time.Second))); err != nil {
		t.Errorf("the page did not notice the cut: %v", err)
	}
	for seq := uint64(2); seq <= 4; seq++ {
		tc.sendBatch(t, seq, "click", 7)
	}
	waitStats(t, m.DashboardURL, "demo", func(ov event.Overview) error {
		if ov.Events != 26 {
			return fmt.Errorf("events %d", ov.Events)
		}
		return nil
	})
	proxy.restore()
	// EventSource reconnects by itself (retry: 2 s) with Last-Event-ID and
	// the page catches up: nothing sent during the cut is missing.
	waitText(26)
	if _, err := chromedp.Run(ctx, chromedp.Poll[bool](`document.querySelector('[data-testid=live-status]').textContent.startsWith('live')`, chromedp.WithPollingTimeout(10*time.Second))); err != nil {
		t.Errorf("not live after the cut: %v", err)
	}
	screenshot(t, ctx, "dashboard-site")

	for _, page := range []struct{ path, ready, name string }{
		{"/", `[data-testid=sites]`, "dashboard-sites"},
		{"/quotes", `[data-testid=live-status]`, "dashboard-quotes"},
		{"/users", `[data-testid=users]`, "dashboard-users"},
		{"/system", `[data-testid=nodes]`, "dashboard-system"},
	} {
		if err := chromedp.Do(ctx, chromedp.Navigate(dash+page.path), chromedp.WaitVisible(chromedp.CSS(page.ready))); err != nil {
			t.Errorf("%s: %v", page.path, err)
			continue
		}
		screenshot(t, ctx, page.name)
	}
	// The dark theme, chosen by the admin, stays across pages.
	if err := chromedp.Do(ctx, chromedp.Click(chromedp.CSS(`[data-testid=theme-toggle]`)), chromedp.Navigate(dash+"/sites/demo"), chromedp.WaitVisible(chromedp.CSS(`[data-testid=events-total]`))); err != nil {
		t.Fatal(err)
	}
	if theme, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`document.documentElement.dataset.theme`)); theme != "dark" {
		t.Errorf("theme %q after toggling, want dark", theme)
	}
	screenshot(t, ctx, "dashboard-site-dark")

	// Log out: back to the login page, and pages are closed again.
	if err := chromedp.Do(ctx, chromedp.Click(chromedp.CSS(`[data-testid=logout]`)), chromedp.WaitVisible(chromedp.CSS(`[data-testid=login-form]`))); err != nil {
		t.Fatalf("log out: %v", err)
	}
	if err := chromedp.Do(ctx, chromedp.Navigate(dash+"/sites/demo"), chromedp.WaitVisible(chromedp.CSS(`[data-testid=login-form]`))); err != nil {
		t.Errorf("after logout the site page is still open: %v", err)
	}
}
