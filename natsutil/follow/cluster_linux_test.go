package follow

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// The cluster test runs three NATS servers as child processes of the test
// binary (see TestMain), so that stopping one is a crash (SIGKILL): a
// server stopped in-process tells the others it is going, and the
// cluster then stops placing consumers on it at once.

// childEnv names the variable that makes the test binary a NATS server.
const childEnv = "FOLLOW_TEST_NATS_SERVER"

// childServer is what a child server is told.
type childServer struct {
	Name        string
	Port        int
	ClusterPort int
	Routes      string
	StoreDir    string
}

func TestMain(m *testing.M) {
	if cfg := os.Getenv(childEnv); cfg != "" {
		runChild(cfg)
		return
	}
	os.Exit(m.Run())
}

// runChild runs a NATS server until the process is killed.
func runChild(cfg string) {
	var c childServer
	if err := json.Unmarshal([]byte(cfg), &c); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	ns, err := server.NewServer(&server.Options{
		ServerName: c.Name,
		Host:       "127.0.0.1", Port: c.Port,
		JetStream: true, StoreDir: c.StoreDir,
		Cluster: server.ClusterOpts{Name: "c", Host: "127.0.0.1", Port: c.ClusterPort},
		Routes:  server.RoutesFromStr(c.Routes),
		NoLog:   true, NoSigs: true,
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	ns.Start()
	select {}
}

// cluster is three NATS servers with JetStream, each a child process.
type cluster struct {
	servers []childServer
	procs   []*exec.Cmd
}

func (c *cluster) urls() string {
	var urls []string
	for _, s := range c.servers {
		urls = append(urls, fmt.Sprintf("nats://127.0.0.1:%d", s.Port))
	}
	return strings.Join(urls, ",")
}

func startCluster(t *testing.T) *cluster {
	t.Helper()
	c := &cluster{}
	var routes []string
	for i := range 3 {
		s := childServer{Name: fmt.Sprintf("n%d", i), Port: freePort(t), ClusterPort: freePort(t), StoreDir: t.TempDir()}
		c.servers = append(c.servers, s)
		routes = append(routes, fmt.Sprintf("nats://127.0.0.1:%d", s.ClusterPort))
	}
	c.procs = make([]*exec.Cmd, 3)
	for i := range c.servers {
		c.servers[i].Routes = strings.Join(routes, ",")
		c.start(t, i)
	}
	t.Cleanup(func() {
		for i := range c.procs {
			c.kill(i)
		}
	})
	return c
}

// start starts server i on its store.
func (c *cluster) start(t *testing.T, i int) {
	t.Helper()
	cfg, _ := json.Marshal(c.servers[i])
	cmd := exec.Command(os.Args[0], "-test.run", "^$")
	cmd.Env = append(os.Environ(), childEnv+"="+string(cfg))
	cmd.Stderr = os.Stderr
	// The server dies with the test binary, however that ends.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	c.procs[i] = cmd
}

// kill ends server i at once, as a crash would.
func (c *cluster) kill(i int) {
	if cmd := c.procs[i]; cmd != nil {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		c.procs[i] = nil
	}
}

// index returns the index of server name.
func (c *cluster) index(t *testing.T, name string) int {
	t.Helper()
	for i, s := range c.servers {
		if s.Name == name {
			return i
		}
	}
	t.Fatalf("no server %q", name)
	return -1
}

// TestFollowSurvivesItsServerDying kills the server that holds the
// follower's consumer, three times, while messages keep coming: every
// message is handled once, in order. nats.go's ordered consumer stalled
// for good in about a third of such kills (see the package comment).
func TestFollowSurvivesItsServerDying(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a three-server cluster through failures")
	}
	c := startCluster(t)
	js := connect(t, c.urls())
	createStream(t, js, 3)
	p := &publisher{js: js}
	p.publish(t, "t.a", 10)
	var r recorder
	f, err := Start(context.Background(), js, Options{Stream: "T", Logger: testLogger(t)}, r.handle)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Stop(time.Second)
	total := uint64(10)
	r.waitFor(t, seqs(1, total), 10*time.Second)
	for round := range 3 {
		host := f.host(t)
		i := c.index(t, host)
		c.kill(i)
		start := time.Now()
		p.publish(t, "t.a", 10)
		total += 10
		r.waitFor(t, seqs(1, total), 45*time.Second)
		t.Logf("round %d: killed %s; all handled after %v", round, host, time.Since(start).Round(10*time.Millisecond))
		c.start(t, i)
	}
}
