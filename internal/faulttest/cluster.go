package faulttest

import (
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// cluster is a three-node NATS JetStream cluster on loopback, run inside
// this process. Every node keeps its client and route ports and its store
// across a restart, as a node of a real deployment does.
type cluster struct {
	name  string
	nodes []*node
}

type node struct {
	name       string
	clientPort int
	routePort  int
	storeDir   string
	routes     string

	mu  sync.Mutex
	srv *server.Server
}

func startCluster(dir string, size int) (*cluster, error) {
	c := &cluster{name: "kefu-faults"}
	ports, err := freePorts(2 * size)
	if err != nil {
		return nil, err
	}
	var routes []string
	for i := 0; i < size; i++ {
		routes = append(routes, fmt.Sprintf("nats://127.0.0.1:%d", ports[2*i+1]))
	}
	for i := 0; i < size; i++ {
		c.nodes = append(c.nodes, &node{
			name:       fmt.Sprintf("n%d", i+1),
			clientPort: ports[2*i],
			routePort:  ports[2*i+1],
			storeDir:   filepath.Join(dir, fmt.Sprintf("n%d", i+1)),
			routes:     strings.Join(routes, ","),
		})
	}
	for _, n := range c.nodes {
		if err := n.start(); err != nil {
			c.shutdown()
			return nil, err
		}
	}
	if err := c.waitHealthy(30 * time.Second); err != nil {
		c.shutdown()
		return nil, err
	}
	return c, nil
}

func (n *node) options() *server.Options {
	return &server.Options{
		ServerName: n.name,
		Host:       "127.0.0.1",
		Port:       n.clientPort,
		JetStream:  true,
		StoreDir:   n.storeDir,
		Cluster: server.ClusterOpts{
			Name: "kefu-faults",
			Host: "127.0.0.1",
			Port: n.routePort,
		},
		Routes: server.RoutesFromStr(n.routes),
		NoLog:  true,
		NoSigs: true,
	}
}

func (n *node) start() error {
	srv, err := server.NewServer(n.options())
	if err != nil {
		return fmt.Errorf("start nats %s: %w", n.name, err)
	}
	go srv.Start()
	if !srv.ReadyForConnections(15 * time.Second) {
		srv.Shutdown()
		return fmt.Errorf("start nats %s: not ready for connections in 15s", n.name)
	}
	n.mu.Lock()
	n.srv = srv
	n.mu.Unlock()
	return nil
}

// stop shuts the node down; its store stays for the restart.
func (n *node) stop() {
	n.mu.Lock()
	srv := n.srv
	n.srv = nil
	n.mu.Unlock()
	if srv != nil {
		srv.Shutdown()
		srv.WaitForShutdown()
	}
}

func (n *node) server() *server.Server {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.srv
}

// URLs is the comma-separated client URL list (KEFU_NATS_URL).
func (c *cluster) URLs() string {
	var urls []string
	for _, n := range c.nodes {
		urls = append(urls, fmt.Sprintf("nats://127.0.0.1:%d", n.clientPort))
	}
	return strings.Join(urls, ",")
}

// waitHealthy waits until every running node reports JetStream healthy:
// a meta leader is elected and the node's streams and consumers are
// current, so a restarted node has caught up before the next fault.
func (c *cluster) waitHealthy(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		var bad []string
		for _, n := range c.nodes {
			srv := n.server()
			if srv == nil {
				continue
			}
			if h := srv.Healthz(&server.HealthzOptions{}); h.Status != "ok" {
				bad = append(bad, fmt.Sprintf("%s: %s %s", n.name, h.Status, h.Error))
			} else if !srv.JetStreamIsCurrent() {
				bad = append(bad, n.name+": meta not current")
			}
		}
		if len(bad) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("nats cluster not healthy after %s: %s", timeout, strings.Join(bad, "; "))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (c *cluster) shutdown() {
	for _, n := range c.nodes {
		n.stop()
	}
}

// freePorts asks the kernel for n distinct free loopback ports. They are
// released before use, so another process could take one in between; on a
// test machine that is rare enough, and the start fails loudly if it happens.
func freePorts(n int) ([]int, error) {
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	var ports []int
	for i := 0; i < n; i++ {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("find a free port: %w", err)
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

var errNoNode = errors.New("no such node")

func (c *cluster) node(name string) (*node, error) {
	for _, n := range c.nodes {
		if n.name == name {
			return n, nil
		}
	}
	return nil, fmt.Errorf("%w: %s", errNoNode, name)
}
