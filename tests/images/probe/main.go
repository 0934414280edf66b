// probe is the test workload for health checks: one static binary, FROM scratch.
//
//	probe serve           HTTP :80 and HTTPS :443 (/health, /last-request), TCP echo :9000,
//	                      UDP echo :5353, gRPC health :50051; starts unhealthy with PROBE_START_UNHEALTHY=1
//	probe set healthy     make every endpoint healthy again
//	probe set unhealthy   /health answers 500, gRPC says NOT_SERVING, TCP and UDP listeners close
//	probe check           exit 0 when healthy, 2 otherwise (for Docker exec checks and HEALTHCHECK)
package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

const failFile = "/unhealthy"

func healthy() bool {
	_, err := os.Stat(failFile)
	return err != nil
}

func main() {
	if len(os.Args) < 2 {
		serve()
		return
	}
	switch os.Args[1] {
	case "serve":
		serve()
	case "set":
		if len(os.Args) == 3 && os.Args[2] == "unhealthy" {
			check(os.WriteFile(failFile, []byte("1"), 0o644))
		} else {
			_ = os.Remove(failFile)
		}
	case "check":
		if !healthy() {
			fmt.Println("unhealthy")
			os.Exit(2)
		}
		fmt.Println("healthy")
	default:
		fmt.Fprintln(os.Stderr, "usage: probe serve | set healthy|unhealthy | check")
		os.Exit(64)
	}
}

func check(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

func serve() {
	if os.Getenv("PROBE_START_UNHEALTHY") != "" {
		check(os.WriteFile(failFile, []byte("1"), 0o644))
	}
	var mu sync.Mutex
	last := map[string]any{}
	mux := http.NewServeMux()
	mux.HandleFunc("/health", func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		last = map[string]any{"method": r.Method, "host": r.Host, "headers": r.Header, "tls": r.TLS != nil}
		mu.Unlock()
		if !healthy() {
			http.Error(w, "unhealthy", http.StatusInternalServerError)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("/last-request", func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		_ = json.NewEncoder(w).Encode(last)
	})
	go func() { check(http.ListenAndServe(":80", mux)) }()
	go func() {
		server := &http.Server{Addr: ":443", Handler: mux, TLSConfig: &tls.Config{Certificates: []tls.Certificate{selfSigned()}}}
		check(server.ListenAndServeTLS("", ""))
	}()
	go serveGRPC()
	go toggled("tcp", serveTCP)
	toggled("udp", serveUDP)
}

// toggled runs a listener while healthy and closes it while unhealthy, so the port really closes.
func toggled(name string, run func(stop <-chan struct{})) {
	for {
		if healthy() {
			stop := make(chan struct{})
			done := make(chan struct{})
			go func() { run(stop); close(done) }()
			for healthy() {
				time.Sleep(100 * time.Millisecond)
			}
			close(stop)
			<-done
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func serveTCP(stop <-chan struct{}) {
	listener, err := net.Listen("tcp", ":9000")
	if err != nil {
		time.Sleep(100 * time.Millisecond)
		return
	}
	go func() { <-stop; listener.Close() }()
	for {
		conn, err := listener.Accept()
		if err != nil {
			return
		}
		go func() { _, _ = io.Copy(conn, conn); conn.Close() }()
	}
}

func serveUDP(stop <-chan struct{}) {
	conn, err := net.ListenPacket("udp", ":5353")
	if err != nil {
		time.Sleep(100 * time.Millisecond)
		return
	}
	go func() { <-stop; conn.Close() }()
	buf := make([]byte, 1500)
	for {
		n, addr, err := conn.ReadFrom(buf)
		if err != nil {
			return
		}
		_, _ = conn.WriteTo(buf[:n], addr)
	}
}

func serveGRPC() {
	listener, err := net.Listen("tcp", ":50051")
	check(err)
	server := grpc.NewServer()
	status := health.NewServer()
	healthpb.RegisterHealthServer(server, status)
	go func() {
		for {
			serving := healthpb.HealthCheckResponse_SERVING
			if !healthy() {
				serving = healthpb.HealthCheckResponse_NOT_SERVING
			}
			status.SetServingStatus("", serving)
			status.SetServingStatus("probe", serving)
			time.Sleep(100 * time.Millisecond)
		}
	}()
	check(server.Serve(listener))
}

func selfSigned() tls.Certificate {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	check(err)
	template := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "probe.test"},
		DNSNames:     []string{"probe.test"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, template, template, &key.PublicKey, key)
	check(err)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}
